#pragma once
// Plans a layout for AutoLayout (train/auto_layout.hpp): calibrates the machine, searches every
// layout of the world and returns the fastest that fits, with the ranking as text. Collective
// over the world; every rank plans the same layout.

#include <trident/comm/communicator.hpp>
#include <trident/core/error.hpp>
#include <trident/core/half_precision.hpp>
#include <trident/nn/spec.hpp>
#include <trident/plan/calibrate.hpp>
#include <trident/plan/search.hpp>
#include <trident/train/auto_layout.hpp>
#include <trident/train/layout.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace trident::train {

struct LayoutChoice {
  Layout layout;
  plan::Plans plans;
  plan::Machine machine;
  std::string report;
};

inline Layout to_layout(const plan::Candidate& c) {
  Layout layout;
  layout.dp = c.dp;
  layout.tp = c.tp;
  layout.pp = c.pp;
  layout.sequence_parallel = c.sequence_parallel;
  layout.schedule = c.schedule;
  layout.virtual_stages = c.virtual_stages;
  layout.micro_batch = c.micro_batch;
  layout.zero_stage = c.zero_stage;
  layout.recompute = c.recompute;
  layout.stage_layers = c.stage_layers;
  layout.order = c.order;
  return layout;
}

inline std::string mebibytes(double bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f MiB", bytes / (1 << 20));
  return text;
}

// The first `show` plans, one line each, and why the first beats the second.
inline std::string plans_report(const plan::Plans& plans, int show) {
  std::string text = "planned " + std::to_string(plans.considered) + " layouts (" + std::to_string(plans.too_large) +
                     " over the memory cap):\n";
  const std::size_t n = std::min(plans.ranked.size(), static_cast<std::size_t>(std::max(show, 1)));
  for (std::size_t i = 0; i < n; ++i) {
    const auto& p = plans.ranked[i];
    char line[256];
    std::snprintf(line, sizeof line, "  %zu. %-58s step %9.3f ms  memory/rank %s  bubble %.1f%%\n", i + 1,
                  p.layout.describe().c_str(), p.estimate.step_seconds * 1e3, mebibytes(p.estimate.peak_bytes).c_str(),
                  100 * p.estimate.bubble_seconds / p.estimate.step_seconds);
    text += line;
  }
  if (plans.ranked.size() >= 2)
    text +=
        "  the first " + plan::why_faster(plans.ranked[0].estimate, plans.ranked[1].estimate) + " against the second\n";
  return text;
}

// Calibrates, searches and returns the fastest layout that fits, for a Trainer<Scalar>: its
// activations are priced at sizeof(Scalar) bytes (16-bit in mixed precision), the parameters,
// gradients and optimizer in the compute type the machine is calibrated in. Collective over
// `world`.
template <class Scalar, class ExecutionSpace>
LayoutChoice choose_layout(const ExecutionSpace& space, const comm::Communicator& world, const nn::ModelSpec& spec,
                           const AutoLayout& automatic) {
  const char* op = "trident::train::choose_layout";
  require_argument(automatic.global_batch >= 1, op, ": AutoLayout::global_batch must be the samples of a step, got ",
                   automatic.global_batch);
  require_argument(automatic.bucket_mb > 0 && std::isfinite(automatic.bucket_mb), op,
                   ": AutoLayout::bucket_mb must be a positive size in MiB, got ", automatic.bucket_mb);
  // Calibrate the shapes the search prices: every tensor-parallel size, every replica's micro-batches.
  const std::vector<int> tp_sizes = plan::searched_tp_sizes(spec, world.size(), world.size());
  std::vector<std::int64_t> micro_batches;
  for (int dp = 1; dp <= world.size(); ++dp)
    if (world.size() % dp == 0 && automatic.global_batch % dp == 0)
      for (std::int64_t mb : plan::searched_micro_batches(automatic.global_batch / dp))
        if (std::find(micro_batches.begin(), micro_batches.end(), mb) == micro_batches.end())
          micro_batches.push_back(mb);
  LayoutChoice choice;
  plan::CalibrationRequest request = plan::calibration_request(spec, micro_batches, tp_sizes);
  request.communication_seconds = automatic.communication_seconds;
  choice.machine = plan::calibrate_cached<compute_t<Scalar>>(space, world, request, automatic.calibration_cache);
  choice.machine.memory_bytes = automatic.memory_bytes;
  const bool reduced = automatic.gradient_precision != data_parallel::GradientPrecision::full;
  plan::Workload work{spec,
                      automatic.global_batch,
                      0,
                      reduced ? 2.0 : 0.0,
                      static_cast<double>(sizeof(Scalar)),
                      static_cast<double>(sizeof(compute_t<Scalar>)),
                      automatic.bucket_mb * 1024 * 1024};
  choice.plans = plan::search(work, world.size(), choice.machine, automatic.space);
  require_argument(!choice.plans.ranked.empty(), op, ": no layout of ", world.size(), " ranks fits ",
                   automatic.memory_bytes > 0 ? "the memory cap of " + mebibytes(automatic.memory_bytes) : "the model",
                   " (", choice.plans.considered, " considered)");
  choice.layout = to_layout(choice.plans.ranked.front().layout);
  choice.layout.gradient_precision = automatic.gradient_precision;
  choice.layout.bucket_mb = automatic.bucket_mb;
  const int node_ranks = std::min(world.size(), choice.machine.devices_per_node);
  choice.report = plans_report(choice.plans, automatic.show) +
                  plan::core_sharing_note(node_ranks, choice.machine.cores, choice.machine.binding,
                                          (world.size() + node_ranks - 1) / node_ranks);
  return choice;
}

}  // namespace trident::train
