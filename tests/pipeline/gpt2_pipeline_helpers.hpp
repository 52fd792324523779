#pragma once
// What the pipeline-parallel GPT-2 tests share: a small model, its data, the one-rank run they
// compare against, and comparisons of named tensors between a stage and the one-rank model.
// The whole world is the pipeline (pp = 1, 2, 3, 4 ranks) unless a test builds a mesh.

#include "trident_test.hpp"

#include <trident/gpt2/model.hpp>
#include <trident/gpt2/pipeline.hpp>
#include <trident/optim/adamw.hpp>
#include <trident/optim/clip.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace pipeline_gpt2_test {

using Space = Kokkos::DefaultExecutionSpace;
using Model = trident::gpt2::Gpt2<float, Space>;
using Pipeline = trident::gpt2::Gpt2Pipeline<float, Space>;
using AdamW = trident::optim::AdamW<float, Space::memory_space>;

// L = 8 blocks fill p * v = 8 stages at p = 4, v = 2; H = 2 splits over tp = 2.
inline const trident::gpt2::Gpt2Config config{8, 2, 16, 8, 29};
inline const int batch = 2, seq = 8;  // each micro-batch: N = 16 rows

inline trident::comm::Communicator world() {
  return trident::comm::Communicator(MPI_COMM_WORLD, "pp");
}

// m micro-batches of step `step`: tokens and their targets.
struct Data {
  std::vector<std::vector<int>> tokens, targets;
};

inline Data data_for(int step, int micro_batches) {
  Data d;
  for (int i = 0; i < micro_batches; ++i) {
    std::vector<int> t, y;
    for (int k = 0; k < batch * seq; ++k) {
      t.push_back((11 * k + 5 * step + 3 * i + k * k * (i + 1)) % config.vocab);
      y.push_back((7 * k + 2 * step + i * i + 1) % config.vocab);
    }
    d.tokens.push_back(t);
    d.targets.push_back(y);
  }
  return d;
}

inline std::vector<float> host_copy(const Kokkos::View<float*, Kokkos::LayoutRight, Space::memory_space>& v) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  return std::vector<float>(h.data(), h.data() + h.size());
}

// GPT-2's initialisation leaves LayerNorms at 1 and biases at 0; this moves every rank-1 tensor
// by an amount that depends only on its name and index, so any layout perturbs alike.
inline void perturb(trident::ParameterStore<float, Space::memory_space>& store) {
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), store.values());
  for (const auto& t : store.tensors()) {
    if (t.global_shape.size() != 1) continue;
    int salt = 0;
    for (char c : t.name) salt = (salt * 31 + c) % 1000;
    for (const auto& b : t.blocks)
      for (std::int64_t i = 0; i < b.rows; ++i)
        host(t.offset + b.local_row + i) += 0.1f * std::sin(0.7f * static_cast<float>(b.global_row + i) + salt);
  }
  Kokkos::deep_copy(store.values(), host);
}

// The slice of a one-rank buffer that a (possibly tensor-parallel) tensor holds, in its layout.
inline std::vector<float> slice_of(const Model& one, const std::vector<float>& one_flat,
                                   const trident::ParameterInfo& t) {
  const auto& g = one.parameters().info(t.name);
  const std::int64_t gcols = g.global_shape.size() == 2 ? g.global_shape[1] : 1;
  const std::int64_t lcols = t.local_shape.size() == 2 ? t.local_shape[1] : 1;
  std::vector<float> out(static_cast<std::size_t>(t.size()));
  for (const auto& b : t.blocks)
    for (std::int64_t i = 0; i < b.rows; ++i)
      for (std::int64_t j = 0; j < b.cols; ++j)
        out[static_cast<std::size_t>((b.local_row + i) * lcols + b.local_col + j)] =
            one_flat[static_cast<std::size_t>(g.offset + (b.global_row + i) * gcols + b.global_col + j)];
  return out;
}

inline double normwise(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    d += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    n += double(b[i]) * b[i];
  }
  return std::sqrt(d) / std::max(std::sqrt(n), 1e-30);
}

// The largest normwise difference between a stage's gradients and the one-rank model's.
inline double worst_gradient_difference(const Model& stage, const Model& one, std::string* worst_name = nullptr) {
  const auto one_grads = host_copy(one.parameters().grads());
  const auto grads = host_copy(stage.parameters().grads());
  double worst = 0;
  for (const auto& t : stage.parameters().tensors()) {
    const std::vector<float> got(grads.begin() + t.offset, grads.begin() + t.offset + t.size());
    const double d = normwise(got, slice_of(one, one_grads, t));
    if (d >= worst) {
      worst = d;
      if (worst_name) *worst_name = t.name;
    }
  }
  return worst;
}

// One-rank forward and backward over the same micro-batches, gradients accumulated.
inline double one_rank_step(Model& one, const Data& d, double scale) {
  double loss = 0;
  for (std::size_t i = 0; i < d.tokens.size(); ++i) {
    loss += one.forward(d.tokens[i], d.targets[i], batch, seq, scale);
    one.backward(scale);
  }
  return loss;
}

// The micro-batch count each schedule gets at p ranks: m = 2p (3 on one rank).
inline int micro_batches_for(int ranks) {
  return ranks == 1 ? 3 : 2 * ranks;
}

// The schedules to run: name and chunks per rank.
struct ScheduleCase {
  std::string name;
  int chunks;
};

inline std::vector<ScheduleCase> schedule_cases() {
  return {{"gpipe", 1}, {"1f1b", 1}, {"interleaved", 2}, {"zb", 1}};
}

// The wte copy of this rank's last-stage chunk, gathered to every rank next to the first
// stage's copy: both as flat host vectors (empty where the model holds one wte).
inline std::pair<std::vector<float>, std::vector<float>> wte_copies(Pipeline& pipe, bool gradients) {
  const auto& schedule = pipe.schedule();
  const int first_rank = schedule.rank_of_stage(0), last_rank = schedule.rank_of_stage(schedule.stages() - 1);
  std::vector<float> first, last;
  for (int c = 0; c < pipe.chunk_count(); ++c) {
    const auto& stage = pipe.chunk(c).stage();
    if (stage.holds_embedding == stage.holds_head) continue;
    const auto& store = pipe.chunk(c).parameters();
    auto view = gradients ? store.grad_vector("wte.weight") : store.vector("wte.weight");
    auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), view);
    (stage.holds_embedding ? first : last).assign(host.data(), host.data() + host.size());
  }
  const int size = static_cast<int>(config.vocab * config.hidden);
  if (first_rank != last_rank) {  // bring both copies to every rank
    first.resize(static_cast<std::size_t>(size));
    last.resize(static_cast<std::size_t>(size));
    MPI_Bcast(first.data(), size, MPI_FLOAT, first_rank, MPI_COMM_WORLD);
    MPI_Bcast(last.data(), size, MPI_FLOAT, last_rank, MPI_COMM_WORLD);
  }
  return {first, last};
}

}  // namespace pipeline_gpt2_test
