#pragma once
// The operator graph of a model spec, costed: for every top-level layer (the unit a pipeline
// cuts between) at a given micro-batch, sequence length, tensor-parallel size and element
// size, what one rank of the tensor-parallel group does in forward and backward:
//
//   - its GEMMs by shape (m x k times k x n) and its attention, which give the FLOPs;
//   - the bytes its elementwise kernels read and write;
//   - the collectives over the tensor-parallel group its parallel marks imply (Megatron's
//     f/g pairs; with sequence parallelism all-gathers and reduce-scatters instead);
//   - the parameters it holds;
//   - the activations it keeps for backward, as trident's nn::Model keeps them and as
//     Megatron-LM does (Korthikanti et al. 2022), with and without recomputation.
//
// FLOPs are model FLOPs: a GEMM is 2mnk, attention 4 T C per row forward and twice that
// backward (its scores and values as whole squares), so a GPT-2 token costs 6N + 6VC + 12LCT
// (N the blocks' weights); the flash kernel's backward also recomputes the scores, 2 T C more
// per row. Nothing here depends on a Scalar or an execution space.

#include <trident/core/error.hpp>
#include <trident/nn/parameters.hpp>
#include <trident/nn/spec.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace trident::plan {

// One product C[m, n] = A[m, k] B[k, n] (or a transposed variant of the same size).
struct Gemm {
  std::int64_t m = 0, n = 0, k = 0;
  bool weight = false;  // a weight gradient: the pass a zero-bubble schedule defers
  char trans_a = 'N', trans_b = 'N';
  // Added onto C (beta 1: a weight gradient, a product onto its bias) or written over it
  // (beta 0), which a host BLAS does by zeroing C first.
  bool accumulate = true;
  double flops() const { return 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k); }
  // Elements of A, B and C, each read or written once.
  double operand_elements() const { return double(m) * double(k) + double(k) * double(n) + double(m) * double(n); }
};

enum class CollectiveKind { all_reduce, all_gather, reduce_scatter };

inline const char* collective_name(CollectiveKind kind) {
  switch (kind) {
    case CollectiveKind::all_reduce:
      return "all_reduce";
    case CollectiveKind::all_gather:
      return "all_gather";
    case CollectiveKind::reduce_scatter:
      return "reduce_scatter";
  }
  return "unknown";
}

// A collective over the tensor-parallel group; `bytes` is the size of the whole (gathered or
// reduced) buffer, as the alpha-beta model of a ring takes it.
struct Collective {
  CollectiveKind kind = CollectiveKind::all_reduce;
  double bytes = 0;
};

// A kernel other than a GEMM: its name (a calibrated machine knows its time per element, e.g.
// "gelu_forward"), the elements it goes over and the bytes it reads and writes (what a
// machine without that measurement prices by its memory bandwidth).
struct Kernel {
  std::string name;
  double elements = 0;
  double bytes = 0;
  double width = 0;  // columns of its rows (0: a flat vector)
};

// What one pass (forward or backward) of a layer costs one rank.
struct PassCost {
  std::vector<Gemm> gemms;
  double attention_flops = 0;  // scores and weighted values, model FLOPs
  std::vector<Kernel> kernels;
  std::vector<Collective> collectives;

  double elementwise_bytes() const {
    double total = 0;
    for (const Kernel& k : kernels) total += k.bytes;
    return total;
  }

  double flops() const {
    double total = attention_flops;
    for (const Gemm& g : gemms) total += g.flops();
    return total;
  }
  void add(const PassCost& other) {
    gemms.insert(gemms.end(), other.gemms.begin(), other.gemms.end());
    attention_flops += other.attention_flops;
    kernels.insert(kernels.end(), other.kernels.begin(), other.kernels.end());
    collectives.insert(collectives.end(), other.collectives.begin(), other.collectives.end());
  }
};

// Activations kept for backward per micro-batch, in bytes: what stays with the micro-batch
// until its backward (`kept`), and what all micro-batches share because only one uses it at a
// time (`shared`: scratch, and with recomputation the workspace of the layer being recomputed).
struct ActivationBytes {
  double kept = 0;        // its state and its output
  double output = 0;      // its output alone: what a recomputed layer keeps
  std::string structure;  // layers of one structure on one input share their scratch
  double deferred = 0;    // a split backward's copies of output gradients, for the weight pass
  // Scratch by structure: layers of one structure on one input (a model's blocks) share it.
  std::map<std::string, double> shared;
};

