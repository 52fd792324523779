#pragma once
// allgather: every rank ends with the concatenation, in rank order, of all ranks' views (each
// flattened in row-major order).
//   allgather(space, comm, send, recv)           recv.size() == comm.size() * send.size()
//   allgather(space, comm, view)                 in place: rank r's block is already at
//                                                [r * view.size() / comm.size(), ...)
//   allgatherv(space, comm, send, recv, counts)  uneven: rank r sends counts[r] elements,
//                                                recv.size() == sum(counts)
// and the nonblocking iallgather / iallgatherv with the same arguments, returning a Request.

#include <trident/comm/block_counts.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/comm/nccl.hpp>
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
Request allgather(Mode mode, const ExecutionSpace& space, const Communicator& comm, const SendView& send,
                  const RecvView& recv) {
  check_send_recv_types<ExecutionSpace, SendView, RecvView>();
  using T = typename RecvView::non_const_value_type;
  constexpr const char* name = "trident::comm::allgather";
  const int count = element_count(name, "send", send);
  element_count(name, "recv", recv);
  require_argument(recv.size() == static_cast<std::size_t>(comm.size()) * send.size(), name, " on communicator '",
                   comm.name(), "' (size ", comm.size(), "): recv has ", recv.size(), " elements but needs ",
                   comm.size(), " x ", send.size(), " = ", comm.size() * send.size());
  require_disjoint(name, send, recv);
  CommunicatorAccess::begin_collective(comm, make_fingerprint(Operation::allgather, element_type_of<T>(), count),
                                       static_cast<std::int64_t>(recv.size() * sizeof(T)));
  if constexpr (nccl_may_carry<ExecutionSpace, T, SendView, RecvView>()) {
    if (comm.backend() == Backend::nccl) return nccl_allgather(mode, space, comm, send, recv, name);
  }
  auto in = make_buffer(space, comm, send, Direction::send, name);
  auto out = make_buffer(space, comm, recv, Direction::receive, name);
  fence_before_mpi(space);
  const MPI_Datatype type = mpi_datatype<T>();
  if (mode == Mode::blocking) {
    const WaitGuard guard(CommunicatorAccess::wait_label(comm, name, 0));
    check_mpi(MPI_Allgather(in.data(), count, type, out.data(), count, type, comm.mpi()), name);
    out.finish();
    return Request();
  }
  MPI_Request request = MPI_REQUEST_NULL;
  check_mpi(MPI_Iallgather(in.data(), count, type, out.data(), count, type, comm.mpi(), &request), name);
  return Request(request, CommunicatorAccess::wait_label(comm, name, 0),
                 [in, out](const MPI_Status&) { out.finish(); });
}

template <class ExecutionSpace, class ViewType>
Request allgather_in_place(Mode mode, const ExecutionSpace& space, const Communicator& comm, const ViewType& view) {
  check_view_types<ExecutionSpace, ViewType>();
  check_writable<ViewType>();
  using T = typename ViewType::non_const_value_type;
  constexpr const char* name = "trident::comm::allgather";
  element_count(name, "view", view);
  const auto ranks = static_cast<std::size_t>(comm.size());
  require_argument(view.size() % ranks == 0, name, " (in place) on communicator '", comm.name(), "': the view's ",
                   view.size(), " elements do not split into ", ranks, " equal blocks");
  const int block = static_cast<int>(view.size() / ranks);
  CommunicatorAccess::begin_collective(comm, make_fingerprint(Operation::allgather, element_type_of<T>(), block),
                                       static_cast<std::int64_t>(view.size() * sizeof(T)));
  if constexpr (nccl_may_carry<ExecutionSpace, T, ViewType>()) {
    if (comm.backend() == Backend::nccl) {
      return nccl_allgather_in_place(mode, space, comm, view, static_cast<std::size_t>(block), name);
    }
  }
  auto buffer = make_buffer(space, comm, view, Direction::send_receive, name);
  fence_before_mpi(space);
  const MPI_Datatype type = mpi_datatype<T>();
  if (mode == Mode::blocking) {
    const WaitGuard guard(CommunicatorAccess::wait_label(comm, name, 0));
    check_mpi(MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buffer.data(), block, type, comm.mpi()), name);
    buffer.finish();
    return Request();
  }
  MPI_Request request = MPI_REQUEST_NULL;
  check_mpi(MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buffer.data(), block, type, comm.mpi(), &request), name);
  return Request(request, CommunicatorAccess::wait_label(comm, name, 0),
                 [buffer](const MPI_Status&) { buffer.finish(); });
}

