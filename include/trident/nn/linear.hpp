#pragma once
// y = x W + b, W [in, out], whole or split over the tensor-parallel group (Megatron-LM):
//   column: W and b split by output features. The input is replicated (with sequence
//           parallelism: gathered from the ranks' rows); each rank computes its output
//           columns; backward sums the input gradient's partial products (with sequence
//           parallelism: scatters them back onto the ranks' rows). With parts (a fused
//           [Q | K | V]) each part is split, which changes only the columns a rank holds
//           (parameters.hpp), not the computation here.
//   row:    W split by input features. The input is column-split (a column layer's output);
//           the partial products are summed over the group (with sequence parallelism:
//           reduce-scattered onto the ranks' rows) and b, replicated, added once.
// A split backward (context.defer_weights) computes the input and bias gradients and keeps
// the output gradient for the weight GEMM of backward_weights. A whole layer on rows split by
// sequence parallelism sums its gradients over the group, as a LayerNorm there does.

#include <trident/nn/layer.hpp>
#include <trident/nn/spec.hpp>
#include <trident/ops/linear.hpp>
#include <trident/ops/residual.hpp>
#include <trident/tensor_parallel/mappings.hpp>

#include <Kokkos_Core.hpp>

#include <string>

namespace trident::nn {

template <class Scalar, class ExecutionSpace>
class Linear final : public Layer<Scalar, ExecutionSpace> {
 public:
  using base = Layer<Scalar, ExecutionSpace>;
  using typename base::context_type;
  using typename base::matrix;
  using typename base::state_type;

  // `rows_split`: the input comes split by rows (sequence parallelism), which a column-parallel
  // layer gathers; `gathered`: the input's rows were gathered so, and a row-parallel layer
  // scatters its output by rows again; `bias_to_activation`: the activation after it adds the
  // bias and sums its gradient (nn::activation_takes_bias), so the layer runs as one without.
  Linear(const LayerSpec& spec, const std::string& prefix, int tp_size, bool rows_split, bool gathered,
         bool bias_to_activation = false)
      : m_weight(prefix + "weight"),
        m_bias(spec.bias && !bias_to_activation ? prefix + "bias" : std::string()),
        m_parallel(spec.parallel),
        m_out_columns(spec.parallel == Parallel::column ? spec.out / tp_size : spec.out),
        m_tp_size(tp_size),
        m_gather(spec.parallel == Parallel::column && rows_split),
        m_scatter(spec.parallel == Parallel::row && gathered),
        m_partial_grads(spec.parallel == Parallel::none && rows_split) {}

  std::int64_t output_columns(std::int64_t) const override { return m_out_columns; }
  std::int64_t output_rows(std::int64_t in_rows) const override {
    return m_gather ? in_rows * m_tp_size : m_scatter ? in_rows / m_tp_size : in_rows;
  }

  // Gathering: matrices = {the gathered input}, scratch = {its gradient}. Scattering: scratch =
  // {the partial sums of all rows, their gradient}.
  state_type make_state(std::int64_t rows, std::int64_t in_columns, std::int64_t) const override {
    state_type state;
    if (m_gather) {
      state.matrices.push_back(matrix("trident::nn::linear::gathered_input", rows * m_tp_size, in_columns));
      state.scratch.push_back(matrix("trident::nn::linear::gathered_gradient", rows * m_tp_size, in_columns));
    }
    if (m_scatter) {
      state.scratch.push_back(matrix("trident::nn::linear::partial", rows, m_out_columns));
      state.scratch.push_back(matrix("trident::nn::linear::output_gradient", rows, m_out_columns));
    }
    if (m_partial_grads)  // [W; b] of this rank's rows, summed over the group before they join the gradients
      state.partial_grads.emplace_back("trident::nn::linear::partial_gradients", in_columns + 1, m_out_columns);
    return state;
  }