struct LayerCost {
  std::string what;  // nn::describe of the layer
  PassCost forward, backward;
  double parameters = 0;          // elements this rank holds
  double global_parameters = 0;   // elements of the one-rank layer
  double output_bytes = 0;        // this rank's part of the layer's output (what a pipeline cut sends)
  double transient_bytes = 0;     // the most one of its kernels allocates while it runs (widened_operands)
  ActivationBytes trident;        // as nn::Model keeps them
  double megatron = 0;            // as Megatron-LM keeps them (16-bit, with dropout)
  double megatron_selective = 0;  // Megatron with selective recomputation (attention scores recomputed)
};

// Where a spec is evaluated: micro-batches of `samples` sequences of `seq` rows (seq 1: one row
// a sample), split `tp` ways, `element_bytes` per activation value. In mixed precision
// (16-bit activations) nn::Model keeps some values in the compute type, `compute_bytes` each
// (nn/types.hpp): per-row statistics and losses, attention's buffers, the partial parameter
// gradients of sequence-parallel rows, the vocabulary-parallel loss's sums.
struct CostShape {
  std::int64_t samples = 1;
  std::int64_t seq = 1;
  int tp = 1;
  bool sequence_parallel = false;
  double element_bytes = 4;
  double compute_bytes = 0;  // 0: element_bytes
  int causal_block = 64;     // trident's attention keeps scores in blocks of this many rows (ops/attention.hpp)
  int attention_slots = 1;   // flash attention's (b, h) pairs at once on a host (Machine::attention_slots)
  // A pre-LayerNorm residual's backward adds its gradient in the LayerNorm's pass (trident's
  // nn::Residual); false: in an add of its own (Megatron-LM).
  bool residual_gradient_joined = true;
  bool dropout = false;  // Megatron-LM's dropout after the attention's softmax and each residual branch

  std::int64_t rows() const { return samples * seq; }
  double compute_element_bytes() const { return compute_bytes > 0 ? compute_bytes : element_bytes; }
};

namespace detail {

// Megatron-LM's activations are 16-bit and its dropout masks one byte an element.
inline constexpr double megatron_element = 2, megatron_mask = 1;

// The state of the flow between layers while walking a chain.
struct Flow {
  std::int64_t columns = 0;     // this rank's features
  bool features_split = false;  // inside a tensor-parallel region (after a column-parallel linear)
  bool rows_split = false;      // sequence parallelism: this rank holds rows / tp
  bool gathered = false;        // the region's input was gathered by rows: its end scatters them again
};

class CostWalker {
 public:
  explicit CostWalker(const CostShape& shape) : m_shape(shape), m_t(shape.tp), m_r(static_cast<double>(shape.rows())) {}

