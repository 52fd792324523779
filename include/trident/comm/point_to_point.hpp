#pragma once
// Point-to-point transfers of whole Views (a pipeline stage's activations and gradients):
//   send(space, comm, view, dest, tag)                     recv(space, comm, view, source, tag)
//   sendrecv(space, comm, send_view, dest, recv_view, source, tag)
//   isend / irecv returning a Request.
// The receiver's view must have exactly the sender's element count: a shorter message is a
// trident::Error naming both counts.

#include <trident/comm/communicator.hpp>
#include <trident/comm/request.hpp>
#include <trident/comm/view_buffer.hpp>
#include <trident/core/error.hpp>
#include <trident/core/profiling.hpp>

#include <mpi.h>

#include <cstdint>

namespace trident {
namespace comm {
namespace Impl {

inline void require_peer(const char* operation, const Communicator& comm, const char* role, int peer, int tag) {
  require_argument(peer >= 0 && peer < comm.size(), operation, " on communicator '", comm.name(), "': ", role, " ",
                   peer, " is not a rank of a communicator of size ", comm.size());
  require_argument(tag >= 0, operation, ": tag ", tag, " is negative");
}

// After a receive: the message must have filled the view exactly.
template <class T>
void require_full_message(const char* operation, const Communicator& comm, const MPI_Status& status, int expected) {
  int received = 0;
  MPI_Get_count(&status, mpi_datatype<T>(), &received);
  require(received == expected, operation, " on communicator '", comm.name(), "': expected ", expected, " x ",
          element_type_name(element_type_of<T>()), " from rank ", status.MPI_SOURCE, " (tag ", status.MPI_TAG,
          ") but the message holds ", received);
}

template <class ExecutionSpace, class ViewType>
Request send(Mode mode, const ExecutionSpace& space, const Communicator& comm, const ViewType& view, int dest,
             int tag) {
  check_view_types<ExecutionSpace, ViewType>();
  using T = typename ViewType::non_const_value_type;
  constexpr const char* name = "trident::comm::send";
  const int count = element_count(name, "view", view);
  require_peer(name, comm, "dest", dest, tag);
  CommunicatorAccess::stats(comm).record(Operation::send, static_cast<std::int64_t>(count * sizeof(T)));
  auto buffer = make_buffer(space, comm, view, Direction::send, name);
  fence_before_mpi(space);
  if (mode == Mode::blocking) {
    const WaitGuard guard(CommunicatorAccess::wait_label(comm, name, 0, dest, tag));
    check_mpi(MPI_Send(buffer.data(), count, mpi_datatype<T>(), dest, tag, comm.mpi()), name);
    return Request();
  }
  MPI_Request request = MPI_REQUEST_NULL;
  check_mpi(MPI_Isend(buffer.data(), count, mpi_datatype<T>(), dest, tag, comm.mpi(), &request), name);
  return Request(request, CommunicatorAccess::wait_label(comm, name, 0, dest, tag), [buffer](const MPI_Status&) {});
}

template <class ExecutionSpace, class ViewType>
Request recv(Mode mode, const ExecutionSpace& space, const Communicator& comm, const ViewType& view, int source,
             int tag) {
  check_view_types<ExecutionSpace, ViewType>();
  check_writable<ViewType>();
  using T = typename ViewType::non_const_value_type;
  constexpr const char* name = "trident::comm::recv";
  const int count = element_count(name, "view", view);
  require_peer(name, comm, "source", source, tag);
  CommunicatorAccess::stats(comm).record(Operation::recv, static_cast<std::int64_t>(count * sizeof(T)));
  auto buffer = make_buffer(space, comm, view, Direction::receive, name);
  fence_before_mpi(space);
  if (mode == Mode::blocking) {
    const WaitGuard guard(CommunicatorAccess::wait_label(comm, name, 0, source, tag));
    MPI_Status status{};
    check_mpi(MPI_Recv(buffer.data(), count, mpi_datatype<T>(), source, tag, comm.mpi(), &status), name);
    require_full_message<T>(name, comm, status, count);
    buffer.finish();
    return Request();
  }
  MPI_Request request = MPI_REQUEST_NULL;
  check_mpi(MPI_Irecv(buffer.data(), count, mpi_datatype<T>(), source, tag, comm.mpi(), &request), name);
  return Request(request, CommunicatorAccess::wait_label(comm, name, 0, source, tag),
                 [buffer, comm, count](const MPI_Status& status) {
                   require_full_message<T>(name, comm, status, count);
                   buffer.finish();
                 });
}

}  // namespace Impl

template <class ExecutionSpace, class ViewType>
void send(const ExecutionSpace& space, const Communicator& comm, const ViewType& view, int dest, int tag = 0) {
  ScopedRegion region("trident::comm::send");
  Impl::send(Impl::Mode::blocking, space, comm, view, dest, tag);
}

template <class ExecutionSpace, class ViewType>
void recv(const ExecutionSpace& space, const Communicator& comm, const ViewType& view, int source, int tag = 0) {
  ScopedRegion region("trident::comm::recv");
  Impl::recv(Impl::Mode::blocking, space, comm, view, source, tag);
}

template <class ExecutionSpace, class ViewType>
[[nodiscard]] Request isend(const ExecutionSpace& space, const Communicator& comm, const ViewType& view, int dest,
                            int tag = 0) {
  ScopedRegion region("trident::comm::isend");
  return Impl::send(Impl::Mode::nonblocking, space, comm, view, dest, tag);
}

template <class ExecutionSpace, class ViewType>
[[nodiscard]] Request irecv(const ExecutionSpace& space, const Communicator& comm, const ViewType& view, int source,
                            int tag = 0) {
  ScopedRegion region("trident::comm::irecv");
  return Impl::recv(Impl::Mode::nonblocking, space, comm, view, source, tag);
}

// Sends `send_view` to `dest` while receiving `recv_view` from `source`, both with `tag`:
// the deadlock-free step of a ring or a pipeline shift.
template <class ExecutionSpace, class SendView, class RecvView>
void sendrecv(const ExecutionSpace& space, const Communicator& comm, const SendView& send_view, int dest,
              const RecvView& recv_view, int source, int tag = 0) {
  ScopedRegion region("trident::comm::sendrecv");
  Impl::check_view_types<ExecutionSpace, SendView>();
  Impl::check_view_types<ExecutionSpace, RecvView>();
  Impl::check_writable<RecvView>();
  using SendT = typename SendView::non_const_value_type;
  using RecvT = typename RecvView::non_const_value_type;
  constexpr const char* name = "trident::comm::sendrecv";
  const int send_count = Impl::element_count(name, "send", send_view);
  const int recv_count = Impl::element_count(name, "recv", recv_view);
  Impl::require_peer(name, comm, "dest", dest, tag);
  Impl::require_peer(name, comm, "source", source, tag);
  Impl::require_disjoint(name, send_view, recv_view);
  auto& stats = Impl::CommunicatorAccess::stats(comm);
  stats.record(Operation::send, static_cast<std::int64_t>(send_count * sizeof(SendT)));
  stats.record(Operation::recv, static_cast<std::int64_t>(recv_count * sizeof(RecvT)));
  auto in = Impl::make_buffer(space, comm, send_view, Impl::Direction::send, name);
  auto out = Impl::make_buffer(space, comm, recv_view, Impl::Direction::receive, name);
  Impl::fence_before_mpi(space);
  const Impl::WaitGuard guard(Impl::CommunicatorAccess::wait_label(comm, name, 0, source, tag));
  MPI_Status status{};
  Impl::check_mpi(MPI_Sendrecv(in.data(), send_count, Impl::mpi_datatype<SendT>(), dest, tag, out.data(), recv_count,
                               Impl::mpi_datatype<RecvT>(), source, tag, comm.mpi(), &status),
                  name);
  Impl::require_full_message<RecvT>(name, comm, status, recv_count);
  out.finish();
}

}  // namespace comm
}  // namespace trident
