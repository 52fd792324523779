#pragma once
// The search: every layout of a world of ranks for a model, estimated, pruned by memory and
// ranked by predicted step time.
//
// It enumerates the dp x tp x pp factorisations of the world (tp within what the model's
// parallel layers split evenly), the micro-batch sizes that divide a replica's samples, the
// schedules and virtual stages, ZeRO stages, recomputation and sequence parallelism; the stage
// cuts of each come from dynamic programming over the layers' costs (partition_layers). Every
// candidate is first timed with the pipeline's fill and drain bound; the best are then replayed
// through their schedule. A world of 1,024 ranks and a 96-layer model is planned in seconds.

#include <trident/core/error.hpp>
#include <trident/plan/estimate.hpp>
#include <trident/plan/search_space.hpp>

#include <algorithm>
#include <cstdint>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

namespace trident::plan {

struct PlannedLayout {
  Candidate layout;
  Estimate estimate;
};

struct Plans {
  std::vector<PlannedLayout> ranked;  // fitting layouts, fastest first
  std::int64_t considered = 0;        // candidates estimated
  std::int64_t too_large = 0;         // of which pruned by the memory cap
};

namespace detail {

inline std::vector<int> divisors(std::int64_t n) {
  std::vector<int> result;
  for (std::int64_t d = 1; d <= n; ++d)
    if (n % d == 0) result.push_back(static_cast<int>(d));
  return result;
}

}  // namespace detail

// The tensor-parallel sizes the search tries on `world` ranks: divisors up to `max_tp` that
// split every parallel layer of `spec` evenly.
inline std::vector<int> searched_tp_sizes(const nn::ModelSpec& spec, int world, int max_tp) {
  std::vector<int> sizes;
  for (int tp : detail::divisors(world))
    if (tp <= max_tp && tensor_parallel_fits(spec, tp)) sizes.push_back(tp);
  return sizes;
}

// The micro-batches the search tries for a replica of `replica` samples: the powers of two that
// divide it, and the whole share.
inline std::vector<std::int64_t> searched_micro_batches(std::int64_t replica) {
  std::vector<std::int64_t> sizes;
  for (int mb : detail::divisors(replica))
    if (mb == replica || (mb & (mb - 1)) == 0) sizes.push_back(mb);
  return sizes;
}

inline Plans search(const Workload& work, int world, const Machine& machine, const SearchSpace& space = {}) {
  const char* op = "trident::plan::search";
  require_argument(world >= 1, op, ": the world needs at least one rank, got ", world);
  require_argument(work.global_batch >= 1, op, ": the global batch must be >= 1 sample, got ", work.global_batch);
  const int layers = static_cast<int>(work.spec.layers.size());
  const int max_tp = space.max_tp > 0 ? space.max_tp : std::max(machine.devices_per_node, 1);
  Plans plans;
  for (int tp : searched_tp_sizes(work.spec, world, max_tp)) {
    for (int pp : detail::divisors(world / tp)) {
      if (pp > layers) continue;
      const int dp = world / tp / pp;
      if (work.global_batch % dp != 0) continue;
      const std::int64_t replica = work.global_batch / dp;
      for (std::int64_t mb : searched_micro_batches(replica)) {
        if (space.max_micro_batch > 0 && mb > space.max_micro_batch) continue;
        const int m = static_cast<int>(replica / mb);
        std::vector<std::pair<std::string, int>> schedules;
        if (pp == 1) {
          schedules.push_back({"1f1b", 1});
        } else {
          for (const auto& name : space.schedules) {
            if (name == "interleaved") {
              for (int v = 2; v <= space.max_virtual_stages; ++v)
                if (pp * v <= layers && m % pp == 0) schedules.push_back({name, v});
            } else if (name != "zb" || m >= pp) {
              schedules.push_back({name, 1});
            }
          }
        }
        for (const auto& [schedule, v] : schedules)
          for (int zero : space.zero_stages) {
            if (dp == 1 && zero > 0) continue;  // nothing to shard
            if (machine.runtime == Runtime::megatron && zero > 1) continue;
            for (int recompute = 0; recompute <= (space.try_recompute ? 1 : 0); ++recompute)
              for (int sp = 0; sp <= (space.try_sequence_parallel && tp > 1 ? 1 : 0); ++sp) {
                Candidate c;
                c.dp = dp, c.tp = tp, c.pp = pp, c.schedule = schedule, c.virtual_stages = v;
                c.order = space.mesh_order;
                c.micro_batch = mb, c.zero_stage = zero, c.recompute = recompute != 0;
                c.sequence_parallel = sp != 0;
                // sequence parallelism splits a micro-batch's rows over the group
                if (c.sequence_parallel && (mb * nn::rows_per_sample(work.spec)) % tp != 0) continue;
                Estimate e = estimate(work, c, machine, false);
                ++plans.considered;
                if (!e.fits) {
                  ++plans.too_large;
                  continue;
                }
                c.stage_layers = e.stage_layers;
                plans.ranked.push_back({c, e});
              }
          }
      }
    }
  }
  // Faster first; at equal time less memory, then the simpler layout.
  const auto faster = [](const PlannedLayout& a, const PlannedLayout& b) {
    const auto key = [](const PlannedLayout& p) {
      return std::make_tuple(p.estimate.step_seconds, p.estimate.peak_bytes, p.layout.zero_stage, p.layout.pp,
                             p.layout.tp, p.layout.recompute, p.layout.sequence_parallel);
    };
    return key(a) < key(b);
  };
  std::sort(plans.ranked.begin(), plans.ranked.end(), faster);
  const std::size_t replay = std::min(plans.ranked.size(), static_cast<std::size_t>(std::max(space.replay, 0)));
  for (std::size_t i = 0; i < replay; ++i)
    plans.ranked[i].estimate = estimate(work, plans.ranked[i].layout, machine, true);
  std::stable_sort(plans.ranked.begin(), plans.ranked.begin() + static_cast<std::ptrdiff_t>(replay), faster);
  return plans;
}

// Why `winner` beats `other`: the parts of the step where it saves the most, "bubble -3.1 ms,
// data-parallel +0.4 ms", or the memory when only the winner fits.
inline std::string why_faster(const Estimate& winner, const Estimate& other) {
  struct Part {
    const char* name;
    double saved;
  };
  std::vector<Part> parts = {
      {"compute", other.compute_seconds - winner.compute_seconds},
      {"bubble", other.bubble_seconds - winner.bubble_seconds},
      {"tensor-parallel communication", other.tensor_comm_seconds - winner.tensor_comm_seconds},
      {"pipeline communication", other.pipeline_comm_seconds - winner.pipeline_comm_seconds},
      {"data-parallel reduction", other.data_parallel_seconds - winner.data_parallel_seconds},
      {"optimizer", other.optimizer_seconds - winner.optimizer_seconds},
  };
  std::sort(parts.begin(), parts.end(), [](const Part& a, const Part& b) { return a.saved > b.saved; });
  std::ostringstream out;
  out.precision(3);
  out << "saves ";
  int shown = 0;
  for (const Part& p : parts) {
    if (p.saved <= 0 || shown == 2) break;
    out << (shown++ ? ", " : "") << p.name << " " << p.saved * 1e3 << " ms";
  }
  if (shown == 0) out << "nothing measurable";
  for (const Part& p : parts)
    if (p.saved < 0 && -p.saved > 0.1 * (other.step_seconds - winner.step_seconds)) {
      out << "; pays " << p.name << " " << -p.saved * 1e3 << " ms";
      break;
    }
  return out.str();
}

}  // namespace trident::plan
