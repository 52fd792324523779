// The library's GPT-2 against the independent double-precision reference: loss, logits and
// every parameter gradient; gradient accumulation; initialisation; determinism.

#include "execution_spaces.hpp"
#include "trident_test.hpp"

#include "gpt2_reference.hpp"

#include <trident/gpt2/model.hpp>
#include <trident/nn/global_tensors.hpp>

#include <cmath>
#include <vector>

namespace {

using Space = Kokkos::DefaultExecutionSpace;
namespace ref = trident_test::reference;

trident::gpt2::Gpt2Config library_config(const ref::Gpt2Config& c) {
  return {c.layers, c.heads, c.hidden, c.seq, c.vocab};
}

template <class Scalar, class ModelSpace>
void load_parameters(trident::gpt2::Gpt2<Scalar, ModelSpace>& model, const ref::NamedTensors& params) {
  auto& store = model.parameters();
  auto host = Kokkos::create_mirror_view(store.values());
  for (const auto& t : store.tensors()) {
    const auto& values = params.at(t.name);
    REQUIRE(static_cast<std::int64_t>(values.size()) == t.size());
    for (std::int64_t i = 0; i < t.size(); ++i)
      host(t.offset + i) = static_cast<Scalar>(values[static_cast<std::size_t>(i)]);
  }
  Kokkos::deep_copy(store.values(), host);
}

// Normwise relative difference of one named gradient.
template <class Host>
double gradient_difference(const Host& grads, const trident::ParameterInfo& t, const std::vector<double>& expected) {
  double diff = 0, norm = 0;
  for (std::int64_t i = 0; i < t.size(); ++i) {
    const double e = expected[static_cast<std::size_t>(i)], g = static_cast<double>(grads(t.offset + i));
    diff += (g - e) * (g - e);
    norm += e * e;
  }
  return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);
}

struct Batch {
  std::vector<int> tokens, targets;
};

Batch make_batch(int batch, int seq, int vocab, int salt) {
  Batch b;
  for (int i = 0; i < batch * seq; ++i) {
    b.tokens.push_back((7 * i + 3 * salt + 1) % vocab);
    b.targets.push_back((5 * i * i + salt + 2) % vocab);
  }
  return b;
}

template <class Scalar, class ModelSpace>
void compare_with_reference(const ref::Gpt2Config& config, int batch, int seq, double tolerance) {
  const auto params = ref::random_parameters(config, 42, 0.3);
  const auto data = make_batch(batch, seq, config.vocab, 1);
  ref::NamedTensors expected_grads;
  const double expected_loss =
      ref::loss_and_gradients(config, params, data.tokens, data.targets, batch, seq, expected_grads);
  std::vector<double> expected_logits;
  ref::loss(config, params, data.tokens, data.targets, batch, seq, &expected_logits);

  trident::gpt2::Gpt2<Scalar, ModelSpace> model(ModelSpace(), library_config(config));
  load_parameters(model, params);
  model.zero_grad();
  const double tokens = static_cast<double>(batch) * seq;
  const double loss = model.forward(data.tokens, data.targets, batch, seq) / tokens;
  CHECK(trident_test::relative_difference(loss, expected_loss) < tolerance);

  auto logits = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), model.logits());
  double logit_diff = 0, logit_norm = 0;
  for (std::size_t n = 0; n < logits.extent(0); ++n)
    for (std::size_t v = 0; v < logits.extent(1); ++v) {
      const double e = expected_logits[n * logits.extent(1) + v];
      logit_diff += (logits(n, v) - e) * (logits(n, v) - e);
      logit_norm += e * e;
    }
  CHECK(std::sqrt(logit_diff / logit_norm) < tolerance);

  model.backward(1.0 / tokens);
  auto grads = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), model.parameters().grads());
  for (const auto& t : model.parameters().tensors()) {
    INFO("gradient of " << t.name);
    CHECK(gradient_difference(grads, t, expected_grads.at(t.name)) < tolerance);
  }
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("GPT-2 in double matches the reference network: loss, logits, every gradient", "[model]",
                        trident_test::ExecutionSpaces) {
  compare_with_reference<double, TestType>({2, 3, 12, 8, 13}, 2, 7, 1e-10);
  compare_with_reference<double, TestType>({1, 1, 4, 4, 5}, 3, 4, 1e-10);
}

TEMPLATE_LIST_TEST_CASE("GPT-2 in float matches the double reference to 1e-5", "[model]",
                        trident_test::ExecutionSpaces) {
  compare_with_reference<float, TestType>({2, 2, 16, 8, 37}, 2, 8, 1e-5);
}

