#pragma once
// What a run executes on, for the line a program prints at start: the Kokkos backend and
// version, whether MPI takes device memory, which BLAS library the GEMMs reach, and whether
// its threads and Kokkos' compete.

#include <trident/comm/gpu_aware.hpp>

#include <KokkosKernels_config.h>
#include <Kokkos_Core.hpp>

#include <dlfcn.h>

#include <cctype>
#include <cstdlib>
#include <string>

namespace trident {

// "Serial (Kokkos 3.4.1, concurrency 1)".
template <class ExecutionSpace>
std::string backend_description() {
  const int version = KOKKOS_VERSION;
  return std::string(ExecutionSpace::name()) + " (Kokkos " + std::to_string(version / 10000) + "." +
         std::to_string(version / 100 % 100) + "." + std::to_string(version % 100) + ", concurrency " +
         std::to_string(ExecutionSpace().concurrency()) + ")";
}

// The library behind KokkosBlas::gemm: the GPU vendor's BLAS, or the host BLAS found in the
// process (OpenBLAS and MKL say which they are), or Kokkos Kernels' own kernels.
inline std::string blas_description() {
#if defined(KOKKOSKERNELS_ENABLE_TPL_CUBLAS)
  const std::string device = "cuBLAS; host: ";
#elif defined(KOKKOSKERNELS_ENABLE_TPL_ROCBLAS)
  const std::string device = "rocBLAS; host: ";
#else
  const std::string device;
#endif
#if defined(KOKKOSKERNELS_ENABLE_TPL_BLAS) || defined(KOKKOSKERNELS_ENABLE_TPL_MKL)
  using OpenBlasConfig = char* (*)();
  if (void* symbol = dlsym(RTLD_DEFAULT, "openblas_get_config")) {
    std::string config = reinterpret_cast<OpenBlasConfig>(symbol)();
    while (!config.empty() && config.back() == ' ') config.pop_back();
    return device + config;
  }
  if (dlsym(RTLD_DEFAULT, "mkl_get_version") != nullptr) return device + "Intel MKL";
  return device + "the system BLAS (through Kokkos Kernels' BLAS TPL)";
#else
  return device + "Kokkos Kernels' own kernels (no BLAS TPL)";
#endif
}

// What to change when the host's OpenMP threads and a pthreads BLAS compete for the cores, or
// "" when they do not. OpenBLAS built with pthreads runs the GEMMs on threads of its own, and
// each side's threads keep spinning after their work:
// - libgomp's threads spin for a while after every parallel region unless OMP_WAIT_POLICY is
//   passive, and starve the GEMMs (on 2 cores at 2 threads, the GPT-2 step of bench_train_step
//   ran at 0.13 of SGEMM instead of 0.78);
// - OpenBLAS's threads spin for 2^OPENBLAS_THREAD_TIMEOUT cycles (2^28 unless set, about 0.1 s)
//   after every GEMM, and starve the kernels between the GEMMs: on those 2 cores the layer norms,
//   activations, loss and AdamW ran no faster at 2 threads than at 1, and the step reached
//   0.74-0.86 of SGEMM; with the timeout at 2^20 cycles, 0.86-0.91.
// `blas_threading` is OpenBLAS's openblas_get_parallel(): 0 sequential, 1 pthreads, 2 OpenMP;
// -1 unknown. `blas_thread_timeout` is OPENBLAS_THREAD_TIMEOUT as set ("" when unset).
constexpr int blas_thread_timeout_default = 28;  // OpenBLAS's own, as a power of two of cycles
constexpr int blas_thread_timeout_advised = 20;  // about 0.4 ms at 2.5 GHz

// The exponent OpenBLAS uses for OPENBLAS_THREAD_TIMEOUT = `value`: clamped to [4, 30], its
// default when unset, zero, negative or not a number.
inline int blas_thread_timeout_exponent(const std::string& value) {
  const int set = std::atoi(value.c_str());
  if (set <= 0) return blas_thread_timeout_default;
  return set < 4 ? 4 : set > 30 ? 30 : set;
}

inline std::string threading_advice(const std::string& space_name, int threads, int blas_threading, int blas_threads,
                                    const std::string& wait_policy, const std::string& blas_thread_timeout = "") {
  if (space_name != "OpenMP" || threads <= 1 || blas_threading != 1 || blas_threads <= 1) return "";
  std::string policy;
  for (char c : wait_policy) policy += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const int timeout = blas_thread_timeout_exponent(blas_thread_timeout);
  const bool spinning_omp = policy != "passive", spinning_blas = timeout > blas_thread_timeout_advised + 4;
  if (!spinning_omp && !spinning_blas) return "";
  std::string advice = "Kokkos runs " + std::to_string(threads) + " OpenMP threads and OpenBLAS " +
                       std::to_string(blas_threads) + " pthreads of its own; ";
  const std::string omp_state = "OMP_WAIT_POLICY " + (policy.empty() ? std::string("unset") : policy);
  const std::string blas_state =
      "OPENBLAS_THREAD_TIMEOUT " + (blas_thread_timeout.empty() ? std::string("unset") : blas_thread_timeout);
  const std::string blas_spin = "OpenBLAS's threads spin for 2^" + std::to_string(timeout) +
                                " cycles after every GEMM (" + blas_state +
                                ") and starve the kernels between the GEMMs";
  const std::string advised = "OPENBLAS_THREAD_TIMEOUT=" + std::to_string(blas_thread_timeout_advised);
  if (spinning_omp && spinning_blas)
    advice += "OpenMP threads that spin between kernels (" + omp_state + ") starve the GEMMs, and " + blas_spin +
              ". Set OMP_WAIT_POLICY=passive and " + advised + " before the program starts";
  else if (spinning_omp)
    advice +=
        "OpenMP threads that spin between kernels (" + omp_state + ") starve the GEMMs. Set OMP_WAIT_POLICY=passive";
  else
    advice += blas_spin + ". Set " + advised + " before the program starts";
  advice += ", or use an OpenBLAS built with OpenMP";
  return advice;
}

// OPENBLAS_THREAD_TIMEOUT as this process was started with, or "".
inline std::string blas_thread_timeout_setting() {
  const char* value = std::getenv("OPENBLAS_THREAD_TIMEOUT");
  return value != nullptr ? value : "";
}

// threading_advice() for this process.
template <class ExecutionSpace>
std::string threading_advice() {
  int blas_threading = -1, blas_threads = 1;
  using Query = int (*)();
  if (void* symbol = dlsym(RTLD_DEFAULT, "openblas_get_parallel")) blas_threading = reinterpret_cast<Query>(symbol)();
  if (void* symbol = dlsym(RTLD_DEFAULT, "openblas_get_num_threads")) blas_threads = reinterpret_cast<Query>(symbol)();
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  return threading_advice(ExecutionSpace::name(), ExecutionSpace().concurrency(), blas_threading, blas_threads,
                          policy != nullptr ? policy : "", blas_thread_timeout_setting());
}

// How the comm layer hands the execution space's memory to MPI.
template <class ExecutionSpace>
std::string mpi_description() {
  if (Kokkos::SpaceAccessibility<Kokkos::HostSpace, typename ExecutionSpace::memory_space>::accessible)
    return "MPI on host memory";
  return comm::mpi_is_gpu_aware() ? "GPU-aware MPI (device pointers to MPI)"
                                  : "MPI not GPU-aware (device views staged through pinned host buffers)";
}

}  // namespace trident
