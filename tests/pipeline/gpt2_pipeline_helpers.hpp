#pragma once
// What the pipeline-parallel GPT-2 tests share: a small model, its data, the train::Trainer
// layouts they run, the one-rank model they compare against (gpt2::Gpt2), and comparisons of
// named tensors between a Trainer's model chunk and the one-rank model. The whole world is the
// pipeline (pp = 1, 2, 3, 4 ranks) unless a test lays it out otherwise.

#include "trident_test.hpp"

#include <trident/data/batches.hpp>
#include <trident/gpt2/batch.hpp>
#include <trident/gpt2/model.hpp>
#include <trident/gpt2/spec.hpp>
#include <trident/optim/adamw.hpp>
#include <trident/optim/clip.hpp>
#include <trident/train.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace pipeline_gpt2_test {

using Space = Kokkos::DefaultExecutionSpace;
using Model = trident::gpt2::Gpt2<float, Space>;  // the one-rank model
using Trainer = trident::train::Trainer<float, Space>;
using Chunk = Trainer::model_type;  // a Trainer's model chunk: one pipeline stage
using Store = trident::ParameterStore<float, Space::memory_space>;
using AdamW = trident::optim::AdamW<float, Space::memory_space>;

// L = 8 blocks: 10 top-level layers (the embeddings, the blocks, the head) fill p * v = 8
// stages at p = 4, v = 2; H = 2 splits over tp = 2.
inline const trident::gpt2::Gpt2Config config{8, 2, 16, 8, 29};
inline const int batch = 2, seq = 8;  // each micro-batch: 2 sequences, N = 16 rows

inline trident::comm::Communicator world() {
  return trident::comm::Communicator(MPI_COMM_WORLD, "world");
}

inline trident::nn::ModelSpec spec() {
  return trident::gpt2::gpt2_spec(config);
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

// The micro-batches of `d` one after another: the Trainer's global batch, which it cuts into
// micro-batches of `batch` sequences in this order (with one data-parallel replica).
inline Trainer::batch_type batch_of(const Data& d) {
  trident::data::Batch tokens;
  tokens.rows = batch * static_cast<std::int64_t>(d.tokens.size());
  tokens.sequence_length = seq;
  for (std::size_t i = 0; i < d.tokens.size(); ++i) {
    tokens.inputs.insert(tokens.inputs.end(), d.tokens[i].begin(), d.tokens[i].end());
    tokens.targets.insert(tokens.targets.end(), d.targets[i].begin(), d.targets[i].end());
  }
  return trident::gpt2::gpt2_token_batch<float, Space>(tokens, false);
}

// A schedule and its model chunks per rank.
struct ScheduleCase {
  std::string name;
  int chunks;
};

inline std::vector<ScheduleCase> schedule_cases() {
  return {{"gpipe", 1}, {"1f1b", 1}, {"interleaved", 2}, {"zb", 1}};
}

// The micro-batch count each schedule gets at p ranks: m = 2p (3 on one rank).
inline int micro_batches_for(int ranks) {
  return ranks == 1 ? 3 : 2 * ranks;
}

// GPT-2's blocks per stage ("2,4,2") as top-level layers per stage: the embeddings go with the
// first stage, the head with the last.
inline std::vector<int> stage_layers_of(const std::vector<int>& blocks) {
  std::vector<int> layers;
  for (std::size_t s = 0; s < blocks.size(); ++s)
    layers.push_back(blocks[s] + (s == 0 ? 1 : 0) + (s + 1 == blocks.size() ? 1 : 0));
  return layers;
}

// The whole world one pipeline running schedule `s` on micro-batches of `batch` sequences;
// `blocks`: GPT-2's blocks per stage (empty: the Trainer's cost-balanced cut).
inline trident::train::Layout pipeline_layout(const ScheduleCase& s, const std::vector<int>& blocks = {},
                                              bool recompute = false) {
  trident::train::Layout layout;
  layout.pp = trident_test::world_size();
  layout.schedule = s.name;
  layout.virtual_stages = s.chunks;
  layout.micro_batch = batch;
  layout.recompute = recompute;
  layout.stage_layers = stage_layers_of(blocks);
  return layout;
}

// Initialisation from `seed`; no clipping unless asked, so the gradients after a step are the
// raw ones.
inline trident::train::TrainerSettings settings_with(std::uint64_t seed, double grad_clip = 0) {
  trident::train::TrainerSettings settings;
  settings.seed = seed;
  settings.grad_clip = grad_clip;
  return settings;
}

inline std::vector<float> host_copy(const Store::flat_view& v) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  return std::vector<float>(h.data(), h.data() + h.size());
}

