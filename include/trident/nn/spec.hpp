#pragma once
// A model as a list of layers, written in C++ by the user and independent of scalar type,
// execution space and layout:
//
//   using namespace trident::nn;
//   const ModelSpec mlp = sequential({linear(2, 1024), gelu(), linear(1024, 1024), gelu(),
//                                     linear(1024, 1)}, Loss::mean_squared_error);
//
// A linear layer may be marked column- or row-parallel (Megatron-LM's split of the weight by
// output or input features); megatron_pairs() marks each linear -> pointwise* -> linear run,
// and each linear -> causal_self_attention -> linear run, as such a pair, which needs one
// all-reduce per pair in forward and one in backward.
//
// A transformer reads token ids: embedding(V, C) turns a column of ids into C features,
// position_embedding(T, C) adds the position of each row in its sequence of T rows,
// causal_self_attention(C, H, T) follows a linear(C, 3C) that projects [Q | K | V], and
// tied_head(V, C, "tokens") computes logits with the embedding's table, split by vocabulary under
// tensor parallelism (the cross-entropy is then vocabulary-parallel).
//
// Parameters are named by position ("3.1.weight": layer 1 of the chain at 3), or by name where
// a layer is named(): named("block.0", block) gives "block.0.<...>", and a chain named("") adds
// nothing, so its layers are named as the chain's siblings. sequence() groups layers into one
// (one unit of data parallelism, one piece of a pipeline cut). GPT-2 (gpt2/spec.hpp) is
// such a spec.
//
// Model (model.hpp) instantiates a spec for a Scalar, an execution space, a tensor-parallel
// group (with or without sequence parallelism) and a pipeline stage.

#include <trident/core/error.hpp>
#include <trident/ops/attention_kernel.hpp>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace trident::nn {

using ops::AttentionKernel;

enum class LayerKind {
  linear,
  gelu,
  relu,
  tanh,
  silu,
  layer_norm,
  residual,
  embedding,
  position_embedding,
  causal_self_attention,
  sequence,
  tied_head
};

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
  // A column-parallel linear whose output is `parts` equal blocks fused into one product
  // ([Q | K | V]: 3) splits each block over the group, so a rank holds the same columns of each.
  std::int64_t parts = 1;
  std::int64_t vocab = 0;                                // embedding: token ids in [0, vocab)
  std::int64_t seq = 0;                                  // position_embedding, causal_self_attention: rows per sequence
  std::int64_t heads = 0;                                // causal_self_attention
  AttentionKernel attention = AttentionKernel::blocked;  // causal_self_attention: what it keeps for the backward
  std::vector<LayerSpec> inner;                          // residual: y = x + inner(x); sequence: y = inner(x)
  std::optional<std::string> name;                       // its parameters' prefix; none: its position
  double init_stddev = 0;  // linear: N(0, stddev^2) weights and zero bias; 0: PyTorch's uniform
  std::string tied;        // tied_head: the name of the embedding whose table it uses
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
// y = x W + b with the output made of `parts` blocks of out / parts features (a fused [Q | K | V]
// projection: parts = 3); the same layer as linear() on one rank.
inline LayerSpec fused_linear(std::int64_t in, std::int64_t out, std::int64_t parts, Parallel parallel = Parallel::none,
                              bool bias = true) {
  require_argument(parts >= 1 && out % parts == 0, "trident::nn::fused_linear: ", out, " output features do not make ",
                   parts, " equal parts");
  require_argument(parallel != Parallel::row, "trident::nn::fused_linear: a row-parallel linear splits its input, ",
                   "not its parts");
  LayerSpec spec = linear(in, out, parallel, bias);
  spec.parts = parts;
  return spec;
}
// the tanh approximation, as GPT-2
inline LayerSpec gelu() {
  return layer_of_kind(LayerKind::gelu);
}
inline LayerSpec relu() {
  return layer_of_kind(LayerKind::relu);
}
inline LayerSpec tanh() {
  return layer_of_kind(LayerKind::tanh);
}
inline LayerSpec silu() {
  return layer_of_kind(LayerKind::silu);
}
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

