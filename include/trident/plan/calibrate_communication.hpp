#pragma once
// Calibration of the collectives and of the point-to-point message: all-reduce, all-gather and
// reduce-scatter over consecutive groups of every size that divides the world (tensor-parallel
// groups are consecutive), blocking and posted nonblocking (the data-parallel engine's way), and
// a message from each even rank to the next, as pipeline neighbours exchange; each fitted as
// alpha + bytes / beta.
//
// The times are taken in passes, each over every kind, group and size once, and priced by their
// median over the passes. Passes can be taken far apart and pooled (time_communication, then
// fit_communication): where the host's communication changes pace over minutes, a pool taken over
// the same minutes as a run's steps prices what those steps met.

#include <trident/comm/allgather.hpp>
#include <trident/comm/allreduce.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/comm/link_cost.hpp>
#include <trident/comm/point_to_point.hpp>
#include <trident/comm/reduce_scatter.hpp>
#include <trident/plan/machine.hpp>
#include <trident/plan/timing.hpp>

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iterator>
#include <map>
#include <tuple>
#include <vector>

namespace trident::plan {

// The passes calibrate() takes: a slow spell of the machine lands on one of them, and the median
// leaves it out.
inline constexpr int communication_passes = 3;

// Times per pass: for each collective (kind, group size, posted or not) and for the message, the
// bytes of each size and one row of seconds per pass.
struct CommunicationTimes {
  struct Series {
    std::vector<double> bytes;
    std::vector<std::vector<double>> passes;
  };
  std::map<std::tuple<CollectiveKind, int, bool>, Series> collectives;
  Series point_to_point;
  int passes() const { return static_cast<int>(point_to_point.passes.size()); }
};

namespace detail {

inline constexpr double communication_sizes[] = {16e3, 256e3, 2e6};

// alpha + bytes / beta through measured times; times that do not grow with the bytes (a
// noisy machine, or latency far above the transfer time) give their mean as a latency alone.
inline CollectiveFit fitted(const std::vector<double>& bytes, const std::vector<double>& seconds) {
  double mean_b = 0, mean_t = 0;
  for (std::size_t i = 0; i < bytes.size(); ++i) mean_b += bytes[i], mean_t += seconds[i];
  mean_b /= static_cast<double>(bytes.size());
  mean_t /= static_cast<double>(seconds.size());
  double covariance = 0;
  for (std::size_t i = 0; i < bytes.size(); ++i) covariance += (bytes[i] - mean_b) * (seconds[i] - mean_t);
  if (!(covariance > 0)) return CollectiveFit{mean_t, 1e30};  // JSON has no infinity
  const comm::LinkCost fit = comm::fit_link_cost(bytes, seconds);
  return CollectiveFit{fit.latency_s, fit.bytes_per_s};
}

// Each size's median over the passes.
inline std::vector<double> medians_over_passes(const std::vector<std::vector<double>>& passes) {
  std::vector<double> result;
  for (std::size_t i = 0; i < passes.front().size(); ++i) {
    std::vector<double> column;
    for (const auto& pass : passes) column.push_back(pass[i]);
    result.push_back(median_of(std::move(column)));
  }
  return result;
}

}  // namespace detail

// Adds one pass over every collective and the message to `times`, each case timed `repeats` times
// with all ranks at once. Collective over `world`; every rank adds the same times.
template <class Scalar, class ExecutionSpace>
void time_communication(const ExecutionSpace& space, const comm::Communicator& world, int repeats,
                        CommunicationTimes& times) {
  using vector = Kokkos::View<Scalar*, typename ExecutionSpace::memory_space>;
  if (world.size() < 2) return;
  for (int g = 2; g <= world.size(); ++g) {
    if (world.size() % g != 0) continue;
    const comm::Communicator group = world.split(world.rank() / g, world.rank(), "trident::plan::calibrate");
    const auto count_of = [&](double size) { return static_cast<std::int64_t>(size / sizeof(Scalar)) / g * g; };
    const auto time_sizes = [&](CollectiveKind kind, bool posted, auto&& run) {
      CommunicationTimes::Series& series = times.collectives[{kind, g, posted}];
      series.bytes.clear();
      std::vector<double> pass;
      for (double size : detail::communication_sizes) {
        vector whole("trident::plan::calibrate::whole", count_of(size)),
            part("trident::plan::calibrate::part", count_of(size) / g);
        series.bytes.push_back(static_cast<double>(count_of(size) * sizeof(Scalar)));
        pass.push_back(detail::timed_on_all(world, repeats, [&] { run(whole, part); }));
      }
      series.passes.push_back(pass);
    };
    time_sizes(CollectiveKind::all_reduce, false,
               [&](vector& whole, vector&) { comm::allreduce(space, group, whole); });
    time_sizes(CollectiveKind::all_gather, false,
               [&](vector& whole, vector& part) { comm::allgather(space, group, part, whole); });
    time_sizes(CollectiveKind::reduce_scatter, false,
               [&](vector& whole, vector& part) { comm::reduce_scatter(space, group, whole, part); });
    // The data-parallel engine posts its reductions and waits later: another path in MPI.
    time_sizes(CollectiveKind::all_reduce, true,
               [&](vector& whole, vector&) { comm::iallreduce(space, group, whole).wait(); });
    time_sizes(CollectiveKind::reduce_scatter, true,
               [&](vector& whole, vector& part) { comm::ireduce_scatter(space, group, whole, part).wait(); });
  }
  const int peer = world.rank() ^ 1;
  const bool paired = peer < world.size();
  std::vector<double> pass;
  times.point_to_point.bytes.assign(std::begin(detail::communication_sizes), std::end(detail::communication_sizes));
  for (double size : detail::communication_sizes) {
    vector message("trident::plan::calibrate::message", static_cast<std::int64_t>(size / sizeof(Scalar)));
    pass.push_back(detail::timed_on_all(world, repeats,
                                        [&] {
                                          if (!paired) return;
                                          if (world.rank() % 2 == 0) {
                                            comm::send(space, world, message, peer);
                                            comm::recv(space, world, message, peer);
                                          } else {
                                            comm::recv(space, world, message, peer);
                                            comm::send(space, world, message, peer);
                                          }
                                        }) /
                   2);
  }
  times.point_to_point.passes.push_back(pass);
}

// Passes of time_communication, at least `passes` and more until `seconds` have gone by since the
// first began (the longest time any rank has seen go by decides, so every rank stops after the
// same pass): on a host whose communication changes pace every few tens of seconds, a few
// seconds of passes meet one pace or the other, and the median over a minute of them repeats
// from one calibration to the next. Collective over `world`.
template <class Scalar, class ExecutionSpace>
CommunicationTimes time_communication_for(const ExecutionSpace& space, const comm::Communicator& world, int repeats,
                                          int passes, double seconds) {
  require_communication_window(seconds, "trident::plan::time_communication_for");
  CommunicationTimes times;
  if (world.size() < 2) return times;
  const auto start = std::chrono::steady_clock::now();
  for (int pass = 0;; ++pass) {
    if (pass >= passes) {
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (comm::allreduce_value(world, elapsed, comm::ReduceOp::max) >= seconds) break;
    }
    time_communication<Scalar>(space, world, repeats, times);
  }
  return times;
}

// A node's links as its measured all-reduce over the most ranks; none measured: a fast default.
inline void take_links_from_collectives(Machine& machine) {
  int widest = 0;
  for (const auto& entry : machine.collectives)
    if (entry.first.first == CollectiveKind::all_reduce) widest = std::max(widest, entry.first.second);
  if (widest > 0) {
    const CollectiveFit& reduce = machine.collectives.at({CollectiveKind::all_reduce, widest});
    machine.links.intra = comm::LinkCost{reduce.latency_s, reduce.bytes_per_s};
    machine.links.inter = machine.links.intra;
  } else if (machine.links.intra.bytes_per_s <= 0) {
    machine.links.intra = machine.links.inter = comm::LinkCost{1e-6, 1e12};
  }
}

// Prices the collectives and the message of `machine` by the median of each size over the passes
// of `times`, and the links of a node by the all-reduce over the most ranks.
inline void fit_communication(const CommunicationTimes& times, Machine& machine) {
  for (const auto& [key, series] : times.collectives) {
    const auto [kind, group, posted] = key;
    const CollectiveFit fit = detail::fitted(series.bytes, detail::medians_over_passes(series.passes));
    (posted ? machine.nonblocking_collectives : machine.collectives)[{kind, group}] = fit;
  }
  if (!times.point_to_point.passes.empty())
    machine.point_to_point =
        detail::fitted(times.point_to_point.bytes, detail::medians_over_passes(times.point_to_point.passes));
  take_links_from_collectives(machine);
}

}  // namespace trident::plan
