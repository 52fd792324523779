// The communicator backend: chosen at run time (TRIDENT_COMM_BACKEND or set_backend), MPI by
// default, inherited by split communicators, refused with a clear error where the build lacks
// it. In a build with NCCL, collectives over device memory go to NCCL (no host staging, an NCCL
// communicator made on first use) and everything else stays on MPI.

#include "comm_test_helpers.hpp"

#include <cstdlib>
#include <string>

using namespace comm_test;
using trident::comm::Backend;

namespace {

const std::string not_in_build =
    "backend 'nccl' is not in this build; it needs Kokkos with CUDA and NCCL, and trident configured with "
    "TRIDENT_ENABLE_NCCL=ON (or AUTO)";

}  // namespace

TEST_CASE("TRIDENT_COMM_BACKEND names the backend; MPI is the default", "[comm][backend]") {
  using trident::comm::Impl::parse_backend;
  CHECK(parse_backend(nullptr) == Backend::mpi);
  CHECK(parse_backend("") == Backend::mpi);
  CHECK(parse_backend("mpi") == Backend::mpi);
  CHECK_THROWS_WITH(parse_backend("gloo"), "trident::comm: TRIDENT_COMM_BACKEND must be 'mpi' or 'nccl', got 'gloo'");
  CHECK_THROWS_AS(parse_backend("NCCL"), trident::InvalidArgument);
  CHECK(trident::comm::backend_available(Backend::mpi));
  if (trident::comm::backend_available(Backend::nccl)) {
    CHECK(parse_backend("nccl") == Backend::nccl);
  } else {
    CHECK_THROWS_WITH(parse_backend("nccl"), "trident::comm: TRIDENT_COMM_BACKEND: " + not_in_build);
  }

  // What ctest's environment says (mpi, or the other backend this run is registered for).
  CHECK(world().backend() == parse_backend(std::getenv("TRIDENT_COMM_BACKEND")));
  {
    const ScopedEnvironment unset("TRIDENT_COMM_BACKEND", "");
    CHECK(world().backend() == Backend::mpi);
  }
  {
    // Every rank reads the same environment, so every rank refuses.
    const ScopedEnvironment bad("TRIDENT_COMM_BACKEND", "infiniband");
    CHECK_THROWS_WITH(world(), "trident::comm: TRIDENT_COMM_BACKEND must be 'mpi' or 'nccl', got 'infiniband'");
  }
}

TEST_CASE("set_backend chooses per communicator and split communicators inherit it", "[comm][backend]") {
  auto comm = world().duplicate("chosen");
  comm.set_backend(Backend::mpi);
  CHECK(comm.backend() == Backend::mpi);
  CHECK(comm.split(comm.rank() % 2, comm.rank()).backend() == Backend::mpi);
  if (!trident::comm::backend_available(Backend::nccl)) {
    CHECK_THROWS_WITH(comm.set_backend(Backend::nccl), "trident::comm::Communicator::set_backend: " + not_in_build);
    CHECK(comm.backend() == Backend::mpi);
    return;
  }
  comm.set_backend(Backend::nccl);
  CHECK(comm.backend() == Backend::nccl);
  CHECK(comm.duplicate().backend() == Backend::nccl);
  CHECK(comm.split(comm.rank() % 2, comm.rank()).backend() == Backend::nccl);
}

