// Tensor-parallel GPT-2 on train::Trainer against the one-rank model (gpt2::Gpt2): the whole
// world is one tensor-parallel group (tp = 1, 2, 3, 4), with and without sequence parallelism;
// every rank also runs the one-rank model on the same data.

#include "trident_test.hpp"

#include <trident/data/batches.hpp>
#include <trident/gpt2/batch.hpp>
#include <trident/gpt2/model.hpp>
#include <trident/gpt2/parameters.hpp>
#include <trident/gpt2/spec.hpp>
#include <trident/optim/adamw.hpp>
#include <trident/optim/clip.hpp>
#include <trident/train.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace {

using Space = Kokkos::DefaultExecutionSpace;
using Model = trident::gpt2::Gpt2<float, Space>;  // the one-rank model
using Trainer = trident::train::Trainer<float, Space>;
using Chunk = Trainer::model_type;
using Store = trident::ParameterStore<float, Space::memory_space>;
using AdamW = trident::optim::AdamW<float, Space::memory_space>;

// H = 12 divides over 1, 2, 3 and 4 ranks; V = 37 divides over none of 2, 3, 4.
const trident::gpt2::Gpt2Config config{2, 12, 24, 8, 37};
const int batch = 3, seq = 8;  // N = 24 rows: divisible by 1..4 for sequence parallelism

trident::comm::Communicator world() {
  return trident::comm::Communicator(MPI_COMM_WORLD, "world");
}

std::vector<int> tokens_for(int step, int salt) {
  std::vector<int> t;
  for (int i = 0; i < batch * seq; ++i) t.push_back((11 * i + 5 * step + salt * i * i) % config.vocab);
  return t;
}

Trainer::batch_type batch_of(const std::vector<int>& tokens, const std::vector<int>& targets) {
  trident::data::Batch b;
  b.rows = batch;
  b.sequence_length = seq;
  b.inputs.assign(tokens.begin(), tokens.end());
  b.targets.assign(targets.begin(), targets.end());
  return trident::gpt2::gpt2_token_batch<float, Space>(b, false);
}

// The whole world one tensor-parallel group (sequence parallelism needs more than one rank).
trident::train::Layout tp_layout(bool sequence_parallel) {
  trident::train::Layout layout;
  layout.tp = trident_test::world_size();
  layout.sequence_parallel = sequence_parallel && layout.tp > 1;
  return layout;
}

// Initialisation from `seed`; no clipping unless asked, so the gradients after a step are the
// raw ones.
trident::train::TrainerSettings settings_with(std::uint64_t seed, double grad_clip = 0) {
  trident::train::TrainerSettings settings;
  settings.seed = seed;
  settings.grad_clip = grad_clip;
  return settings;
}

// One-rank parameters with non-trivial LayerNorms and biases (GPT-2 init leaves them 1 and 0).
void perturb(Model& model) {
  auto& store = model.parameters();
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), store.values());
  for (const auto& t : store.tensors()) {
    if (t.global_shape.size() != 1) continue;
    for (std::int64_t i = 0; i < t.size(); ++i) host(t.offset + i) += 0.1f * std::sin(0.7f * i + t.offset);
  }
  Kokkos::deep_copy(store.values(), host);
}

// The slice of a one-rank buffer (laid out like `one`) that a shard's blocks hold, in the
// shard's layout.
std::vector<float> shard_of(const Store& one, const std::vector<float>& one_flat, const trident::ParameterInfo& t) {
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

std::vector<float> host_copy(const Store::flat_view& v) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  return std::vector<float>(h.data(), h.data() + h.size());
}

// The tensors of `shard` whose values are not bit for bit the one-rank store's.
int mismatched_values(const Store& shard, const Store& one) {
  const auto one_values = host_copy(one.values());
  const auto values = host_copy(shard.values());
  int mismatched = 0;
  for (const auto& t : shard.tensors()) {
    const auto expected = shard_of(one, one_values, t);
    mismatched += !std::equal(expected.begin(), expected.end(), values.begin() + t.offset);
  }
  return mismatched;
}

// Gives a Trainer's chunk (ZeRO-0: its store is the parameters) the one-rank model's values.
void load_shards_from(Chunk& shard, const Model& one) {
  const auto one_values = host_copy(one.parameters().values());
  auto host = Kokkos::create_mirror_view(shard.parameters().values());
  for (const auto& t : shard.parameters().tensors()) {
    const auto values = shard_of(one.parameters(), one_values, t);
    std::copy(values.begin(), values.end(), host.data() + t.offset);
  }
  Kokkos::deep_copy(shard.parameters().values(), host);
}

