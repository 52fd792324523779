#pragma once
// The bytes a process holds in Kokkos allocations, and the most it held since a reset, counted
// from Kokkos's own allocate and deallocate events: what a run really allocates, independent of
// the library's own ledger (memory_accounting.hpp), e.g. to hold the planner's memory model to
// the truth; Kokkos's own scratch is left out. install() before the allocations to count; while installed, Kokkos names
// every kernel it launches, which slows small kernels down, so time nothing while it listens.

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace trident {

class AllocationPeak {
 public:
  static void install() {
    Kokkos::Tools::Experimental::set_allocate_data_callback(&AllocationPeak::on_allocate);
    Kokkos::Tools::Experimental::set_deallocate_data_callback(&AllocationPeak::on_deallocate);
  }
  static void uninstall() {
    Kokkos::Tools::Experimental::set_allocate_data_callback(nullptr);
    Kokkos::Tools::Experimental::set_deallocate_data_callback(nullptr);
  }
  static std::int64_t live() { return m_live; }
  static std::int64_t peak() { return m_peak; }
  static void reset_peak() { m_peak = m_live; }

 private:
  // Kokkos's own buffers (its team scratch, grown once by the first kernel that needs it) are
  // the runtime's, not the program's.
  static bool counted(const char* label) { return std::strncmp(label, "Kokkos::", 8) != 0; }
  static void on_allocate(Kokkos::Profiling::SpaceHandle, const char* label, const void*, std::uint64_t bytes) {
    if (!counted(label)) return;
    m_live += static_cast<std::int64_t>(bytes);
    m_peak = std::max(m_peak, m_live);
  }
  static void on_deallocate(Kokkos::Profiling::SpaceHandle, const char* label, const void*, std::uint64_t bytes) {
    if (counted(label)) m_live -= static_cast<std::int64_t>(bytes);
  }
  static inline std::int64_t m_live = 0, m_peak = 0;
};

}  // namespace trident
