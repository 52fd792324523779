// The operator graph's counts against the published analytic ones: GPT-2's FLOPs per token
// (6N + 6VC + 12LCT), its parameters (Megatron-LM's equation 2), Megatron's activations per
// layer (34sbh + 5as^2b and its tensor- and sequence-parallel forms, Korthikanti et al. 2022),
// and what tensor parallelism leaves one rank.

#include "trident_test.hpp"

#include <trident/gpt2/spec.hpp>
#include <trident/plan/layer_costs.hpp>

#include <cmath>
#include <numeric>

using namespace trident;

namespace {

gpt2::Gpt2Config megatron_like() {
  gpt2::Gpt2Config config;
  config.layers = 6;
  config.heads = 8;
  config.hidden = 256;
  config.seq = 128;
  config.vocab = 1024;
  return config;
}

double sum_of(const std::vector<plan::LayerCost>& costs, double plan::LayerCost::*field) {
  double total = 0;
  for (const auto& c : costs) total += c.*field;
  return total;
}

}  // namespace

TEST_CASE("plan: GPT-2's FLOPs per token are 6N + 6VC + 12LCT on every tensor-parallel size", "[plan]") {
  const auto config = megatron_like();
  const double L = config.layers, C = config.hidden, V = config.vocab, T = config.seq;
  const double N = 12 * L * C * C;  // the blocks' weight matrices
  for (int tp : {1, 2, 4}) {
    plan::CostShape shape;
    shape.samples = 3;
    shape.seq = config.seq;
    shape.tp = tp;
    const auto costs = plan::layer_costs(gpt2::gpt2_spec(config), shape);
    REQUIRE(costs.size() == static_cast<std::size_t>(config.layers + 2));
    const double tokens = 3 * T;
    const double per_token = tp * (plan::forward_flops(costs) + plan::backward_flops(costs)) / tokens;
    CHECK(per_token == 6 * N + 6 * V * C + 12 * L * C * T);
    CHECK(tp * plan::forward_flops(costs) / tokens == 2 * N + 2 * V * C + 4 * L * C * T);
  }
}

TEST_CASE("plan: the flash kernel keeps B H T numbers per block and recomputes 2 T C per row", "[plan]") {
  const auto config = megatron_like();
  const double L = config.layers, C = config.hidden, H = config.heads, T = config.seq, B = 3;
  for (int tp : {1, 2}) {
    plan::CostShape shape;
    shape.samples = 3;
    shape.seq = config.seq;
    shape.tp = tp;
    const auto blocked = plan::layer_costs(gpt2::gpt2_spec(config), shape);
    const auto flash =
        plan::layer_costs(nn::with_attention_kernel(gpt2::gpt2_spec(config), nn::AttentionKernel::flash), shape);
    // Causal blocks of 64 rows: the probabilities' stored part of each T x T square.
    const double stored = 64.0 * 64.0 * 1 * 2 / 2 + (T - 64) * T;
    double kept_blocked = 0, kept_flash = 0;
    for (std::size_t i = 1; i + 1 < blocked.size(); ++i) {
      kept_blocked += blocked[i].trident.kept;
      kept_flash += flash[i].trident.kept;
    }
    CHECK(kept_blocked - kept_flash == L * B * H / tp * (stored - T) * 4);
    CHECK(plan::forward_flops(flash) == plan::forward_flops(blocked));
    CHECK(plan::backward_flops(flash) - plan::backward_flops(blocked) == L * 2 * B * T * T * C / tp);

    // On a host, two row blocks of 64 x T probabilities per (b, h) pair its threads run at once
    // (at most all B H / tp pairs); a device keeps none.
    const auto flash_scratch = [&](int slots) {
      plan::CostShape threads = shape;
      threads.attention_slots = slots;
      const auto costs =
          plan::layer_costs(nn::with_attention_kernel(gpt2::gpt2_spec(config), nn::AttentionKernel::flash), threads);
      double shared = 0;
      for (const auto& [key, bytes] : costs[1].trident.shared)
        shared += key.find("/attention") != std::string::npos ? bytes : 0;
      return shared;
    };
    const double row_block = 2 * 64 * T * 4;
    CHECK(flash_scratch(4) - flash_scratch(1) == 3 * row_block);
    CHECK(flash_scratch(1) - flash_scratch(0) == row_block);
    CHECK(flash_scratch(1000) - flash_scratch(1) == (B * H / tp - 1) * row_block);
  }
}

