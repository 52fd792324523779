#pragma once
// allreduce: every rank ends with the element-wise reduction (sum, max, min) of all ranks' views.
//   allreduce(space, comm, send, recv, op)   recv.size() == send.size()
//   allreduce(space, comm, view, op)         in place (MPI_IN_PLACE)
//   allreduce_value(comm, value, op)         one host number, returned
// and the nonblocking iallreduce with the same arguments, returning a Request.

#include <trident/comm/communicator.hpp>
#include <trident/comm/nccl.hpp>
#include <trident/comm/reduce_op.hpp>
#include <trident/comm/request.hpp>
#include <trident/comm/view_buffer.hpp>
#include <trident/core/error.hpp>
#include <trident/core/profiling.hpp>

#include <mpi.h>

#include <cstdint>
#include <type_traits>

namespace trident {
namespace comm {
namespace Impl {

template <class ExecutionSpace, class SendView, class RecvView>
Request allreduce(Mode mode, const ExecutionSpace& space, const Communicator& comm, const SendView& send,
                  const RecvView& recv, ReduceOp op) {
  check_send_recv_types<ExecutionSpace, SendView, RecvView>();
  using T = typename RecvView::non_const_value_type;
  constexpr const char* name = "trident::comm::allreduce";
  const int count = element_count(name, "send", send);
  element_count(name, "recv", recv);
  require_argument(send.size() == recv.size(), name, " on communicator '", comm.name(), "': send has ", send.size(),
                   " elements but recv has ", recv.size());
  require_disjoint(name, send, recv);
  CommunicatorAccess::begin_collective(comm, make_fingerprint(Operation::allreduce, element_type_of<T>(), count, op),
                                       static_cast<std::int64_t>(count * sizeof(T)));
  if constexpr (nccl_may_carry<ExecutionSpace, T, SendView, RecvView>()) {
    if (comm.backend() == Backend::nccl) return nccl_allreduce(mode, space, comm, send, recv, op, name);
  }
  auto in = make_buffer(space, comm, send, Direction::send, name);
  auto out = make_buffer(space, comm, recv, Direction::receive, name);
  fence_before_mpi(space);
  if (mode == Mode::blocking) {
    const WaitGuard guard(CommunicatorAccess::wait_label(comm, name, 0));
    check_mpi(MPI_Allreduce(in.data(), out.data(), count, mpi_datatype<T>(), mpi_op<T>(op), comm.mpi()), name);
    out.finish();
    return Request();
  }
  MPI_Request request = MPI_REQUEST_NULL;
  check_mpi(MPI_Iallreduce(in.data(), out.data(), count, mpi_datatype<T>(), mpi_op<T>(op), comm.mpi(), &request), name);
  return Request(request, CommunicatorAccess::wait_label(comm, name, 0),
                 [in, out](const MPI_Status&) { out.finish(); });
}

template <class ExecutionSpace, class ViewType>
Request allreduce_in_place(Mode mode, const ExecutionSpace& space, const Communicator& comm, const ViewType& view,
                           ReduceOp op) {
  check_view_types<ExecutionSpace, ViewType>();
  check_writable<ViewType>();
  using T = typename ViewType::non_const_value_type;
  constexpr const char* name = "trident::comm::allreduce";
  const int count = element_count(name, "view", view);
  CommunicatorAccess::begin_collective(comm, make_fingerprint(Operation::allreduce, element_type_of<T>(), count, op),
                                       static_cast<std::int64_t>(count * sizeof(T)));
  if constexpr (nccl_may_carry<ExecutionSpace, T, ViewType>()) {
    if (comm.backend() == Backend::nccl) return nccl_allreduce_in_place(mode, space, comm, view, op, name);
  }
  auto buffer = make_buffer(space, comm, view, Direction::send_receive, name);
  fence_before_mpi(space);
  if (mode == Mode::blocking) {
    const WaitGuard guard(CommunicatorAccess::wait_label(comm, name, 0));
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, buffer.data(), count, mpi_datatype<T>(), mpi_op<T>(op), comm.mpi()), name);
    buffer.finish();
    return Request();
  }
  MPI_Request request = MPI_REQUEST_NULL;
  check_mpi(MPI_Iallreduce(MPI_IN_PLACE, buffer.data(), count, mpi_datatype<T>(), mpi_op<T>(op), comm.mpi(), &request),
            name);
  return Request(request, CommunicatorAccess::wait_label(comm, name, 0),
                 [buffer](const MPI_Status&) { buffer.finish(); });
}

}  // namespace Impl

template <class ExecutionSpace, class SendView, class RecvView,
          std::enable_if_t<Kokkos::is_view<RecvView>::value, int> = 0>
void allreduce(const ExecutionSpace& space, const Communicator& comm, const SendView& send, const RecvView& recv,
               ReduceOp op = ReduceOp::sum) {
  ScopedRegion region("trident::comm::allreduce");
  Impl::allreduce(Impl::Mode::blocking, space, comm, send, recv, op);
}

template <class ExecutionSpace, class ViewType>
void allreduce(const ExecutionSpace& space, const Communicator& comm, const ViewType& view,
               ReduceOp op = ReduceOp::sum) {
  ScopedRegion region("trident::comm::allreduce");
  Impl::allreduce_in_place(Impl::Mode::blocking, space, comm, view, op);
}

// One number of this host reduced over `comm` (a loss, a time, a size), on every rank.
template <class T>
T allreduce_value(const Communicator& comm, T value, ReduceOp op = ReduceOp::sum) {
  Kokkos::View<T*, Kokkos::HostSpace> one("trident::comm::allreduce_value", 1);
  one(0) = value;
  allreduce(Kokkos::DefaultHostExecutionSpace(), comm, one, op);
  return one(0);
}

template <class ExecutionSpace, class SendView, class RecvView,
          std::enable_if_t<Kokkos::is_view<RecvView>::value, int> = 0>
[[nodiscard]] Request iallreduce(const ExecutionSpace& space, const Communicator& comm, const SendView& send,
                                 const RecvView& recv, ReduceOp op = ReduceOp::sum) {
  ScopedRegion region("trident::comm::iallreduce");
  return Impl::allreduce(Impl::Mode::nonblocking, space, comm, send, recv, op);
}

template <class ExecutionSpace, class ViewType>
[[nodiscard]] Request iallreduce(const ExecutionSpace& space, const Communicator& comm, const ViewType& view,
                                 ReduceOp op = ReduceOp::sum) {
  ScopedRegion region("trident::comm::iallreduce");
  return Impl::allreduce_in_place(Impl::Mode::nonblocking, space, comm, view, op);
}

}  // namespace comm
}  // namespace trident
