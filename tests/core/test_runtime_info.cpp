// The threading advice: only OpenMP threads beside a pthreads OpenBLAS with spinning waits, on
// either side, get it, and it names what to set.

#include "trident_test.hpp"

#include <trident/core/runtime_info.hpp>

#include <string>

TEST_CASE("OpenMP threads beside a pthreads BLAS are told to wait passively", "[runtime]") {
  using trident::threading_advice;
  const std::string advice = threading_advice("OpenMP", 2, 1, 2, "", "20");
  CHECK(advice.find("2 OpenMP threads and OpenBLAS 2 pthreads") != std::string::npos);
  CHECK(advice.find("OMP_WAIT_POLICY unset") != std::string::npos);
  CHECK(advice.find("OMP_WAIT_POLICY=passive") != std::string::npos);
  CHECK(advice.find("OPENBLAS_THREAD_TIMEOUT") == std::string::npos);
  CHECK(threading_advice("OpenMP", 4, 1, 4, "ACTIVE", "20").find("OMP_WAIT_POLICY active") != std::string::npos);
  // Nothing competes: passive waits on both sides, one thread either side, a BLAS on OpenMP's
  // own threads or sequential, or no OpenMP at all.
  CHECK(threading_advice("OpenMP", 2, 1, 2, "Passive", "20").empty());
  CHECK(threading_advice("OpenMP", 2, 1, 2, "passive", "4").empty());
  CHECK(threading_advice("OpenMP", 1, 1, 2, "").empty());
  CHECK(threading_advice("OpenMP", 2, 1, 1, "").empty());
  CHECK(threading_advice("OpenMP", 2, 2, 2, "").empty());
  CHECK(threading_advice("OpenMP", 2, 0, 2, "").empty());
  CHECK(threading_advice("Serial", 1, 1, 2, "").empty());
  CHECK(threading_advice("Cuda", 132, 1, 2, "").empty());
}

TEST_CASE("OpenMP threads beside a pthreads BLAS that spins after its GEMMs are told to shorten the spin",
          "[runtime]") {
  using trident::threading_advice;
  // OpenBLAS spins for 2^28 cycles unless told otherwise; 0 or a non-number leaves its default.
  for (const char* unset : {"", "0", "many"}) {
    const std::string advice = threading_advice("OpenMP", 2, 1, 2, "passive", unset);
    CHECK(advice.find("2 OpenMP threads and OpenBLAS 2 pthreads") != std::string::npos);
    CHECK(advice.find("spin for 2^28 cycles") != std::string::npos);
    CHECK(advice.find("Set OPENBLAS_THREAD_TIMEOUT=20") != std::string::npos);
    CHECK(advice.find("OMP_WAIT_POLICY") == std::string::npos);
  }
  CHECK(threading_advice("OpenMP", 2, 1, 2, "passive", "").find("OPENBLAS_THREAD_TIMEOUT unset") != std::string::npos);
  CHECK(threading_advice("OpenMP", 2, 1, 2, "passive", "26").find("2^26 cycles") != std::string::npos);
  CHECK(threading_advice("OpenMP", 2, 1, 2, "passive", "99").find("2^30 cycles") != std::string::npos);  // clamped
  CHECK(threading_advice("OpenMP", 2, 1, 2, "passive", "24").empty());                                   // short enough
  // Both sides spinning: both settings named.
  const std::string both = threading_advice("OpenMP", 2, 1, 2, "");
  CHECK(both.find("OMP_WAIT_POLICY=passive") != std::string::npos);
  CHECK(both.find("OPENBLAS_THREAD_TIMEOUT=20") != std::string::npos);
  const std::string either = "or use an OpenBLAS built with OpenMP";  // mends both, so said once
  CHECK(both.find(either) == both.size() - either.size());
  // What OpenBLAS makes of the setting.
  CHECK(trident::blas_thread_timeout_exponent("") == 28);
  CHECK(trident::blas_thread_timeout_exponent("0") == 28);
  CHECK(trident::blas_thread_timeout_exponent("1") == 4);
  CHECK(trident::blas_thread_timeout_exponent("20") == 20);
  CHECK(trident::blas_thread_timeout_exponent("31") == 30);
}

TEST_CASE("this process's advice matches its own facts", "[runtime]") {
  const auto space = Kokkos::DefaultHostExecutionSpace();
  if (std::string(Kokkos::DefaultHostExecutionSpace::name()) != "OpenMP" || space.concurrency() <= 1)
    CHECK(trident::threading_advice<Kokkos::DefaultHostExecutionSpace>().empty());
  CHECK(!trident::blas_description().empty());
}
