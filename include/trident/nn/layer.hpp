#pragma once
// What every layer of a model implements. A layer holds no parameter values and no
// activations: it reads its tensors from the model's ParameterStore by name at each call (so
// ZeRO-3 may back them with gathered storage only while the layer runs), and keeps what its
// backward needs in the LayerState of the micro-batch, which the model owns.
//
// Data between layers is a [rows, features] matrix; under tensor parallelism it is either
// replicated on every rank of the group or split by feature columns (after a column-parallel
// linear, until the row-parallel one), and with sequence parallelism the replicated data is
// split by rows instead. forward writes `out` from `in` (an activation adding the bias of the
// linear before it completes `in` with it: pointwise.hpp); backward writes d_in (= not +=;
// skipped when empty) from d_out and ADDS the parameter gradients. backward must not read
// `out`: a residual adds its input to its branch's output in place. A layer whose backward
// needs its output keeps a copy in its state.
//
// Zero-bubble pipelines split backward in two: with context.defer_weights, backward leaves
// the weight GEMMs' gradients to backward_weights, keeping what they need in the state's
// `deferred` views, which are the micro-batch's own.

#include <trident/comm/allreduce.hpp>
#include <trident/core/error.hpp>
#include <trident/core/parameter_store.hpp>
#include <trident/nn/types.hpp>
#include <trident/ops/attention.hpp>
#include <trident/tensor_parallel/group.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace trident::nn {

// What a layer keeps of one micro-batch between its forward and its backward, beyond its input
// and output (which the enclosing chain keeps), and the scratch it uses while it runs, which
// every micro-batch of a model may share (share_scratch_of).
template <class Scalar, class ExecutionSpace>
struct LayerState {
  using types = LayerTypes<Scalar, ExecutionSpace>;
  using memory_space = typename types::memory_space;
  using matrix = typename types::matrix;
  using param_type = typename types::param_type;
  std::vector<matrix> matrices;                                            // a chain: the outputs of its layers
  std::vector<typename types::param_vector> vectors;                       // a LayerNorm: mean and 1/std per row
  std::vector<Kokkos::View<int*, memory_space>> indices;                   // an embedding: the token of each row
  std::vector<ops::AttentionBuffers<param_type, memory_space>> attention;  // an attention: what it keeps, scratch
  std::vector<matrix> scratch;  // used within one pass: gradients inside a chain, partial sums
  std::vector<typename types::param_matrix> partial_grads;  // scratch: parameter gradients of a rank's rows
  std::vector<matrix> deferred;   // a split backward's output gradients (and inputs) for the weight pass
  std::vector<LayerState> inner;  // a chain: its layers' states

  // Takes `owner`'s scratch (a state of the same layer and shape) instead of its own.
  void share_scratch_of(const LayerState& owner) {
    scratch = owner.scratch;
    partial_grads = owner.partial_grads;
    for (std::size_t i = 0; i < attention.size(); ++i) attention[i].share_scratch_of(owner.attention[i]);
    for (std::size_t i = 0; i < inner.size(); ++i) inner[i].share_scratch_of(owner.inner[i]);
  }

  // Calls f on every view but the deferred ones (a view of the scratch may come twice: callers
  // count by pointer).
  template <class F>
  void for_each_view(F&& f) const {
    for (const auto& m : matrices) f(m);
    for (const auto& v : vectors) f(v);
    for (const auto& i : indices) f(i);
    for (const auto& a : attention) a.for_each_kept_view(f);
    for_each_scratch_view(f);
    for (const auto& s : inner) s.for_each_view(f);
  }

  // The views a split backward keeps for its weight pass.
  template <class F>
  void for_each_deferred_view(F&& f) const {
    for (const auto& m : deferred) f(m);
    for (const auto& s : inner) s.for_each_deferred_view(f);
  }

  // The views share_scratch_of shares.
  template <class F>
  void for_each_scratch_view(F&& f) const {
    for (const auto& m : scratch) f(m);
    for (const auto& m : partial_grads) f(m);
    for (const auto& a : attention) a.for_each_scratch_view(f);
    for (const auto& s : inner) s.for_each_scratch_view(f);
  }
};

// Where a layer runs: the execution space, the parameters, the tensor-parallel group, the
// rows of a sequence, and how backward treats the weight gradients.
template <class Scalar, class ExecutionSpace>
struct LayerContext {
  ExecutionSpace space;
  typename LayerTypes<Scalar, ExecutionSpace>::store_type* store = nullptr;
  const tensor_parallel::TensorParallelGroup* group = nullptr;
  std::int64_t seq = 0;               // rows per sequence of this micro-batch (attention, positions)
  bool defer_weights = false;         // backward leaves the weight GEMMs to backward_weights
  bool copy_deferred_inputs = false;  // ... and keeps its own copy of their inputs (recomputation reuses them)
  bool output_gradient_kept = false;  // d_out stays the micro-batch's own until the weight pass
};

