#pragma once
// GPT-2's parameters under their Hugging Face names and shapes, and GPT-2's initialisation:
// normal(0, 0.02) weights, residual projections scaled by 1/sqrt(2L), zero biases, unit
// LayerNorm gains. Values come from the layout-independent generator, keyed by name.

#include <trident/core/parameter_store.hpp>
#include <trident/core/random.hpp>
#include <trident/model/gpt2_config.hpp>

#include <cmath>
#include <cstdint>
#include <string>

namespace trident::model {

inline std::string layer_name(int layer, const char* suffix) { return "h." + std::to_string(layer) + "." + suffix; }

// Declares every tensor of the one-rank model in Hugging Face order.
template <class Scalar, class MemorySpace>
void declare_gpt2_parameters(ParameterStore<Scalar, MemorySpace>& store, const Gpt2Config& config) {
  const std::int64_t c = config.hidden, v = config.vocab, t = config.seq;
  store.declare("wte.weight", {v, c}, true);
  store.declare("wpe.weight", {t, c}, true);
  for (int l = 0; l < config.layers; ++l) {
    store.declare(layer_name(l, "ln_1.weight"), {c}, false);
    store.declare(layer_name(l, "ln_1.bias"), {c}, false);
    store.declare(layer_name(l, "attn.c_attn.weight"), {c, 3 * c}, true);
    store.declare(layer_name(l, "attn.c_attn.bias"), {3 * c}, false);
    store.declare(layer_name(l, "attn.c_proj.weight"), {c, c}, true);
    store.declare(layer_name(l, "attn.c_proj.bias"), {c}, false);
    store.declare(layer_name(l, "ln_2.weight"), {c}, false);
    store.declare(layer_name(l, "ln_2.bias"), {c}, false);
    store.declare(layer_name(l, "mlp.c_fc.weight"), {c, 4 * c}, true);
    store.declare(layer_name(l, "mlp.c_fc.bias"), {4 * c}, false);
    store.declare(layer_name(l, "mlp.c_proj.weight"), {4 * c, c}, true);
    store.declare(layer_name(l, "mlp.c_proj.bias"), {c}, false);
  }
  store.declare("ln_f.weight", {c}, false);
  store.declare("ln_f.bias", {c}, false);
}

// The unit (see Gpt2Hooks) whose backward makes a tensor's gradient final: 0 for the
// embeddings (wte's head gradient is added before), l+1 for block l, L+1 for ln_f.
inline int gpt2_unit_of(const std::string& name, const Gpt2Config& config) {
  if (name.rfind("h.", 0) == 0) return std::stoi(name.substr(2, name.find('.', 2) - 2)) + 1;
  if (name.rfind("ln_f.", 0) == 0) return config.layers + 1;
  return 0;
}

inline bool is_residual_projection(const std::string& name) {
  auto ends_with = [&](const std::string& suffix) {
    return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return ends_with("attn.c_proj.weight") || ends_with("mlp.c_proj.weight");
}

inline bool is_layernorm_gain(const std::string& name) {
  return name.find("ln_") != std::string::npos && name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
}

// GPT-2 initialisation of every tensor in the store (local shards included: each fills its
// own slice of the global tensor).
template <class ExecutionSpace, class Scalar, class MemorySpace>
void initialize_gpt2_parameters(const ExecutionSpace& space, const ParameterStore<Scalar, MemorySpace>& store,
                                const Gpt2Config& config, std::uint64_t seed) {
  const double residual_std = 0.02 / std::sqrt(2.0 * config.layers);
  for (const auto& t : store.tensors()) {
    auto flat = ParameterStore<Scalar, MemorySpace>::vector_of(store.values(), t);
    if (is_layernorm_gain(t.name)) {
      Kokkos::deep_copy(space, flat, Scalar(1));
    } else if (t.global_shape.size() == 1) {
      Kokkos::deep_copy(space, flat, Scalar(0));
    } else {
      const double stddev = is_residual_projection(t.name) ? residual_std : 0.02;
      fill_normal(space, store.matrix(t.name), random_stream(seed, t.name), 0.0, stddev);
    }
  }
}

}  // namespace trident::model