// out = table[id] for a single input column of token ids (held as Scalar values, exact below
// 2^24 in float); table [vocab, features], split by vocabulary rows under tensor parallelism.
inline LayerSpec embedding(std::int64_t vocab, std::int64_t features) {
  require_argument(vocab >= 1 && features >= 1, "trident::nn::embedding: vocab and features must be >= 1, got ", vocab,
                   " and ", features);
  LayerSpec spec = layer_of_kind(LayerKind::embedding);
  spec.in = 1;
  spec.out = features;
  spec.vocab = vocab;
  return spec;
}

// out = x + wpe[row % seq]: the rows are sequences of `seq` consecutive rows; wpe [seq, features].
inline LayerSpec position_embedding(std::int64_t seq, std::int64_t features) {
  require_argument(seq >= 1 && features >= 1, "trident::nn::position_embedding: seq and features must be >= 1, got ",
                   seq, " and ", features);
  LayerSpec spec = layer_of_kind(LayerKind::position_embedding);
  spec.in = spec.out = features;
  spec.seq = seq;
  return spec;
}

// softmax(Q K^T / sqrt(features / heads) + causal mask) V per head, heads concatenated, on
// input rows [Q | K | V] of 3 * features columns in sequences of `seq` rows. No parameters.
// `kernel`: keep the probabilities (blocked) or only their log-sum-exps (flash), see
// ops/attention_kernel.hpp; the same function either way.
inline LayerSpec causal_self_attention(std::int64_t features, std::int64_t heads, std::int64_t seq,
                                       AttentionKernel kernel = AttentionKernel::blocked) {
  require_argument(features >= 1 && heads >= 1 && seq >= 1, "trident::nn::causal_self_attention: features, heads ",
                   "and seq must be >= 1, got ", features, ", ", heads, " and ", seq);
  require_argument(features % heads == 0, "trident::nn::causal_self_attention: ", features,
                   " features do not split into ", heads, " heads");
  LayerSpec spec = layer_of_kind(LayerKind::causal_self_attention);
  spec.in = 3 * features;
  spec.out = features;
  spec.heads = heads;
  spec.seq = seq;
  spec.attention = kernel;
  return spec;
}

// `spec` with every causal self-attention, at any depth, running `kernel`.
inline LayerSpec with_attention_kernel(LayerSpec spec, AttentionKernel kernel) {
  if (spec.kind == LayerKind::causal_self_attention) spec.attention = kernel;
  for (auto& inner : spec.inner) inner = with_attention_kernel(std::move(inner), kernel);
  return spec;
}
inline ModelSpec with_attention_kernel(ModelSpec spec, AttentionKernel kernel) {
  for (auto& layer : spec.layers) layer = with_attention_kernel(std::move(layer), kernel);
  return spec;
}

// Layers run one after the other as one layer.
inline LayerSpec sequence(std::vector<LayerSpec> layers) {
  require_argument(!layers.empty(), "trident::nn::sequence: the sequence holds no layer");
  LayerSpec spec = layer_of_kind(LayerKind::sequence);
  spec.inner = std::move(layers);
  return spec;
}

// logits = x E^T with E [vocab, features] the table of the embedding named `embedding`
// (weight tying, as GPT-2's lm_head). Under tensor parallelism E is split by vocabulary rows
// and so are the logits; a pipeline stage without the embedding holds a copy of E, whose
// gradient the pipeline sums with the embedding's (nn::tied_tensors names them).
inline LayerSpec tied_head(std::int64_t vocab, std::int64_t features, std::string embedding) {
  require_argument(vocab >= 1 && features >= 1 && !embedding.empty(), "trident::nn::tied_head: vocab and features ",
                   "must be >= 1 and the embedding named, got ", vocab, ", ", features, " and '", embedding, "'");
  LayerSpec spec = layer_of_kind(LayerKind::tied_head);
  spec.in = features;
  spec.out = vocab;
  spec.vocab = vocab;
  spec.tied = std::move(embedding);
  return spec;
}

