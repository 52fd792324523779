// The threading advice: only OpenMP threads beside a pthreads OpenBLAS with spinning waits
// get it, and it names what to set.

#include "trident_test.hpp"

#include <trident/core/runtime_info.hpp>

#include <string>

TEST_CASE("OpenMP threads beside a pthreads BLAS are told to wait passively", "[runtime]") {
  using trident::threading_advice;
  const std::string advice = threading_advice("OpenMP", 2, 1, 2, "");
  CHECK(advice.find("2 OpenMP threads and OpenBLAS 2 pthreads") != std::string::npos);
  CHECK(advice.find("OMP_WAIT_POLICY unset") != std::string::npos);
  CHECK(advice.find("OMP_WAIT_POLICY=passive") != std::string::npos);
  CHECK(threading_advice("OpenMP", 4, 1, 4, "ACTIVE").find("OMP_WAIT_POLICY active") != std::string::npos);
  // Nothing competes: passive waits, one thread either side, a BLAS on OpenMP's own threads or
  // sequential, or no OpenMP at all.
  CHECK(threading_advice("OpenMP", 2, 1, 2, "Passive").empty());
  CHECK(threading_advice("OpenMP", 1, 1, 2, "").empty());
  CHECK(threading_advice("OpenMP", 2, 1, 1, "").empty());
  CHECK(threading_advice("OpenMP", 2, 2, 2, "").empty());
  CHECK(threading_advice("OpenMP", 2, 0, 2, "").empty());
  CHECK(threading_advice("Serial", 1, 1, 2, "").empty());
  CHECK(threading_advice("Cuda", 132, 1, 2, "").empty());
}

TEST_CASE("this process's advice matches its own facts", "[runtime]") {
  const auto space = Kokkos::DefaultHostExecutionSpace();
  if (std::string(Kokkos::DefaultHostExecutionSpace::name()) != "OpenMP" || space.concurrency() <= 1)
    CHECK(trident::threading_advice<Kokkos::DefaultHostExecutionSpace>().empty());
  CHECK(!trident::blas_description().empty());
}
