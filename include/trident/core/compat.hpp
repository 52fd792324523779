#pragma once
// The few places where Kokkos 3.4 (Debian) and Kokkos 4.x differ, behind one name each.
// Everything else in trident uses API present in both.

#include <Kokkos_Core.hpp>

#include <string>

namespace trident {
namespace compat {

// Labelled fences arrived in Kokkos 3.6; older versions fence without a name.
inline void fence(const std::string& label) {
#if KOKKOS_VERSION >= 30600
  Kokkos::fence(label);
#else
  (void)label;
  Kokkos::fence();
#endif
}

template <class ExecutionSpace>
void fence(const ExecutionSpace& space, const std::string& label) {
#if KOKKOS_VERSION >= 30600
  space.fence(label);
#else
  (void)label;
  space.fence();
#endif
}

// Host memory the device copies to and from at full speed: pinned where the backend has it
// (SharedHostPinnedSpace from Kokkos 3.7 on; host-only builds make it HostSpace).
#if KOKKOS_VERSION >= 30700
using HostPinnedSpace = Kokkos::SharedHostPinnedSpace;
#elif defined(KOKKOS_ENABLE_CUDA)
using HostPinnedSpace = Kokkos::CudaHostPinnedSpace;
#elif defined(KOKKOS_ENABLE_HIP)
using HostPinnedSpace = Kokkos::Experimental::HIPHostPinnedSpace;
#else
using HostPinnedSpace = Kokkos::HostSpace;
#endif

}  // namespace compat

// Math usable inside kernels: Kokkos::Experimental:: until 3.6, Kokkos:: from 3.7 on.
namespace math {
#if KOKKOS_VERSION >= 30700
using Kokkos::cos;
using Kokkos::exp;
using Kokkos::fabs;
using Kokkos::fmax;
using Kokkos::log;
using Kokkos::sqrt;
using Kokkos::tanh;
#else
using Kokkos::Experimental::cos;
using Kokkos::Experimental::exp;
using Kokkos::Experimental::fabs;
using Kokkos::Experimental::fmax;
using Kokkos::Experimental::log;
using Kokkos::Experimental::sqrt;
using Kokkos::Experimental::tanh;
#endif
}  // namespace math

}  // namespace trident
