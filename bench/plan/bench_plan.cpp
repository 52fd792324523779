// The planner's predictions against measurements, in one run: every dp x tp x pp layout of the
// world (and for each its ZeRO, recomputation, sequence-parallel, schedule and micro-batch
// variants) trains a few steps of the model, and beside each the planner's predicted step time
// and peak memory per rank. The machine is calibrated first, inside the same run.
// Prints a JSON line per layout and a summary: the rank correlation of predicted and measured
// step times, how far the planner's first choice is from the measured best, and the largest
// memory error.
//   mpiexec -n 4 bench_plan --model gpt2|mlp [--steps 41] [--cache plan-cache.json]
//                           [--communication-seconds 0]
// --communication-seconds times the calibration's collectives over at least that long
// (plan::CalibrationRequest::communication_seconds).
// Memory is measured from Kokkos's allocation events (core/allocation_peak.hpp): the most a rank held
// while building the trainer and running its first step beyond what it held before. The steps
// after it are timed with no tool listening, round-robin over the layouts, the median of each.
// After every round the collectives are timed again; predicted_over_rounds_ms prices them by their
// median over the rounds (the rest as calibrated at the start), which tells a host whose
// communication changes pace during the run from an error of the model.

#include <trident/core/allocation_peak.hpp>
#include <trident/data/batches.hpp>
#include <trident/data/synthetic.hpp>
#include <trident/gpt2/batch.hpp>
#include <trident/gpt2/spec.hpp>
#include <trident/plan/calibrate.hpp>
#include <trident/plan/estimate.hpp>
#include <trident/train.hpp>
#include <trident/train/choose_layout.hpp>

#include "json_line.hpp"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

namespace {

using Space = Kokkos::DefaultExecutionSpace;
using Trainer = trident::train::Trainer<float, Space>;

std::string text_argument(int argc, char** argv, const char* name, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  return fallback;
}

// The layouts measured: for every factorisation its base (one micro-batch without a pipeline,
// 2 pp micro-batches with one), and one change at a time.
std::vector<trident::plan::Candidate> layouts_of(int world, const trident::nn::ModelSpec& spec, std::int64_t batch) {
  std::vector<trident::plan::Candidate> result;
  const int layers = static_cast<int>(spec.layers.size());
  for (int tp = 1; tp <= world; ++tp) {
    if (world % tp || !trident::plan::tensor_parallel_fits(spec, tp)) continue;
    for (int pp = 1; pp <= world / tp; ++pp) {
      if ((world / tp) % pp || pp > layers) continue;
      const int dp = world / tp / pp;
      if (batch % dp) continue;
      const std::int64_t replica = batch / dp;
      trident::plan::Candidate base;
      base.dp = dp, base.tp = tp, base.pp = pp;
      base.micro_batch = pp == 1 ? replica : (replica % (2 * pp) == 0 ? replica / (2 * pp) : replica / pp);
      result.push_back(base);
      auto variant = [&](auto change) {
        trident::plan::Candidate c = base;
        change(c);
        result.push_back(c);
      };
      if (dp > 1) {
        variant([](auto& c) { c.zero_stage = 1; });
        variant([](auto& c) { c.zero_stage = 3; });
      }
      variant([](auto& c) { c.recompute = true; });
      if (tp > 1) variant([](auto& c) { c.sequence_parallel = true; });
      if (pp > 1) {
        const std::int64_t m = replica / base.micro_batch;
        if (m >= pp) variant([](auto& c) { c.schedule = "zb"; });
        if (layers >= 2 * pp && m % pp == 0)
          variant([](auto& c) {
            c.schedule = "interleaved";
            c.virtual_stages = 2;
          });
        variant([](auto& c) { c.schedule = "gpipe"; });
      }
      if (base.micro_batch % 2 == 0) variant([](auto& c) { c.micro_batch /= 2; });
    }
  }
  return result;
}

double max_over(const trident::comm::Communicator& world, double value) {
  double result = value;
  MPI_Allreduce(&value, &result, 1, MPI_DOUBLE, MPI_MAX, world.mpi());
  return result;
}

// Spearman's rank correlation (no ties expected in continuous times).
double rank_correlation(const std::vector<double>& a, const std::vector<double>& b) {
  auto ranks = [](const std::vector<double>& x) {
    std::vector<std::size_t> order(x.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](std::size_t i, std::size_t j) { return x[i] < x[j]; });
    std::vector<double> r(x.size());
    for (std::size_t k = 0; k < order.size(); ++k) r[order[k]] = static_cast<double>(k);
    return r;
  };
  const auto ra = ranks(a), rb = ranks(b);
  double d2 = 0;
  for (std::size_t i = 0; i < ra.size(); ++i) d2 += (ra[i] - rb[i]) * (ra[i] - rb[i]);
  const double n = static_cast<double>(ra.size());
  return 1 - 6 * d2 / (n * (n * n - 1));
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  Kokkos::initialize(argc, argv);
  trident::AllocationPeak::install();
  {
    const std::string model = text_argument(argc, argv, "--model", "gpt2");
    const int steps = std::stoi(text_argument(argc, argv, "--steps", "41"));
    const std::string cache = text_argument(argc, argv, "--cache", "");
    const double communication_seconds = std::stod(text_argument(argc, argv, "--communication-seconds", "0"));
    const trident::comm::Communicator world(MPI_COMM_WORLD, "world");
    Space space;

    // The two models: a GPT-2 and the surrogate's MLP.
    trident::gpt2::Gpt2Config config;
    config.layers = 4, config.heads = 4, config.hidden = 128, config.seq = 64, config.vocab = 512;
    const bool gpt = model == "gpt2";
    const trident::nn::ModelSpec spec =
        gpt ? trident::gpt2::gpt2_spec(config)
            : trident::nn::megatron_pairs(trident::nn::sequential(
                  {trident::nn::linear(16, 1024), trident::nn::gelu(), trident::nn::linear(1024, 1024),
                   trident::nn::gelu(), trident::nn::linear(1024, 1)},
                  trident::nn::Loss::mean_squared_error));
    const std::int64_t batch = gpt ? 16 : 512;  // samples
    const std::int64_t rows = batch * trident::nn::rows_per_sample(spec);
    trident::plan::Workload work{spec, batch, gpt ? 8.0 : 4.0 * (16 + 1)};  // the batch's bytes per row

    const auto candidates = layouts_of(world.size(), spec, batch);
    std::vector<int> tps;
    std::vector<std::int64_t> mbs;
    for (const auto& c : candidates) {
      if (std::find(tps.begin(), tps.end(), c.tp) == tps.end()) tps.push_back(c.tp);
      if (std::find(mbs.begin(), mbs.end(), c.micro_batch) == mbs.end()) mbs.push_back(c.micro_batch);
    }
    const auto calibration_start = std::chrono::steady_clock::now();
    trident::plan::CalibrationRequest request = trident::plan::calibration_request(spec, mbs, tps);
    request.communication_seconds = communication_seconds;
    const trident::plan::Machine machine = trident::plan::calibrate_cached<float>(space, world, request, cache);
    const double calibration_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - calibration_start).count();

