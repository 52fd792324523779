// The double-precision GPT-2 reference that the library's model is tested against. Its backward
// pass is checked against finite differences of its own loss; its forward pass is pinned to
// the GPT-2 definition by cases worked out by hand and by structural properties (causality,
// tied head), so that a shared misreading of the definition cannot pass unnoticed.

#include "trident_test.hpp"

#include "gpt2_reference.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

namespace ref = trident_test::reference;

using Pair = std::array<double, 2>;

// Tokens and targets for a batch: a fixed, irregular pattern that uses most of the vocabulary.
std::vector<int> sample_tokens(int B, int T, int vocab, int salt) {
  std::vector<int> tokens(static_cast<std::size_t>(B * T));
  for (int n = 0; n < B * T; ++n) tokens[static_cast<std::size_t>(n)] = (7 * n + 3 * salt + n * n) % vocab;
  return tokens;
}

// LayerNorm of a 2-vector (a, b): the mean is (a+b)/2 and the biased variance ((a-b)/2)^2, so
// the normalized vector is (+d, -d) / sqrt(d^2 + eps) with d = (a-b)/2.
Pair layernorm_of_pair(Pair x, Pair gain, Pair bias) {
  const double d = (x[0] - x[1]) / 2.0;
  const double normalized = d / std::sqrt(d * d + 1e-5);
  return {normalized * gain[0] + bias[0], -normalized * gain[1] + bias[1]};
}

// Softmax weights of two scores.
Pair softmax_of_pair(double s0, double s1) {
  const double e0 = std::exp(s0), e1 = std::exp(s1);
  return {e0 / (e0 + e1), e1 / (e0 + e1)};
}

// Cross-entropy of logits (z0, z1, z0 + z1), the logits of the tied head for wte rows
// (1,0), (0,1), (1,1) used in the hand-worked cases.
double cross_entropy_of(Pair z, int target) {
  const std::array<double, 3> logits = {z[0], z[1], z[0] + z[1]};
  const double log_sum = std::log(std::exp(logits[0]) + std::exp(logits[1]) + std::exp(logits[2]));
  return log_sum - logits[static_cast<std::size_t>(target)];
}

// Shared by the hand-worked cases: V = 3, C = 2, positions 0 and 1, tokens {0, 1}, targets {1, 2}.
void set_embeddings_and_final_norm(ref::NamedTensors& params) {
  params.at("wte.weight") = {1.0, 0.0, /**/ 0.0, 1.0, /**/ 1.0, 1.0};
  params.at("wpe.weight") = {0.5, 0.0, /**/ 0.0, -0.25};
  params.at("ln_f.weight") = {1.0, 2.0};
  params.at("ln_f.bias") = {0.0, 0.5};
}
const Pair kEmbedded0 = {1.5, 0.0};   // wte[0] + wpe[0]
const Pair kEmbedded1 = {0.0, 0.75};  // wte[1] + wpe[1]
const Pair kFinalGain = {1.0, 2.0}, kFinalBias = {0.0, 0.5};

// Tanh-approximation GELU at the three points the hand-worked block uses (computed offline);
// the exact erf GELU would give 0.8413447 at 1, so these pin the approximation.
constexpr double kGelu1 = 0.8411919906082768;
constexpr double kGeluMinusHalf = -0.15428599017485606;
constexpr double kGelu2 = 1.954597694087775;

struct CentralDifferenceReport {
  double normwise = 0.0;           // |g - fd| / |fd| over the tensor
  double worst_elementwise = 0.0;  // max over entries with |fd| >= elementwise_floor
  double worst_absolute = 0.0;     // max |g - fd| over all entries
  double largest_gradient = 0.0;
};