double normwise(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    d += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    n += double(b[i]) * b[i];
  }
  return std::sqrt(d) / std::max(std::sqrt(n), 1e-30);
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("each rank initialises exactly its slice of the one-rank model", "[tensor_parallel]") {
  Model one(Space(), config);
  one.initialize(77);
  Trainer trainer(world(), trident::gpt2::gpt2_spec(config), tp_layout(false), settings_with(77));
  REQUIRE(trainer.chunk_count() == 1);
  const auto& shard = trainer.chunk(0).parameters();
  CHECK(mismatched_values(shard, one.parameters()) == 0);
  const int tp_size = trident_test::world_size(), tp_rank = trainer.mesh().tp_rank();
  CHECK(shard.info("wte.weight").local_shape[0] == 37 / tp_size + (tp_rank < 37 % tp_size ? 1 : 0));
  CHECK(shard.info("h.0.attn.c_attn.weight").local_shape[1] == 3 * 24 / tp_size);
  // Together the shards are the one-rank model, each element once.
  const trident::comm::Communicator self(MPI_COMM_SELF, "self");
  CHECK(trainer.global_parameters() == trident::nn::global_tensors(one.layers(), trident::nn::Buffer::values, self));
}

TEST_CASE("loss, activations and every gradient equal the one-rank model's", "[tensor_parallel]") {
  for (bool sequence_parallel : {false, true}) {
    INFO("sequence parallel: " << sequence_parallel);
    Model one(Space(), config);
    one.initialize(5);
    perturb(one);
    Trainer trainer(world(), trident::gpt2::gpt2_spec(config), tp_layout(sequence_parallel), settings_with(5));
    Chunk& shard = trainer.chunk(0);
    load_shards_from(shard, one);
    const auto tokens = tokens_for(0, 1), targets = tokens_for(1, 2);
    const double scale = 1.0 / (batch * seq);
    one.zero_grad();
    const double one_loss = one.forward(tokens, targets, batch, seq, scale) * scale;
    const auto report = trainer.step(batch_of(tokens, targets), 1e-3);
    CHECK(trident_test::relative_difference(one_loss, report.loss) < 1e-5);

    // The residual stream after the last block (top-level boundary L + 1, after the embeddings
    // and the L blocks), of the step's forward: this rank's rows of it.
    auto one_out =
        Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), one.residual_after_block(config.layers - 1));
    auto shard_out = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), shard.activation_at(config.layers + 1));
    const std::size_t rows = shard_out.extent(0);
    const std::size_t first = trainer.layout().sequence_parallel ? rows * trainer.mesh().tp_rank() : 0;
    CHECK(rows * (trainer.layout().sequence_parallel ? trident_test::world_size() : 1) == one_out.extent(0));
    double diff = 0, norm = 0;
    for (std::size_t i = 0; i < rows; ++i)
      for (std::size_t j = 0; j < shard_out.extent(1); ++j) {
        diff += std::pow(shard_out(i, j) - one_out(first + i, j), 2);
        norm += std::pow(one_out(first + i, j), 2);
      }
    CHECK(std::sqrt(diff / norm) < 1e-5);

    one.backward(scale);
    const auto one_grads = host_copy(one.parameters().grads());
    const auto shard_grads = host_copy(shard.parameters().grads());
    for (const auto& t : shard.parameters().tensors()) {
      INFO("gradient of " << t.name);
      const auto expected = shard_of(one.parameters(), one_grads, t);
      const std::vector<float> got(shard_grads.begin() + t.offset, shard_grads.begin() + t.offset + t.size());
      CHECK(normwise(got, expected) < 1e-5);
    }
    const double one_norm = trident::optim::sum_of_squares(Space(), one.parameters().grads());
    CHECK(trident_test::relative_difference(one_norm, report.grad_norm * report.grad_norm) < 1e-5);
  }
}

namespace {

const double max_norm = 0.5, lr = 3e-3;

// AdamW steps with clipping of the one-rank model by hand: the mean losses.
std::vector<double> train(Model& model, AdamW& adamw, int steps) {
  std::vector<double> losses;
  const double scale = 1.0 / (batch * seq);
  for (int step = 1; step <= steps; ++step) {
    model.zero_grad();
    const double loss = model.forward(tokens_for(step, 3), tokens_for(step + 1, 3), batch, seq, scale) * scale;
    model.backward(scale);
    const double norm = std::sqrt(trident::optim::sum_of_squares(Space(), model.parameters().grads()));
    const double coef = trident::optim::clip_coefficient(norm, max_norm);
    if (coef < 1.0) trident::optim::scale_in_place(Space(), model.parameters().grads(), coef);
    adamw.step(Space(), model.parameters(), step, lr);
    losses.push_back(loss);
  }
  return losses;
}

// The same steps on a Trainer (clipping at max_norm), from its next step up to step `last`.
std::vector<double> train(Trainer& trainer, int last) {
  std::vector<double> losses;
  for (int step = static_cast<int>(trainer.steps_done()) + 1; step <= last; ++step) {
    const auto report = trainer.step(batch_of(tokens_for(step, 3), tokens_for(step + 1, 3)), lr);
    CHECK(!report.skipped);
    losses.push_back(report.loss);
  }
  return losses;
}

}  // namespace

