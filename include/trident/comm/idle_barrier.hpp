#pragma once
// A barrier whose ranks sleep while they wait instead of polling MPI: for ranks that share
// their cores with ranks computing meanwhile, which a polling waiter would slow down (the
// planner's calibration times some ranks of a node while the others wait their turn).
//   ibarrier(comm) returns a Request; idle_barrier(comm) waits for it, sleeping between tests.

#include <trident/comm/communicator.hpp>
#include <trident/comm/request.hpp>
#include <trident/core/profiling.hpp>

#include <mpi.h>

#include <chrono>
#include <thread>

namespace trident {
namespace comm {

[[nodiscard]] inline Request ibarrier(const Communicator& comm) {
  constexpr const char* name = "trident::comm::ibarrier";
  Impl::CommunicatorAccess::begin_collective(comm, make_fingerprint(Operation::barrier, ElementType::none, 0), 0);
  MPI_Request request = MPI_REQUEST_NULL;
  Impl::check_mpi(MPI_Ibarrier(comm.mpi(), &request), name);
  return Request(request, Impl::CommunicatorAccess::wait_label(comm, name, 0), [](const MPI_Status&) {});
}

inline void idle_barrier(const Communicator& comm, std::chrono::microseconds pause = std::chrono::microseconds(100)) {
  ScopedRegion region("trident::comm::idle_barrier");
  Request request = ibarrier(comm);
  while (!request.test()) std::this_thread::sleep_for(pause);
}

}  // namespace comm
}  // namespace trident
