#pragma once
// From a spec to layers: checks that the features and the tensor-parallel split of the data
// agree from layer to layer, then instantiates each layer for a Scalar and an execution space.

#include <trident/core/error.hpp>
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
// holds it split by columns (inside a column -> row pair) or replicated.
struct Flow {
  std::int64_t features = 0;
  bool split = false;
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
      const std::int64_t split_features = spec.parallel == Parallel::column ? spec.out : spec.in;
      require_argument(spec.parallel == Parallel::none || split_features % tp_size == 0, name, " splits ",
                       split_features, " features over ", tp_size,
                       " tensor-parallel ranks, which does not divide them");
      return Flow{spec.out, spec.parallel == Parallel::column};
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
  flows.push_back(Flow{first.kind == LayerKind::linear || first.kind == LayerKind::layer_norm ? first.in : 0, false});
  require_argument(flows[0].features > 0, "trident::nn: the first layer (", describe(first),
                   ") must be a linear or a layer_norm, which fixes the input features");
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
