#pragma once
// y = x W + b, W [in, out], whole or split over the tensor-parallel group (Megatron-LM):
//   column: W and b split by output features. The input is replicated; each rank computes
//           its output columns; backward sums the input gradient's partial products. With
//           parts (a fused [Q | K | V]) each part is split, which changes only the columns a
//           rank holds (parameters.hpp), not the computation here.
//   row:    W split by input features. The input is column-split (a column layer's output);
//           the partial products are summed over the group and b, replicated, added once.

#include <trident/nn/layer.hpp>
#include <trident/nn/spec.hpp>
#include <trident/ops/linear.hpp>
#include <trident/tensor_parallel/mappings.hpp>

#include <string>

namespace trident::nn {

template <class Scalar, class ExecutionSpace>
class Linear final : public Layer<Scalar, ExecutionSpace> {
 public:
  using base = Layer<Scalar, ExecutionSpace>;
  using typename base::context_type;
  using typename base::matrix;
  using typename base::state_type;

  Linear(const LayerSpec& spec, const std::string& prefix, int tp_size)
      : m_weight(prefix + "weight"),
        m_bias(spec.bias ? prefix + "bias" : std::string()),
        m_parallel(spec.parallel),
        m_out_columns(spec.parallel == Parallel::column ? spec.out / tp_size : spec.out) {}

  std::int64_t output_columns(std::int64_t) const override { return m_out_columns; }

  void forward(const context_type& c, const matrix& in, const matrix& out, state_type&) const override {
    const auto& store = *c.store;
    const bool row_split = m_parallel == Parallel::row && c.group->active();
    // Row-parallel: only rank 0 adds the bias to its partial sum, so the sum holds it once.
    const auto bias = m_bias.empty() || (row_split && c.group->rank() != 0) ? vector_view() : store.vector(m_bias);
    ops::linear_forward(c.space, out, in, store.matrix(m_weight), bias);
    if (row_split) tensor_parallel::ReduceFromRegion::forward(c.space, *c.group, out);
  }

  void backward(const context_type& c, const matrix& in, const matrix&, state_type&, const matrix& d_out,
                const matrix& d_in) const override {
    const auto& store = *c.store;
    ops::linear_backward(c.space, d_in, store.grad_matrix(m_weight),
                         m_bias.empty() ? vector_view() : store.grad_vector(m_bias), d_out, in, store.matrix(m_weight));
    if (m_parallel == Parallel::column && d_in.size() != 0)
      tensor_parallel::CopyToRegion::backward(c.space, *c.group, d_in);
  }

 private:
  using vector_view = typename LayerTypes<Scalar, ExecutionSpace>::store_type::vector_view;

  std::string m_weight, m_bias;
  Parallel m_parallel;
  std::int64_t m_out_columns;
};

}  // namespace trident::nn
