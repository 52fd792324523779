#pragma once
// A profiling region that closes itself (Kokkos::Profiling::ScopedRegion exists only from 4.1).
// Every public trident operation opens one named "trident::<area>::<op>", so Kokkos tools
// (space-time-stack, nsys, rocprof) show where the time goes.

#include <Kokkos_Core.hpp>

#include <string>

namespace trident {

class ScopedRegion {
 public:
  explicit ScopedRegion(const std::string& name) { Kokkos::Profiling::pushRegion(name); }
  ~ScopedRegion() { Kokkos::Profiling::popRegion(); }
  ScopedRegion(const ScopedRegion&) = delete;
  ScopedRegion& operator=(const ScopedRegion&) = delete;
};

}  // namespace trident
