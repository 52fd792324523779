// Mixed precision through the one training driver: a small transformer whose activations are
// bfloat16 or float16 (float parameters, gradients, AdamW state and checkpoints) trains in
// every layout of the ranks this test runs on, and its loss curve tracks the float run of the
// same layout; float16 recovers from a loss scale that overflows; checkpoints pass between the
// precisions and the layouts.
//
// The vocabulary of 300 has ids past 256, which bfloat16 cannot hold: the embedding must read
// them as the float input they come in.

#include "trident_test.hpp"

#include <trident/nn.hpp>
#include <trident/train.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace {

namespace nn = trident::nn;
namespace train = trident::train;
using Space = Kokkos::DefaultExecutionSpace;
using trident::bfloat16;
using trident::float16;
using Batch = train::Batch<float, Space>;

constexpr int vocab = 300, features = 16, heads = 4, seq = 8, sequences = 8, rows = sequences * seq;
constexpr int steps = 30;
constexpr double learning_rate = 3e-3;

nn::ModelSpec transformer() {
  const int c = features;
  return nn::megatron_pairs(nn::sequential(
      {nn::named("wte", nn::embedding(vocab, c)), nn::position_embedding(seq, c),
       nn::residual(
           {nn::layer_norm(c), nn::linear(c, 3 * c), nn::causal_self_attention(c, heads, seq), nn::linear(c, c)}),
       nn::residual({nn::layer_norm(c), nn::linear(c, 4 * c), nn::gelu(), nn::linear(4 * c, c)}), nn::layer_norm(c),
       nn::tied_head(vocab, c, "wte")},
      nn::Loss::cross_entropy));
}

// Ids all over the vocabulary (most past 256); the target of a row is its sequence's first
// token (attention to position 0 tells it) shifted, so the model has something to learn.
int token(int step, int row) {
  return (37 * row + 11 * step + 5 * (row / seq) * (row / seq)) % vocab;
}
int target(int step, int row) {
  return (token(step, row - row % seq) + 1) % vocab;
}

Batch batch_of(int step) {
  Batch batch;
  Kokkos::View<float**, Kokkos::LayoutRight, Space::memory_space> inputs("ids", rows, 1);
  Kokkos::View<int*, Space::memory_space> classes("classes", rows);
  auto ids = Kokkos::create_mirror_view(inputs);
  auto targets = Kokkos::create_mirror_view(classes);
  for (int r = 0; r < rows; ++r) {
    ids(r, 0) = static_cast<float>(token(step % 4, r));
    targets(r) = target(step % 4, r);
  }
  Kokkos::deep_copy(inputs, ids);
  Kokkos::deep_copy(classes, targets);
  batch.inputs = inputs;
  batch.targets.classes = classes;
  return batch;
}

struct Layout {
  int dp = 1, tp = 1, pp = 1, zero = 0;
  const char* schedule = "1f1b";
  bool sequence_parallel = false;

  train::Layout trainer_layout() const {
    train::Layout l;
    l.dp = dp;
    l.tp = tp;
    l.pp = pp;
    l.zero_stage = zero;
    l.schedule = schedule;
    l.sequence_parallel = sequence_parallel;
    if (pp > 1) l.micro_batch = sequences / dp / (2 * pp);  // 2 pp micro-batches per replica
    return l;
  }
  std::string describe() const { return trainer_layout().describe(); }
};

std::vector<Layout> layouts_of(int world) {
  switch (world) {
    case 1:
      return {{}};
    case 2:
      return {{2, 1, 1, 0}, {2, 1, 1, 3}, {1, 2, 1, 0, "1f1b", true}, {1, 1, 2, 0, "1f1b"}, {1, 1, 2, 0, "zb"}};
    case 4:
      return {{2, 2, 1, 1}, {1, 2, 2, 0, "1f1b", true}, {2, 1, 2, 2, "gpipe"}, {1, 4, 1}};
    default:
      return {};
  }
}

using Tensors = train::Trainer<float, Space>::Tensors;

