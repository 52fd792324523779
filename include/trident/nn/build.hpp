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
#include <trident/nn/tied_head.hpp>
#include <trident/tensor_parallel/group.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace trident::nn {

// The data between two layers: its global features, and whether the tensor-parallel group
// holds it split by columns (inside a column -> row pair, or the logits of a tied head, split
// by vocabulary) or replicated; split data is `parts` blocks of features, each split over the
// group on its own ([Q | K | V]: 3). With sequence parallelism replicated data is split by
// rows instead (`rows_split`: each rank holds rows / tp of them).
struct Flow {
  std::int64_t features = 0;
  bool split = false;
  std::int64_t parts = 1;
  bool vocab = false;  // split as a vocabulary: tensor_parallel::even_split, maybe unevenly
  bool rows_split = false;
  bool gathered = false;  // split data whose rows a column-parallel linear gathered: the row-parallel one scatters them

  // This rank's columns.
  std::int64_t columns(int tp_size, int tp_rank) const {
    if (!split) return features;
    return vocab ? tensor_parallel::even_split(features, tp_size, tp_rank).count : features / tp_size;
  }
};

// The data after `spec`, given the data before it, with sequence parallelism over the group
// when `sequence_parallel`; `where` names the layer in errors.
inline Flow flow_through(const LayerSpec& spec, Flow in, int tp_size, bool sequence_parallel,
                         const std::string& where) {
  const std::string name = "trident::nn: layer " + where + " (" + describe(spec) + ")";
  const bool sp = sequence_parallel && tp_size > 1;
  require_argument(!in.vocab || spec.kind == LayerKind::tied_head, name, " follows a tied head, whose logits only ",
                   "the cross-entropy loss reads");
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
      // A column-parallel linear gathers split rows; the row-parallel one after it scatters its
      // sums over them again; a whole one works on the rows it gets.
      switch (spec.parallel) {
        case Parallel::column:
          return Flow{spec.out, true, spec.parts, false, false, in.rows_split};
        case Parallel::row:
          return Flow{spec.out, false, 1, false, in.gathered};
        default:
          return Flow{spec.out, false, 1, false, in.rows_split};
      }
    }
    case LayerKind::embedding:
      require_argument(in.features == 1 && !in.split && !in.rows_split, name,
                       " reads one column of token ids, whole on every rank, but receives ", in.features,
                       in.split || in.rows_split ? " split features" : " features");
      require_argument(spec.vocab >= tp_size, name, " cannot split a vocabulary of ", spec.vocab, " over ", tp_size,
                       " tensor-parallel ranks");
      return Flow{spec.out, false, 1, false, sp};
    case LayerKind::tied_head:
      require_argument(spec.in == in.features, name, " takes ", spec.in, " features but receives ", in.features);
      require_argument(!in.split, name, " needs its input whole on every rank, but it comes split by a ",
                       "column-parallel linear");
      require_argument(spec.vocab >= tp_size, name, " cannot split a vocabulary of ", spec.vocab, " over ", tp_size,
                       " tensor-parallel ranks");
      return Flow{spec.vocab, tp_size > 1, 1, tp_size > 1, false};
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
      require_argument(!in.rows_split, name, " needs whole sequences, but sequence parallelism splits its input by ",
                       "rows (put it between a column- and a row-parallel linear)");
      Flow out = in;
      out.features = spec.out;
      out.parts = 1;
      return out;
    }
    case LayerKind::layer_norm:
      require_argument(spec.in == in.features, name, " normalises ", spec.in, " features but receives ", in.features);
      require_argument(!in.split, name, " needs its input whole on every rank, but it comes split by a ",
                       "column-parallel linear");
      return in;
    case LayerKind::residual:
    case LayerKind::sequence: {
      const bool residual = spec.kind == LayerKind::residual;
      require_argument(!residual || !in.split, name, " needs its input whole on every rank");
      Flow chain = in;
      for (std::size_t i = 0; i < spec.inner.size(); ++i)
        chain = flow_through(spec.inner[i], chain, tp_size, sequence_parallel, where + "." + std::to_string(i));
      if (!residual) return chain;
      require_argument(chain.features == in.features && !chain.split && chain.rows_split == in.rows_split, name,
                       " must return its ", in.features, " features as it receives them; its branch returns ",
                       chain.features, chain.split ? " split features" : " features",
                       chain.rows_split == in.rows_split ? "" : " split differently by rows");
      return in;
    }
    default:
      return in;  // pointwise
  }
}