// GPT-2's initialisation leaves LayerNorms at 1 and biases at 0; this moves every rank-1 tensor
// by an amount that depends only on its name and global index, so any layout perturbs alike.
inline void perturb(Store& store) {
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

inline void perturb(Trainer& trainer) {
  for (int c = 0; c < trainer.chunk_count(); ++c) perturb(trainer.chunk(c).parameters());
}

// The slice of a one-rank buffer (laid out like the store `one`) that a possibly tensor-
// parallel tensor of a chunk holds, in the chunk's layout.
inline std::vector<float> slice_of(const Store& one, const std::vector<float>& one_flat,
                                   const trident::ParameterInfo& t) {
  const auto& g = one.info(t.name);
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

// The tensors of `chunk` whose values are not bit for bit the one-rank model's.
inline int mismatched_values(const Store& chunk, const Store& one) {
  const auto one_values = host_copy(one.values());
  const auto values = host_copy(chunk.values());
  int mismatched = 0;
  for (const auto& t : chunk.tensors()) {
    const auto expected = slice_of(one, one_values, t);
    mismatched += !std::equal(expected.begin(), expected.end(), values.begin() + t.offset);
  }
  return mismatched;
}

inline double normwise(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    d += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    n += double(b[i]) * b[i];
  }
  return std::sqrt(d) / std::max(std::sqrt(n), 1e-30);
}

// The largest normwise difference between a chunk's gradients and the one-rank model's, over
// every tensor the chunk holds (a tensor-parallel shard, a tied copy).
inline double worst_gradient_difference(const Store& chunk, const Store& one, std::string* worst_name = nullptr) {
  const auto one_grads = host_copy(one.grads());
  const auto grads = host_copy(chunk.grads());
  double worst = 0;
  for (const auto& t : chunk.tensors()) {
    const std::vector<float> got(grads.begin() + t.offset, grads.begin() + t.offset + t.size());
    const double d = normwise(got, slice_of(one, one_grads, t));
    if (d >= worst) {
      worst = d;
      if (worst_name) *worst_name = t.name;
    }
  }
  return worst;
}

// One-rank forward and backward over the same micro-batches, gradients accumulated; returns the
// summed token losses.
inline double one_rank_step(Model& one, const Data& d, double scale) {
  double loss = 0;
  for (std::size_t i = 0; i < d.tokens.size(); ++i) {
    loss += one.forward(d.tokens[i], d.targets[i], batch, seq, scale);
    one.backward(scale);
  }
  return loss;
}

// wte's two copies, the first stage's (the embedding) and the last stage's (the tied head), as
// flat host vectors on every rank of their pipeline (this rank's tensor-parallel shard of
// them); both empty when one stage holds the whole model.
inline std::pair<std::vector<float>, std::vector<float>> wte_copies(const Trainer& trainer, bool gradients) {
  const int pp = trainer.layout().pp, first_rank = 0, last_rank = (trainer.layout().stages() - 1) % pp;
  std::vector<float> first, last;
  for (int c = 0; c < trainer.chunk_count(); ++c) {
    const Chunk& chunk = trainer.chunk(c);
    if (chunk.is_first_stage() == chunk.is_last_stage()) continue;  // a middle stage, or the whole model
    const auto& store = chunk.parameters();
    auto host = Kokkos::create_mirror_view_and_copy(
        Kokkos::HostSpace(), gradients ? store.grad_vector("wte.weight") : store.vector("wte.weight"));
    (chunk.is_first_stage() ? first : last).assign(host.data(), host.data() + host.size());
  }
  if (first_rank != last_rank) {  // bring both copies to every rank of the pipeline
    const MPI_Comm pipeline = trainer.mesh().pp().mpi();
    for (auto [copy, root] : {std::pair{&first, first_rank}, std::pair{&last, last_rank}}) {
      long long size = static_cast<long long>(copy->size());
      MPI_Bcast(&size, 1, MPI_LONG_LONG, root, pipeline);
      copy->resize(static_cast<std::size_t>(size));
      MPI_Bcast(copy->data(), static_cast<int>(size), MPI_FLOAT, root, pipeline);
    }
  }
  return {first, last};
}

}  // namespace pipeline_gpt2_test
