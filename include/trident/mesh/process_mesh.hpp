#pragma once
// trident::ProcessMesh: the ranks of a communicator arranged as a dp x tp x pp grid, with one
// sub-communicator per axis. A rank's tp() communicator holds the ranks that differ from it
// only in the tp coordinate, ordered by that coordinate (so tp().rank() == coords().tp);
// likewise dp() and pp(). Sub-communicators are labelled "dp", "tp", "pp" in error messages.
//
// Placement: the grid's slots (mesh_layout.hpp) are filled node by node, so a group whose axis
// comes first in the order stays inside a node whatever order the launcher gave the ranks
// (by_node, the default); by_rank fills them in rank order.

#include <trident/comm/communicator.hpp>
#include <trident/comm/topology.hpp>
#include <trident/core/error.hpp>
#include <trident/core/profiling.hpp>
#include <trident/mesh/mesh_layout.hpp>

#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

namespace trident {

class ProcessMesh {
 public:
  // Collective over `world`. Requires dp * tp * pp == world.size(). Finds the nodes of the
  // ranks (comm::discover_topology).
  ProcessMesh(const comm::Communicator& world, int dp, int tp, int pp, MeshOrder order = default_mesh_order,
              MeshPlacement placement = MeshPlacement::by_node)
      : ProcessMesh(world, dp, tp, pp, order, placement, discover(world, dp, tp, pp, order)) {}

  // Collective over `world`, with the nodes given (a topology of `world`).
  ProcessMesh(const comm::Communicator& world, int dp, int tp, int pp, MeshOrder order, MeshPlacement placement,
              comm::Topology topology)
      : m_world(world),
        m_layout(checked_layout(world, dp, tp, pp, order)),
        m_placement(placement),
        m_topology(std::move(topology)) {
    ScopedRegion region("trident::mesh::ProcessMesh");
    require_argument(static_cast<int>(m_topology.node_of_rank.size()) == world.size(),
                     "trident::ProcessMesh: the topology has ", m_topology.node_of_rank.size(),
                     " ranks but the communicator has ", world.size());
    m_rank_of_slot.resize(static_cast<std::size_t>(world.size()));
    std::iota(m_rank_of_slot.begin(), m_rank_of_slot.end(), 0);
    if (placement == MeshPlacement::by_node)
      std::stable_sort(m_rank_of_slot.begin(), m_rank_of_slot.end(),
                       [&](int a, int b) { return m_topology.node_of(a) < m_topology.node_of(b); });
    m_slot_of_rank.resize(m_rank_of_slot.size());
    for (std::size_t slot = 0; slot < m_rank_of_slot.size(); ++slot)
      m_slot_of_rank[static_cast<std::size_t>(m_rank_of_slot[slot])] = static_cast<int>(slot);
    m_coords = coords_of(m_world.rank());
    m_dp = split_along(MeshAxis::dp);
    m_tp = split_along(MeshAxis::tp);
    m_pp = split_along(MeshAxis::pp);
  }

  const MeshLayout& layout() const { return m_layout; }
  int size(MeshAxis axis) const { return m_layout.size(axis); }
  int dp_size() const { return m_layout.dp_size(); }
  int tp_size() const { return m_layout.tp_size(); }
  int pp_size() const { return m_layout.pp_size(); }
  const MeshOrder& order() const { return m_layout.order(); }
  MeshPlacement placement() const { return m_placement; }

  // This rank's coordinates, and its index along each axis.
  const MeshCoords& coords() const { return m_coords; }
  int index(MeshAxis axis) const { return m_coords[axis]; }
  int dp_rank() const { return m_coords.dp; }
  int tp_rank() const { return m_coords.tp; }
  int pp_rank() const { return m_coords.pp; }

  // Any rank's coordinates, and back (ranks of world()).
  MeshCoords coords_of(int rank) const {
    require_argument(rank >= 0 && rank < m_world.size(), "trident::ProcessMesh::coords_of: rank ", rank,
                     " is outside a mesh of ", m_world.size(), " ranks");
    return m_layout.coords_of(m_slot_of_rank[static_cast<std::size_t>(rank)]);
  }
  int rank_of(const MeshCoords& coords) const {
    return m_rank_of_slot[static_cast<std::size_t>(m_layout.rank_of(coords))];
  }