// Fourth-order central differences: the truncation error (h^4) stays far below the
// rounding error (eps * loss / h), so the comparison can be tight.
CentralDifferenceReport compare_with_finite_differences(const ref::Gpt2Config& config, ref::NamedTensors params,
                                                        const std::vector<int>& tokens, const std::vector<int>& targets,
                                                        int B, int T, const std::string& name,
                                                        const std::vector<double>& gradient, double elementwise_floor) {
  const double h = 3e-4;
  auto loss_at = [&](std::size_t i, double shift, double original) {
    params.at(name)[i] = original + shift;
    return ref::loss(config, params, tokens, targets, B, T);
  };
  CentralDifferenceReport report;
  double difference_sq = 0.0, reference_sq = 0.0;
  for (std::size_t i = 0; i < gradient.size(); ++i) {
    const double original = params.at(name)[i];
    const double fd = (8.0 * (loss_at(i, h, original) - loss_at(i, -h, original)) -
                       (loss_at(i, 2 * h, original) - loss_at(i, -2 * h, original))) /
                      (12.0 * h);
    params.at(name)[i] = original;
    const double difference = std::abs(gradient[i] - fd);
    difference_sq += difference * difference;
    reference_sq += fd * fd;
    report.worst_absolute = std::max(report.worst_absolute, difference);
    report.largest_gradient = std::max(report.largest_gradient, std::abs(fd));
    if (std::abs(fd) >= elementwise_floor)
      report.worst_elementwise = std::max(report.worst_elementwise, difference / std::abs(fd));
  }
  report.normwise = reference_sq > 0.0 ? std::sqrt(difference_sq / reference_sq) : std::sqrt(difference_sq);
  return report;
}

}  // namespace

TEST_CASE("parameter names and shapes follow GPT2LMHeadModel", "[gpt2_reference]") {
  const ref::Gpt2Config one_layer{1, 2, 8, 5, 11};
  const std::vector<ref::ParameterSpec> specs = ref::parameter_specs(one_layer);
  const std::vector<std::pair<std::string, std::vector<std::int64_t>>> expected = {
      {"wte.weight", {11, 8}},
      {"wpe.weight", {5, 8}},
      {"h.0.ln_1.weight", {8}},
      {"h.0.ln_1.bias", {8}},
      {"h.0.attn.c_attn.weight", {8, 24}},
      {"h.0.attn.c_attn.bias", {24}},
      {"h.0.attn.c_proj.weight", {8, 8}},
      {"h.0.attn.c_proj.bias", {8}},
      {"h.0.ln_2.weight", {8}},
      {"h.0.ln_2.bias", {8}},
      {"h.0.mlp.c_fc.weight", {8, 32}},
      {"h.0.mlp.c_fc.bias", {32}},
      {"h.0.mlp.c_proj.weight", {32, 8}},
      {"h.0.mlp.c_proj.bias", {8}},
      {"ln_f.weight", {8}},
      {"ln_f.bias", {8}},
  };
  REQUIRE(specs.size() == expected.size());
  for (std::size_t i = 0; i < specs.size(); ++i) {
    CHECK(specs[i].name == expected[i].first);
    CHECK(specs[i].shape == expected[i].second);
  }

  // GPT-2 small has 124,439,808 parameters with the head tied to wte.
  const ref::Gpt2Config gpt2_small{12, 12, 768, 1024, 50257};
  std::int64_t total = 0;
  for (const ref::ParameterSpec& spec : ref::parameter_specs(gpt2_small)) total += ref::element_count(spec.shape);
  CHECK(total == 124439808);
  CHECK(ref::parameter_specs(gpt2_small).size() == 2 + 12 * 12 + 2);
}

TEST_CASE("without blocks the loss is the final LayerNorm and tied head worked out by hand", "[gpt2_reference]") {
  const ref::Gpt2Config config{0, 1, 2, 2, 3};
  ref::NamedTensors params = ref::zero_tensors(config);
  set_embeddings_and_final_norm(params);
  const std::vector<int> tokens = {0, 1}, targets = {1, 2};

  const Pair z0 = layernorm_of_pair(kEmbedded0, kFinalGain, kFinalBias);
  const Pair z1 = layernorm_of_pair(kEmbedded1, kFinalGain, kFinalBias);
  const double expected = (cross_entropy_of(z0, 1) + cross_entropy_of(z1, 2)) / 2.0;

  std::vector<double> logits;
  const double loss = ref::loss(config, params, tokens, targets, 1, 2, &logits);
  CHECK(trident_test::relative_difference(loss, expected) < 1e-13);
  REQUIRE(logits.size() == 6);
  const std::array<double, 6> expected_logits = {z0[0], z0[1], z0[0] + z0[1], z1[0], z1[1], z1[0] + z1[1]};
  for (std::size_t i = 0; i < 6; ++i) CHECK(std::abs(logits[i] - expected_logits[i]) < 1e-13);
}