  // Costs `layer` from `flow` into `cost`, leaving `flow` as its output; the trident kept bytes
  // of the layer's own state go into `cost.trident` (its output is counted by the caller).
  void walk(const nn::LayerSpec& layer, Flow& flow, LayerCost& cost, const std::string& key) {
    const double e = m_shape.element_bytes, f = m_shape.compute_element_bytes();
    const double t = m_t;
    const double rows_here = flow.rows_split ? m_r / t : m_r;
    switch (layer.kind) {
      case nn::LayerKind::linear:
        linear(layer, flow, cost, key);
        return;
      case nn::LayerKind::gelu:
      case nn::LayerKind::relu:
      case nn::LayerKind::tanh:
      case nn::LayerKind::silu: {
        const double n = rows_here * static_cast<double>(flow.columns);
        const std::string name = nn::describe(layer);
        if (m_fusion == Fusion::activation_adds_bias) {  // also reads its input's bias and writes the input back
          elementwise(cost, flow, n, {"bias_" + name + "_forward", 3}, {"bias_" + name + "_backward", 3});
        } else {
          elementwise(cost, flow, n, {name + "_forward", 2}, {name + "_backward", 3});
        }
        cost.megatron += megatron_element * n;  // its input
        return;
      }
      case nn::LayerKind::layer_norm: {
        const double n = rows_here * static_cast<double>(flow.columns);
        // first in a residual branch, its backward also reads the identity path's gradient
        elementwise(cost, flow, n, {"layer_norm_forward", 3}, {"layer_norm_backward", m_first_in_residual ? 6.0 : 5.0});
        cost.parameters += 2.0 * static_cast<double>(layer.in);
        cost.global_parameters += 2.0 * static_cast<double>(layer.in);
        cost.trident.kept += 2 * rows_here * f;  // mean and 1 / std per row
        if (flow.rows_split) {
          cost.backward.collectives.push_back({CollectiveKind::all_reduce, 2.0 * static_cast<double>(layer.in) * f});
          cost.trident.shared[key + "/ln"] += 2.0 * static_cast<double>(layer.in) * f;
        }
        cost.megatron += megatron_element * n;
        return;
      }
      case nn::LayerKind::residual: {
        const double n = rows_here * static_cast<double>(flow.columns);
        const bool joined = m_shape.residual_gradient_joined && nn::branch_adds_identity_gradient(layer.inner);
        Flow inner = flow;
        m_first_in_residual = joined;
        chain(layer.inner, inner, cost, key + "/res");
        flow = inner;
        if (joined) {  // y += x forward; backward, the branch's first layer adds the gradient
          cost.forward.kernels.push_back({"add", n, 3 * n * e, static_cast<double>(flow.columns)});
        } else {
          elementwise(cost, flow, n, {"add", 3}, {"add", 3});
          cost.trident.shared[key + "/res.gradient"] += n * e;
        }
        if (m_shape.dropout) {  // reads the branch, writes it and a one-byte mask; backward likewise
          cost.forward.kernels.push_back({"dropout", n, (2 * e + 1) * n});
          cost.backward.kernels.push_back({"dropout", n, (2 * e + 1) * n});
        }
        cost.megatron += megatron_mask * rows_here * static_cast<double>(flow.columns);  // dropout mask
        return;
      }
      case nn::LayerKind::sequence:
        chain(layer.inner, flow, cost, key + "/seq");
        return;
      case nn::LayerKind::embedding:
        embedding(layer, flow, cost, key);
        return;
      case nn::LayerKind::position_embedding: {
        const double n = rows_here * static_cast<double>(flow.columns);
        elementwise(cost, flow, n, {"add", 3}, {"position_embedding_backward", 2});
        const double table = static_cast<double>(layer.seq) * static_cast<double>(layer.out);
        cost.parameters += table;
        cost.global_parameters += table;
        if (flow.rows_split) cost.trident.shared[key + "/wpe"] += table * f;
        return;
      }
      case nn::LayerKind::causal_self_attention:
        attention(layer, flow, cost, key);
        return;
      case nn::LayerKind::tied_head:
        tied_head(layer, flow, cost, key);
        return;
    }
  }

  void chain(const std::vector<nn::LayerSpec>& layers, Flow& flow, LayerCost& cost, const std::string& key) {
    bool adds_bias = false;  // layers[i] adds the bias of the linear before it (nn::activation_takes_bias)
    for (std::size_t i = 0; i < layers.size(); ++i) {
      const bool leaves_bias =
          i + 1 < layers.size() && nn::activation_takes_bias(layers[i], layers[i + 1], flow.rows_split, flow.gathered);
      m_fusion = leaves_bias ? Fusion::bias_to_activation : adds_bias ? Fusion::activation_adds_bias : Fusion::none;
      if (i > 0) m_first_in_residual = false;
      walk(layers[i], flow, cost, key + "." + std::to_string(i));
      m_fusion = Fusion::none;
      m_first_in_residual = false;
      adds_bias = leaves_bias;
      if (i + 1 == layers.size()) break;
      // A chain keeps every inner output for its backward, and a gradient buffer per boundary.
      const double n = (flow.rows_split ? m_r / m_t : m_r) * static_cast<double>(flow.columns) * m_shape.element_bytes;
      cost.trident.kept += n;
      cost.trident.shared[key + ".gradient" + std::to_string(i)] += n;
    }
  }

 private:
  // A kernel by name and the values it reads and writes per element.
  struct Pass {
    std::string name;
    double values_per_element;
  };
  // An elementwise layer's forward and backward kernels over `n` elements in rows of the flow.
  void elementwise(LayerCost& cost, const Flow& flow, double n, const Pass& forward, const Pass& backward) const {
    const double e = m_shape.element_bytes, width = static_cast<double>(flow.columns);
    cost.forward.kernels.push_back({forward.name, n, forward.values_per_element * n * e, width});
    cost.backward.kernels.push_back({backward.name, n, backward.values_per_element * n * e, width});
  }

