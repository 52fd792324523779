#pragma once
// A model as a list of layers, written in C++ by the user and independent of scalar type,
// execution space and layout:
//
//   using namespace trident::nn;
//   const ModelSpec mlp = sequential({linear(2, 1024), gelu(), linear(1024, 1024), gelu(),
//                                     linear(1024, 1)}, Loss::mean_squared_error);
//
// A linear layer may be marked column- or row-parallel (Megatron-LM's split of the weight by
// output or input features); megatron_pairs() marks each linear -> pointwise* -> linear run
// as such a pair, which needs one all-reduce per pair in forward and one in backward.
// Model (model.hpp) instantiates a spec for a Scalar, an execution space, a tensor-parallel
// group and a pipeline stage.

#include <trident/core/error.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace trident::nn {

enum class LayerKind { linear, gelu, relu, tanh, silu, layer_norm, residual };

// How a linear layer's weight [in, out] is split over the tensor-parallel group.
enum class Parallel {
  none,    // every rank holds all of it
  column,  // by output features: replicated input, output columns sharded
  row      // by input features: sharded input, partial outputs summed over the group
};

enum class Loss { mean_squared_error, cross_entropy };

struct LayerSpec {
  LayerKind kind = LayerKind::linear;
  std::int64_t in = 0, out = 0;  // features in and out (pointwise layers: 0, they keep the width)
  bool bias = true;
  Parallel parallel = Parallel::none;
  std::vector<LayerSpec> inner;  // residual: y = x + inner(x)
};

struct ModelSpec {
  std::vector<LayerSpec> layers;
  Loss loss = Loss::mean_squared_error;
};

inline LayerSpec layer_of_kind(LayerKind kind) {
  LayerSpec spec;
  spec.kind = kind;
  return spec;
}

// y = x W + b, W of shape [in, out] (the layout of GPT-2's Conv1D).
inline LayerSpec linear(std::int64_t in, std::int64_t out, Parallel parallel = Parallel::none, bool bias = true) {
  require_argument(in >= 1 && out >= 1, "trident::nn::linear: features must be >= 1, got ", in, " -> ", out);
  LayerSpec spec = layer_of_kind(LayerKind::linear);
  spec.in = in;
  spec.out = out;
  spec.bias = bias;
  spec.parallel = parallel;
  return spec;
}
// the tanh approximation, as GPT-2
inline LayerSpec gelu() { return layer_of_kind(LayerKind::gelu); }
inline LayerSpec relu() { return layer_of_kind(LayerKind::relu); }
inline LayerSpec tanh() { return layer_of_kind(LayerKind::tanh); }
inline LayerSpec silu() { return layer_of_kind(LayerKind::silu); }
inline LayerSpec layer_norm(std::int64_t features) {
  require_argument(features >= 1, "trident::nn::layer_norm: features must be >= 1, got ", features);
  LayerSpec spec = layer_of_kind(LayerKind::layer_norm);
  spec.in = spec.out = features;
  return spec;
}
inline LayerSpec residual(std::vector<LayerSpec> inner) {
  require_argument(!inner.empty(), "trident::nn::residual: the residual branch holds no layer");
  LayerSpec spec = layer_of_kind(LayerKind::residual);
  spec.inner = std::move(inner);
  return spec;
}

inline ModelSpec sequential(std::vector<LayerSpec> layers, Loss loss) {
  require_argument(!layers.empty(), "trident::nn::sequential: a model needs at least one layer");
  return ModelSpec{std::move(layers), loss};
}

inline bool is_pointwise(LayerKind kind) {
  return kind == LayerKind::gelu || kind == LayerKind::relu || kind == LayerKind::tanh || kind == LayerKind::silu;
}

// Marks every run linear -> pointwise* -> linear of unmarked linears (also inside residual
// branches) as column- then row-parallel: the Megatron MLP.
inline std::vector<LayerSpec> megatron_pairs(std::vector<LayerSpec> layers) {
  for (std::size_t i = 0; i < layers.size(); ++i) {
    if (layers[i].kind == LayerKind::residual) {
      layers[i].inner = megatron_pairs(std::move(layers[i].inner));
      continue;
    }
    if (layers[i].kind != LayerKind::linear || layers[i].parallel != Parallel::none) continue;
    std::size_t j = i + 1;
    while (j < layers.size() && is_pointwise(layers[j].kind)) ++j;
    if (j < layers.size() && layers[j].kind == LayerKind::linear && layers[j].parallel == Parallel::none) {
      layers[i].parallel = Parallel::column;
      layers[j].parallel = Parallel::row;
      i = j;
    }
  }
  return layers;
}

inline ModelSpec megatron_pairs(ModelSpec spec) {
  spec.layers = megatron_pairs(std::move(spec.layers));
  return spec;
}

inline const char* parallel_name(Parallel parallel) {
  switch (parallel) {
    case Parallel::none:
      return "none";
    case Parallel::column:
      return "column";
    case Parallel::row:
      return "row";
  }
  return "unknown";
}

// "linear(2 -> 1024, column)", "gelu", "residual[layer_norm(64), linear(64 -> 64)]".
inline std::string describe(const LayerSpec& spec) {
  switch (spec.kind) {
    case LayerKind::linear:
      return "linear(" + std::to_string(spec.in) + " -> " + std::to_string(spec.out) +
             (spec.parallel == Parallel::none ? std::string() : std::string(", ") + parallel_name(spec.parallel)) +
             (spec.bias ? "" : ", no bias") + ")";
    case LayerKind::gelu:
      return "gelu";
    case LayerKind::relu:
      return "relu";
    case LayerKind::tanh:
      return "tanh";
    case LayerKind::silu:
      return "silu";
    case LayerKind::layer_norm:
      return "layer_norm(" + std::to_string(spec.in) + ")";
    case LayerKind::residual: {
      std::string text = "residual[";
      for (std::size_t i = 0; i < spec.inner.size(); ++i) text += (i ? ", " : "") + describe(spec.inner[i]);
      return text + "]";
    }
  }
  return "unknown";
}

}  // namespace trident::nn
