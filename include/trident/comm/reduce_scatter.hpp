#pragma once
// reduce_scatter: the element-wise reduction of all ranks' send views, split into consecutive
// blocks in rank order; rank r keeps block r.
//   reduce_scatter(space, comm, send, recv, op)             send.size() == comm.size() * recv.size()
//   reduce_scatter_v(space, comm, send, recv, counts, op)   block r has counts[r] elements,
//                                                           send.size() == sum(counts)
// and the nonblocking ireduce_scatter / ireduce_scatter_v, returning a Request. The dual of
// allgather: ZeRO and sequence parallelism pair the two.

#include <trident/comm/block_counts.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/comm/nccl.hpp>
#include <trident/comm/reduce_op.hpp>
#include <trident/comm/request.hpp>
#include <trident/comm/view_buffer.hpp>
#include <trident/core/error.hpp>
#include <trident/core/profiling.hpp>

#include <mpi.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace trident {
namespace comm {
namespace Impl {

template <class ExecutionSpace, class SendView, class RecvView>
Request reduce_scatter(Mode mode, const ExecutionSpace& space, const Communicator& comm, const SendView& send,
                       const RecvView& recv, ReduceOp op) {
  check_send_recv_types<ExecutionSpace, SendView, RecvView>();
  using T = typename RecvView::non_const_value_type;
  constexpr const char* name = "trident::comm::reduce_scatter";
  const int count = element_count(name, "send", send);
  const int block = element_count(name, "recv", recv);
  require_argument(send.size() == static_cast<std::size_t>(comm.size()) * recv.size(), name, " on communicator '",
                   comm.name(), "' (size ", comm.size(), "): send has ", send.size(), " elements but needs ",
                   comm.size(), " x ", recv.size(), " = ", comm.size() * recv.size());
  require_disjoint(name, send, recv);
  CommunicatorAccess::begin_collective(comm,
                                       make_fingerprint(Operation::reduce_scatter, element_type_of<T>(), count, op),
                                       static_cast<std::int64_t>(send.size() * sizeof(T)));
  if constexpr (nccl_may_carry<ExecutionSpace, T, SendView, RecvView>()) {
    if (comm.backend() == Backend::nccl) return nccl_reduce_scatter(mode, space, comm, send, recv, op, name);
  }
  auto in = make_buffer(space, comm, send, Direction::send, name);
  auto out = make_buffer(space, comm, recv, Direction::receive, name);
  fence_before_mpi(space);
  if (mode == Mode::blocking) {
    const WaitGuard guard(CommunicatorAccess::wait_label(comm, name, 0));
    check_mpi(MPI_Reduce_scatter_block(in.data(), out.data(), block, mpi_datatype<T>(), mpi_op<T>(op), comm.mpi()),
              name);
    out.finish();
    return Request();
  }
  MPI_Request request = MPI_REQUEST_NULL;
  check_mpi(
      MPI_Ireduce_scatter_block(in.data(), out.data(), block, mpi_datatype<T>(), mpi_op<T>(op), comm.mpi(), &request),
      name);
  return Request(request, CommunicatorAccess::wait_label(comm, name, 0),
                 [in, out](const MPI_Status&) { out.finish(); });
}

template <class ExecutionSpace, class SendView, class RecvView>
Request reduce_scatter_v(Mode mode, const ExecutionSpace& space, const Communicator& comm, const SendView& send,
                         const RecvView& recv, const std::vector<int>& counts, ReduceOp op) {
  check_send_recv_types<ExecutionSpace, SendView, RecvView>();
  using T = typename RecvView::non_const_value_type;
  constexpr const char* name = "trident::comm::reduce_scatter_v";
  element_count(name, "send", send);
  const int block = element_count(name, "recv", recv);
  auto blocks = std::make_shared<BlockCounts>(make_block_counts(name, comm, counts));
  const int mine = blocks->counts[static_cast<std::size_t>(comm.rank())];
  require_argument(block == mine, name, " on communicator '", comm.name(), "': rank ", comm.rank(), " receives ", block,
                   " elements but counts[", comm.rank(), "] is ", mine);
  require_argument(static_cast<std::int64_t>(send.size()) == blocks->total, name, " on communicator '", comm.name(),
                   "': send has ", send.size(), " elements but the counts add up to ", blocks->total);
  require_disjoint(name, send, recv);
  CommunicatorAccess::begin_collective(
      comm, make_fingerprint(Operation::reduce_scatter_v, element_type_of<T>(), blocks->total, op),
      static_cast<std::int64_t>(send.size() * sizeof(T)));
  if constexpr (nccl_may_carry<ExecutionSpace, T, SendView, RecvView>()) {
    if (comm.backend() == Backend::nccl) return nccl_reduce_scatter_v(mode, space, comm, send, recv, *blocks, op, name);
  }
  auto in = make_buffer(space, comm, send, Direction::send, name);
  auto out = make_buffer(space, comm, recv, Direction::receive, name);
  fence_before_mpi(space);
  if (mode == Mode::blocking) {
    const WaitGuard guard(CommunicatorAccess::wait_label(comm, name, 0));
    check_mpi(
        MPI_Reduce_scatter(in.data(), out.data(), blocks->counts.data(), mpi_datatype<T>(), mpi_op<T>(op), comm.mpi()),
        name);
    out.finish();
    return Request();
  }
  MPI_Request request = MPI_REQUEST_NULL;
  check_mpi(MPI_Ireduce_scatter(in.data(), out.data(), blocks->counts.data(), mpi_datatype<T>(), mpi_op<T>(op),
                                comm.mpi(), &request),
            name);
  // MPI reads the counts until completion: the Request keeps them alive.
  return Request(request, CommunicatorAccess::wait_label(comm, name, 0),
                 [in, out, blocks](const MPI_Status&) { out.finish(); });
}

}  // namespace Impl

template <class ExecutionSpace, class SendView, class RecvView>
void reduce_scatter(const ExecutionSpace& space, const Communicator& comm, const SendView& send, const RecvView& recv,
                    ReduceOp op = ReduceOp::sum) {
  ScopedRegion region("trident::comm::reduce_scatter");
  Impl::reduce_scatter(Impl::Mode::blocking, space, comm, send, recv, op);
}

template <class ExecutionSpace, class SendView, class RecvView>
void reduce_scatter_v(const ExecutionSpace& space, const Communicator& comm, const SendView& send, const RecvView& recv,
                      const std::vector<int>& counts, ReduceOp op = ReduceOp::sum) {
  ScopedRegion region("trident::comm::reduce_scatter_v");
  Impl::reduce_scatter_v(Impl::Mode::blocking, space, comm, send, recv, counts, op);
}

template <class ExecutionSpace, class SendView, class RecvView>
[[nodiscard]] Request ireduce_scatter(const ExecutionSpace& space, const Communicator& comm, const SendView& send,
                                      const RecvView& recv, ReduceOp op = ReduceOp::sum) {
  ScopedRegion region("trident::comm::ireduce_scatter");
  return Impl::reduce_scatter(Impl::Mode::nonblocking, space, comm, send, recv, op);
}

template <class ExecutionSpace, class SendView, class RecvView>
[[nodiscard]] Request ireduce_scatter_v(const ExecutionSpace& space, const Communicator& comm, const SendView& send,
                                        const RecvView& recv, const std::vector<int>& counts,
                                        ReduceOp op = ReduceOp::sum) {
  ScopedRegion region("trident::comm::ireduce_scatter_v");
  return Impl::reduce_scatter_v(Impl::Mode::nonblocking, space, comm, send, recv, counts, op);
}

}  // namespace comm
}  // namespace trident