struct Run {
  std::vector<double> losses, grad_norms;
  std::vector<bool> skipped;
  std::vector<double> scales;
  Tensors first_gradients;  // of the first step, unscaled and clipped (without ZeRO)
};

template <class Scalar>
Run train_steps(train::Trainer<Scalar, Space>& trainer, int from, int to) {
  Run run;
  for (int step = from; step < to; ++step) {
    const auto report = trainer.step(batch_of(step), learning_rate);
    run.losses.push_back(report.loss);
    run.grad_norms.push_back(report.grad_norm);
    run.skipped.push_back(report.skipped);
    run.scales.push_back(report.loss_scale);
    if (step == from && trainer.layout().zero_stage == 0) run.first_gradients = trainer.global_gradients();
  }
  return run;
}

// The largest difference between two sets of tensors, relative to the largest element of `b`.
double gradient_gap(const Tensors& a, const Tensors& b) {
  double gap = 0, scale = 0;
  for (const auto& [name, values] : b)
    for (std::size_t i = 0; i < values.size(); ++i) {
      scale = std::max(scale, std::abs(values[i]));
      gap = std::max(gap, std::abs(a.at(name)[i] - values[i]));
    }
  return gap / scale;
}

train::TrainerSettings settings() {
  train::TrainerSettings s;
  s.adamw = {0.9, 0.95, 1e-8, 0.1};
  s.seed = 3;
  return s;
}

template <class Scalar>
Run run_layout(const Layout& layout, train::TrainerSettings s = settings()) {
  const trident::comm::Communicator world(MPI_COMM_WORLD, "world");
  train::Trainer<Scalar, Space> trainer(world, transformer(), layout.trainer_layout(), s);
  return train_steps(trainer, 0, steps);
}

double largest_gap(const std::vector<double>& a, const std::vector<double>& b) {
  double gap = 0;
  for (std::size_t i = 0; i < a.size(); ++i) gap = std::max(gap, std::abs(a[i] - b[i]));
  return gap;
}

std::string curve(const std::vector<double>& losses) {
  std::string text;
  char number[32];
  for (double l : losses) {
    std::snprintf(number, sizeof number, " %.5f", l);
    text += number;
  }
  return text;
}

bool same_tensors(const Tensors& a, const Tensors& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [name, values] : a)
    if (b.count(name) == 0 || b.at(name) != values) return false;
  return true;
}

std::string temporary_path(const char* name) {
  // Every rank names the same file: the checkpoint is one file of the run.
  return std::string("/tmp/trident_mixed_precision_") + name + "_" + std::to_string(trident_test::world_size()) +
         ".safetensors";
}

}  // namespace

// The tolerances: bfloat16 keeps 8 significant bits, so every activation carries a relative
// rounding of up to 2^-9 = 2e-3 (float16: 11 bits, 2^-12); the parameters, their gradients and
// AdamW stay float, so the rounding does not accumulate in the weights beyond what the
// gradients carry (the products read the weights rounded, afresh at every step). Measured over
// the 30 steps in the layouts of 1, 2 and 4 ranks: bfloat16 within 0.0022 of the float run's
// loss, float16 within 0.00011, while the loss falls by 1.4 from ln 300 = 5.7. The bounds are
// 3x those. A run that rounded the ids past 256, kept 16-bit master weights or did not unscale
// its gradients misses them by far.
constexpr double bf16_gap = 0.0065, fp16_gap = 0.00035;

