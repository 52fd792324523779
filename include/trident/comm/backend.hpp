#pragma once
// Which library carries a communicator's collectives. MPI is the default and always does the
// bootstrap (ranks, splits, point-to-point, agreements). A CUDA build compiled with
// TRIDENT_ENABLE_NCCL can hand the collectives on device memory to NCCL instead: chosen per
// communicator with set_backend(), or for every communicator by TRIDENT_COMM_BACKEND=nccl.

#include <trident/core/error.hpp>

#include <cstdlib>
#include <string>

namespace trident {
namespace comm {

enum class Backend {
  mpi,  // every operation through MPI (device memory staged through the host unless GPU-aware)
  nccl  // all-reduce, all-gather, reduce-scatter and broadcast of device memory through NCCL
};

inline const char* backend_name(Backend backend) {
  return backend == Backend::nccl ? "nccl" : "mpi";
}

// Whether this build can run `backend`.
inline constexpr bool backend_available(Backend backend) {
#if defined(TRIDENT_ENABLE_NCCL)
  (void)backend;
  return true;
#else
  return backend == Backend::mpi;
#endif
}

namespace Impl {

inline void require_available(Backend backend, const char* where) {
  require_argument(backend_available(backend), where, ": backend '", backend_name(backend),
                   "' is not in this build; it needs Kokkos with CUDA and NCCL, and trident configured with "
                   "TRIDENT_ENABLE_NCCL=ON (or AUTO)");
}

// The value of TRIDENT_COMM_BACKEND: "mpi" or "nccl"; unset or empty means MPI.
inline Backend parse_backend(const char* value) {
  if (value == nullptr || *value == '\0') return Backend::mpi;
  const std::string text(value);
  require_argument(text == "mpi" || text == "nccl",
                   "trident::comm: TRIDENT_COMM_BACKEND must be 'mpi' or 'nccl', got '", text, "'");
  const Backend backend = text == "nccl" ? Backend::nccl : Backend::mpi;
  require_available(backend, "trident::comm: TRIDENT_COMM_BACKEND");
  return backend;
}

inline Backend backend_from_environment() {
  return parse_backend(std::getenv("TRIDENT_COMM_BACKEND"));
}

// What a backend other than MPI keeps per communicator (its own communicator, streams), made on
// the first collective that needs it and shared by the communicator's copies.
struct DeviceCommunicator {
  DeviceCommunicator() = default;
  DeviceCommunicator(const DeviceCommunicator&) = delete;
  DeviceCommunicator& operator=(const DeviceCommunicator&) = delete;
  virtual ~DeviceCommunicator() = default;
};

}  // namespace Impl
}  // namespace comm
}  // namespace trident