  const comm::Communicator& world() const { return m_world; }
  const comm::Communicator& dp() const { return m_dp; }
  const comm::Communicator& tp() const { return m_tp; }
  const comm::Communicator& pp() const { return m_pp; }
  const comm::Communicator& axis(MeshAxis axis) const {
    return axis == MeshAxis::dp ? m_dp : axis == MeshAxis::tp ? m_tp : m_pp;
  }

  // The nodes of world()'s ranks.
  const comm::Topology& topology() const { return m_topology; }
  // Some group along `axis` has ranks on more than one node.
  bool spans_nodes(MeshAxis axis) const {
    for (int rank = 0; rank < m_world.size(); ++rank) {
      MeshCoords first = coords_of(rank);
      first[axis] = 0;
      if (m_topology.node_of(rank) != m_topology.node_of(rank_of(first))) return true;
    }
    return false;
  }
  // Empty, or why this placement is slow: tensor-parallel groups that cross nodes put every
  // layer's collectives on the network.
  std::string placement_warning() const {
    if (tp_size() == 1 || !spans_nodes(MeshAxis::tp)) return "";
    return detail::concat("trident::ProcessMesh: tensor-parallel groups span nodes (tp ", tp_size(), ", ",
                          describe_nodes(), "), so every layer's collectives cross the network; keep tp first in ",
                          "the mesh order, placed by node, with tp dividing the ranks per node");
  }
  // "2 nodes: h0 ranks 0-1, h1 ranks 2-3"
  std::string describe_nodes() const {
    std::string text = detail::concat(m_topology.nodes(), m_topology.nodes() == 1 ? " node: " : " nodes: ");
    for (int node = 0; node < m_topology.nodes(); ++node) {
      text += (node ? ", " : "") + m_topology.node_names[static_cast<std::size_t>(node)] + " ranks ";
      int previous = -2, run_start = -1;
      std::string ranks;
      const auto close_run = [&] {
        if (run_start < 0) return;
        ranks += (ranks.empty() ? "" : ",") + std::to_string(run_start);
        if (previous > run_start) ranks += "-" + std::to_string(previous);
      };
      for (int rank = 0; rank < m_world.size(); ++rank) {
        if (m_topology.node_of(rank) != node) continue;
        if (rank != previous + 1) {
          close_run();
          run_start = rank;
        }
        previous = rank;
      }
      close_run();
      text += ranks;
    }
    return text;
  }

 private:
  static MeshLayout checked_layout(const comm::Communicator& world, int dp, int tp, int pp, MeshOrder order) {
    require_argument(dp >= 1 && tp >= 1 && pp >= 1, "trident::ProcessMesh: sizes must be at least 1, got dp ", dp,
                     ", tp ", tp, ", pp ", pp, " for a communicator of size ", world.size());
    require_argument(static_cast<long long>(dp) * tp * pp == world.size(), "trident::ProcessMesh: dp ", dp, " x tp ",
                     tp, " x pp ", pp, " = ", static_cast<long long>(dp) * tp * pp,
                     " does not match the communicator size ", world.size());
    return MeshLayout(dp, tp, pp, order);
  }

  // The sizes are checked before the (collective) discovery, identically on every rank.
  static comm::Topology discover(const comm::Communicator& world, int dp, int tp, int pp, MeshOrder order) {
    checked_layout(world, dp, tp, pp, order);
    return comm::discover_topology(world);
  }

  // The group of ranks sharing every coordinate but `along`: colored by the slot of its member
  // at coordinate 0, ordered by the coordinate.
  comm::Communicator split_along(MeshAxis along) const {
    MeshCoords first = m_coords;
    first[along] = 0;
    return m_world.split(m_layout.rank_of(first), m_coords[along], mesh_axis_name(along));
  }

  comm::Communicator m_world;
  MeshLayout m_layout;
  MeshPlacement m_placement;
  comm::Topology m_topology;
  std::vector<int> m_rank_of_slot, m_slot_of_rank;
  MeshCoords m_coords;
  comm::Communicator m_dp, m_tp, m_pp;
};

}  // namespace trident