TEST_CASE("bfloat16 and float16 activations track the float run in every layout", "[nn][mixed]") {
  for (const Layout& layout : layouts_of(trident_test::world_size())) {
    INFO("layout: " << layout.describe());
    const Run fp32 = run_layout<float>(layout);
    const Run bf16 = run_layout<bfloat16>(layout);
    const Run fp16 = run_layout<float16>(layout);
    INFO("fp32:" << curve(fp32.losses));
    INFO("bf16:" << curve(bf16.losses));
    INFO("fp16:" << curve(fp16.losses));
    CHECK(fp32.losses.front() - fp32.losses.back() > 1.0);
    CHECK(largest_gap(bf16.losses, fp32.losses) < bf16_gap);
    CHECK(largest_gap(fp16.losses, fp32.losses) < fp16_gap);
    // The gradients themselves, unscaled (AdamW would hide a forgotten 1 / loss scale): measured
    // within 0.0063 (bfloat16) and 0.00041 (float16) of float's, relative to the largest.
    CHECK(std::abs(fp16.grad_norms.front() / fp32.grad_norms.front() - 1) < 1e-3);
    CHECK(std::abs(bf16.grad_norms.front() / fp32.grad_norms.front() - 1) < 1e-2);
    if (layout.zero == 0) {
      CHECK(gradient_gap(bf16.first_gradients, fp32.first_gradients) < 1e-2);
      CHECK(gradient_gap(fp16.first_gradients, fp32.first_gradients) < 1.5e-3);
    }
    CHECK(std::none_of(bf16.skipped.begin(), bf16.skipped.end(), [](bool s) { return s; }));
    CHECK(std::none_of(fp16.skipped.begin(), fp16.skipped.end(), [](bool s) { return s; }));
    CHECK(bf16.scales.front() == 1.0);
    CHECK(fp16.scales.front() == 65536.0);  // the dynamic scale float16 gets by default
  }
}

TEST_CASE("float16 skips the steps whose scaled gradients overflow and shrinks the scale", "[nn][mixed]") {
  // From 2^30 the scaled gradient of a logit (up to 2^30 / 64 rows) is far past float16's
  // 65504: the first steps overflow until the scale has halved to where they fit.
  const Layout layout = layouts_of(trident_test::world_size()).front();
  auto s = settings();
  trident::optim::LossScalerSettings scaling;
  scaling.initial_scale = 1073741824.0;  // 2^30
  scaling.max_scale = scaling.initial_scale;
  scaling.hysteresis = 1;  // every overflow halves the scale; it never grows within 30 steps
  s.loss_scaling = scaling;
  const Run fp16 = run_layout<float16>(layout, s);
  INFO("fp16:" << curve(fp16.losses));
  int skips = 0, first_applied = -1;
  for (int k = 0; k < steps; ++k) {
    const auto i = static_cast<std::size_t>(k);
    CHECK(fp16.scales[i] == std::ldexp(1.0, 30 - skips));
    if (fp16.skipped[i]) ++skips;
    if (!fp16.skipped[i] && first_applied < 0) first_applied = k;
  }
  CHECK(first_applied >= 3);
  CHECK(skips < 15);
  // A skipped step changes nothing: until the first update, each batch (of the 4 the steps
  // cycle through) gives the loss it gave the first time, bit for bit.
  for (int k = 4; k <= first_applied; ++k)
    CHECK(fp16.losses[static_cast<std::size_t>(k)] == fp16.losses[static_cast<std::size_t>(k % 4)]);
  CHECK(fp16.losses.back() < fp16.losses.front() - 0.3);  // and then it trains
}