template <class Scalar, class ExecutionSpace>
class Layer {
 public:
  using types = LayerTypes<Scalar, ExecutionSpace>;
  using matrix = typename types::matrix;
  using input_matrix = typename types::input_matrix;
  using state_type = LayerState<Scalar, ExecutionSpace>;
  using context_type = LayerContext<Scalar, ExecutionSpace>;

  virtual ~Layer() = default;

  // Columns of this rank's output for an input of `in_columns` columns.
  virtual std::int64_t output_columns(std::int64_t in_columns) const = 0;
  // Rows of this rank's output for `in_rows` input rows (sequence parallelism gathers and
  // scatters rows).
  virtual std::int64_t output_rows(std::int64_t in_rows) const { return in_rows; }
  // The state of a micro-batch of `rows` input rows with `in_columns` input columns, in
  // sequences of `seq` rows.
  virtual state_type make_state(std::int64_t rows, std::int64_t in_columns, std::int64_t seq) const {
    (void)rows;
    (void)in_columns;
    (void)seq;
    return {};
  }
  virtual void forward(const context_type& context, const matrix& in, const matrix& out, state_type& state) const = 0;
  // A layer that reads token ids (an embedding) takes the model's input as it comes, in
  // param_type, when it is the model's first layer: rounded to a 16-bit Scalar, ids past 256
  // (bfloat16) or 2048 (float16) would change. Any other first layer reads the input rounded.
  virtual bool reads_ids() const { return false; }
  virtual void forward_ids(const context_type& context, const input_matrix& ids, const matrix& out,
                           state_type& state) const {
    (void)context;
    (void)ids;
    (void)out;
    (void)state;
    throw Error("trident::nn::Layer::forward_ids: this layer does not read token ids (internal error)");
  }
  virtual void backward(const context_type& context, const matrix& in, const matrix& out, state_type& state,
                        const matrix& d_out, const matrix& d_in) const = 0;
  // backward with d_in = skip + the input gradient (d_in not empty; skip may be d_in), for a
  // residual branch that starts with this layer: the identity path joins in the layer's own
  // pass over d_in. Only where adds_to_input_gradient().
  virtual bool adds_to_input_gradient() const { return false; }
  virtual void backward_plus(const context_type& context, const matrix& in, const matrix& out, state_type& state,
                             const matrix& d_out, const matrix& d_in, const matrix& skip) const {
    (void)context, (void)in, (void)out, (void)state, (void)d_out, (void)d_in, (void)skip;
    throw Error("trident::nn::Layer::backward_plus: this layer does not add to its input gradient (internal error)");
  }
  // The weight gradients a backward with context.defer_weights left; `in` is the input of
  // that backward's forward.
  virtual void backward_weights(const context_type& context, const matrix& in, state_type& state) const {
    (void)context;
    (void)in;
    (void)state;
  }
};

// Parameter gradients a rank computes from its own rows only (sequence parallelism):
// `compute` writes them into `partial`, zeroed first, and `partial` is then summed over the
// group; the caller adds the sum to the gradients accumulated so far.
template <class Scalar, class ExecutionSpace, class Compute>
void sum_over_group(const LayerContext<Scalar, ExecutionSpace>& c,
                    const typename LayerTypes<Scalar, ExecutionSpace>::param_matrix& partial, Compute&& compute) {
  Kokkos::deep_copy(c.space, partial, typename LayerTypes<Scalar, ExecutionSpace>::param_type(0));
  compute();
  comm::allreduce(c.space, c.group->comm, partial, comm::ReduceOp::sum);
}

// What a split backward keeps for a weight GEMM, in state.deferred = {the output gradient dy,
// the input x}: copies, or the views themselves where they stay the micro-batch's own until
// the weight pass (`dy_kept`; x unless context.copy_deferred_inputs).
template <class Scalar, class ExecutionSpace>
void keep_for_weight_pass(const LayerContext<Scalar, ExecutionSpace>& c, LayerState<Scalar, ExecutionSpace>& state,
                          const typename LayerTypes<Scalar, ExecutionSpace>::matrix& dy,
                          const typename LayerTypes<Scalar, ExecutionSpace>::matrix& x, bool dy_kept) {
  using matrix = typename LayerTypes<Scalar, ExecutionSpace>::matrix;
  const auto like = [](const matrix& m, const char* label) {
    return matrix(Kokkos::view_alloc(Kokkos::WithoutInitializing, std::string(label)), m.extent(0), m.extent(1));
  };
  if (state.deferred.empty()) {  // the first split backward of this micro-batch's slot
    state.deferred.resize(2);
    if (!dy_kept) state.deferred[0] = like(dy, "trident::nn::deferred_output_gradient");
    if (c.copy_deferred_inputs) state.deferred[1] = like(x, "trident::nn::deferred_input");
  }
  if (dy_kept) {
    state.deferred[0] = dy;
  } else {
    Kokkos::deep_copy(c.space, state.deferred[0], dy);
  }
  if (c.copy_deferred_inputs) {
    Kokkos::deep_copy(c.space, state.deferred[1], x);
  } else {
    state.deferred[1] = x;
  }
}

}  // namespace trident::nn