  void linear(const nn::LayerSpec& layer, Flow& flow, LayerCost& cost, const std::string& key) {
    const double e = m_shape.element_bytes;
    const double t = m_t;
    const auto in = static_cast<double>(layer.in), out = static_cast<double>(layer.out);
    const bool parallel = m_t > 1;
    cost.global_parameters += in * out + (layer.bias ? out : 0.0);
    if (layer.parallel == nn::Parallel::column && parallel) {
      const double out_local = out / t;
      cost.parameters += in * out_local + (layer.bias ? out_local : 0.0);
      if (flow.rows_split) {  // gather the rows first; its gradient is scattered back
        cost.forward.collectives.push_back({CollectiveKind::all_gather, m_r * in * e});
        cost.backward.collectives.push_back({CollectiveKind::reduce_scatter, m_r * in * e});
        cost.trident.kept += m_r * in * e;  // the gathered input
        cost.trident.shared[key + "/gathered_gradient"] += m_r * in * e;
      } else {
        cost.backward.collectives.push_back({CollectiveKind::all_reduce, m_r * in * e});
      }
      products(cost, m_r, out_local, in, layer.bias);
      // Megatron keeps the column linear's input: replicated, or split by rows with sequence parallelism.
      cost.megatron += megatron_element * (flow.rows_split ? m_r / t : m_r) * in;
      flow.columns = static_cast<std::int64_t>(out_local);
      flow.features_split = true;
      flow.gathered = flow.rows_split;
      flow.rows_split = false;
      return;
    }
    if (layer.parallel == nn::Parallel::row && parallel) {
      const double in_local = in / t;
      cost.parameters += in_local * out + (layer.bias ? out : 0.0);
      products(cost, m_r, out, in_local, layer.bias);
      cost.megatron += megatron_element * m_r * in_local;
      const bool scatter = m_shape.sequence_parallel && flow.gathered;
      if (scatter) {  // partial sums scattered by rows
        cost.forward.collectives.push_back({CollectiveKind::reduce_scatter, m_r * out * e});
        cost.backward.collectives.push_back({CollectiveKind::all_gather, m_r * out * e});
        cost.trident.shared[key + "/partial"] += 2 * m_r * out * e;  // the partial sums and their gradient
      } else {
        cost.forward.collectives.push_back({CollectiveKind::all_reduce, m_r * out * e});
      }
      flow.columns = layer.out;
      flow.features_split = false;
      flow.rows_split = scatter;
      flow.gathered = false;
      return;
    }
    // Replicated weights (also every marked linear at tp = 1).
    const double rows = flow.rows_split ? m_r / t : m_r;
    cost.parameters += in * out + (layer.bias ? out : 0.0);
    products(cost, rows, out, in, layer.bias);
    cost.megatron += megatron_element * rows * in;
    if (flow.rows_split) {  // this rank's rows' parameter gradients, summed over the group
      const double f = m_shape.compute_element_bytes();
      cost.backward.collectives.push_back({CollectiveKind::all_reduce, (in + 1) * out * f});
      cost.trident.shared[key + "/partial_gradients"] += (in + 1) * out * f;
    }
    flow.columns = layer.out;
  }

  // A product of 16-bit activations widens them into float copies for its duration
  // (ops/matmul.hpp): forward the input and the output, backward the output's gradient and the
  // input's (or the input, for the weight gradient). Each copy reads 16 bits and writes 32 (the
  // output is rounded back the other way). The float weight is rounded to 16 bits for the
  // forward and input-gradient products (ops/linear.hpp), into a float copy beside the others.
  void widened_operands(LayerCost& cost, double input_elements, double output_elements, double weight_elements) const {
    const double e = m_shape.element_bytes, f = m_shape.compute_element_bytes();
    if (e >= f) return;
    const double n = input_elements + output_elements;
    cost.transient_bytes = std::max(cost.transient_bytes, (n + weight_elements) * f);
    const Kernel widen{"matmul_widen", n, n * (e + f)},
        round_weight{"round_weight", weight_elements, weight_elements * 2 * f};
    cost.forward.kernels.insert(cost.forward.kernels.end(), {widen, round_weight});
    cost.backward.kernels.insert(cost.backward.kernels.end(), {widen, widen, round_weight});
  }

