#pragma once
// The arithmetic of a dp x tp x pp process grid, with no MPI: which rank sits at which
// coordinates. Ranks are numbered with the first axis of `order` varying fastest; the default
// (tp, dp, pp) is Megatron's: the ranks of a tensor-parallel group are neighbours, so the
// heaviest traffic stays inside a node.

#include <trident/core/error.hpp>

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

// Axes from fastest- to slowest-varying in the rank number.
using MeshOrder = std::array<MeshAxis, 3>;
inline constexpr MeshOrder megatron_order = {MeshAxis::tp, MeshAxis::dp, MeshAxis::pp};

class MeshLayout {
 public:
  MeshLayout(int dp, int tp, int pp, MeshOrder order = megatron_order) : m_sizes{dp, tp, pp}, m_order(order) {
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