TEST_CASE("one block with one and with two heads matches the definition worked out by hand", "[gpt2_reference]") {
  for (int heads : {1, 2}) {
    CAPTURE(heads);
    const ref::Gpt2Config config{1, heads, 2, 2, 3};
    ref::NamedTensors params = ref::zero_tensors(config);
    set_embeddings_and_final_norm(params);
    const Pair ln1_gain = {1.5, 0.5}, ln1_bias = {0.1, -0.2};
    params.at("h.0.ln_1.weight") = {ln1_gain[0], ln1_gain[1]};
    params.at("h.0.ln_1.bias") = {ln1_bias[0], ln1_bias[1]};
    // Conv1D weight [in=2, out=6], columns [q0 q1 | k0 k1 | v0 v1]: q is the constant bias
    // (1, 0.5), k = h, v = (2 h0 + h1, h1 + 0.3). The asymmetric v catches a transposed layout.
    params.at("h.0.attn.c_attn.weight") = {0, 0, 1, 0, 2, 0,  //
                                           0, 0, 0, 1, 1, 1};
    params.at("h.0.attn.c_attn.bias") = {1, 0.5, 0, 0, 0, 0.3};
    // y = (o0, 0.5 o0 - o1) + (0.05, 0)
    params.at("h.0.attn.c_proj.weight") = {1, 0.5,  //
                                           0, -1};
    params.at("h.0.attn.c_proj.bias") = {0.05, 0};
    params.at("h.0.ln_2.weight") = {1, 1};
    // With zero c_fc weights the MLP adds the same vector at every position:
    // (gelu(1) + 0.5 gelu(2), gelu(-0.5) + 0.5 gelu(2)) + (0, 0.1).
    params.at("h.0.mlp.c_fc.bias") = {1, -0.5, 2, 0, 0, 0, 0, 0};
    std::vector<double>& fc_proj = params.at("h.0.mlp.c_proj.weight");  // [8, 2]
    fc_proj[0 * 2 + 0] = 1.0;
    fc_proj[1 * 2 + 1] = 1.0;
    fc_proj[2 * 2 + 0] = 0.5;
    fc_proj[2 * 2 + 1] = 0.5;
    params.at("h.0.mlp.c_proj.bias") = {0, 0.1};
    const Pair mlp = {kGelu1 + 0.5 * kGelu2, kGeluMinusHalf + 0.5 * kGelu2 + 0.1};

    const Pair h0 = layernorm_of_pair(kEmbedded0, ln1_gain, ln1_bias);
    const Pair h1 = layernorm_of_pair(kEmbedded1, ln1_gain, ln1_bias);
    const Pair v0 = {2 * h0[0] + h0[1], h0[1] + 0.3}, v1 = {2 * h1[0] + h1[1], h1[1] + 0.3};
    const Pair q = {1.0, 0.5};
    // Position 0 sees only itself; position 1 mixes both values.
    const Pair attended0 = v0;
    Pair attended1;
    if (heads == 1) {  // head_dim 2, scale 1/sqrt(2)
      const Pair p = softmax_of_pair((q[0] * h0[0] + q[1] * h0[1]) / std::sqrt(2.0),
                                     (q[0] * h1[0] + q[1] * h1[1]) / std::sqrt(2.0));
      attended1 = {p[0] * v0[0] + p[1] * v1[0], p[0] * v0[1] + p[1] * v1[1]};
    } else {  // head_dim 1, scale 1: head 0 owns q0, k0, v0; head 1 owns q1, k1, v1
      const Pair p = softmax_of_pair(q[0] * h0[0], q[0] * h1[0]);
      const Pair r = softmax_of_pair(q[1] * h0[1], q[1] * h1[1]);
      attended1 = {p[0] * v0[0] + p[1] * v1[0], r[0] * v0[1] + r[1] * v1[1]};
    }
    auto block_output = [&](Pair x, Pair o) {
      return Pair{x[0] + o[0] + 0.05 + mlp[0], x[1] + 0.5 * o[0] - o[1] + mlp[1]};
    };
    const Pair z0 = layernorm_of_pair(block_output(kEmbedded0, attended0), kFinalGain, kFinalBias);
    const Pair z1 = layernorm_of_pair(block_output(kEmbedded1, attended1), kFinalGain, kFinalBias);
    const double expected = (cross_entropy_of(z0, 1) + cross_entropy_of(z1, 2)) / 2.0;

    std::vector<double> logits;
    const double loss = ref::loss(config, params, {0, 1}, {1, 2}, 1, 2, &logits);
    CHECK(trident_test::relative_difference(loss, expected) < 1e-12);
    const std::array<double, 6> expected_logits = {z0[0], z0[1], z0[0] + z0[1], z1[0], z1[1], z1[0] + z1[1]};
    for (std::size_t i = 0; i < 6; ++i) CHECK(std::abs(logits[i] - expected_logits[i]) < 1e-12);
  }
}