  // y = x W (+ b): one product forward, two backward (input and weight gradients), and the
  // bias's add and sum unless the activation after it does them.
  void products(LayerCost& cost, double rows, double out, double in, bool bias) {
    const auto m = static_cast<std::int64_t>(rows), n = static_cast<std::int64_t>(out),
               k = static_cast<std::int64_t>(in);
    const bool bias_first = bias && m_fusion != Fusion::bias_to_activation;  // the product adds onto it
    cost.forward.gemms.push_back({m, n, k, false, 'N', 'N', bias_first});
    cost.backward.gemms.push_back({m, k, n, false, 'N', 'T', false});  // dX = dY W^T
    cost.backward.gemms.push_back({k, n, m, true, 'T', 'N'});          // dW += X^T dY
    const double e = m_shape.element_bytes;
    cost.trident.deferred += rows * out * e;
    widened_operands(cost, rows * in, rows * out, in * out);
    if (bias_first) {
      cost.forward.kernels.push_back({"bias_forward", rows * out, 2 * rows * out * e, out});
      cost.backward.kernels.push_back({"bias_backward", rows * out, rows * out * e, out});
    }
  }

  void embedding(const nn::LayerSpec& layer, Flow& flow, LayerCost& cost, const std::string& key) {
    const double e = m_shape.element_bytes;
    const auto vocab = static_cast<double>(layer.vocab), c = static_cast<double>(layer.out);
    const bool parallel = m_t > 1;
    cost.global_parameters += vocab * c;
    cost.parameters += parallel ? vocab / m_t * c : vocab * c;
    cost.forward.kernels.push_back({"embedding_forward", m_r * c, 2 * m_r * c * e});
    cost.backward.kernels.push_back({"embedding_backward", m_r * c, 2 * m_r * c * e});
    cost.trident.kept += m_r * 4;  // the token of each row (int)
    if (parallel) {                // each rank looks up its rows of the table; the partial rows are summed
      const CollectiveKind kind =
          m_shape.sequence_parallel ? CollectiveKind::reduce_scatter : CollectiveKind::all_reduce;
      cost.forward.collectives.push_back({kind, m_r * c * e});
      if (m_shape.sequence_parallel) {
        cost.backward.collectives.push_back({CollectiveKind::all_gather, m_r * c * e});
        cost.trident.shared[key + "/scatter"] += 2 * m_r * c * e;
      }
    }
    flow.columns = layer.out;
    flow.features_split = false;
    flow.rows_split = parallel && m_shape.sequence_parallel;
  }

  void attention(const nn::LayerSpec& layer, Flow& flow, LayerCost& cost, const std::string& key) {
    const double e = m_shape.compute_element_bytes();  // its buffers hold the compute type
    const double t = flow.features_split ? m_t : 1.0;
    const auto c = static_cast<double>(layer.out), seq = static_cast<double>(layer.seq);
    const double heads = static_cast<double>(layer.heads) / t;
    const double sequences = m_r / seq;
    const bool flash = layer.attention == nn::AttentionKernel::flash;
    cost.forward.attention_flops += 4 * m_r * seq * c / t;
    cost.backward.attention_flops += (flash ? 10 : 8) * m_r * seq * c / t;
    // trident's scratch holds the heads of Q, K, V, the output and their gradients. The blocked
    // kernel keeps the causal blocks of the softmax probabilities and shares their gradient;
    // the flash kernel keeps a log-sum-exp per row and shares a number per row and, on a host, a
    // row block's probabilities and gradient for each pair its threads run at once.
    const double block = std::min<double>(m_shape.causal_block, seq);
    const double blocks = std::ceil(seq / block);
    const double last_begin = (blocks - 1) * block;
    const double scores = block * block * (blocks - 1) * blocks / 2 + (seq - last_begin) * seq;
    const double probs = sequences * heads * scores * e;
    const double heads_bytes = 7 * m_r * c / t * e;
    if (flash) {
      const double per_row = sequences * heads * seq * e;
      cost.trident.kept += per_row;
      const double at_once = std::min(static_cast<double>(m_shape.attention_slots), sequences * heads);
      cost.trident.shared[key + "/attention"] += heads_bytes + 2 * at_once * block * seq * e + per_row;
      // (its tiles stay in cache: Q, K, V and the output read and written once more)
      cost.forward.kernels.push_back({"attention_softmax_forward", probs / e, 4 * m_r * c / t * e});
      cost.backward.kernels.push_back({"attention_softmax_backward", 2 * probs / e, 8 * m_r * c / t * e});
    } else {
      cost.trident.kept += probs;
      cost.trident.shared[key + "/attention"] += heads_bytes + probs;
      // (a calibrated machine times the whole attention, its products included, by its FLOPs)
      cost.forward.kernels.push_back({"attention_softmax_forward", probs / e, 3 * probs + 4 * m_r * c / t * e});
      cost.backward.kernels.push_back({"attention_softmax_backward", probs / e, 4 * probs + 8 * m_r * c / t * e});
    }
    if (m_shape.dropout) {
      cost.forward.kernels.push_back({"dropout", probs / e, (2 * e + 1) * probs / e});
      cost.backward.kernels.push_back({"dropout", probs / e, (2 * e + 1) * probs / e});
    }
    // Megatron: Q and K (4sbh/t), the softmax output (2as^2b/t), its dropout mask (as^2b/t),
    // the dropout output (2as^2b/t) and V (2sbh/t).
    const double score_elements = sequences * heads * seq * seq;
    const double megatron_scores = (2 * megatron_element + megatron_mask) * score_elements;
    cost.megatron += megatron_element * 3 * m_r * c / t + megatron_scores;
    cost.megatron_selective -= megatron_scores;
    flow.columns = static_cast<std::int64_t>(c / t);
  }

