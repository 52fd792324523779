#pragma once
// Where the time goes: times every Kokkos profiling region through the Kokkos Tools callbacks
// (trident opens one per public operation), so a benchmark reports self time per operator
// without a tool library loaded.

#include <Kokkos_Core.hpp>

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace trident_bench {

class RegionTimer {
 public:
  struct Totals {
    double self_seconds = 0;
    double inclusive_seconds = 0;
    long calls = 0;
  };

  // Installs the callbacks; only one timer may be active at a time.
  RegionTimer() {
    instance() = this;
    Kokkos::Tools::Experimental::set_push_region_callback(&RegionTimer::on_push);
    Kokkos::Tools::Experimental::set_pop_region_callback(&RegionTimer::on_pop);
  }
  ~RegionTimer() {
    Kokkos::Tools::Experimental::set_push_region_callback(nullptr);
    Kokkos::Tools::Experimental::set_pop_region_callback(nullptr);
    instance() = nullptr;
  }
  RegionTimer(const RegionTimer&) = delete;
  RegionTimer& operator=(const RegionTimer&) = delete;

  void reset() { m_totals.clear(); }
  // Regions opened while paused are not timed (pause only between top-level regions).
  void pause() { m_paused = true; }
  void resume() { m_paused = false; }
  const std::map<std::string, Totals>& totals() const { return m_totals; }

 private:
  using clock = std::chrono::steady_clock;
  struct Open {
    std::string name;
    clock::time_point start;
    double child_seconds = 0;
  };

  static RegionTimer*& instance() {
    static RegionTimer* timer = nullptr;
    return timer;
  }
  // A device runs kernels after their launch returns: there each region boundary waits for the
  // work queued so far, so a region's time is its kernels' and not their launches'.
  static void wait_on_device() {
    if (!Kokkos::SpaceAccessibility<Kokkos::HostSpace, Kokkos::DefaultExecutionSpace::memory_space>::accessible)
      Kokkos::fence();
  }
  static void on_push(const char* name) {
    if (instance()->m_paused) return;
    wait_on_device();
    instance()->m_open.push_back({name, clock::now(), 0});
  }
  static void on_pop() {
    auto& self = *instance();
    if (self.m_paused || self.m_open.empty()) return;
    wait_on_device();
    const Open region = self.m_open.back();
    self.m_open.pop_back();
    const double seconds = std::chrono::duration<double>(clock::now() - region.start).count();
    auto& t = self.m_totals[region.name];
    t.inclusive_seconds += seconds;
    t.self_seconds += seconds - region.child_seconds;
    t.calls += 1;
    if (!self.m_open.empty()) self.m_open.back().child_seconds += seconds;
  }

  bool m_paused = false;
  std::vector<Open> m_open;
  std::map<std::string, Totals> m_totals;
};

}  // namespace trident_bench
