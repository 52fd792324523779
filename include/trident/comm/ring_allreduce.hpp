#pragma once
// A ring all-reduce of point-to-point messages, for the step of the two-level all-reduce that
// crosses between nodes: size - 1 steps of a reduce-scatter, each sending one of size
// consecutive chunks to the next rank and combining the chunk received from the previous one,
// then size - 1 steps of an all-gather passing the reduced chunks on. At every step each rank
// sends and receives at once, so both directions of each link carry data. (Open MPI's
// nonblocking all-reduce, libnbc, took twice its blocking ring's time on the emulated hosts of
// docs/cluster.md.)
// Nonblocking: one Request whose steps start each other (Request::then).

#include <trident/comm/block_counts.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/comm/point_to_point.hpp>
#include <trident/comm/reduce_op.hpp>
#include <trident/comm/request.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace trident {
namespace comm {
namespace Impl {

// into(i) = op(into(i), from(i)). (A free function: CUDA's device lambdas cannot live in a
// private member function.)
template <class ExecutionSpace, class T, class MemorySpace>
void ring_combine(const ExecutionSpace& space, ReduceOp op, const Kokkos::View<T*, MemorySpace>& into,
                  const Kokkos::View<T*, MemorySpace>& from) {
  Kokkos::parallel_for(
      "trident::comm::ring_allreduce::combine",
      Kokkos::RangePolicy<ExecutionSpace>(space, 0, static_cast<std::int64_t>(into.size())),
      KOKKOS_LAMBDA(const std::int64_t i) { into(i) = reduce_pair(op, into(i), from(i)); });
}

template <class ExecutionSpace, class T, class MemorySpace>
class RingAllreduce : public std::enable_shared_from_this<RingAllreduce<ExecutionSpace, T, MemorySpace>> {
 public:
  using view_type = Kokkos::View<T*, MemorySpace>;

  // The messages of step s carry tag first_tag + s: steps of rings in flight together, or of
  // consecutive ones, never match each other's messages.
  static Request start(const ExecutionSpace& space, const Communicator& comm, const view_type& view, ReduceOp op,
                       int first_tag) {
    auto ring = std::make_shared<RingAllreduce>(space, comm, view, op, first_tag);
    return ring->step(0);
  }

  // Steps of one ring: 2 (size - 1).
  static int steps(int size) { return 2 * (size - 1); }

  RingAllreduce(const ExecutionSpace& space, const Communicator& comm, const view_type& view, ReduceOp op,
                int first_tag)
      : m_space(space), m_comm(comm), m_view(view), m_op(op), m_first_tag(first_tag) {
    const std::vector<int> counts = even_blocks(static_cast<std::int64_t>(view.size()), comm.size());
    m_offsets.push_back(0);
    for (int count : counts) m_offsets.push_back(m_offsets.back() + count);
    m_incoming = view_type(Kokkos::view_alloc(Kokkos::WithoutInitializing, "trident::comm::ring_allreduce::incoming"),
                           static_cast<std::size_t>(counts.front()));  // the first chunk is the longest
  }

 private:
  view_type chunk(int c) const {
    const int size = m_comm.size();
    c = ((c % size) + size) % size;
    return Kokkos::subview(
        m_view, std::make_pair(m_offsets[static_cast<std::size_t>(c)], m_offsets[static_cast<std::size_t>(c) + 1]));
  }

  Request step(int s) {
    const int size = m_comm.size(), rank = m_comm.rank();
    if (s >= steps(size)) return Request();
    const int next = (rank + 1) % size, previous = (rank + size - 1) % size;
    const bool scattering = s < size - 1;
    // Reduce-scatter step s: send chunk rank - s, combine chunk rank - s - 1. All-gather step t:
    // send chunk rank + 1 - t (reduced), receive chunk rank - t.
    const int t = s - (size - 1);
    const view_type outgoing = scattering ? chunk(rank - s) : chunk(rank + 1 - t);
    const view_type target = scattering ? chunk(rank - s - 1) : chunk(rank - t);
    const view_type landing =
        scattering ? view_type(Kokkos::subview(m_incoming, std::make_pair(std::size_t{0}, target.size()))) : target;
    auto sent = std::make_shared<Request>(send(Mode::nonblocking, m_space, m_comm, outgoing, next, m_first_tag + s));
    Request received = recv(Mode::nonblocking, m_space, m_comm, landing, previous, m_first_tag + s);
    auto self = this->shared_from_this();  // the steps keep the ring alive
    return std::move(received).then([self, sent, scattering, target, landing, s] {
      sent->wait();
      if (scattering) ring_combine(self->m_space, self->m_op, target, landing);
      return self->step(s + 1);
    });
  }

  ExecutionSpace m_space;
  Communicator m_comm;
  view_type m_view, m_incoming;
  ReduceOp m_op;
  int m_first_tag;
  std::vector<std::int64_t> m_offsets;  // chunk c is [offsets[c], offsets[c + 1])
};

}  // namespace Impl
}  // namespace comm
}  // namespace trident