  void tied_head(const nn::LayerSpec& layer, Flow& flow, LayerCost& cost, const std::string& key) {
    const double e = m_shape.element_bytes;
    const auto vocab = static_cast<double>(layer.vocab), c = static_cast<double>(layer.in);
    const bool parallel = m_t > 1;
    const double vocab_local = parallel ? vocab / m_t : vocab;
    // The table is the embedding's: a stage holds a copy only when the embedding sits on another
    // one (tied_table_elements); the vocabulary-parallel logits need the whole input.
    if (parallel && flow.rows_split) {
      cost.forward.collectives.push_back({CollectiveKind::all_gather, m_r * c * e});
      cost.backward.collectives.push_back({CollectiveKind::reduce_scatter, m_r * c * e});
      cost.trident.kept += m_r * c * e;
      cost.trident.shared[key + "/gathered_gradient"] += m_r * c * e;
    } else if (parallel) {
      cost.backward.collectives.push_back({CollectiveKind::all_reduce, m_r * c * e});
    }
    const auto m = static_cast<std::int64_t>(m_r), n = static_cast<std::int64_t>(vocab_local),
               k = static_cast<std::int64_t>(c);
    cost.trident.deferred += m_r * vocab_local * e;
    widened_operands(cost, m_r * c, m_r * vocab_local, vocab_local * c);
    cost.forward.gemms.push_back({m, n, k, false, 'N', 'T', false});   // logits = X E^T
    cost.backward.gemms.push_back({m, k, n, false, 'N', 'N', false});  // dX = dY E
    cost.backward.gemms.push_back({n, k, m, true, 'T', 'N'});          // dE += dY^T X
    cost.megatron += megatron_element * (flow.rows_split ? m_r / m_t : m_r) * c;
    cost.megatron += 4 * m_r * vocab_local;  // the fp32 logits the cross-entropy keeps
    flow.columns = static_cast<std::int64_t>(vocab_local);
    flow.features_split = parallel;
    flow.rows_split = false;
  }

  CostShape m_shape;
  double m_t;
  double m_r;
  // The layer being walked, in its chain: a linear leaving its bias to the activation after it,
  // or that activation (nn::activation_takes_bias).
  enum class Fusion { none, bias_to_activation, activation_adds_bias } m_fusion = Fusion::none;
  // The layer being walked is the first of a residual branch that adds the identity gradient.
  bool m_first_in_residual = false;
};

}  // namespace detail

// A table a tied head reads (nn::tied_tables), with its elements.
struct TiedTableSize {
  int embedding_layer = 0, head_layer = 0;
  double rows = 0, columns = 0;
};