// The layer with its parameters named "<name>.<...>" ("" adds no prefix).
inline LayerSpec named(std::string name, LayerSpec spec) {
  spec.name = std::move(name);
  return spec;
}

// A linear layer initialised as GPT-2 and Megatron-LM do: N(0, stddev^2) weights, zero bias.
inline LayerSpec normal_init(LayerSpec spec, double stddev) {
  require_argument(spec.kind == LayerKind::linear, "trident::nn::normal_init: only a linear layer takes it");
  require_argument(stddev > 0, "trident::nn::normal_init: the standard deviation must be > 0, got ", stddev);
  spec.init_stddev = stddev;
  return spec;
}

// The prefix of the parameters of `spec`, child `index` of a chain whose prefix is `prefix`.
inline std::string child_prefix(const std::string& prefix, const LayerSpec& spec, std::size_t index) {
  if (!spec.name) return prefix + std::to_string(index) + ".";
  return spec.name->empty() ? prefix : prefix + *spec.name + ".";
}

// Rows per sample: the sequence length of a model with positions or attention (its largest),
// else 1 (every row is a sample). Batches split over replicas and micro-batches in whole samples.
inline std::int64_t rows_per_sample(const LayerSpec& spec) {
  std::int64_t rows =
      spec.kind == LayerKind::position_embedding || spec.kind == LayerKind::causal_self_attention ? spec.seq : 1;
  for (const auto& inner : spec.inner) rows = std::max(rows, rows_per_sample(inner));
  return rows;
}

inline ModelSpec sequential(std::vector<LayerSpec> layers, Loss loss) {
  require_argument(!layers.empty(), "trident::nn::sequential: a model needs at least one layer");
  return ModelSpec{std::move(layers), loss};
}

inline std::int64_t rows_per_sample(const ModelSpec& spec) {
  std::int64_t rows = 1;
  for (const auto& layer : spec.layers) rows = std::max(rows, rows_per_sample(layer));
  return rows;
}

// The vocabulary of the token ids a model reads, when its first layer is an embedding (inside
// sequences as well); 0 when it reads features.
inline std::int64_t input_vocabulary(const ModelSpec& spec) {
  if (spec.layers.empty()) return 0;
  const LayerSpec* first = &spec.layers.front();
  while (first->kind == LayerKind::sequence && !first->inner.empty()) first = &first->inner.front();
  return first->kind == LayerKind::embedding ? first->vocab : 0;
}

// Multiply-adds per row of a layer's forward pass, what a pipeline cut balances: a linear
// in * out, attention 2 T C (scores and values), a tied head V C, the other layers their width.
inline double forward_cost_per_row(const LayerSpec& spec) {
  switch (spec.kind) {
    case LayerKind::linear:
      return static_cast<double>(spec.in) * static_cast<double>(spec.out);
    case LayerKind::causal_self_attention:
      return 2.0 * static_cast<double>(spec.seq) * static_cast<double>(spec.out);
    case LayerKind::tied_head:
      return static_cast<double>(spec.vocab) * static_cast<double>(spec.in);
    case LayerKind::residual:
    case LayerKind::sequence: {
      double cost = 0;
      for (const auto& inner : spec.inner) cost += forward_cost_per_row(inner);
      return cost;
    }
    default:
      return static_cast<double>(std::max(spec.out, spec.in));
  }
}

inline bool is_pointwise(LayerKind kind) {
  return kind == LayerKind::gelu || kind == LayerKind::relu || kind == LayerKind::tanh || kind == LayerKind::silu;
}

