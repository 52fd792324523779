#pragma once
// What the data-parallel tests share: small GPT-2 models, the one-rank reference run, and
// comparisons of parameters and losses.

#include "trident_test.hpp"

#include <trident/comm/communicator.hpp>
#include <trident/data/synthetic.hpp>
#include <trident/gpt2/trainer.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace trident_test {

using Space = Kokkos::DefaultExecutionSpace;
using Trainer = trident::gpt2::Gpt2Trainer<float, Space>;

// L=2 C=32 H=2 T=16 V=61: every tensor a multiple of C, so Ψ = 27,936 divides over 1, 2, 4.
inline trident::gpt2::Gpt2Config even_config() {
  return {2, 2, 32, 16, 61};
}
// C=33: Ψ = 29,601 is odd, so the shards of 2 and 4 ranks are uneven.
inline trident::gpt2::Gpt2Config uneven_config() {
  return {2, 3, 33, 16, 61};
}

constexpr std::int64_t global_batch = 8;
constexpr std::uint64_t seed = 5;

// Two micro-batches per replica at every dp, and a clip threshold low enough to bite.
inline trident::gpt2::TrainerSettings settings_for(int dp, int seq = 16) {
  trident::gpt2::TrainerSettings s;
  s.batch = global_batch;
  s.micro_batch = global_batch / (2 * dp);
  s.seq = seq;
  s.grad_clip = 0.5;
  s.schedule = {3e-3, 2, 20, 0.1};
  return s;
}

inline trident::data::BatchLoader make_data(const trident::gpt2::Gpt2Config& config) {
  trident::data::SyntheticMarkovLanguage language(config.vocab, 3, 11);
  return trident::data::BatchLoader(language.generate(1 << 14), global_batch, config.seq);
}

inline trident::comm::Communicator world() {
  return trident::comm::Communicator(MPI_COMM_WORLD, "dp");
}

inline trident::data_parallel::DataParallelSettings zero(int stage, double bucket_mb = 25.0) {
  trident::data_parallel::DataParallelSettings s;
  s.zero_stage = stage;
  s.bucket_mb = bucket_mb;
  return s;
}

inline std::vector<float> to_host(const Kokkos::View<float*, Kokkos::LayoutRight, Space::memory_space>& view) {
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), view);
  return std::vector<float>(host.data(), host.data() + host.size());
}

struct Run {
  std::vector<double> losses, norms;
  std::vector<float> parameters;  // flat, in the store's order
};

// The one-rank trainer on the whole global batch.
inline Run reference_run(const trident::gpt2::Gpt2Config& config, int steps) {
  const auto data = make_data(config);
  Trainer trainer(Space(), config, settings_for(1), seed);
  Run run;
  for (int s = 0; s < steps; ++s) {
    const auto report = trainer.train_step(data);
    run.losses.push_back(report.loss);
    run.norms.push_back(report.grad_norm);
  }
  run.parameters = to_host(trainer.model().parameters().values());
  return run;
}

inline Run continue_run(Trainer& trainer, const trident::data::BatchLoader& data, int steps) {
  Run run;
  for (int s = 0; s < steps; ++s) {
    const auto report = trainer.train_step(data);
    run.losses.push_back(report.loss);
    run.norms.push_back(report.grad_norm);
  }
  run.parameters = to_host(trainer.parallel()->full_values());
  return run;
}

// Normwise relative difference of the whole parameter vector.
inline double model_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    norm += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);
}

// The largest normwise relative difference of any one tensor, except those whose name ends
// with `except` (empty: none).
inline double worst_tensor_difference(const trident::ParameterStore<float, Space::memory_space>& store,
                                      const std::vector<float>& a, const std::vector<float>& b,
                                      const std::string& except = "") {
  double worst = 0;
  for (const auto& t : store.tensors()) {
    if (!except.empty() && t.name.size() >= except.size() &&
        t.name.compare(t.name.size() - except.size(), except.size(), except) == 0)
      continue;
    double diff = 0, norm = 0;
    for (std::int64_t i = t.offset; i < t.offset + t.size(); ++i) {
      const double x = a[static_cast<std::size_t>(i)], y = b[static_cast<std::size_t>(i)];
      diff += (x - y) * (x - y);
      norm += y * y;
    }
    worst = std::max(worst, std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30));
  }
  return worst;
}

inline double worst_relative(const std::vector<double>& a, const std::vector<double>& b) {
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, relative_difference(a[i], b[i]));
  return worst;
}

}  // namespace trident_test