TEST_CASE("plan: GPT-2's parameters are Megatron's 12lh^2 + 13lh + (V + s)h plus the final LayerNorm", "[plan]") {
  const auto config = megatron_like();
  const double l = config.layers, h = config.hidden, V = config.vocab, s = config.seq;
  plan::CostShape shape;
  shape.seq = config.seq;
  const auto costs = plan::layer_costs(gpt2::gpt2_spec(config), shape);
  CHECK(sum_of(costs, &plan::LayerCost::global_parameters) == 12 * l * h * h + 13 * l * h + (V + s) * h + 2 * h);
  CHECK(sum_of(costs, &plan::LayerCost::parameters) == sum_of(costs, &plan::LayerCost::global_parameters));
  // tp = 4: the column and row linears and the table split, biases of row linears and LayerNorms stay.
  shape.tp = 4;
  const auto split = plan::layer_costs(gpt2::gpt2_spec(config), shape);
  const double block = (3 * h * h + 3 * h) / 4 + h * h / 4 + h + (4 * h * h + 4 * h) / 4 + 4 * h * h / 4 + h + 4 * h;
  CHECK(split[1].parameters == block);
  CHECK(split[0].parameters == V / 4 * h + s * h);
  const auto tied = plan::tied_table_sizes(gpt2::gpt2_spec(config));
  CHECK(plan::tied_table_elements(tied, 1, config.layers + 2, 4) == V / 4 * h);
  CHECK(plan::tied_table_elements(tied, 0, config.layers + 2, 4) == 0);
}

TEST_CASE("plan: Megatron's activations per layer: 34sbh + 5as^2b, split by tp and sequence parallelism", "[plan]") {
  const auto config = megatron_like();
  const double s = config.seq, b = 2, h = config.hidden, a = config.heads;
  for (int t : {1, 2, 4, 8}) {
    for (bool sp : {false, true}) {
      if (sp && t == 1) continue;
      plan::CostShape shape;
      shape.samples = 2;
      shape.seq = config.seq;
      shape.tp = t;
      shape.sequence_parallel = sp;
      const auto costs = plan::layer_costs(gpt2::gpt2_spec(config), shape);
      const plan::LayerCost& block = costs[1];
      INFO("t = " << t << (sp ? ", sequence parallel" : ""));
      if (!sp) {
        CHECK(block.megatron == Approx(s * b * h * (10 + 24.0 / t + 5 * a * s / (h * t))).epsilon(1e-12));
        CHECK(block.megatron_selective == Approx(s * b * h * (10 + 24.0 / t)).epsilon(1e-12));
      } else {
        CHECK(block.megatron == Approx(s * b * h / t * (34 + 5 * a * s / h)).epsilon(1e-12));
        CHECK(block.megatron_selective == Approx(34 * s * b * h / t).epsilon(1e-12));
      }
    }
  }
}

