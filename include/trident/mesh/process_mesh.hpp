#pragma once
// trident::ProcessMesh: the ranks of a communicator arranged as a dp x tp x pp grid, with one
// sub-communicator per axis. A rank's tp() communicator holds the ranks that differ from it
// only in the tp coordinate, ordered by that coordinate (so tp().rank() == coords().tp);
// likewise dp() and pp(). Sub-communicators are labelled "dp", "tp", "pp" in error messages.

#include <trident/comm/communicator.hpp>
#include <trident/core/error.hpp>
#include <trident/core/profiling.hpp>
#include <trident/mesh/mesh_layout.hpp>

#include <string>

namespace trident {

class ProcessMesh {
 public:
  // Collective over `world`. Requires dp * tp * pp == world.size().
  ProcessMesh(const comm::Communicator& world, int dp, int tp, int pp, MeshOrder order = megatron_order)
      : m_world(world), m_layout(checked_layout(world, dp, tp, pp, order)) {
    ScopedRegion region("trident::mesh::ProcessMesh");
    m_coords = m_layout.coords_of(m_world.rank());
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

  // This rank's coordinates, and its index along each axis.
  const MeshCoords& coords() const { return m_coords; }
  int index(MeshAxis axis) const { return m_coords[axis]; }
  int dp_rank() const { return m_coords.dp; }
  int tp_rank() const { return m_coords.tp; }
  int pp_rank() const { return m_coords.pp; }

  // Any rank's coordinates, and back (ranks of world()).
  MeshCoords coords_of(int rank) const { return m_layout.coords_of(rank); }
  int rank_of(const MeshCoords& coords) const { return m_layout.rank_of(coords); }

  const comm::Communicator& world() const { return m_world; }
  const comm::Communicator& dp() const { return m_dp; }
  const comm::Communicator& tp() const { return m_tp; }
  const comm::Communicator& pp() const { return m_pp; }
  const comm::Communicator& axis(MeshAxis axis) const {
    return axis == MeshAxis::dp ? m_dp : axis == MeshAxis::tp ? m_tp : m_pp;
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

  // The group of ranks sharing every coordinate but `along`: colored by the rank of its member
  // at coordinate 0, ordered by the coordinate.
  comm::Communicator split_along(MeshAxis along) const {
    MeshCoords first = m_coords;
    first[along] = 0;
    return m_world.split(m_layout.rank_of(first), m_coords[along], mesh_axis_name(along));
  }

  comm::Communicator m_world;
  MeshLayout m_layout;
  MeshCoords m_coords;
  comm::Communicator m_dp, m_tp, m_pp;
};

}  // namespace trident
