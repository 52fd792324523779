#pragma once
// From a spec to layers: checks that the features and the tensor-parallel split of the data
// agree from layer to layer, then instantiates each layer for a Scalar and an execution space.

#include <trident/core/error.hpp>
#include <trident/nn/attention.hpp>
#include <trident/nn/embedding.hpp>
#include <trident/nn/layer.hpp>
#include <trident/nn/layer_norm.hpp>
#include <trident/nn/linear.hpp>
#include <trident/nn/pointwise.hpp>
#include <trident/nn/residual.hpp>
#include <trident/nn/spec.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace trident::nn {

// The data between two layers: its global features, and whether the tensor-parallel group
// holds it split by columns (inside a column -> row pair) or replicated; split data is `parts`
// blocks of features, each split over the group on its own ([Q | K | V]: 3).
struct Flow {
  std::int64_t features = 0;
  bool split = false;
  std::int64_t parts = 1;
};

// The data after `spec`, given the data before it; `where` names the layer in errors.
inline Flow flow_through(const LayerSpec& spec, Flow in, int tp_size, const std::string& where) {
  const std::string name = "trident::nn: layer " + where + " (" + describe(spec) + ")";
  switch (spec.kind) {
    case LayerKind::linear: {
      require_argument(spec.in == in.features, name, " takes ", spec.in, " features but receives ", in.features);
      const bool wants_split = spec.parallel == Parallel::row;
      require_argument(
          in.split == wants_split, name,
          wants_split ? " is row-parallel: its input must come split by " : " needs its input whole on every rank, ",
          wants_split ? "a column-parallel linear" : "but it comes split by a column-parallel linear");
      require_argument(!wants_split || in.parts == 1, name, " is row-parallel over its input in one block, but the ",
                       "input comes split per part of a linear with ", in.parts, " parts");
      require_argument(spec.parts >= 1 && spec.out % spec.parts == 0, name, " cannot make ", spec.parts,
                       " equal parts of its ", spec.out, " output features");
      require_argument(spec.parts == 1 || spec.parallel != Parallel::row, name,
                       " is row-parallel: it splits its input, not the parts of its output");
      const std::int64_t split_features = spec.parallel == Parallel::column ? spec.out / spec.parts : spec.in;
      require_argument(spec.parallel == Parallel::none || split_features % tp_size == 0, name, " splits ",
                       split_features, spec.parts == 1 ? " features" : " features of each part", " over ", tp_size,
                       " tensor-parallel ranks, which does not divide them");
      const bool column = spec.parallel == Parallel::column;
      return Flow{spec.out, column, column ? spec.parts : 1};
    }
    case LayerKind::embedding:
      require_argument(in.features == 1 && !in.split, name, " reads one column of token ids but receives ", in.features,
                       in.split ? " split features" : " features");
      require_argument(spec.vocab >= tp_size, name, " cannot split a vocabulary of ", spec.vocab, " over ", tp_size,
                       " tensor-parallel ranks");
      return Flow{spec.out, false};
    case LayerKind::position_embedding:
      require_argument(spec.in == in.features, name, " adds positions to ", spec.in, " features but receives ",
                       in.features);
      require_argument(!in.split, name, " needs its input whole on every rank, but it comes split by a ",
                       "column-parallel linear");
      return in;
    case LayerKind::causal_self_attention: {
      require_argument(spec.in == in.features, name, " reads [Q | K | V] of 3 x ", spec.out, " = ", spec.in,
                       " features but receives ", in.features);
      if (in.split) {
        require_argument(in.parts == 3, name, " needs the column-parallel linear before it split per Q, K and V ",
                         "block (fused_linear(C, 3C, 3, Parallel::column), or megatron_pairs()), but its split has ",
                         in.parts, in.parts == 1 ? " part" : " parts");
        require_argument(spec.heads % tp_size == 0, name, " splits its ", spec.heads, " heads over ", tp_size,
                         " tensor-parallel ranks, which does not divide them");
      }
      return Flow{spec.out, in.split};
    }
    case LayerKind::layer_norm:
      require_argument(spec.in == in.features, name, " normalises ", spec.in, " features but receives ", in.features);
      require_argument(!in.split, name, " needs its input whole on every rank, but it comes split by a ",
                       "column-parallel linear");
      return in;
    case LayerKind::residual: {
      require_argument(!in.split, name, " needs its input whole on every rank");
      Flow branch = in;
      for (std::size_t i = 0; i < spec.inner.size(); ++i)
        branch = flow_through(spec.inner[i], branch, tp_size, where + "." + std::to_string(i));
      require_argument(branch.features == in.features && !branch.split, name, " must return ", in.features,
                       " features whole on every rank; its branch returns ", branch.features,
                       branch.split ? " split features" : " features");
      return in;
    }
    default:
      return in;  // pointwise
  }
}

// The flow at every boundary of the model: flows[i] enters top-level layer i, flows.back()
// reaches the loss (which needs it whole).
inline std::vector<Flow> model_flows(const std::vector<LayerSpec>& layers, int tp_size) {
  require_argument(!layers.empty(), "trident::nn: a model needs at least one layer");
  const LayerSpec& first = layers.front();
  std::vector<Flow> flows;
  flows.push_back(Flow{first.in, false});  // 0 for the layers that keep any width
  require_argument(flows[0].features > 0, "trident::nn: the first layer (", describe(first),
                   ") must fix the input features: a linear, a layer_norm, an embedding, a position_embedding ",
                   "or a causal_self_attention");
  for (std::size_t i = 0; i < layers.size(); ++i)
    flows.push_back(flow_through(layers[i], flows.back(), tp_size, std::to_string(i)));
  require_argument(!flows.back().split, "trident::nn: the loss needs the model's output whole on every rank, but ",
                   "the last layer leaves it split (end a column-parallel linear with a row-parallel one)");
  return flows;
}

template <class Scalar, class ExecutionSpace>
std::unique_ptr<Layer<Scalar, ExecutionSpace>> make_layer(const LayerSpec& spec, const std::string& prefix,
                                                          int tp_size) {
  switch (spec.kind) {
    case LayerKind::linear:
      return std::make_unique<Linear<Scalar, ExecutionSpace>>(spec, prefix, tp_size);
    case LayerKind::layer_norm:
      return std::make_unique<LayerNorm<Scalar, ExecutionSpace>>(prefix);
    case LayerKind::embedding:
      return std::make_unique<Embedding<Scalar, ExecutionSpace>>(spec, prefix);
    case LayerKind::position_embedding:
      return std::make_unique<PositionEmbedding<Scalar, ExecutionSpace>>(spec, prefix);
    case LayerKind::causal_self_attention:
      return std::make_unique<CausalSelfAttention<Scalar, ExecutionSpace>>(spec);
    case LayerKind::residual: {
      std::vector<std::unique_ptr<Layer<Scalar, ExecutionSpace>>> branch;
      for (std::size_t i = 0; i < spec.inner.size(); ++i)
        branch.push_back(make_layer<Scalar, ExecutionSpace>(spec.inner[i], prefix + std::to_string(i) + ".", tp_size));
      return std::make_unique<Residual<Scalar, ExecutionSpace>>(std::move(branch));
    }
    default:
      return std::make_unique<Pointwise<Scalar, ExecutionSpace>>(spec.kind);
  }
}

}  // namespace trident::nn
