#pragma once
// The arithmetic of a dp x tp x pp process grid, with no MPI: which slot sits at which
// coordinates. Slots are numbered with the first axis of `order` varying fastest; the default
// (tp, pp, dp) keeps a tensor-parallel group's slots together, then a pipeline's, so that with
// slots filled node by node the heaviest traffic stays inside a node and the data-parallel
// reduction, the one that can overlap compute, is what crosses between nodes. Megatron's
// (tp, dp, pp) is there by name.

#include <trident/core/error.hpp>

#include <algorithm>
#include <array>
#include <string>

namespace trident {

enum class MeshAxis : int { dp, tp, pp };

inline const char* mesh_axis_name(MeshAxis axis) {
  switch (axis) {
    case MeshAxis::dp:
      return "dp";
    case MeshAxis::tp:
      return "tp";
    case MeshAxis::pp:
      return "pp";
  }
  return "unknown";
}

struct MeshCoords {
  int dp = 0;
  int tp = 0;
  int pp = 0;

  int& operator[](MeshAxis axis) { return axis == MeshAxis::dp ? dp : axis == MeshAxis::tp ? tp : pp; }
  int operator[](MeshAxis axis) const { return axis == MeshAxis::dp ? dp : axis == MeshAxis::tp ? tp : pp; }
  friend bool operator==(const MeshCoords& a, const MeshCoords& b) {
    return a.dp == b.dp && a.tp == b.tp && a.pp == b.pp;
  }
  friend bool operator!=(const MeshCoords& a, const MeshCoords& b) { return !(a == b); }
};

// "(dp 1, tp 0, pp 2)"
inline std::string to_string(const MeshCoords& coords) {
  return "(dp " + std::to_string(coords.dp) + ", tp " + std::to_string(coords.tp) + ", pp " +
         std::to_string(coords.pp) + ")";
}

// Axes from fastest- to slowest-varying in the slot number.
using MeshOrder = std::array<MeshAxis, 3>;
inline constexpr MeshOrder default_mesh_order = {MeshAxis::tp, MeshAxis::pp, MeshAxis::dp};
inline constexpr MeshOrder megatron_order = {MeshAxis::tp, MeshAxis::dp, MeshAxis::pp};

// "tp,pp,dp"
inline std::string to_string(const MeshOrder& order) {
  return std::string(mesh_axis_name(order[0])) + "," + mesh_axis_name(order[1]) + "," + mesh_axis_name(order[2]);
}

// "tp,pp,dp" (fastest first), any permutation of the three axes.
inline MeshOrder mesh_order_from_string(const std::string& text) {
  MeshOrder order{};
  std::size_t start = 0;
  int count = 0;
  bool valid = true;
  while (valid && start <= text.size()) {
    const std::size_t end = std::min(text.find(',', start), text.size());
    const std::string name = text.substr(start, end - start);
    valid = count < 3 && (name == "dp" || name == "tp" || name == "pp");
    if (valid)
      order[static_cast<std::size_t>(count++)] = name == "dp"   ? MeshAxis::dp
                                                 : name == "tp" ? MeshAxis::tp
                                                                : MeshAxis::pp;
    start = end + 1;
  }
  valid = valid && count == 3 && order[0] != order[1] && order[0] != order[2] && order[1] != order[2];
  require_argument(valid, "trident::MeshLayout: a mesh order names tp, pp and dp once each, fastest first (e.g. ",
                   "'tp,pp,dp'), not '", text, "'");
  return order;
}

// How the grid's slots are filled: each node's ranks in turn (by_node), or in rank order.
enum class MeshPlacement { by_node, by_rank };

inline const char* mesh_placement_name(MeshPlacement placement) {
  return placement == MeshPlacement::by_node ? "node" : "rank";
}

// "node" or "rank".
inline MeshPlacement mesh_placement_from_name(const std::string& name) {
  require_argument(name == "node" || name == "rank", "trident::MeshLayout: placement is 'node' (fill each node's ",
                   "ranks in turn) or 'rank' (rank order), not '", name, "'");
  return name == "node" ? MeshPlacement::by_node : MeshPlacement::by_rank;
}

class MeshLayout {
 public:
  MeshLayout(int dp, int tp, int pp, MeshOrder order = default_mesh_order) : m_sizes{dp, tp, pp}, m_order(order) {
    require_argument(dp >= 1 && tp >= 1 && pp >= 1, "trident::MeshLayout: sizes must be at least 1, got dp ", dp,
                     ", tp ", tp, ", pp ", pp);
    const bool permutation = order[0] != order[1] && order[0] != order[2] && order[1] != order[2];
    require_argument(permutation, "trident::MeshLayout: the order must name dp, tp and pp once each, got (",
                     mesh_axis_name(order[0]), ", ", mesh_axis_name(order[1]), ", ", mesh_axis_name(order[2]), ")");
  }

  int size(MeshAxis axis) const { return m_sizes[axis]; }
  int dp_size() const { return m_sizes.dp; }
  int tp_size() const { return m_sizes.tp; }
  int pp_size() const { return m_sizes.pp; }
  int total_size() const { return m_sizes.dp * m_sizes.tp * m_sizes.pp; }
  const MeshOrder& order() const { return m_order; }

  MeshCoords coords_of(int rank) const {
    require_argument(rank >= 0 && rank < total_size(), "trident::MeshLayout::coords_of: rank ", rank,
                     " is outside a mesh of ", total_size(), " ranks");
    MeshCoords coords;
    for (MeshAxis axis : m_order) {
      coords[axis] = rank % m_sizes[axis];
      rank /= m_sizes[axis];
    }
    return coords;
  }

  int rank_of(const MeshCoords& coords) const {
    int rank = 0;
    for (int i = 2; i >= 0; --i) {
      const MeshAxis axis = m_order[static_cast<std::size_t>(i)];
      require_argument(coords[axis] >= 0 && coords[axis] < m_sizes[axis],
                       "trident::MeshLayout::rank_of: ", to_string(coords), " is outside a mesh of dp ", m_sizes.dp,
                       " x tp ", m_sizes.tp, " x pp ", m_sizes.pp);
      rank = rank * m_sizes[axis] + coords[axis];
    }
    return rank;
  }

 private:
  MeshCoords m_sizes;  // the extent of each axis, stored like coordinates
  MeshOrder m_order;
};

}  // namespace trident