TEST_CASE("which operations NCCL may carry is decided by space, memory and element type", "[comm][backend]") {
  using trident::comm::Impl::nccl_may_carry;
  using HostView = Kokkos::View<float*, Kokkos::HostSpace>;
  STATIC_REQUIRE_FALSE(nccl_may_carry<Kokkos::DefaultHostExecutionSpace, float, HostView>());
  STATIC_REQUIRE_FALSE(nccl_may_carry<Kokkos::DefaultHostExecutionSpace, float, HostView, HostView>());
#if defined(TRIDENT_ENABLE_NCCL)
  using DeviceFloats = Kokkos::View<float*, Kokkos::CudaSpace>;
  using DeviceShorts = Kokkos::View<short*, Kokkos::CudaSpace>;
  STATIC_REQUIRE(nccl_may_carry<Kokkos::Cuda, float, DeviceFloats, DeviceFloats>());
  STATIC_REQUIRE(
      nccl_may_carry<Kokkos::Cuda, trident::bfloat16, Kokkos::View<trident::bfloat16*, Kokkos::CudaSpace>>());
  STATIC_REQUIRE_FALSE(nccl_may_carry<Kokkos::Cuda, short, DeviceShorts>());  // NCCL has no 16-bit integers
  STATIC_REQUIRE_FALSE(
      nccl_may_carry<Kokkos::Cuda, float, DeviceFloats, Kokkos::View<float*, Kokkos::CudaHostPinnedSpace>>());
#else
  STATIC_REQUIRE_FALSE(nccl_may_carry<Kokkos::DefaultExecutionSpace, float, Kokkos::View<float*, Memory>>());
#endif
}

// Device memory under NCCL is never staged through the host, whatever MPI can read, and the
// results equal MPI's; host memory on the same communicator stays on MPI.
TEST_CASE("collectives over device memory go to NCCL when it is chosen", "[comm][backend]") {
  if (!trident::comm::backend_available(Backend::nccl)) {
    SUCCEED("this build has no NCCL");
    return;
  }
  auto comm = world().duplicate("nccl");
  comm.set_backend(Backend::nccl);
  comm.set_transport(trident::comm::Transport::host_staged);  // MPI would stage; NCCL must not
  const int size = comm.size(), rank = comm.rank();
  const std::int64_t n = 7;
  CHECK(trident::comm::Impl::CommunicatorAccess::device(comm) == nullptr);

  const auto send = filled<float>("send", n, rank);
  Kokkos::View<float*, Memory> sum("sum", n);
#if defined(TRIDENT_ENABLE_NCCL)
  // Ranks sharing a GPU (more ranks than GPUs): every rank is told which, not NCCL's "invalid usage".
  if (const std::string shared = trident::comm::Impl::shared_gpu(comm, "test"); !shared.empty()) {
    CHECK_THAT(shared,
               Catch::Matches("ranks [0-9]+ and [0-9]+ of " + std::to_string(size) + " both use the GPU at PCI .+"));
    CHECK_THROWS_WITH(trident::comm::allreduce(Space(), comm, send, sum),
                      "trident::comm: making the NCCL communicator: " + shared +
                          "; NCCL needs a GPU of its own for every rank (give each rank its own device, or use the "
                          "MPI backend)");
    return;
  }
#endif
  trident::comm::allreduce(Space(), comm, send, sum);
  CHECK(mismatches(values(sum), expected_reduction(size, n)) == 0);
  CHECK(trident::comm::Impl::CommunicatorAccess::device(comm) != nullptr);

  Kokkos::View<float*, Memory> gathered("gathered", size * n);
  auto request = trident::comm::iallgather(Space(), comm, send, gathered);
  request.wait();
  CHECK(mismatches(values(gathered),
                   expected_concatenation(std::vector<int>(static_cast<std::size_t>(size), static_cast<int>(n)))) == 0);
  CHECK(comm.stats().staged_bytes() == 0);

  // Host memory on the same communicator goes through MPI, staged as the transport says.
  const auto host_send = filled<float, Kokkos::HostSpace>("host_send", n, rank);
  Kokkos::View<float*, Kokkos::HostSpace> host_sum("host_sum", n);
  trident::comm::allreduce(Kokkos::DefaultHostExecutionSpace(), comm, host_send, host_sum);
  CHECK(mismatches(values(host_sum), expected_reduction(size, n)) == 0);
  CHECK(comm.stats().staged_bytes() == 2 * n * static_cast<std::int64_t>(sizeof(float)));  // in and out
}
