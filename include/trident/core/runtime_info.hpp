#pragma once
// What a run executes on, for the line a program prints at start: the Kokkos backend and
// version, whether MPI takes device memory, and which BLAS library the GEMMs reach.

#include <trident/comm/gpu_aware.hpp>

#include <KokkosKernels_config.h>
#include <Kokkos_Core.hpp>

#include <dlfcn.h>

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

// How the comm layer hands the execution space's memory to MPI.
template <class ExecutionSpace>
std::string mpi_description() {
  if (Kokkos::SpaceAccessibility<Kokkos::HostSpace, typename ExecutionSpace::memory_space>::accessible)
    return "MPI on host memory";
  return comm::mpi_is_gpu_aware() ? "GPU-aware MPI (device pointers to MPI)"
                                  : "MPI not GPU-aware (device views staged through pinned host buffers)";
}

}  // namespace trident