// Whether the activation `next` adds the bias of the linear `layer` right before it in the same
// chain, in the activation's own pass each way (ops/bias_activation.hpp), given the data into
// the linear: split by rows (sequence parallelism) and gathered by a column-parallel linear.
// Not where the linear's bias gradient covers this rank's rows only and is summed over the
// group: a row-parallel linear scattering its rows again, a whole linear on split rows.
inline bool activation_takes_bias(const LayerSpec& layer, const LayerSpec& next, bool rows_split, bool gathered) {
  if (layer.kind != LayerKind::linear || !layer.bias || !is_pointwise(next.kind)) return false;
  return !(layer.parallel == Parallel::row && gathered) && !(layer.parallel == Parallel::none && rows_split);
}

// Whether a residual branch's first layer adds the identity path's gradient in its own
// backward pass (Layer::adds_to_input_gradient): a LayerNorm, first in the branch or first in a
// chain there (pre-LayerNorm transformers). Such a residual keeps no gradient buffer of its own.
inline bool branch_adds_identity_gradient(const std::vector<LayerSpec>& branch) {
  if (branch.empty()) return false;
  if (branch.front().kind == LayerKind::sequence) return branch_adds_identity_gradient(branch.front().inner);
  return branch.front().kind == LayerKind::layer_norm;
}

// Marks every run linear -> pointwise* -> linear of unmarked linears (also inside residual
// branches and sequences) as column- then row-parallel: the Megatron MLP; and every run linear ->
// causal_self_attention -> linear likewise, the first split per [Q | K | V] block so that a
// rank holds whole heads: the Megatron attention.
inline std::vector<LayerSpec> megatron_pairs(std::vector<LayerSpec> layers) {
  for (std::size_t i = 0; i < layers.size(); ++i) {
    if (layers[i].kind == LayerKind::residual || layers[i].kind == LayerKind::sequence) {
      layers[i].inner = megatron_pairs(std::move(layers[i].inner));
      continue;
    }
    if (layers[i].kind != LayerKind::linear || layers[i].parallel != Parallel::none) continue;
    std::size_t j = i + 1;
    const bool attention = j < layers.size() && layers[j].kind == LayerKind::causal_self_attention;
    if (attention) {
      ++j;
    } else {
      while (j < layers.size() && is_pointwise(layers[j].kind)) ++j;
    }
    if (j < layers.size() && layers[j].kind == LayerKind::linear && layers[j].parallel == Parallel::none) {
      layers[i].parallel = Parallel::column;
      if (attention) layers[i].parts = 3;
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
             (spec.parts == 1 ? std::string() : ", " + std::to_string(spec.parts) + " parts") +
             (spec.bias ? "" : ", no bias") + ")";
    case LayerKind::embedding:
      return "embedding(V = " + std::to_string(spec.vocab) + ", C = " + std::to_string(spec.out) + ")";
    case LayerKind::position_embedding:
      return "position_embedding(T = " + std::to_string(spec.seq) + ", C = " + std::to_string(spec.out) + ")";
    case LayerKind::causal_self_attention:
      return "causal_self_attention(C = " + std::to_string(spec.out) + ", H = " + std::to_string(spec.heads) +
             ", T = " + std::to_string(spec.seq) + (spec.attention == AttentionKernel::flash ? ", flash" : "") + ")";
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
    case LayerKind::residual:
    case LayerKind::sequence: {
      std::string text = spec.kind == LayerKind::residual ? "residual[" : "sequence[";
      for (std::size_t i = 0; i < spec.inner.size(); ++i) text += (i ? ", " : "") + describe(spec.inner[i]);
      return text + "]";
    }
    case LayerKind::tied_head:
      return "tied_head(V = " + std::to_string(spec.vocab) + ", C = " + std::to_string(spec.in) + ", tied to '" +
             spec.tied + "')";
  }
  return "unknown";
}

// A whole model as text: its layers and its loss (what a checkpoint records of the model).
inline std::string describe(const ModelSpec& spec) {
  std::string text = "[";
  for (std::size_t i = 0; i < spec.layers.size(); ++i) text += (i ? ", " : "") + describe(spec.layers[i]);
  return text + "], " + (spec.loss == Loss::cross_entropy ? "cross_entropy" : "mean_squared_error");
}

}  // namespace trident::nn
