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
// "" when they do not. libgomp's threads spin for a while after every parallel region unless
// OMP_WAIT_POLICY is passive; OpenBLAS built with pthreads runs the GEMMs on threads of its
// own, which the spinning threads then starve (on 2 cores at 2 threads, the GPT-2 step of
// bench_train_step ran at 0.13 of SGEMM instead of 0.78). `blas_threading` is OpenBLAS's
// openblas_get_parallel(): 0 sequential, 1 pthreads, 2 OpenMP; -1 unknown.
inline std::string threading_advice(const std::string& space_name, int threads, int blas_threading, int blas_threads,
                                    const std::string& wait_policy) {
  std::string policy;
  for (char c : wait_policy) policy += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (space_name != "OpenMP" || threads <= 1 || blas_threading != 1 || blas_threads <= 1 || policy == "passive")
    return "";
  return "Kokkos runs " + std::to_string(threads) + " OpenMP threads and OpenBLAS " + std::to_string(blas_threads) +
         " pthreads of its own; OpenMP threads that spin between kernels (OMP_WAIT_POLICY " +
         (policy.empty() ? std::string("unset") : policy) +
         ") starve the GEMMs. Set OMP_WAIT_POLICY=passive, or use an OpenBLAS built with OpenMP";
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
                          policy != nullptr ? policy : "");
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
