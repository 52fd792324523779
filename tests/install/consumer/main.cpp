// A minimal program of a trident user: initialise MPI and Kokkos, draw a layout-independent
// tensor, reduce it over the ranks and check the result.
#include <trident/trident.hpp>

#include <mpi.h>

#include <cstdio>

int main(int argc, char* argv[]) {
  MPI_Init(&argc, &argv);
  Kokkos::initialize(argc, argv);
  int status = 0;
  {
    using Space = Kokkos::DefaultExecutionSpace;
    trident::comm::Communicator world(MPI_COMM_WORLD);
    Kokkos::View<double*, Space> values("values", 16);
    trident::fill_normal(Space(), values, trident::random_stream(3, "consumer"), 0.0, 1.0);
    Kokkos::View<double*, Space> total("total", 16);
    trident::comm::allreduce(Space(), world, values, total, trident::comm::ReduceOp::sum);
    auto v = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), values);
    auto t = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), total);
    for (int i = 0; i < 16; ++i) {
      // Every rank draws the same values, so the sum is size times the value.
      if (t(i) != v(i) * world.size()) status = 1;
    }
    if (world.rank() == 0)
      std::printf("consumer of trident %s on %d ranks: %s\n", trident::version_string, world.size(),
                  status == 0 ? "ok" : "WRONG");
  }
  Kokkos::finalize();
  MPI_Finalize();
  return status;
}