TEST_CASE("20 training steps give the one-rank losses", "[tensor_parallel]") {
  for (bool sequence_parallel : {false, true}) {
    INFO("sequence parallel: " << sequence_parallel);
    Model one(Space(), config);
    one.initialize(9);
    AdamW one_adamw(one.parameters(), {});
    const auto expected = train(one, one_adamw, 20);
    Trainer trainer(world(), trident::gpt2::gpt2_spec(config), tp_layout(sequence_parallel),
                    settings_with(9, max_norm));
    const auto got = train(trainer, 20);
    REQUIRE(got.size() == expected.size());
    double worst = 0;
    for (std::size_t s = 0; s < expected.size(); ++s)
      worst = std::max(worst, trident_test::relative_difference(got[s], expected[s]));
    CHECK(worst < 1e-4);
    CHECK(expected.back() < expected.front());  // it trains
  }
}

TEST_CASE("a checkpoint saved at this tp loads at tp = 1 and continues identically", "[tensor_parallel]") {
  const int rank = trident_test::world_rank();
  const auto directory = std::filesystem::temp_directory_path();
  const std::string tag = "_np" + std::to_string(trident_test::world_size()) + ".safetensors";
  const std::string path = (directory / ("trident_tp_checkpoint" + tag)).string();
  const std::string again_path = (directory / ("trident_tp_checkpoint_again" + tag)).string();
  const auto gpt2 = trident::gpt2::gpt2_spec(config);
  Trainer shard(world(), gpt2, tp_layout(false), settings_with(21, max_norm));
  train(shard, 3);
  shard.save(path);
  MPI_Barrier(MPI_COMM_WORLD);
  // Reloaded at tp = 1 on every rank, and at this tp with sequence parallelism.
  const trident::comm::Communicator self(MPI_COMM_SELF, "self");
  Trainer one(self, gpt2, trident::train::Layout{}, settings_with(0, max_norm));
  one.load(path);
  CHECK(one.steps_done() == 3);
  CHECK(one.settings().seed == 21);
  CHECK(mismatched_values(shard.chunk(0).parameters(), one.chunk(0).parameters()) == 0);
  Trainer again(world(), gpt2, tp_layout(true), settings_with(0, max_norm));
  again.load(path);
  CHECK(host_copy(again.chunk(0).parameters().values()) == host_copy(shard.chunk(0).parameters().values()));
  // Saved again from the reloaded shards, the checkpoint is the same file: the values, the
  // AdamW moments and the progress all came back.
  again.save(again_path);
  if (rank == 0) {
    const auto saved = file_bytes(path);
    const bool same_bytes = file_bytes(again_path) == saved;  // not printed: binary
    CHECK(!saved.empty());
    CHECK(same_bytes);
  }
  const auto one_losses = train(one, 6), shard_losses = train(shard, 6);
  REQUIRE(one_losses.size() == 3);
  REQUIRE(shard_losses.size() == 3);
  for (std::size_t s = 0; s < one_losses.size(); ++s)
    CHECK(trident_test::relative_difference(one_losses[s], shard_losses[s]) < 1e-5);
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) {
    std::filesystem::remove(path);
    std::filesystem::remove(again_path);
  }
}

