#pragma once
// logits = x E^T, with E [vocab, features] an embedding's table (weight tying, GPT-2's
// lm_head). Under tensor parallelism E is split by vocabulary rows, so each rank computes the
// logits of its rows (the vocabulary-parallel cross-entropy reads them so), and the input
// gradient's partial products are summed over the group; with sequence parallelism the input
// rows are gathered first and the gradient scattered back onto them. A split backward keeps
// the output gradient for the weight GEMM of backward_weights.

#include <trident/nn/layer.hpp>
#include <trident/nn/spec.hpp>
#include <trident/ops/linear.hpp>
#include <trident/tensor_parallel/group.hpp>
#include <trident/tensor_parallel/mappings.hpp>

#include <cstdint>
#include <string>

namespace trident::nn {

template <class Scalar, class ExecutionSpace>
class TiedHead final : public Layer<Scalar, ExecutionSpace> {
 public:
  using base = Layer<Scalar, ExecutionSpace>;
  using typename base::context_type;
  using typename base::matrix;
  using typename base::state_type;

  // `rows_split`: the input comes split by rows (sequence parallelism) and is gathered.
  TiedHead(const LayerSpec& spec, int tp_size, int tp_rank, bool rows_split)
      : m_weight(spec.tied + ".weight"),
        m_vocab_columns(tensor_parallel::even_split(spec.vocab, tp_size, tp_rank).count),
        m_tp_size(tp_size),
        m_gather(rows_split) {}

  std::int64_t output_columns(std::int64_t) const override { return m_vocab_columns; }
  std::int64_t output_rows(std::int64_t in_rows) const override { return m_gather ? in_rows * m_tp_size : in_rows; }

  // Gathering: matrices = {the gathered input}, scratch = {its gradient}.
  state_type make_state(std::int64_t rows, std::int64_t in_columns, std::int64_t) const override {
    state_type state;
    if (m_gather) {
      state.matrices.push_back(matrix("trident::nn::tied_head::gathered_input", rows * m_tp_size, in_columns));
      state.scratch.push_back(matrix("trident::nn::tied_head::gathered_gradient", rows * m_tp_size, in_columns));
    }
    return state;
  }

  void forward(const context_type& c, const matrix& in, const matrix& out, state_type& state) const override {
    const matrix x = m_gather ? state.matrices[0] : in;
    if (m_gather) tensor_parallel::EnterRegion::forward(c.space, *c.group, in, x);
    ops::linear_transposed_forward(c.space, out, x, c.store->matrix(m_weight));
  }

  void backward(const context_type& c, const matrix& in, const matrix&, state_type& state, const matrix& d_out,
                const matrix& d_in) const override {
    const matrix x = m_gather ? state.matrices[0] : in;
    const matrix dx = m_gather && d_in.size() != 0 ? state.scratch[0] : d_in;
    ops::linear_transposed_backward(c.space, dx, c.defer_weights ? matrix_view() : c.store->grad_matrix(m_weight),
                                    d_out, x, c.store->matrix(m_weight));
    if (c.defer_weights) keep_for_weight_pass(c, state, d_out, x, c.output_gradient_kept);
    if (d_in.size() == 0) return;
    if (m_gather) {
      tensor_parallel::EnterRegion::backward(c.space, *c.group, dx, d_in);
    } else {
      tensor_parallel::CopyToRegion::backward(c.space, *c.group, d_in);
    }
  }

  void backward_weights(const context_type& c, const matrix&, state_type& state) const override {
    ops::linear_transposed_backward(c.space, matrix(), c.store->grad_matrix(m_weight), state.deferred.at(0),
                                    state.deferred.at(1), c.store->matrix(m_weight));
  }

 private:
  using matrix_view = typename LayerTypes<Scalar, ExecutionSpace>::store_type::matrix_view;

  std::string m_weight;
  std::int64_t m_vocab_columns;
  int m_tp_size;
  bool m_gather;
};

}  // namespace trident::nn