TEST_CASE("plan: the collectives tensor parallelism implies", "[plan]") {
  const auto config = megatron_like();
  const double rows = 2.0 * config.seq, h = config.hidden, e = 4;
  plan::CostShape shape;
  shape.samples = 2;
  shape.seq = config.seq;
  shape.tp = 2;
  auto block = plan::layer_costs(gpt2::gpt2_spec(config), shape)[1];
  // Megatron: one all-reduce of the activations per pair in forward and one in backward.
  REQUIRE(block.forward.collectives.size() == 2);
  REQUIRE(block.backward.collectives.size() == 2);
  for (const auto& c : block.forward.collectives) {
    CHECK(c.kind == plan::CollectiveKind::all_reduce);
    CHECK(c.bytes == rows * h * e);
  }
  // Sequence parallelism: an all-gather and a reduce-scatter of the same bytes instead.
  shape.sequence_parallel = true;
  block = plan::layer_costs(gpt2::gpt2_spec(config), shape)[1];
  REQUIRE(block.forward.collectives.size() == 4);
  int gathers = 0, scatters = 0;
  for (const auto& c : block.forward.collectives) {
    gathers += c.kind == plan::CollectiveKind::all_gather;
    scatters += c.kind == plan::CollectiveKind::reduce_scatter;
    CHECK(c.bytes == rows * h * e);
  }
  CHECK(gathers == 2);
  CHECK(scatters == 2);
  // tp = 1: none.
  shape.tp = 1;
  shape.sequence_parallel = false;
  for (const auto& c : plan::layer_costs(gpt2::gpt2_spec(config), shape)) {
    CHECK(c.forward.collectives.empty());
    CHECK(c.backward.collectives.empty());
  }
}

TEST_CASE("plan: an MLP's GEMMs by shape", "[plan]") {
  const nn::ModelSpec mlp = nn::megatron_pairs(nn::sequential(
      {nn::linear(8, 64), nn::gelu(), nn::linear(64, 16), nn::linear(16, 1)}, nn::Loss::mean_squared_error));
  plan::CostShape shape;
  shape.samples = 32;
  shape.tp = 2;
  const auto costs = plan::layer_costs(mlp, shape);
  REQUIRE(costs.size() == 4);
  REQUIRE(costs[0].forward.gemms.size() == 1);
  CHECK(costs[0].forward.gemms[0].m == 32);
  CHECK(costs[0].forward.gemms[0].n == 32);  // 64 columns split in two
  CHECK(costs[0].forward.gemms[0].k == 8);
  CHECK(costs[2].forward.gemms[0].k == 32);  // the row-parallel linear reads its half of the features
  CHECK(costs[3].forward.gemms[0].k == 16);  // a replicated linear after the pair
  CHECK(costs[3].parameters == 17);
  CHECK(costs[2].output_bytes == 32 * 16 * 4);
}

TEST_CASE("plan: each GEMM carries the beta the layer calls it with", "[plan]") {
  // A linear whose bias the GELU after it in their chain adds, one that adds its own bias, one
  // without.
  const nn::ModelSpec mlp = nn::sequential(
      {nn::sequence({nn::linear(8, 64), nn::gelu()}), nn::linear(64, 16), nn::linear(16, 4, nn::Parallel::none, false)},
      nn::Loss::mean_squared_error);
  plan::CostShape shape;
  shape.samples = 32;
  const auto costs = plan::layer_costs(mlp, shape);
  REQUIRE(costs.size() == 3);
  CHECK(!costs[0].forward.gemms.at(0).accumulate);  // written over; the GELU adds the bias
  CHECK(costs[1].forward.gemms.at(0).accumulate);   // added onto the bias already in place
  CHECK(!costs[2].forward.gemms.at(0).accumulate);  // no bias
  for (int layer : {0, 1, 2}) {
    const auto& backward = costs[static_cast<std::size_t>(layer)].backward.gemms;
    REQUIRE(backward.size() == 2);
    CHECK(!backward[0].weight);
    CHECK(!backward[0].accumulate);  // the input gradient is written
    CHECK(backward[1].weight);
    CHECK(backward[1].accumulate);  // weight gradients add up over micro-batches
  }
  // GPT-2's tied head writes its logits and its input gradient, and adds to the table's gradient.
  plan::CostShape sequences;
  sequences.samples = 2;
  sequences.seq = megatron_like().seq;
  const auto gpt = plan::layer_costs(gpt2::gpt2_spec(megatron_like()), sequences);
  const auto& head = gpt.back();  // the final LayerNorm and the head
  REQUIRE(head.forward.gemms.size() == 1);
  CHECK(!head.forward.gemms[0].accumulate);
  REQUIRE(head.backward.gemms.size() == 2);
  CHECK(!head.backward.gemms[0].accumulate);
  CHECK(head.backward.gemms[1].accumulate);
}