TEST_CASE("the tanh GELU is the one GPT-2 uses", "[gpt2_reference]") {
  CHECK(std::abs(ref::detail::gelu(1.0) - kGelu1) < 1e-15);
  CHECK(std::abs(ref::detail::gelu(-0.5) - kGeluMinusHalf) < 1e-15);
  CHECK(std::abs(ref::detail::gelu(2.0) - kGelu2) < 1e-15);
}

TEST_CASE("a position's logits depend on no later token and on no other sequence", "[gpt2_reference]") {
  const ref::Gpt2Config config{2, 2, 8, 5, 11};
  const ref::NamedTensors params = ref::random_parameters(config, 2024);
  const int B = 2, T = 5, V = config.vocab;
  std::vector<int> tokens = sample_tokens(B, T, V, 0);
  const std::vector<int> targets = sample_tokens(B, T, V, 1);
  std::vector<double> before, after;
  ref::loss(config, params, tokens, targets, B, T, &before);
  const int changed_position = 3;
  tokens[changed_position] = (tokens[changed_position] + 5) % V;  // sequence 0
  ref::loss(config, params, tokens, targets, B, T, &after);

  auto row_changed = [&](int b, int t) {
    bool changed = false;
    for (int v = 0; v < V; ++v) {
      const auto i = static_cast<std::size_t>((b * T + t) * V + v);
      changed = changed || before[i] != after[i];
    }
    return changed;
  };
  for (int t = 0; t < T; ++t) {
    CAPTURE(t);
    CHECK(row_changed(0, t) == (t >= changed_position));
    CHECK_FALSE(row_changed(1, t));
  }
}

TEST_CASE("a short batch uses positions 0..T-1 and matches the prefix of a full one", "[gpt2_reference]") {
  const ref::Gpt2Config config{2, 2, 8, 5, 11};
  const ref::NamedTensors params = ref::random_parameters(config, 7);
  const int B = 2, full_T = 5, short_T = 3, V = config.vocab;
  const std::vector<int> tokens = sample_tokens(B, full_T, V, 2), targets = sample_tokens(B, full_T, V, 3);
  std::vector<int> short_tokens, short_targets;
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < short_T; ++t) {
      short_tokens.push_back(tokens[static_cast<std::size_t>(b * full_T + t)]);
      short_targets.push_back(targets[static_cast<std::size_t>(b * full_T + t)]);
    }
  std::vector<double> full_logits, short_logits;
  ref::loss(config, params, tokens, targets, B, full_T, &full_logits);
  ref::loss(config, params, short_tokens, short_targets, B, short_T, &short_logits);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < short_T; ++t)
      for (int v = 0; v < V; ++v)
        CHECK(std::abs(short_logits[static_cast<std::size_t>((b * short_T + t) * V + v)] -
                       full_logits[static_cast<std::size_t>((b * full_T + t) * V + v)]) < 1e-13);
}

