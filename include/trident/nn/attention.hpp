#pragma once
// Causal multi-head self-attention on rows [Q | K | V] (a fused linear(C, 3C)'s output), in
// sequences of T consecutive rows; the output is the heads side by side, C columns. It holds
// no parameters. Under tensor parallelism it runs on the heads a rank holds: after a
// column-parallel linear split per [Q | K | V] block, each rank's columns are whole heads of
// Q, K and V, and its output columns are those heads, for the row-parallel linear after it.
// On replicated input every rank computes every head.

#include <trident/core/error.hpp>
#include <trident/nn/layer.hpp>
#include <trident/nn/spec.hpp>
#include <trident/ops/attention.hpp>

#include <cstdint>
#include <string>

namespace trident::nn {

template <class Scalar, class ExecutionSpace>
class CausalSelfAttention final : public Layer<Scalar, ExecutionSpace> {
 public:
  using base = Layer<Scalar, ExecutionSpace>;
  using typename base::context_type;
  using typename base::matrix;
  using typename base::state_type;

  explicit CausalSelfAttention(const LayerSpec& spec)
      : m_name(describe(spec)), m_seq(spec.seq), m_head_dim(spec.out / spec.heads), m_kernel(spec.attention) {}

  // A third of [Q | K | V]: the local heads' outputs.
  std::int64_t output_columns(std::int64_t in_columns) const override { return in_columns / 3; }

  // Per micro-batch: what the backward reads (the softmax probabilities, or with the flash
  // kernel their log-sum-exps), and the attention's scratch (which the micro-batches of a model
  // share).
  // The sequence length `seq` of a micro-batch is at most the spec's T (0: T).
  state_type make_state(std::int64_t rows, std::int64_t in_columns, std::int64_t seq) const override {
    const std::int64_t t = seq > 0 ? seq : m_seq;
    require_argument(t <= m_seq, "trident::nn: ", m_name, " takes sequences of up to T = ", m_seq, " rows, not ", t);
    require_argument(rows % t == 0, "trident::nn: ", m_name, " reads sequences of T = ", t,
                     " rows, but a micro-batch has ", rows, " rows");
    state_type state;
    state.attention.emplace_back(static_cast<int>(rows / t), static_cast<int>(t),
                                 static_cast<int>(local_heads(in_columns)), static_cast<int>(m_head_dim),
                                 ops::default_causal_block<typename state_type::memory_space>(), m_kernel);
    return state;
  }

  void forward(const context_type& c, const matrix& in, const matrix& out, state_type& state) const override {
    const auto& buffers = state.attention.at(0);
    ops::attention_forward(c.space, out, buffers, in, buffers.batch, buffers.seq_len, buffers.heads);
  }

  void backward(const context_type& c, const matrix& in, const matrix& out, state_type& state, const matrix& d_out,
                const matrix& d_in) const override {
    const auto& buffers = state.attention.at(0);
    ops::attention_backward(c.space, d_in, d_out, buffers, in, out, buffers.batch, buffers.seq_len, buffers.heads);
  }

 private:
  std::int64_t local_heads(std::int64_t in_columns) const { return in_columns / (3 * m_head_dim); }

  std::string m_name;
  std::int64_t m_seq, m_head_dim;
  AttentionKernel m_kernel;
};

}  // namespace trident::nn