// The flow at every boundary of the model: flows[i] enters top-level layer i, flows.back()
// reaches the loss (which needs it whole, or split by vocabulary for the cross-entropy).
inline std::vector<Flow> model_flows(const ModelSpec& spec, int tp_size, bool sequence_parallel) {
  const auto& layers = spec.layers;
  require_argument(!layers.empty(), "trident::nn: a model needs at least one layer");
  const LayerSpec* first = &layers.front();
  while (first->kind == LayerKind::sequence) first = &first->inner.front();
  std::vector<Flow> flows;
  flows.push_back(Flow{first->in, false});  // 0 for the layers that keep any width
  require_argument(flows[0].features > 0, "trident::nn: the first layer (", describe(*first),
                   ") must fix the input features: a linear, a layer_norm, an embedding, a position_embedding ",
                   "or a causal_self_attention");
  for (std::size_t i = 0; i < layers.size(); ++i)
    flows.push_back(flow_through(layers[i], flows.back(), tp_size, sequence_parallel, std::to_string(i)));
  const Flow& out = flows.back();
  require_argument(!out.split || out.vocab, "trident::nn: the loss needs the model's output whole on every rank, ",
                   "but the last layer leaves it split (end a column-parallel linear with a row-parallel one)");
  require_argument(!out.vocab || spec.loss == Loss::cross_entropy, "trident::nn: the logits of a tied head need the ",
                   "cross-entropy loss");
  return flows;
}

// What a layer of a chain does for its neighbours (activation_takes_bias): a linear leaves its
// bias to the activation after it; an activation adds the bias named `activation_bias`.
struct Fusion {
  bool bias_to_activation = false;
  std::string activation_bias;
};

// The layer of `spec`, whose input is `in`.
template <class Scalar, class ExecutionSpace>
std::unique_ptr<Layer<Scalar, ExecutionSpace>> make_layer(const LayerSpec& spec, const std::string& prefix,
                                                          const Flow& in, int tp_size, int tp_rank,
                                                          bool sequence_parallel, const Fusion& fusion = {}) {
  const bool sp = sequence_parallel && tp_size > 1;
  switch (spec.kind) {
    case LayerKind::linear:
      return std::make_unique<Linear<Scalar, ExecutionSpace>>(spec, prefix, tp_size, in.rows_split, in.gathered,
                                                              fusion.bias_to_activation);
    case LayerKind::layer_norm:
      return std::make_unique<LayerNorm<Scalar, ExecutionSpace>>(prefix, in.rows_split);
    case LayerKind::embedding:
      return std::make_unique<Embedding<Scalar, ExecutionSpace>>(spec, prefix, tp_size, sp);
    case LayerKind::position_embedding:
      return std::make_unique<PositionEmbedding<Scalar, ExecutionSpace>>(spec, prefix, in.rows_split, tp_size);
    case LayerKind::causal_self_attention:
      return std::make_unique<CausalSelfAttention<Scalar, ExecutionSpace>>(spec);
    case LayerKind::tied_head:
      return std::make_unique<TiedHead<Scalar, ExecutionSpace>>(spec, tp_size, tp_rank, in.rows_split);
    case LayerKind::residual:
    case LayerKind::sequence: {
      const auto& inner = spec.inner;
      std::vector<Flow> flows{in};
      for (const auto& layer : inner)
        flows.push_back(flow_through(layer, flows.back(), tp_size, sequence_parallel, prefix));
      const auto takes_bias = [&](std::size_t i) {  // inner[i + 1] adds inner[i]'s bias
        return i + 1 < inner.size() &&
               activation_takes_bias(inner[i], inner[i + 1], flows[i].rows_split, flows[i].gathered);
      };
      std::vector<std::unique_ptr<Layer<Scalar, ExecutionSpace>>> layers;
      for (std::size_t i = 0; i < inner.size(); ++i) {
        Fusion fusion;
        fusion.bias_to_activation = takes_bias(i);
        if (i > 0 && takes_bias(i - 1)) fusion.activation_bias = child_prefix(prefix, inner[i - 1], i - 1) + "bias";
        layers.push_back(make_layer<Scalar, ExecutionSpace>(inner[i], child_prefix(prefix, inner[i], i), flows[i],
                                                            tp_size, tp_rank, sequence_parallel, fusion));
      }
      if (spec.kind == LayerKind::sequence)
        return std::make_unique<Sequence<Scalar, ExecutionSpace>>(std::move(layers));
      return std::make_unique<Residual<Scalar, ExecutionSpace>>(std::move(layers));
    }
    default:
      return std::make_unique<Pointwise<Scalar, ExecutionSpace>>(spec.kind, fusion.activation_bias);
  }
}

}  // namespace trident::nn