  void forward(const context_type& c, const matrix& in, const matrix& out, state_type& state) const override {
    const auto& store = *c.store;
    const matrix x = input(in, state);
    if (m_gather) tensor_parallel::EnterRegion::forward(c.space, *c.group, in, x);
    const bool row_split = m_parallel == Parallel::row && c.group->active();
    // Row-parallel: only rank 0 adds the bias to its partial sum, so the sum holds it once.
    const auto bias = m_bias.empty() || (row_split && c.group->rank() != 0) ? vector_view() : store.vector(m_bias);
    if (m_scatter) {
      ops::linear_forward(c.space, state.scratch[0], x, store.matrix(m_weight), bias);
      tensor_parallel::LeaveRegion::forward(c.space, *c.group, state.scratch[0], out);
      return;
    }
    ops::linear_forward(c.space, out, x, store.matrix(m_weight), bias);
    if (row_split) tensor_parallel::ReduceFromRegion::forward(c.space, *c.group, out);
  }

  void backward(const context_type& c, const matrix& in, const matrix&, state_type& state, const matrix& d_out,
                const matrix& d_in) const override {
    const auto& store = *c.store;
    const matrix x = input(in, state);
    matrix dy = d_out;
    if (m_scatter) {
      dy = state.scratch[1];
      tensor_parallel::LeaveRegion::backward(c.space, *c.group, d_out, dy);
    }
    const matrix dx = m_gather && d_in.size() != 0 ? state.scratch[0] : d_in;
    if (m_partial_grads) {
      partial_gradients(c, state, dy, x, dx);
    } else {
      ops::linear_backward(c.space, dx, c.defer_weights ? matrix_view() : store.grad_matrix(m_weight),
                           m_bias.empty() ? vector_view() : store.grad_vector(m_bias), dy, x, store.matrix(m_weight));
    }
    if (c.defer_weights && !m_partial_grads)
      keep_for_weight_pass(c, state, dy, x, !m_scatter && c.output_gradient_kept);
    if (m_parallel != Parallel::column || d_in.size() == 0) return;
    if (m_gather) {
      tensor_parallel::EnterRegion::backward(c.space, *c.group, dx, d_in);
    } else {
      tensor_parallel::CopyToRegion::backward(c.space, *c.group, d_in);
    }
  }

  // deferred = {the output gradient, the input}: copies, or the micro-batch's own views.
  void backward_weights(const context_type& c, const matrix&, state_type& state) const override {
    if (m_partial_grads) return;  // summed over the group in backward, as a LayerNorm's
    ops::linear_backward(c.space, matrix(), c.store->grad_matrix(m_weight), vector_view(), state.deferred.at(0),
                         state.deferred.at(1), c.store->matrix(m_weight));
  }

 private:
  using vector_view = typename LayerTypes<Scalar, ExecutionSpace>::store_type::vector_view;
  using matrix_view = typename LayerTypes<Scalar, ExecutionSpace>::store_type::matrix_view;

  matrix input(const matrix& in, const state_type& state) const { return m_gather ? state.matrices[0] : in; }

  // A whole layer on rows split by sequence parallelism: each rank's gradients cover its rows
  // only, so they are summed over the group (one all-reduce) before they join the gradients.
  void partial_gradients(const context_type& c, state_type& state, const matrix& dy, const matrix& x,
                         const matrix& dx) const {
    const auto& partial = state.partial_grads.at(0);
    const auto rows = static_cast<std::int64_t>(partial.extent(0));
    const auto d_weight = Kokkos::subview(partial, Kokkos::make_pair(std::int64_t(0), rows - 1), Kokkos::ALL);
    const auto d_bias = Kokkos::subview(partial, rows - 1, Kokkos::ALL);
    auto bias = d_bias;
    if (m_bias.empty()) bias = {};  // no bias, no gradient
    sum_over_group(c, partial,
                   [&] { ops::linear_backward(c.space, dx, d_weight, bias, dy, x, c.store->matrix(m_weight)); });
    ops::add_inplace(c.space, c.store->grad_matrix(m_weight), d_weight);
    if (!m_bias.empty()) ops::add_inplace(c.space, c.store->grad_vector(m_bias), d_bias);
  }

  std::string m_weight, m_bias;
  Parallel m_parallel;
  std::int64_t m_out_columns;
  int m_tp_size;
  bool m_gather, m_scatter, m_partial_grads;
};

}  // namespace trident::nn