TEST_CASE("micro-batches accumulate to the gradient of the full batch", "[model]") {
  const ref::Gpt2Config config{2, 2, 8, 6, 11};
  const auto params = ref::random_parameters(config, 7, 0.3);
  const int batch = 4, seq = 6;
  const auto data = make_batch(batch, seq, config.vocab, 3);
  const double tokens = batch * seq;

  trident::gpt2::Gpt2<double, Space> full(Space(), library_config(config)), split(Space(), library_config(config));
  load_parameters(full, params);
  load_parameters(split, params);
  full.zero_grad();
  const double full_loss = full.forward(data.tokens, data.targets, batch, seq);
  full.backward(1.0 / tokens);

  split.zero_grad();
  double split_loss = 0;
  for (int micro = 0; micro < 2; ++micro) {
    const auto first = data.tokens.begin() + micro * 2 * seq;
    const std::vector<int> tok(first, first + 2 * seq);
    const auto tfirst = data.targets.begin() + micro * 2 * seq;
    const std::vector<int> tgt(tfirst, tfirst + 2 * seq);
    split_loss += split.forward(tok, tgt, 2, seq);
    split.backward(1.0 / tokens);
  }
  CHECK(trident_test::relative_difference(full_loss, split_loss) < 1e-13);
  auto g_full = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), full.parameters().grads());
  auto g_split = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), split.parameters().grads());
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < g_full.extent(0); ++i) {
    diff += (g_full(i) - g_split(i)) * (g_full(i) - g_split(i));
    norm += g_full(i) * g_full(i);
  }
  CHECK(std::sqrt(diff / norm) < 1e-12);
}

TEST_CASE("GPT-2 initialisation: N(0, 0.02), residual projections scaled, unit gains, zero biases", "[model]") {
  const trident::gpt2::Gpt2Config config{4, 4, 64, 32, 97};
  trident::gpt2::Gpt2<float, Space> model(Space(), config);
  model.initialize(1234);
  auto values = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), model.parameters().values());
  auto stddev_of = [&](const trident::ParameterInfo& t) {
    double sum = 0, sum_sq = 0;
    for (std::int64_t i = 0; i < t.size(); ++i) {
      sum += values(t.offset + i);
      sum_sq += values(t.offset + i) * values(t.offset + i);
    }
    const double mean = sum / t.size();
    return std::sqrt(sum_sq / t.size() - mean * mean);
  };
  const auto& store = model.parameters();
  CHECK(std::abs(stddev_of(store.info("wte.weight")) - 0.02) < 0.001);
  CHECK(std::abs(stddev_of(store.info("h.1.mlp.c_fc.weight")) - 0.02) < 0.001);
  CHECK(std::abs(stddev_of(store.info("h.2.mlp.c_proj.weight")) - 0.02 / std::sqrt(8.0)) < 0.0005);
  CHECK(std::abs(stddev_of(store.info("h.3.attn.c_proj.weight")) - 0.02 / std::sqrt(8.0)) < 0.0007);
  const auto& gain = store.info("h.0.ln_2.weight");
  const auto& bias = store.info("h.0.mlp.c_fc.bias");
  for (std::int64_t i = 0; i < gain.size(); ++i) CHECK(values(gain.offset + i) == 1.0f);
  for (std::int64_t i = 0; i < bias.size(); ++i) CHECK(values(bias.offset + i) == 0.0f);
  // Two models from the same seed are identical; another seed differs.
  trident::gpt2::Gpt2<float, Space> again(Space(), config), other(Space(), config);
  again.initialize(1234);
  other.initialize(1235);
  auto v2 = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), again.parameters().values());
  auto v3 = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), other.parameters().values());
  int same = 0, differ = 0;
  for (std::size_t i = 0; i < values.extent(0); ++i) {
    same += values(i) == v2(i);
    differ += values(i) != v3(i);
  }
  CHECK(same == static_cast<int>(values.extent(0)));
  CHECK(differ > static_cast<int>(values.extent(0)) / 2);
}

TEST_CASE("bad configurations and tokens are rejected with the values named", "[model]") {
  CHECK_THROWS_WITH((trident::gpt2::Gpt2<float, Space>(Space(), {2, 3, 8, 4, 10})),
                    Catch::Contains("hidden size 8 is not divisible by the number of heads 3"));
  trident::gpt2::Gpt2<float, Space> model(Space(), {1, 2, 8, 4, 10});
  CHECK_THROWS_WITH(model.forward({1, 2, 3, 10}, {1, 2, 3, 4}, 1, 4), Catch::Contains("token 10"));
  CHECK_THROWS_WITH(model.forward({1, 2, 3, 4, 5}, {1, 2, 3, 4, 5}, 1, 5), Catch::Contains("sequence length 5"));
}

