#pragma once
// alltoall: rank r's send view is split into comm.size() equal blocks; block q goes to rank q,
// which stores it as its block r.
//   alltoall(space, comm, send, recv)   send.size() == recv.size(), a multiple of comm.size()
// and the nonblocking ialltoall returning a Request.

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

template <class ExecutionSpace, class SendView, class RecvView>
Request alltoall(Mode mode, const ExecutionSpace& space, const Communicator& comm, const SendView& send,
                 const RecvView& recv) {
  check_send_recv_types<ExecutionSpace, SendView, RecvView>();
  using T = typename RecvView::non_const_value_type;
  constexpr const char* name = "trident::comm::alltoall";
  const int count = element_count(name, "send", send);
  element_count(name, "recv", recv);
  const auto ranks = static_cast<std::size_t>(comm.size());
  require_argument(send.size() == recv.size() && send.size() % ranks == 0, name, " on communicator '", comm.name(),
                   "' (size ", comm.size(), "): send has ", send.size(), " elements and recv has ", recv.size(),
                   "; both need the same multiple of ", ranks);
  require_disjoint(name, send, recv);
  const int block = static_cast<int>(send.size() / ranks);
  CommunicatorAccess::begin_collective(comm, make_fingerprint(Operation::alltoall, element_type_of<T>(), count),
                                       static_cast<std::int64_t>(send.size() * sizeof(T)));
  auto in = make_buffer(space, comm, send, Direction::send, name);
  auto out = make_buffer(space, comm, recv, Direction::receive, name);
  fence_before_mpi(space);
  const MPI_Datatype type = mpi_datatype<T>();
  if (mode == Mode::blocking) {
    const WaitGuard guard(CommunicatorAccess::wait_label(comm, name, 0));
    check_mpi(MPI_Alltoall(in.data(), block, type, out.data(), block, type, comm.mpi()), name);
    out.finish();
    return Request();
  }
  MPI_Request request = MPI_REQUEST_NULL;
  check_mpi(MPI_Ialltoall(in.data(), block, type, out.data(), block, type, comm.mpi(), &request), name);
  return Request(request, CommunicatorAccess::wait_label(comm, name, 0),
                 [in, out](const MPI_Status&) { out.finish(); });
}

}  // namespace Impl

template <class ExecutionSpace, class SendView, class RecvView>
void alltoall(const ExecutionSpace& space, const Communicator& comm, const SendView& send, const RecvView& recv) {
  ScopedRegion region("trident::comm::alltoall");
  Impl::alltoall(Impl::Mode::blocking, space, comm, send, recv);
}

template <class ExecutionSpace, class SendView, class RecvView>
[[nodiscard]] Request ialltoall(const ExecutionSpace& space, const Communicator& comm, const SendView& send,
                                const RecvView& recv) {
  ScopedRegion region("trident::comm::ialltoall");
  return Impl::alltoall(Impl::Mode::nonblocking, space, comm, send, recv);
}

}  // namespace comm
}  // namespace trident
