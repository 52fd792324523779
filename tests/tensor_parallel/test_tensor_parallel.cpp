// Tensor-parallel GPT-2 against the one-rank model: the whole world is one tensor-parallel
// group (tp = 1, 2, 3, 4); every rank also runs the one-rank model on the same data.

#include "trident_test.hpp"

#include <trident/gpt2/model.hpp>
#include <trident/gpt2/checkpoint.hpp>
#include <trident/optim/adamw.hpp>
#include <trident/tensor_parallel/grad_norm.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace {

using Space = Kokkos::DefaultExecutionSpace;
using Model = trident::gpt2::Gpt2<float, Space>;
namespace tp = trident::tensor_parallel;

// H = 12 divides over 1, 2, 3 and 4 ranks; V = 37 divides over none of 2, 3, 4.
const trident::gpt2::Gpt2Config config{2, 12, 24, 8, 37};
const int batch = 3, seq = 8;  // N = 24 rows: divisible by 1..4 for sequence parallelism

tp::TensorParallelGroup world_group(bool sequence_parallel) {
  return {trident::comm::Communicator(MPI_COMM_WORLD, "tp"), sequence_parallel};
}

std::vector<int> tokens_for(int step, int salt) {
  std::vector<int> t;
  for (int i = 0; i < batch * seq; ++i) t.push_back((11 * i + 5 * step + salt * i * i) % config.vocab);
  return t;
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

// The slice of a one-rank buffer that a shard's blocks hold, in the shard's layout.
std::vector<float> shard_of(const Model& one, const std::vector<float>& one_flat, const trident::ParameterInfo& t) {
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

std::vector<float> host_copy(const Kokkos::View<float*, Kokkos::LayoutRight, Space::memory_space>& v) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  return std::vector<float>(h.data(), h.data() + h.size());
}

void load_shards_from(Model& shard, const Model& one) {
  const auto one_values = host_copy(one.parameters().values());
  auto host = Kokkos::create_mirror_view(shard.parameters().values());
  for (const auto& t : shard.parameters().tensors()) {
    const auto values = shard_of(one, one_values, t);
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

}  // namespace

TEST_CASE("each rank initialises exactly its slice of the one-rank model", "[tensor_parallel]") {
  Model one(Space(), config);
  one.initialize(77);
  Model shard(Space(), config, world_group(false));
  shard.initialize(77);
  const auto one_values = host_copy(one.parameters().values());
  const auto shard_values = host_copy(shard.parameters().values());
  int mismatched_tensors = 0;
  for (const auto& t : shard.parameters().tensors()) {
    const auto expected = shard_of(one, one_values, t);
    mismatched_tensors += !std::equal(expected.begin(), expected.end(), shard_values.begin() + t.offset);
  }
  CHECK(mismatched_tensors == 0);
  const int tp_size = trident_test::world_size();
  const auto& wte = shard.parameters().info("wte.weight");
  CHECK(wte.local_shape[0] == 37 / tp_size + (trident_test::world_rank() < 37 % tp_size ? 1 : 0));
  CHECK(shard.parameters().info("h.0.attn.c_attn.weight").local_shape[1] == 3 * 24 / tp_size);
}

TEST_CASE("loss, activations and every gradient equal the one-rank model's", "[tensor_parallel]") {
  for (bool sequence_parallel : {false, true}) {
    INFO("sequence parallel: " << sequence_parallel);
    Model one(Space(), config);
    one.initialize(5);
    perturb(one);
    Model shard(Space(), config, world_group(sequence_parallel));
    load_shards_from(shard, one);
    const auto tokens = tokens_for(0, 1), targets = tokens_for(1, 2);
    const double scale = 1.0 / (batch * seq);
    one.zero_grad();
    shard.zero_grad();
    const double one_loss = one.forward(tokens, targets, batch, seq, scale);
    const double shard_loss = shard.forward(tokens, targets, batch, seq, scale);
    CHECK(trident_test::relative_difference(one_loss, shard_loss) < 1e-5);

    // The residual stream after the last block: this rank's rows of it.
    auto one_out =
        Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), one.residual_after_block(config.layers - 1));
    auto shard_out =
        Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), shard.residual_after_block(config.layers - 1));
    const std::size_t rows = shard_out.extent(0), first = sequence_parallel ? rows * trident_test::world_rank() : 0;
    double diff = 0, norm = 0;
    for (std::size_t i = 0; i < rows; ++i)
      for (std::size_t j = 0; j < shard_out.extent(1); ++j) {
        diff += std::pow(shard_out(i, j) - one_out(first + i, j), 2);
        norm += std::pow(one_out(first + i, j), 2);
      }
    CHECK(std::sqrt(diff / norm) < 1e-5);

    one.backward(scale);
    shard.backward(scale);
    const auto one_grads = host_copy(one.parameters().grads());
    const auto shard_grads = host_copy(shard.parameters().grads());
    for (const auto& t : shard.parameters().tensors()) {
      INFO("gradient of " << t.name);
      const auto expected = shard_of(one, one_grads, t);
      const std::vector<float> got(shard_grads.begin() + t.offset, shard_grads.begin() + t.offset + t.size());
      CHECK(normwise(got, expected) < 1e-5);
    }
    const double one_norm = trident::optim::sum_of_squares(Space(), one.parameters().grads());
    const double shard_norm = tp::grad_norm_squared(Space(), shard.parameters(), shard.tensor_parallel_group());
    CHECK(trident_test::relative_difference(one_norm, shard_norm) < 1e-5);
  }
}