TEST_CASE("hooks run around every unit in forward and backward order", "[model]") {
  trident::gpt2::Gpt2<double, Space> model(Space(), {2, 2, 8, 4, 11});
  model.initialize(3);
  std::vector<std::string> calls;
  trident::gpt2::Gpt2Hooks hooks;
  hooks.before_forward = [&](int u) { calls.push_back("F" + std::to_string(u)); };
  hooks.before_backward = [&](int u) { calls.push_back("B" + std::to_string(u)); };
  // When a unit's after_backward runs, its gradients must no longer change.
  std::vector<double> grad_sum_at_hook(4, 0.0);
  hooks.after_backward = [&](int u) {
    calls.push_back("A" + std::to_string(u));
    auto grads = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), model.parameters().grads());
    for (const auto& t : model.parameters().tensors())
      if (trident::gpt2::gpt2_unit_of(t.name, model.config()) == u)
        for (std::int64_t i = 0; i < t.size(); ++i)
          grad_sum_at_hook[static_cast<std::size_t>(u)] += std::abs(grads(t.offset + i));
  };
  model.set_hooks(hooks);
  model.zero_grad();
  model.forward({1, 2, 3, 4}, {2, 3, 4, 5}, 1, 4);
  model.backward(0.25);
  const std::vector<std::string> expected = {"F0", "F1", "F2", "F3", "B3", "A3", "B2", "A2", "B1", "A1", "B0", "A0"};
  CHECK(calls == expected);
  auto grads = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), model.parameters().grads());
  std::vector<double> final_sum(4, 0.0);
  for (const auto& t : model.parameters().tensors())
    for (std::int64_t i = 0; i < t.size(); ++i)
      final_sum[static_cast<std::size_t>(trident::gpt2::gpt2_unit_of(t.name, model.config()))] +=
          std::abs(grads(t.offset + i));
  for (int u = 0; u < 4; ++u) {
    CHECK(final_sum[static_cast<std::size_t>(u)] > 0);
    CHECK(grad_sum_at_hook[static_cast<std::size_t>(u)] == final_sum[static_cast<std::size_t>(u)]);
  }
}

TEST_CASE("GPT-2 is the nn spec of its units, under the Hugging Face names", "[model]") {
  namespace nn = trident::nn;
  const trident::gpt2::Gpt2Config config{1, 2, 8, 4, 11};
  const auto spec = trident::gpt2::gpt2_spec(config);
  REQUIRE(spec.layers.size() == 3);  // embeddings, h.0, head
  CHECK(nn::describe(spec.layers[1]) ==
        "sequence[residual[layer_norm(8), linear(8 -> 24, column, 3 parts), causal_self_attention(C = 8, H = 2, "
        "T = 4), linear(8 -> 8, row)], residual[layer_norm(8), linear(8 -> 32, column), gelu, linear(32 -> 8, row)]]");
  CHECK(nn::describe(spec.layers[2]) == "sequence[layer_norm(8), tied_head(V = 11, C = 8, tied to 'wte')]");
  std::vector<std::string> names;
  for (const auto& plan : nn::model_tensors(spec)) names.push_back(plan.name);
  const std::vector<std::string> hugging_face = {"wte.weight",
                                                 "wpe.weight",
                                                 "h.0.ln_1.weight",
                                                 "h.0.ln_1.bias",
                                                 "h.0.attn.c_attn.weight",
                                                 "h.0.attn.c_attn.bias",
                                                 "h.0.attn.c_proj.weight",
                                                 "h.0.attn.c_proj.bias",
                                                 "h.0.ln_2.weight",
                                                 "h.0.ln_2.bias",
                                                 "h.0.mlp.c_fc.weight",
                                                 "h.0.mlp.c_fc.bias",
                                                 "h.0.mlp.c_proj.weight",
                                                 "h.0.mlp.c_proj.bias",
                                                 "ln_f.weight",
                                                 "ln_f.bias"};
  CHECK(names == hugging_face);

  // The model is that spec's nn::Model: its global tensors are the store's, one unit per part.
  trident::gpt2::Gpt2<double, Space> model(Space(), config);
  model.initialize(4);
  CHECK(model.layers().unit_count() == model.unit_count());
  const trident::comm::Communicator self(MPI_COMM_SELF, "self");
  const auto tensors = nn::global_tensors(model.layers(), nn::Buffer::values, self);
  const auto values = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), model.parameters().values());
  for (const auto& t : model.parameters().tensors())
    for (std::int64_t i = 0; i < t.size(); ++i)
      CHECK(tensors.at(t.name)[static_cast<std::size_t>(i)] == values(t.offset + i));
}

TEST_CASE("blocks share their scratch, and with recomputation one workspace", "[model]") {
  // The bytes shared by all blocks do not grow with L; what a forward keeps does.
  std::vector<std::size_t> shared, kept;
  for (bool recompute : {false, true})
    for (int layers : {2, 3}) {
      const trident::gpt2::Gpt2Config config{layers, 2, 8, 4, 11};
      trident::gpt2::Gpt2<double, Space> model(Space(), config, trident::tensor_parallel::TensorParallelGroup::single(),
                                               recompute);
      model.initialize(2);
      const Batch b = make_batch(2, 4, 11, 0);
      model.zero_grad();
      model.forward(b.tokens, b.targets, 2, 4, 0.125);
      model.backward(0.125);
      shared.push_back(model.shared_activation_bytes());
      kept.push_back(model.activation_bytes() - model.shared_activation_bytes());
    }
  CHECK(shared[0] == shared[1]);
  CHECK(shared[2] == shared[3]);
  CHECK(kept[1] > kept[0]);
  CHECK(kept[3] - kept[2] == 8 * 8 * sizeof(double));  // recomputing: one block output more, [B*T, C]
  CHECK(kept[1] - kept[0] > 4 * (kept[3] - kept[2]));  // keeping: all of a block's activations
}
