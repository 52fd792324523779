#pragma once
// What the data-parallel tests share: small GPT-2 models trained by train::Trainer, the one-rank
// reference run, and comparisons of parameters and losses.

#include "trident_test.hpp"

#include <trident/comm/communicator.hpp>
#include <trident/data/synthetic.hpp>
#include <trident/gpt2/batch.hpp>
#include <trident/gpt2/spec.hpp>
#include <trident/optim/lr_schedule.hpp>
#include <trident/train.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace trident_test {

using Space = Kokkos::DefaultExecutionSpace;
using Trainer = trident::train::Trainer<float, Space>;
using Tensors = Trainer::Tensors;

// L=2 C=32 H=2 T=16 V=61: every tensor a multiple of C, so Ψ = 27,936 divides over 1, 2, 4.
inline trident::gpt2::Gpt2Config even_config() {
  return {2, 2, 32, 16, 61};
}
// C=33: Ψ = 29,601 is odd, so the shards of 2 and 4 ranks are uneven.
inline trident::gpt2::Gpt2Config uneven_config() {
  return {2, 3, 33, 16, 61};
}

constexpr std::int64_t global_batch = 8;  // sequences per step
constexpr std::uint64_t seed = 5;
inline const trident::optim::CosineSchedule schedule{3e-3, 2, 20, 0.1};

inline trident::comm::Communicator world() {
  return trident::comm::Communicator(MPI_COMM_WORLD, "world");
}
inline trident::comm::Communicator self() {
  return trident::comm::Communicator(MPI_COMM_SELF, "self");
}

// dp replicas at a ZeRO stage, each with two micro-batches of the global batch.
inline trident::train::Layout layout_for(int dp, int zero_stage = 0, double bucket_mb = 25.0) {
  trident::train::Layout layout;
  layout.dp = dp;
  layout.zero_stage = zero_stage;
  layout.bucket_mb = bucket_mb;
  layout.micro_batch = global_batch / (2 * dp);
  return layout;
}

// GPT-2's AdamW, and a clip threshold low enough to bite.
inline trident::train::TrainerSettings settings(std::uint64_t initial_seed = seed) {
  trident::train::TrainerSettings s;
  s.adamw = trident::optim::AdamWSettings::gpt2();
  s.grad_clip = 0.5;
  s.seed = initial_seed;
  return s;
}

inline trident::data::BatchLoader make_data(const trident::gpt2::Gpt2Config& config) {
  trident::data::SyntheticMarkovLanguage language(config.vocab, 3, 11);
  return trident::data::BatchLoader(language.generate(1 << 14), global_batch, config.seq);
}

// The batch of step `step` (from 1): this replica's rows of it (as train_gpt feeds the trainer),
// or with `whole` the global batch, of which the trainer takes its replica's rows.
inline Trainer::batch_type batch_for(const Trainer& trainer, const trident::data::BatchLoader& data, std::int64_t step,
                                     bool whole = false) {
  if (whole) return trident::gpt2::gpt2_token_batch<float, Space>(data.batch(step - 1), false);
  const std::int64_t rows = data.batch_size() / trainer.layout().dp;
  return trident::gpt2::gpt2_token_batch<float, Space>(data.batch(step - 1, trainer.mesh().dp_rank() * rows, rows),
                                                       true);
}

struct Run {
  std::vector<double> losses, norms;
  Tensors parameters;  // the one-rank model's, by name
};

// `steps` more steps of `trainer` on the loader's batches.
inline Run continue_run(Trainer& trainer, const trident::data::BatchLoader& data, int steps, bool whole = false) {
  Run run;
  for (int s = 0; s < steps; ++s) {
    const std::int64_t step = trainer.steps_done() + 1;
    const auto report = trainer.step(batch_for(trainer, data, step, whole), schedule(step));
    run.losses.push_back(report.loss);
    run.norms.push_back(report.grad_norm);
  }
  run.parameters = trainer.global_parameters();
  return run;
}

// The one-rank trainer, alone on this rank, on the whole global batch.
inline Run reference_run(const trident::gpt2::Gpt2Config& config, int steps) {
  Trainer trainer(self(), trident::gpt2::gpt2_spec(config), layout_for(1), settings());
  return continue_run(trainer, make_data(config), steps, true);
}

// Normwise relative difference of `a` from `b` over the tensors `pick` accepts.
template <class Pick>
double normwise_difference(const Tensors& a, const Tensors& b, Pick&& pick) {
  double diff = 0, norm = 0;
  for (const auto& [name, values] : b) {
    if (!pick(name)) continue;
    const auto& other = a.at(name);
    REQUIRE(other.size() == values.size());
    for (std::size_t i = 0; i < values.size(); ++i) {
      diff += (other[i] - values[i]) * (other[i] - values[i]);
      norm += values[i] * values[i];
    }
  }
  return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);
}

// Normwise relative difference of the whole model.
inline double model_difference(const Tensors& a, const Tensors& b) {
  REQUIRE(a.size() == b.size());
  return normwise_difference(a, b, [](const std::string&) { return true; });
}

// The largest normwise relative difference of any one tensor, except those whose name ends
// with `except` (empty: none).
inline double worst_tensor_difference(const Tensors& a, const Tensors& b, const std::string& except = "") {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (const auto& entry : b) {
    const std::string& name = entry.first;
    if (!except.empty() && name.size() >= except.size() &&
        name.compare(name.size() - except.size(), except.size(), except) == 0)
      continue;
    worst = std::max(worst, normwise_difference(a, b, [&](const std::string& n) { return n == name; }));
  }
  return worst;
}

inline double worst_relative(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, relative_difference(a[i], b[i]));
  return worst;
}

}  // namespace trident_test