TEST_CASE("with zero embeddings the tied head gives zero logits and the loss is ln V", "[gpt2_reference]") {
  const ref::Gpt2Config config{2, 2, 8, 5, 11};
  ref::NamedTensors params = ref::random_parameters(config, 99);
  for (auto& [name, values] : params.values) {
    const bool embedding = name == "wte.weight" || name == "wpe.weight";
    const bool layernorm = name.find("ln_") != std::string::npos;
    const bool gain = name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
    if (embedding) values.assign(values.size(), 0.0);
    if (layernorm) values.assign(values.size(), gain ? 1.0 : 0.0);
  }
  const int B = 2, T = 5;
  std::vector<double> logits;
  const double loss = ref::loss(config, params, sample_tokens(B, T, config.vocab, 4),
                                sample_tokens(B, T, config.vocab, 5), B, T, &logits);
  REQUIRE(logits.size() == static_cast<std::size_t>(B * T * config.vocab));
  for (double logit : logits) CHECK(logit == 0.0);
  CHECK(std::abs(loss - std::log(static_cast<double>(config.vocab))) < 1e-14);
}

TEST_CASE("every gradient matches finite differences of the loss", "[gpt2_reference]") {
  const ref::Gpt2Config config{2, 2, 8, 5, 11};
  const ref::NamedTensors params = ref::random_parameters(config, 12345);
  const int B = 2;
  for (int T : {5, 3}) {  // T < seq leaves the unused wpe rows with zero gradient
    CAPTURE(T);
    const std::vector<int> tokens = sample_tokens(B, T, config.vocab, 6 + T);
    const std::vector<int> targets = sample_tokens(B, T, config.vocab, 8 + T);
    ref::NamedTensors grads;
    const double loss = ref::loss_and_gradients(config, params, tokens, targets, B, T, grads);
    CHECK(loss == ref::loss(config, params, tokens, targets, B, T));
    CHECK(grads.shapes == params.shapes);

    for (const ref::ParameterSpec& spec : ref::parameter_specs(config)) {
      CAPTURE(spec.name);
      const std::vector<double>& gradient = grads.at(spec.name);
      REQUIRE(gradient.size() == static_cast<std::size_t>(ref::element_count(spec.shape)));
      const CentralDifferenceReport report = compare_with_finite_differences(
          config, params, tokens, targets, B, T, spec.name, gradient, /*elementwise_floor=*/1e-3);
      CAPTURE(report.normwise, report.worst_elementwise, report.worst_absolute, report.largest_gradient);
      CHECK(report.largest_gradient > 1e-3);  // every tensor takes part in the loss
      CHECK(report.normwise <= 1e-7);
      CHECK(report.worst_elementwise <= 1e-7);
      CHECK(report.worst_absolute <= 1e-10);
    }
    if (T < config.seq) {
      const std::vector<double>& dwpe = grads.at("wpe.weight");
      for (std::size_t i = static_cast<std::size_t>(T * config.hidden); i < dwpe.size(); ++i) CHECK(dwpe[i] == 0.0);
    }
  }
}

TEST_CASE("malformed inputs are refused", "[gpt2_reference]") {
  const ref::Gpt2Config config{1, 2, 8, 5, 11};
  const ref::NamedTensors params = ref::random_parameters(config, 1);
  const std::vector<int> tokens = sample_tokens(1, 5, 11, 0), targets = sample_tokens(1, 5, 11, 1);
  CHECK_NOTHROW(ref::loss(config, params, tokens, targets, 1, 5));
  CHECK_THROWS_AS(ref::loss(config, params, tokens, targets, 1, 6), std::invalid_argument);  // T > seq
  std::vector<int> bad_tokens = tokens;
  bad_tokens[2] = 11;
  CHECK_THROWS_AS(ref::loss(config, params, bad_tokens, targets, 1, 5), std::invalid_argument);
  ref::NamedTensors missing = params;
  missing.values.erase("h.0.mlp.c_fc.bias");
  CHECK_THROWS_AS(ref::loss(config, missing, tokens, targets, 1, 5), std::invalid_argument);
  const ref::Gpt2Config uneven_heads{1, 3, 8, 5, 11};
  CHECK_THROWS_AS(ref::loss(uneven_heads, ref::random_parameters(uneven_heads, 1), tokens, targets, 1, 5),
                  std::invalid_argument);
}