template <class ExecutionSpace, class SendView, class RecvView>
Request allgatherv(Mode mode, const ExecutionSpace& space, const Communicator& comm, const SendView& send,
                   const RecvView& recv, const std::vector<int>& counts) {
  check_send_recv_types<ExecutionSpace, SendView, RecvView>();
  using T = typename RecvView::non_const_value_type;
  constexpr const char* name = "trident::comm::allgatherv";
  const int count = element_count(name, "send", send);
  element_count(name, "recv", recv);
  auto blocks = std::make_shared<BlockCounts>(make_block_counts(name, comm, counts));
  const int mine = blocks->counts[static_cast<std::size_t>(comm.rank())];
  require_argument(count == mine, name, " on communicator '", comm.name(), "': rank ", comm.rank(), " sends ", count,
                   " elements but counts[", comm.rank(), "] is ", mine);
  require_argument(static_cast<std::int64_t>(recv.size()) == blocks->total, name, " on communicator '", comm.name(),
                   "': recv has ", recv.size(), " elements but the counts add up to ", blocks->total);
  require_disjoint(name, send, recv);
  CommunicatorAccess::begin_collective(comm,
                                       make_fingerprint(Operation::allgatherv, element_type_of<T>(), blocks->total),
                                       static_cast<std::int64_t>(recv.size() * sizeof(T)));
  if constexpr (nccl_may_carry<ExecutionSpace, T, SendView, RecvView>()) {
    if (comm.backend() == Backend::nccl) return nccl_allgatherv(mode, space, comm, send, recv, *blocks, name);
  }
  auto in = make_buffer(space, comm, send, Direction::send, name);
  auto out = make_buffer(space, comm, recv, Direction::receive, name);
  fence_before_mpi(space);
  const MPI_Datatype type = mpi_datatype<T>();
  if (mode == Mode::blocking) {
    const WaitGuard guard(CommunicatorAccess::wait_label(comm, name, 0));
    check_mpi(MPI_Allgatherv(in.data(), count, type, out.data(), blocks->counts.data(), blocks->displacements.data(),
                             type, comm.mpi()),
              name);
    out.finish();
    return Request();
  }
  MPI_Request request = MPI_REQUEST_NULL;
  check_mpi(MPI_Iallgatherv(in.data(), count, type, out.data(), blocks->counts.data(), blocks->displacements.data(),
                            type, comm.mpi(), &request),
            name);
  // MPI reads the counts until completion: the Request keeps them alive.
  return Request(request, CommunicatorAccess::wait_label(comm, name, 0),
                 [in, out, blocks](const MPI_Status&) { out.finish(); });
}

}  // namespace Impl

template <class ExecutionSpace, class SendView, class RecvView>
void allgather(const ExecutionSpace& space, const Communicator& comm, const SendView& send, const RecvView& recv) {
  ScopedRegion region("trident::comm::allgather");
  Impl::allgather(Impl::Mode::blocking, space, comm, send, recv);
}

template <class ExecutionSpace, class ViewType>
void allgather(const ExecutionSpace& space, const Communicator& comm, const ViewType& view) {
  ScopedRegion region("trident::comm::allgather");
  Impl::allgather_in_place(Impl::Mode::blocking, space, comm, view);
}

template <class ExecutionSpace, class SendView, class RecvView>
void allgatherv(const ExecutionSpace& space, const Communicator& comm, const SendView& send, const RecvView& recv,
                const std::vector<int>& counts) {
  ScopedRegion region("trident::comm::allgatherv");
  Impl::allgatherv(Impl::Mode::blocking, space, comm, send, recv, counts);
}

template <class ExecutionSpace, class SendView, class RecvView>
[[nodiscard]] Request iallgather(const ExecutionSpace& space, const Communicator& comm, const SendView& send,
                                 const RecvView& recv) {
  ScopedRegion region("trident::comm::iallgather");
  return Impl::allgather(Impl::Mode::nonblocking, space, comm, send, recv);
}

template <class ExecutionSpace, class ViewType>
[[nodiscard]] Request iallgather(const ExecutionSpace& space, const Communicator& comm, const ViewType& view) {
  ScopedRegion region("trident::comm::iallgather");
  return Impl::allgather_in_place(Impl::Mode::nonblocking, space, comm, view);
}

template <class ExecutionSpace, class SendView, class RecvView>
[[nodiscard]] Request iallgatherv(const ExecutionSpace& space, const Communicator& comm, const SendView& send,
                                  const RecvView& recv, const std::vector<int>& counts) {
  ScopedRegion region("trident::comm::iallgatherv");
  return Impl::allgatherv(Impl::Mode::nonblocking, space, comm, send, recv, counts);
}

}  // namespace comm
}  // namespace trident
