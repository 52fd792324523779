#pragma once
// What every layer of a model implements. A layer holds no parameter values and no
// activations: it reads its tensors from the model's ParameterStore by name at each call (so
// ZeRO-3 may back them with gathered storage only while the layer runs), and keeps what its
// backward needs in the LayerState of the micro-batch, which the model owns.
//
// Data between layers is a [rows, features] matrix; under tensor parallelism it is either
// replicated on every rank of the group or split by feature columns (after a column-parallel
// linear, until the row-parallel one). forward writes `out` from `in`; backward writes d_in
// (= not +=; skipped when empty) from d_out and ADDS the parameter gradients.

#include <trident/core/parameter_store.hpp>
#include <trident/ops/attention.hpp>
#include <trident/tensor_parallel/group.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace trident::nn {

template <class Scalar, class ExecutionSpace>
struct LayerTypes {
  using memory_space = typename ExecutionSpace::memory_space;
  using matrix = Kokkos::View<Scalar**, Kokkos::LayoutRight, memory_space>;
  using vector = Kokkos::View<Scalar*, Kokkos::LayoutRight, memory_space>;
  using store_type = ParameterStore<Scalar, memory_space>;
};

// What a layer keeps of one micro-batch between its forward and its backward, beyond its input
// and output (which the enclosing chain keeps).
template <class Scalar, class ExecutionSpace>
struct LayerState {
  using types = LayerTypes<Scalar, ExecutionSpace>;
  using memory_space = typename types::memory_space;
  std::vector<typename types::matrix> matrices;                        // a residual branch: the outputs of its layers
  std::vector<typename types::vector> vectors;                         // a LayerNorm: mean and 1/std per row
  std::vector<Kokkos::View<int*, memory_space>> indices;               // an embedding: the token of each row
  std::vector<ops::AttentionBuffers<Scalar, memory_space>> attention;  // an attention: probabilities, scratch
  std::vector<LayerState> inner;                                       // a residual branch: its layers' states

  template <class F>
  void for_each_view(F&& f) const {
    for (const auto& m : matrices) f(m);
    for (const auto& v : vectors) f(v);
    for (const auto& i : indices) f(i);
    // One call per view: nvcc does not take a range-for over a braced list of views here.
    for (const auto& a : attention) {
      f(a.probs);
      f(a.dscores);
      f(a.q);
      f(a.k);
      f(a.v);
      f(a.y);
      f(a.dq);
      f(a.dk);
      f(a.dv);
    }
    for (const auto& s : inner) s.for_each_view(f);
  }
};

// Where a layer runs: the execution space, the parameters, and the tensor-parallel group.
template <class Scalar, class ExecutionSpace>
struct LayerContext {
  ExecutionSpace space;
  typename LayerTypes<Scalar, ExecutionSpace>::store_type* store = nullptr;
  const tensor_parallel::TensorParallelGroup* group = nullptr;
};

template <class Scalar, class ExecutionSpace>
class Layer {
 public:
  using types = LayerTypes<Scalar, ExecutionSpace>;
  using matrix = typename types::matrix;
  using state_type = LayerState<Scalar, ExecutionSpace>;
  using context_type = LayerContext<Scalar, ExecutionSpace>;

  virtual ~Layer() = default;

  // Columns of this rank's output for an input of `in_columns` columns.
  virtual std::int64_t output_columns(std::int64_t in_columns) const = 0;
  // The state of a micro-batch of `rows` rows with `in_columns` input columns.
  virtual state_type make_state(std::int64_t rows, std::int64_t in_columns) const {
    (void)rows;
    (void)in_columns;
    return {};
  }
  virtual void forward(const context_type& context, const matrix& in, const matrix& out, state_type& state) const = 0;
  virtual void backward(const context_type& context, const matrix& in, const matrix& out, state_type& state,
                        const matrix& d_out, const matrix& d_in) const = 0;
};

}  // namespace trident::nn