TEST_CASE("checkpoints pass between float and 16-bit runs and between layouts", "[nn][mixed]") {
  const trident::comm::Communicator world(MPI_COMM_WORLD, "world");
  const auto layouts = layouts_of(world.size());
  const Layout saved_in = layouts.back();
  train::Layout one_replica_each;  // another layout of the same ranks
  one_replica_each.dp = world.size();
  INFO("saved in " << saved_in.describe() << ", loaded in " << one_replica_each.describe());
  const std::string path = temporary_path("bf16");

  // bfloat16 saves its float master weights and moments: a float run loads them exactly.
  train::Trainer<bfloat16, Space> bf16(world, transformer(), saved_in.trainer_layout(), settings());
  train_steps(bf16, 0, 10);
  bf16.save(path);
  train::Trainer<float, Space> fp32(world, transformer(), one_replica_each, settings());
  fp32.load(path);
  CHECK(fp32.steps_done() == 10);
  CHECK(same_tensors(fp32.global_parameters(), bf16.global_parameters()));
  // ... and continues as the bfloat16 run does, within bfloat16's tolerance.
  const Run continued_fp32 = train_steps(fp32, 10, 20);
  const Run continued_bf16 = train_steps(bf16, 10, 20);
  CHECK(largest_gap(continued_fp32.losses, continued_bf16.losses) < bf16_gap);

  // float16 saves its loss scale with them; a float16 run resumed from the float checkpoint
  // takes its weights bitwise, and one resumed from its own continues bitwise, scale included.
  const std::string float_path = temporary_path("fp32");
  fp32.save(float_path);
  auto s = settings();
  trident::optim::LossScalerSettings scaling;
  scaling.growth_interval = 4;  // the scale moves within the run
  s.loss_scaling = scaling;
  train::Trainer<float16, Space> fp16(world, transformer(), saved_in.trainer_layout(), s);
  fp16.load(float_path);
  CHECK(same_tensors(fp16.global_parameters(), fp32.global_parameters()));
  CHECK(fp16.loss_scaler().scale() == 65536.0);  // a float checkpoint holds no scale
  train_steps(fp16, 20, 26);
  const std::string half_path = temporary_path("fp16");
  fp16.save(half_path);
  const Run uninterrupted = train_steps(fp16, 26, 30);
  train::Trainer<float16, Space> resumed(world, transformer(), one_replica_each, s);
  resumed.load(half_path);
  CHECK(resumed.loss_scaler().scale() == 131072.0);  // grown once, after 4 clean steps
  const Run after = train_steps(resumed, 26, 30);
  CHECK(after.scales == uninterrupted.scales);
  // Another layout rounds its partial sums to 16 bits elsewhere; on one rank the two are one.
  if (world.size() == 1) {
    CHECK(after.losses == uninterrupted.losses);
  } else {
    CHECK(largest_gap(after.losses, uninterrupted.losses) < fp16_gap);
  }
  world.barrier();
  if (world.rank() == 0)
    for (const auto& p : {path, float_path, half_path}) std::remove(p.c_str());
}

TEST_CASE("a 16-bit model looks up every id exactly and refuses an embedding it would feed rounded ids",
          "[nn][mixed]") {
  // Ids 255..299: bfloat16 holds only the even ones past 256 (and float16 all up to 2048), so
  // rounded ids would embed as their neighbours' rows.
  const auto spec = nn::sequential({nn::embedding(vocab, 4), nn::linear(4, 2)}, nn::Loss::mean_squared_error);
  nn::Model<float, Space> reference(Space(), spec);
  nn::Model<bfloat16, Space> model(Space(), spec);
  reference.initialize(9);
  model.initialize(9);
  const int n = vocab - 255;
  Kokkos::View<float**, Kokkos::LayoutRight, Space::memory_space> ids("ids", n, 1);
  auto host_ids = Kokkos::create_mirror_view(ids);
  for (int r = 0; r < n; ++r) host_ids(r, 0) = static_cast<float>(255 + r);
  Kokkos::deep_copy(ids, host_ids);
  reference.predict(ids);
  model.predict(ids);
  const auto embedded = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), model.activation_at(1));
  const auto expected = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), reference.activation_at(1));
  int mismatches = 0;
  for (int r = 0; r < n; ++r)
    for (int j = 0; j < 4; ++j)
      mismatches += static_cast<float>(embedded(r, j)) != trident::round_to<bfloat16>(expected(r, j)) ? 1 : 0;
  CHECK(mismatches == 0);

  // An embedding after another layer would read the ids rounded to 16 bits: refused, named.
  const auto late =
      nn::sequential({nn::linear(1, 1), nn::embedding(vocab, 4), nn::linear(4, 2)}, nn::Loss::mean_squared_error);
  nn::Model<bfloat16, Space> refused(Space(), late);
  refused.initialize(9);
  CHECK_THROWS_WITH(refused.predict(ids), Catch::Contains("16 bits would round them"));
}