inline std::vector<TiedTableSize> tied_table_sizes(const nn::ModelSpec& spec) {
  std::vector<TiedTableSize> sizes;
  const auto tables = nn::tied_tables(spec);
  if (tables.empty()) return sizes;
  const auto tensors = nn::model_tensors(spec);
  for (const nn::TiedTable& table : tables)
    for (const nn::TensorPlan& t : tensors)
      if (t.table && t.name == table.name)
        sizes.push_back({table.embedding_layer, table.head_layer, static_cast<double>(t.shape[0]),
                         static_cast<double>(t.shape[1])});
  return sizes;
}

// The tied heads' tables that a stage of layers [first, end) must hold itself: those whose
// embedding lies outside it (the pipeline then sums the two copies' gradients), this rank's
// rows of each under tensor parallelism.
inline double tied_table_elements(const std::vector<TiedTableSize>& tables, int first, int end, int tp) {
  const auto inside = [&](int layer) { return layer >= first && layer < end; };
  double elements = 0;
  for (const TiedTableSize& t : tables)
    if (inside(t.head_layer) && !inside(t.embedding_layer)) elements += t.rows / std::max(tp, 1) * t.columns;
  return elements;
}

// Every top-level layer's costs at `shape`, in order. The loss is the last layer's: its
// elementwise work, and under tensor parallelism the vocabulary-parallel softmax's small
// all-reduces.
inline std::vector<LayerCost> layer_costs(const nn::ModelSpec& spec, const CostShape& shape) {
  require_argument(shape.samples >= 1 && shape.seq >= 1 && shape.tp >= 1 && shape.element_bytes > 0,
                   "trident::plan::layer_costs: samples, seq and tp must be >= 1, got ", shape.samples, ", ", shape.seq,
                   " and ", shape.tp);
  require_argument(!shape.sequence_parallel || shape.tp > 1,
                   "trident::plan::layer_costs: sequence parallelism needs tp > 1");
  std::vector<LayerCost> costs;
  detail::CostWalker walker(shape);
  detail::Flow flow;
  flow.columns = nn::input_vocabulary(spec) > 0 ? 1 : spec.layers.front().in;
  const double e = shape.element_bytes;
  for (std::size_t i = 0; i < spec.layers.size(); ++i) {
    const nn::LayerSpec& layer = spec.layers[i];
    LayerCost cost;
    cost.what = nn::describe(layer);
    cost.trident.structure = "L" + nn::describe(layer) + (flow.rows_split ? "|rows" : "");
    walker.walk(layer, flow, cost, cost.trident.structure);
    const double rows_out =
        flow.rows_split ? static_cast<double>(shape.rows()) / shape.tp : static_cast<double>(shape.rows());
    cost.output_bytes = rows_out * static_cast<double>(flow.columns) * e;
    cost.trident.kept += cost.output_bytes;  // the layer's output, which the next layer reads
    cost.trident.output = cost.output_bytes;
    cost.megatron_selective += cost.megatron;
    costs.push_back(std::move(cost));
  }
  // The loss: the last layer's output and its gradient.
  LayerCost& last = costs.back();
  const double outputs = static_cast<double>(shape.rows()) * static_cast<double>(flow.columns);
  const std::string loss = spec.loss == nn::Loss::cross_entropy ? "cross_entropy" : "mean_squared_error";
  last.forward.kernels.push_back({loss, outputs, 3 * outputs * e, static_cast<double>(flow.columns)});
  last.trident.kept += static_cast<double>(shape.rows()) * shape.compute_element_bytes();  // the losses
  if (spec.loss == nn::Loss::mean_squared_error) last.trident.kept += outputs * e;         // its gradient
  if (flow.rows_split) last.trident.kept += static_cast<double>(shape.rows()) * static_cast<double>(flow.columns) * e;
  if (spec.loss == nn::Loss::cross_entropy && shape.tp > 1)
    last.forward.collectives.push_back(
        {CollectiveKind::all_reduce, 3.0 * static_cast<double>(shape.rows()) * shape.compute_element_bytes()});
  return costs;
}

// The sums over a range of layers.
inline double forward_flops(const std::vector<LayerCost>& costs) {
  double total = 0;
  for (const auto& c : costs) total += c.forward.flops();
  return total;
}
inline double backward_flops(const std::vector<LayerCost>& costs) {
  double total = 0;
  for (const auto& c : costs) total += c.backward.flops();
  return total;
}

}  // namespace trident::plan
