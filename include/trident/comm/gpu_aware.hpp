#pragma once
// How a View's memory reaches MPI. Host-accessible memory always goes straight to MPI. Device
// memory goes straight to MPI only when MPI can read it ("GPU-aware"); otherwise it is staged
// through a host copy. A communicator may force either path (set_transport), which is how the
// staging path is tested on a machine without GPUs.

#include <trident/core/error.hpp>

#include <mpi.h>
#include <Kokkos_Core.hpp>
#if __has_include(<mpi-ext.h>)
#include <mpi-ext.h>  // Open MPI's MPIX_Query_cuda_support / MPIX_Query_rocm_support
#endif

#include <cstdlib>
#include <optional>
#include <string>

namespace trident {
namespace comm {

enum class Transport {
  automatic,    // direct for host-accessible memory or a GPU-aware MPI, else host staged
  host_staged,  // always copy through a host buffer (also for host memory: exercises the path)
  direct        // always hand the View's pointer to MPI
};

inline const char* transport_name(Transport transport) {
  switch (transport) {
    case Transport::automatic:
      return "automatic";
    case Transport::host_staged:
      return "host_staged";
    case Transport::direct:
      return "direct";
  }
  return "unknown";
}

namespace Impl {

// The value of TRIDENT_GPU_AWARE_MPI: "1" forces GPU-aware, "0" forces not, unset asks MPI.
inline std::optional<bool> parse_gpu_aware_override(const char* value) {
  if (value == nullptr || *value == '\0') return std::nullopt;
  const std::string text(value);
  require_argument(text == "0" || text == "1", "trident::comm: TRIDENT_GPU_AWARE_MPI must be 0 or 1, got '", text, "'");
  return text == "1";
}

// What the MPI library says at run time, where it offers a query (Open MPI's extensions);
// an MPI without such a query is assumed not to be GPU-aware.
inline bool mpi_reports_gpu_support() {
  static const bool supported = [] {
    bool any = false;
#if defined(OMPI_HAVE_MPI_EXT_CUDA) && OMPI_HAVE_MPI_EXT_CUDA && defined(MPIX_CUDA_AWARE_SUPPORT) && \
    MPIX_CUDA_AWARE_SUPPORT
    any = any || MPIX_Query_cuda_support() == 1;
#endif
#if defined(OMPI_HAVE_MPI_EXT_ROCM) && OMPI_HAVE_MPI_EXT_ROCM && defined(MPIX_ROCM_AWARE_SUPPORT) && \
    MPIX_ROCM_AWARE_SUPPORT
    any = any || MPIX_Query_rocm_support() == 1;
#endif
    return any;
  }();
  return supported;
}

}  // namespace Impl

// Whether MPI may be handed device pointers: TRIDENT_GPU_AWARE_MPI=0|1 when set, else the
// MPI library's own answer.
inline bool mpi_is_gpu_aware() {
  if (const auto forced = Impl::parse_gpu_aware_override(std::getenv("TRIDENT_GPU_AWARE_MPI"))) return *forced;
  return Impl::mpi_reports_gpu_support();
}

namespace Impl {

// Whether a View in MemorySpace is copied through a host buffer under `transport`.
template <class MemorySpace>
bool use_host_staging(Transport transport) {
  if (transport == Transport::host_staged) return true;
  if (transport == Transport::direct) return false;
  if constexpr (Kokkos::SpaceAccessibility<Kokkos::HostSpace, MemorySpace>::accessible) {
    return false;
  } else {
    return !mpi_is_gpu_aware();
  }
}

}  // namespace Impl
}  // namespace comm
}  // namespace trident
