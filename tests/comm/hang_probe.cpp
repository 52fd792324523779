// A program that hangs on purpose, for the hang-detection test (check_hang.sh):
//   hang_probe collective|receive|request|none TIMEOUT_SECONDS
// collective: rank 0 enters an allreduce on communicator 'dp' that rank 1 never joins;
// receive / request: rank 0 waits for a message (blocking, or through a request) rank 1 never
// sends; none: ranks are only slow (each wait shorter than the timeout, long pauses between
// waits), which must not be mistaken for a hang. Rank 1 sleeps instead of joining.

#include <trident/comm/comm.hpp>

#include <mpi.h>
#include <Kokkos_Core.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

namespace {

using Space = Kokkos::DefaultHostExecutionSpace;

void pause(double seconds) {
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  Kokkos::initialize(argc, argv);
  {
    const std::string mode = argc > 1 ? argv[1] : "none";
    trident::comm::set_wait_timeout(argc > 2 ? std::stod(argv[2]) : 1.0);
    const trident::comm::Communicator world(MPI_COMM_WORLD, "world");
    const auto dp = world.duplicate("dp");
    Kokkos::View<double*, Kokkos::HostSpace> values("values", 4);
    trident::comm::allreduce(Space(), dp, values);  // collective #1 completes everywhere
    const double timeout = trident::comm::wait_timeout();
    if (mode == "none") {
      pause(2 * timeout);                        // long computation between waits
      if (dp.rank() == 1) pause(0.5 * timeout);  // a late partner within the timeout
      trident::comm::allreduce(Space(), dp, values);
      std::printf("rank %d: no hang reported\n", dp.rank());
    } else if (dp.rank() == 1) {
      pause(60);  // never joins; the job ends when rank 0 gives up
    } else if (mode == "collective") {
      trident::comm::allreduce(Space(), dp, values);
    } else if (mode == "receive") {
      trident::comm::recv(Space(), dp, values, 1, 7);
    } else if (mode == "request") {
      auto request = trident::comm::irecv(Space(), dp, values, 1, 9);
      request.wait();
    }
  }
  Kokkos::finalize();
  MPI_Finalize();
  return 0;
}
