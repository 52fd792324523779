#pragma once
// The all-reduce of a group that spans nodes, in two levels: reduce-scatter inside each node,
// all-reduce of the 1/k part each rank then holds with the ranks of the other nodes that hold
// the same part (k ranks per node: k such rings run at once, ring_allreduce.hpp), all-gather
// inside the node.
// Only 1/k of the bytes of each rank cross the network, against a flat ring whose every step
// waits on a link between nodes. With one rank per node it is the ring between nodes alone.
//   NodeGroups groups(comm);                          collective: the node split of `comm`
//   allreduce(space, groups, view, op)                in place, like allreduce(space, comm, view)
//   iallreduce(space, groups, view, op)               nonblocking: one Request for the three stages
// Results equal the flat all-reduce up to the order of floating-point sums.

#include <trident/comm/allgather.hpp>
#include <trident/comm/allreduce.hpp>
#include <trident/comm/block_counts.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/comm/reduce_op.hpp>
#include <trident/comm/reduce_scatter.hpp>
#include <trident/comm/request.hpp>
#include <trident/comm/ring_allreduce.hpp>
#include <trident/comm/topology.hpp>
#include <trident/core/error.hpp>
#include <trident/core/profiling.hpp>

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

namespace trident {
namespace comm {

// A communicator split by node: the ranks on this rank's node, and the ranks on other nodes at
// the same position on theirs. The split exists when every node holds the same number of
// ranks; the three stages each get their own communicator, so that several all-reduces in
// flight start each stage in the same order on every rank.
class NodeGroups {
 public:
  // Collective over `group`: the nodes MPI reports.
  explicit NodeGroups(const Communicator& group) : NodeGroups(group, discover_topology(group)) {}

  // Collective over `group`, with its topology (ranks of `group`).
  NodeGroups(const Communicator& group, const Topology& topology) : m_group(group), m_topology(topology) {
    require_argument(static_cast<int>(topology.node_of_rank.size()) == group.size(),
                     "trident::comm::NodeGroups: the topology has ", topology.node_of_rank.size(),
                     " ranks but communicator '", group.name(), "' has ", group.size());
    if (!topology.uniform()) return;
    const std::string label = group.label().empty() ? "group" : group.label();
    const int node = topology.node();
    m_local = group.split(node, group.rank(), label + ".node");
    m_local_gather = m_local.duplicate(label + ".node");
    m_cross = group.split(m_local.rank(), node, label + ".nodes");
  }

  const Communicator& group() const { return m_group; }
  const Topology& topology() const { return m_topology; }
  int nodes() const { return m_topology.nodes(); }
  bool spans_nodes() const { return nodes() > 1; }
  bool uniform() const { return m_local.valid(); }
  int ranks_per_node() const { return uniform() ? m_local.size() : 0; }
  // Worth it: several nodes, the same number of ranks on each. (With one rank per node it is
  // the ring between nodes alone, which keeps both directions of every link busy.)
  bool worthwhile() const { return spans_nodes() && uniform(); }

  const Communicator& local() const { return checked(m_local); }
  const Communicator& local_gather() const { return checked(m_local_gather); }
  const Communicator& cross() const { return checked(m_cross); }

  // The first message tag of the next ring between nodes: consecutive ones on the cross
  // communicator use disjoint tags, over a cycle long enough for all that can be in flight.
  int next_ring_tag() const {
    const int steps = 2 * (nodes() - 1) > 0 ? 2 * (nodes() - 1) : 1;
    const int slots = 32767 / steps > 0 ? 32767 / steps : 1;  // MPI guarantees tags up to 32767
    return static_cast<int>(m_rings++ % slots) * steps;
  }

  // "2 nodes x 2 ranks" or "3 nodes, 1 to 2 ranks each"
  std::string describe() const {
    if (uniform())
      return detail::concat(nodes(), nodes() == 1 ? " node x " : " nodes x ", ranks_per_node(),
                            ranks_per_node() == 1 ? " rank" : " ranks");
    int fewest = m_group.size(), most = 0;
    for (int n = 0; n < nodes(); ++n) {
      fewest = std::min(fewest, m_topology.ranks_on(n));
      most = std::max(most, m_topology.ranks_on(n));
    }
    return detail::concat(nodes(), " nodes, ", fewest, " to ", most, " ranks each");
  }

 private:
  const Communicator& checked(const Communicator& comm) const {
    require_argument(comm.valid(), "trident::comm::NodeGroups: communicator '", m_group.name(), "' spans ", describe(),
                     "; two-level collectives need the same number of ranks on every node");
    return comm;
  }

  Communicator m_group;
  Topology m_topology;
  Communicator m_local, m_local_gather, m_cross;
  mutable std::int64_t m_rings = 0;  // rings started between nodes (the same count on every rank)
};

namespace Impl {

template <class ExecutionSpace, class ViewType>
Request hierarchical_allreduce(Mode mode, const ExecutionSpace& space, const NodeGroups& groups, const ViewType& view,
                               ReduceOp op) {
  check_view_types<ExecutionSpace, ViewType>();
  check_writable<ViewType>();
  static_assert(ViewType::rank == 1, "trident::comm::allreduce over NodeGroups takes a rank-1 View");
  using T = typename ViewType::non_const_value_type;
  using block_type = Kokkos::View<T*, typename ViewType::memory_space>;
  const Communicator local = groups.local(), local_gather = groups.local_gather(), cross = groups.cross();
  using ring = RingAllreduce<ExecutionSpace, T, typename ViewType::memory_space>;
  const int tag = groups.next_ring_tag();
  if constexpr (std::is_convertible_v<ViewType, block_type>) {
    if (local.size() == 1) {  // one rank per node: nothing to gather first, the ring alone
      Request request = ring::start(space, cross, block_type(view), op, tag);
      if (mode == Mode::blocking) request.wait();
      return request;
    }
  }
  const std::vector<int> counts = even_blocks(static_cast<std::int64_t>(view.size()), local.size());
  block_type block(Kokkos::view_alloc(Kokkos::WithoutInitializing, "trident::comm::hierarchical_allreduce::block"),
                   static_cast<std::size_t>(counts[static_cast<std::size_t>(local.rank())]));
  if (mode == Mode::blocking) {
    reduce_scatter_v(mode, space, local, view, block, counts, op).wait();
    ring::start(space, cross, block, op, tag).wait();
    allgatherv(mode, space, local_gather, block, view, counts).wait();
    return Request();
  }
  return reduce_scatter_v(mode, space, local, view, block, counts, op).then([=] {
    return ring::start(space, cross, block, op, tag).then([=] {
      return allgatherv(mode, space, local_gather, block, view, counts);
    });
  });
}

}  // namespace Impl

template <class ExecutionSpace, class ViewType>
void allreduce(const ExecutionSpace& space, const NodeGroups& groups, const ViewType& view,
               ReduceOp op = ReduceOp::sum) {
  ScopedRegion region("trident::comm::hierarchical_allreduce");
  Impl::hierarchical_allreduce(Impl::Mode::blocking, space, groups, view, op);
}

template <class ExecutionSpace, class ViewType>
[[nodiscard]] Request iallreduce(const ExecutionSpace& space, const NodeGroups& groups, const ViewType& view,
                                 ReduceOp op = ReduceOp::sum) {
  ScopedRegion region("trident::comm::hierarchical_iallreduce");
  return Impl::hierarchical_allreduce(Impl::Mode::nonblocking, space, groups, view, op);
}

}  // namespace comm
}  // namespace trident
