#pragma once
// Timing helpers of calibration: one timing, the median of several, and the mean over the ranks,
// so that every rank plans with the same numbers.

#include <trident/comm/allreduce.hpp>
#include <trident/comm/communicator.hpp>

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <utility>
#include <vector>

namespace trident::plan::detail {

// The geometric mean of each column of `passes` (one row of times per pass).
inline std::vector<double> geometric_means(const std::vector<std::vector<double>>& passes) {
  std::vector<double> result(passes.front().size(), 0.0);
  for (const auto& pass : passes)
    for (std::size_t i = 0; i < result.size(); ++i) result[i] += std::log(pass[i]) / static_cast<double>(passes.size());
  for (double& x : result) x = std::exp(x);
  return result;
}

// How long one call of `run` takes.
template <class Run>
double seconds_of(Run&& run) {
  const auto start = std::chrono::steady_clock::now();
  run();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

inline double median_of(std::vector<double> times) {
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// The median of `repeats` timings of `run` after a warm-up (first touch, library start-up),
// `before` run untimed ahead of each.
template <class Before, class Run>
double median_seconds(int repeats, Before&& before, Run&& run) {
  std::vector<double> times;
  run();
  for (int i = 0; i < repeats; ++i) {
    before(i);
    times.push_back(seconds_of(run));
  }
  return median_of(std::move(times));
}

// The mean of `value` over the ranks of `world`, the same on every rank.
inline double mean_over(const comm::Communicator& world, double value) {
  const double sum = comm::allreduce_value(world, value);
  return sum / world.size();
}

// The mean over the world of each rank's median timing of `run`; every rank starts each timing
// together.
template <class Run>
double timed_on_all(const comm::Communicator& world, int repeats, Run&& run) {
  return mean_over(world, median_seconds(
                              repeats, [&](int) { world.barrier(); }, run));
}

}  // namespace trident::plan::detail