    // The batch: synthetic tokens, or random features and targets.
    trident::data::SyntheticMarkovLanguage language(config.vocab, 4, 1);
    auto make_batch = [&]() {
      if (gpt) {
        trident::data::BatchLoader loader(language.generate(rows * 2 + 1), batch, config.seq);
        return trident::gpt2::gpt2_token_batch<float, Space>(loader.batch(0), false);
      }
      Kokkos::View<float**, Kokkos::LayoutRight, Kokkos::HostSpace> x("x", rows, 16), y("y", rows, 1);
      for (std::int64_t r = 0; r < rows; ++r) {
        for (int j = 0; j < 16; ++j) x(r, j) = static_cast<float>(std::sin(0.1 * r + j));
        y(r, 0) = static_cast<float>(std::cos(0.05 * r));
      }
      trident::train::Batch<float, Space> b;
      b.inputs = trident::train::to_device<Space>(x);
      b.targets.values = trident::train::to_device<Space>(y);
      return b;
    };

    // Every layout is built, and its peak memory measured over its first step, in turn; then the
    // steps are timed round-robin over all of them, so that a slow spell of the machine lands on
    // every layout alike, and each layout's time is its median step.
    std::vector<double> predicted, measured, predicted_memory, measured_memory;
    std::vector<trident::plan::Estimate> estimates;
    std::vector<std::unique_ptr<Trainer>> trainers;
    const auto b = make_batch();
    for (const auto& candidate : candidates) {
      estimates.push_back(trident::plan::estimate(work, candidate, machine, true));
      trident::plan::Candidate layout = candidate;
      layout.stage_layers = estimates.back().stage_layers;
      const std::int64_t baseline = trident::AllocationPeak::live();
      trident::AllocationPeak::reset_peak();
      trident::train::TrainerSettings settings;
      settings.seed = 1;
      trainers.push_back(std::make_unique<Trainer>(space, world, spec, trident::train::to_layout(layout), settings));
      trainers.back()->step(b, 1e-3);  // every buffer allocated
      predicted.push_back(estimates.back().step_seconds);
      predicted_memory.push_back(estimates.back().peak_bytes);
      measured_memory.push_back(max_over(world, static_cast<double>(trident::AllocationPeak::peak() - baseline)));
    }
    // Kokkos names every kernel it launches while a tool listens: time without listening.
    trident::AllocationPeak::uninstall();
    // Between rounds the collectives and the message are timed again: where the host's
    // communication changes pace over minutes, their median over the rounds prices the pace the
    // steps met, as the steps' median measures it.
    std::vector<std::vector<double>> times(candidates.size());
    trident::plan::CommunicationTimes over_rounds;
    for (int s = 0; s < steps; ++s) {
      for (std::size_t i = 0; i < candidates.size(); ++i) {
        world.barrier();
        const auto start = std::chrono::steady_clock::now();
        trainers[i]->step(b, 1e-3);
        times[i].push_back(
            max_over(world, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()));
      }
      trident::plan::time_communication<float>(space, world, trident::plan::CalibrationRequest{}.repeats, over_rounds);
    }
    for (auto& t : times) {
      std::sort(t.begin(), t.end());
      measured.push_back(t[t.size() / 2]);
    }
    trident::plan::Machine machine_over_rounds = machine;
    trident::plan::fit_communication(over_rounds, machine_over_rounds);
    std::vector<double> predicted_over_rounds;
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      trident::plan::Candidate layout = candidates[i];
      layout.stage_layers = estimates[i].stage_layers;  // the cuts that ran
      predicted_over_rounds.push_back(trident::plan::estimate(work, layout, machine_over_rounds, true).step_seconds);
    }
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      const trident::plan::Estimate& estimate = estimates[i];
      trident::plan::Candidate layout = candidates[i];
      layout.stage_layers = estimate.stage_layers;
      const double step_s = measured[i], peak = measured_memory[i];
      if (world.rank() == 0)
        trident_bench::print_json<Space>(
            "{\"bench\":\"plan\",\"model\":\"%s\",\"ranks\":%d,\"layout\":\"%s\",\"stage_layers\":\"%s\","
            "\"predicted_ms\":%.3f,\"predicted_over_rounds_ms\":%.3f,"
            "\"measured_ms\":%.3f,\"predicted_mib\":%.3f,\"measured_mib\":%.3f,\"memory_error\":%.3f,"
            "\"predicted_compute_ms\":%.3f,\"predicted_bubble_ms\":%.3f,\"predicted_dp_ms\":%.3f,"
            "\"predicted_tp_ms\":%.3f,\"predicted_pp_ms\":%.3f,\"predicted_optimizer_ms\":%.3f,"
            "\"predicted_overhead_ms\":%.3f,\"predicted_cold_share\":%.3f}\n",
            model.c_str(), world.size(), layout.describe().c_str(), layout.describe_cuts().c_str(),
            estimate.step_seconds * 1e3, predicted_over_rounds[i] * 1e3, step_s * 1e3, estimate.peak_bytes / (1 << 20),
            peak / (1 << 20), estimate.peak_bytes / peak - 1, estimate.compute_seconds * 1e3,
            estimate.bubble_seconds * 1e3, estimate.data_parallel_seconds * 1e3, estimate.tensor_comm_seconds * 1e3,
            estimate.pipeline_comm_seconds * 1e3, estimate.optimizer_seconds * 1e3, estimate.overhead_seconds * 1e3,
            estimate.cold_share);
    }
    // The planner's first choice among these: the fastest predicted, at equal time the smallest.
    const auto first_choice = [&](const std::vector<double>& times) {
      std::size_t first = 0;
      for (std::size_t i = 1; i < times.size(); ++i)
        if (std::make_pair(times[i], predicted_memory[i]) < std::make_pair(times[first], predicted_memory[first]))
          first = i;
      return first;
    };
    const std::size_t first = first_choice(predicted), first_over_rounds = first_choice(predicted_over_rounds);
    const double best = *std::min_element(measured.begin(), measured.end());
    double worst_memory = 0;
    for (std::size_t i = 0; i < predicted_memory.size(); ++i)
      worst_memory = std::max(worst_memory, std::fabs(predicted_memory[i] / measured_memory[i] - 1));
    if (world.rank() == 0)
      trident_bench::print_json<Space>(
          "{\"bench\":\"plan_summary\",\"model\":\"%s\",\"ranks\":%d,\"layouts\":%zu,\"rank_correlation\":%.3f,"
          "\"first_choice\":\"%s\",\"first_choice_vs_best\":%.3f,\"rank_correlation_over_rounds\":%.3f,"
          "\"first_choice_over_rounds_vs_best\":%.3f,\"worst_memory_error\":%.3f,\"calibration_s\":%.2f,"
          "\"waiting_rank_share\":%.3f,\"reduction_overlap\":%.3f,\"cache_mib\":%.1f,\"core_groups\":\"%s\"}\n",
          model.c_str(), world.size(), candidates.size(), rank_correlation(predicted, measured),
          candidates[first].describe().c_str(), measured[first] / best - 1,
          rank_correlation(predicted_over_rounds, measured), measured[first_over_rounds] / best - 1, worst_memory,
          calibration_s, machine.waiting_rank_share.value_or(0.0), machine.reduction_overlap.value_or(1.0),
          machine.cache_bytes / (1 << 20), machine.binding.describe().c_str());
  }
  trident::AllocationPeak::uninstall();
  Kokkos::finalize();
  MPI_Finalize();
  return 0;
}
