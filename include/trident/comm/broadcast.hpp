#pragma once
// broadcast: the root's view is copied into the same-sized view on every other rank.
//   broadcast(space, comm, view, root), and the nonblocking ibroadcast returning a Request.

#include <trident/comm/communicator.hpp>
#include <trident/comm/nccl.hpp>
#include <trident/comm/request.hpp>
#include <trident/comm/view_buffer.hpp>
#include <trident/core/error.hpp>
#include <trident/core/profiling.hpp>

#include <mpi.h>

#include <cstdint>

namespace trident {
namespace comm {
namespace Impl {

template <class ExecutionSpace, class ViewType>
Request broadcast(Mode mode, const ExecutionSpace& space, const Communicator& comm, const ViewType& view, int root) {
  check_view_types<ExecutionSpace, ViewType>();
  check_writable<ViewType>();
  using T = typename ViewType::non_const_value_type;
  constexpr const char* name = "trident::comm::broadcast";
  const int count = element_count(name, "view", view);
  require_argument(root >= 0 && root < comm.size(), name, " on communicator '", comm.name(), "': root ", root,
                   " is not a rank of a communicator of size ", comm.size());
  CommunicatorAccess::begin_collective(comm, make_fingerprint(Operation::broadcast, element_type_of<T>(), count, root),
                                       static_cast<std::int64_t>(count * sizeof(T)));
  if constexpr (nccl_may_carry<ExecutionSpace, T, ViewType>()) {
    if (comm.backend() == Backend::nccl) return nccl_broadcast(mode, space, comm, view, root, name);
  }
  auto buffer = make_buffer(space, comm, view, comm.rank() == root ? Direction::send : Direction::receive, name);
  fence_before_mpi(space);
  if (mode == Mode::blocking) {
    const WaitGuard guard(CommunicatorAccess::wait_label(comm, name, 0));
    check_mpi(MPI_Bcast(buffer.data(), count, mpi_datatype<T>(), root, comm.mpi()), name);
    buffer.finish();
    return Request();
  }
  MPI_Request request = MPI_REQUEST_NULL;
  check_mpi(MPI_Ibcast(buffer.data(), count, mpi_datatype<T>(), root, comm.mpi(), &request), name);
  return Request(request, CommunicatorAccess::wait_label(comm, name, 0),
                 [buffer](const MPI_Status&) { buffer.finish(); });
}

}  // namespace Impl

template <class ExecutionSpace, class ViewType>
void broadcast(const ExecutionSpace& space, const Communicator& comm, const ViewType& view, int root) {
  ScopedRegion region("trident::comm::broadcast");
  Impl::broadcast(Impl::Mode::blocking, space, comm, view, root);
}

template <class ExecutionSpace, class ViewType>
[[nodiscard]] Request ibroadcast(const ExecutionSpace& space, const Communicator& comm, const ViewType& view,
                                 int root) {
  ScopedRegion region("trident::comm::ibroadcast");
  return Impl::broadcast(Impl::Mode::nonblocking, space, comm, view, root);
}

}  // namespace comm
}  // namespace trident