TEST_CASE("the bytes each layer communicates equal Megatron's analytic count", "[tensor_parallel]") {
  // The model chunk a Trainer builds for tp = world size: GPT-2's spec over the world as one
  // tensor-parallel group, its hooks numbered by top-level layer (0 the embeddings, l + 1
  // block l, L + 1 the head). (The Trainer's own chunk carries the data-parallel engine's hooks.)
  const auto data = batch_of(tokens_for(0, 1), tokens_for(1, 1));
  for (bool sequence_parallel : {false, true}) {
    INFO("sequence parallel: " << sequence_parallel);
    Chunk shard(Space(), trident::gpt2::gpt2_spec(config),
                trident::tensor_parallel::TensorParallelGroup{trident::comm::Communicator(MPI_COMM_WORLD, "tp"),
                                                              sequence_parallel});
    shard.initialize(1);
    const auto& comm = shard.tensor_parallel_group().comm;
    const int p = comm.size();
    const std::int64_t n = batch * seq, c = config.hidden, f = sizeof(float);
    // Bytes per unit, as the counters define them (allreduce: the view; all-gather: the
    // gathered result; reduce-scatter: the send view), forward and backward separately.
    std::vector<std::int64_t> forward_bytes, backward_bytes;
    std::int64_t mark = 0;
    auto take = [&](std::vector<std::int64_t>& into) {
      into.push_back(comm.stats().total_bytes() - mark);
      mark = comm.stats().total_bytes();
    };
    trident::UnitHooks hooks;
    hooks.before_forward = [&](int unit) {
      if (unit > 0)
        take(forward_bytes);
      else
        mark = comm.stats().total_bytes();
    };
    hooks.before_backward = [&](int) { mark = comm.stats().total_bytes(); };
    hooks.after_backward = [&](int) { take(backward_bytes); };
    shard.set_hooks(hooks);
    comm.reset_stats();
    shard.zero_grad();
    shard.forward(data.inputs, data.targets, 1.0 / n);
    take(forward_bytes);  // the head, through the loss
    shard.backward(1.0 / n);
    if (p == 1) {
      CHECK(comm.stats().total_bytes() == 0);
      continue;
    }
    const std::int64_t activation = n * c * f;  // one [N, C] fp32 tensor
    // Forward: embedding 1 reduction; each block 2 (attention, MLP) — with sequence
    // parallelism each is a reduce-scatter plus an all-gather into the next column-parallel
    // layer; head: the loss statistics (max, sum of exp, target logit: 3N).
    const std::int64_t block_forward = sequence_parallel ? 4 * activation : 2 * activation;
    const std::vector<std::int64_t> expected_forward = {activation, block_forward, block_forward,
                                                        (sequence_parallel ? activation : 0) + 3 * n * f};
    CHECK(forward_bytes == expected_forward);
    // Backward (in visiting order head, blocks, embedding): the conjugates, plus with sequence
    // parallelism the LayerNorm gradients summed over the group (2C per LayerNorm) and the
    // position table's, which each rank's rows fill in part (T C).
    const std::int64_t block_backward = sequence_parallel ? 4 * activation + 2 * 2 * c * f : 2 * activation;
    const std::vector<std::int64_t> expected_backward = {activation + (sequence_parallel ? 2 * c * f : 0),
                                                         block_backward, block_backward,
                                                         sequence_parallel ? activation + seq * c * f : 0};
    CHECK(backward_bytes == expected_backward);
  }
}

TEST_CASE("bad tensor-parallel layouts are refused before any work", "[tensor_parallel]") {
  using trident::gpt2::Gpt2Split;
  CHECK_THROWS_WITH(trident::gpt2::validate_gpt2_split({2, 12, 24, 8, 37}, Gpt2Split{5, 0}),
                    Catch::Contains("12 heads do not divide over 5"));
  CHECK_THROWS_WITH(trident::gpt2::validate_gpt2_split({2, 4, 24, 8, 37}, Gpt2Split{8, 0}),
                    Catch::Contains("needs at least as many heads, but the model has 4"));
  CHECK_THROWS_WITH(trident::gpt2::validate_gpt2_split({2, 4, 24, 8, 3}, Gpt2Split{4, 0}),
                    Catch::Contains("vocabulary of 3 cannot be split over 4"));
  // The Trainer refuses a model that does not split over the world, on every rank together.
  const int p = trident_test::world_size();
  if (p == 1) return;
  const std::string ranks = std::to_string(p) + " tensor-parallel ranks";
  const trident::gpt2::Gpt2Config odd_heads{2, p == 3 ? 4 : 3, 24, 8, 37};
  CHECK_THROWS_WITH(Trainer(world(), trident::gpt2::gpt2_spec(odd_heads), tp_layout(false)),
                    Catch::Contains("heads over " + ranks + ", which does not divide them"));
  const trident::gpt2::Gpt2Config small_vocabulary{2, 12, 24, 8, p - 1};
  CHECK_THROWS_WITH(Trainer(world(), trident::gpt2::gpt2_spec(small_vocabulary), tp_layout(false)),
                    Catch::Contains("cannot split a vocabulary of " + std::to_string(p - 1) + " over " + ranks));
  if (p == 3) {  // a sequence of 8 rows over 3 ranks
    Trainer trainer(world(), trident::gpt2::gpt2_spec(config), tp_layout(true));
    trident::data::Batch one_sequence{1, seq, {}, {}};
    for (int i = 0; i < seq; ++i) one_sequence.inputs.push_back(i), one_sequence.targets.push_back(i + 1);
    CHECK_THROWS_WITH(trainer.step(trident::gpt2::gpt2_token_batch<float, Space>(one_sequence, false), 1e-3),
                      Catch::Contains("splits the 8 rows of a micro-batch over 3 ranks"));
  }
}