namespace {

// 20 AdamW steps with clipping: losses of a tensor-parallel run vs the one-rank run.
std::vector<double> train(Model& model, trident::optim::AdamW<float, Space::memory_space>& adamw, int steps) {
  std::vector<double> losses;
  const double scale = 1.0 / (batch * seq);
  for (int step = 1; step <= steps; ++step) {
    model.zero_grad();
    const double loss = model.forward(tokens_for(step, 3), tokens_for(step + 1, 3), batch, seq, scale) * scale;
    model.backward(scale);
    const double norm = std::sqrt(tp::grad_norm_squared(Space(), model.parameters(), model.tensor_parallel_group()));
    const double coef = trident::optim::clip_coefficient(norm, 0.5);
    if (coef < 1.0) trident::optim::scale_in_place(Space(), model.parameters().grads(), coef);
    adamw.step(Space(), model.parameters(), step, 3e-3);
    losses.push_back(loss);
  }
  return losses;
}

}  // namespace

TEST_CASE("20 training steps give the one-rank losses", "[tensor_parallel]") {
  for (bool sequence_parallel : {false, true}) {
    INFO("sequence parallel: " << sequence_parallel);
    Model one(Space(), config), shard(Space(), config, world_group(sequence_parallel));
    one.initialize(9);
    shard.initialize(9);
    trident::optim::AdamW<float, Space::memory_space> one_adamw(one.parameters(), {}),
        shard_adamw(shard.parameters(), {});
    const auto expected = train(one, one_adamw, 20);
    const auto got = train(shard, shard_adamw, 20);
    double worst = 0;
    for (std::size_t s = 0; s < expected.size(); ++s)
      worst = std::max(worst, trident_test::relative_difference(got[s], expected[s]));
    CHECK(worst < 1e-4);
    CHECK(expected.back() < expected.front());  // it trains
  }
}

TEST_CASE("a checkpoint saved at this tp loads at tp = 1 and continues identically", "[tensor_parallel]") {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("trident_tp_checkpoint_np" + std::to_string(trident_test::world_size()) + ".safetensors"))
                               .string();
  Model shard(Space(), config, world_group(false));
  shard.initialize(21);
  trident::optim::AdamW<float, Space::memory_space> adamw(shard.parameters(), {});
  train(shard, adamw, 3);
  trident::gpt2::save_gpt2_checkpoint(path, config, shard.parameters(), adamw, {3, 0, 21},
                                       &shard.tensor_parallel_group().comm);
  MPI_Barrier(MPI_COMM_WORLD);
  // Reloaded at tp = 1 on every rank and at this tp: the next steps agree.
  Model one(Space(), config);
  trident::optim::AdamW<float, Space::memory_space> one_adamw(one.parameters(), {});
  const auto progress = trident::gpt2::load_gpt2_checkpoint(path, config, one.parameters(), one_adamw);
  CHECK(progress.step == 3);
  Model again(Space(), config, world_group(true));
  trident::optim::AdamW<float, Space::memory_space> again_adamw(again.parameters(), {});
  trident::gpt2::load_gpt2_checkpoint(path, config, again.parameters(), again_adamw);
  CHECK(host_copy(again.parameters().values()) == host_copy(shard.parameters().values()));
  CHECK(host_copy(again_adamw.exp_avg_sq()) == host_copy(adamw.exp_avg_sq()));
  auto continue_from = [&](Model& m, trident::optim::AdamW<float, Space::memory_space>& a) {
    std::vector<double> losses;
    const double scale = 1.0 / (batch * seq);
    for (int step = 4; step <= 6; ++step) {
      m.zero_grad();
      losses.push_back(m.forward(tokens_for(step, 3), tokens_for(step + 1, 3), batch, seq, scale) * scale);
      m.backward(scale);
      a.step(Space(), m.parameters(), step, 3e-3);
    }
    return losses;
  };
  const auto one_losses = continue_from(one, one_adamw);
  const auto shard_losses = continue_from(shard, adamw);
  for (std::size_t s = 0; s < one_losses.size(); ++s)
    CHECK(trident_test::relative_difference(one_losses[s], shard_losses[s]) < 1e-4);
  MPI_Barrier(MPI_COMM_WORLD);
  if (trident_test::world_rank() == 0) std::filesystem::remove(path);
}

TEST_CASE("the bytes each layer communicates equal Megatron's analytic count", "[tensor_parallel]") {
  for (bool sequence_parallel : {false, true}) {
    INFO("sequence parallel: " << sequence_parallel);
    Model shard(Space(), config, world_group(sequence_parallel));
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
    trident::gpt2::Gpt2Hooks hooks;
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
    shard.forward(tokens_for(0, 1), tokens_for(1, 1), batch, seq, 1.0 / n);
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
  if (trident_test::world_size() == 2) {
    Model shard(Space(), config, world_group(true));
    CHECK_THROWS_WITH(shard.forward({1, 2, 3}, {1, 2, 3}, 1, 3, 1.0),
                      Catch::Contains("splits the 3 rows of a micro-batch over 2 ranks"));
  }
}
