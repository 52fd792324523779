#pragma once
// Causal multi-head self-attention on a packed qkv projection.
//
// qkv[N, 3*Cl], N = B*T, holds per row [Q | K | V], each Cl = H * head_dim wide with head h in
// columns [h*hd, (h+1)*hd) (Q, K and V side by side, each by heads). Cl is the local width: under tensor
// parallelism a rank holds H local heads and Cl = C / tp. The output out[N, Cl] is the heads
// concatenated, before the output projection:
//   P = softmax(Q K^T / sqrt(hd) + causal mask),  out_h = P V
//
// The buffers choose the kernel (AttentionKernel). The blocked kernel, here: the scores are
// computed in causal row blocks, each a BLAS product Q[r0:r1] K[0:r1]^T, so nothing right of a
// block's diagonal corner is computed (with 64-row blocks and T = 256 the products do 5/8 of
// the work of the full T x T); the softmax and its backward are one fused, numerically stable
// pass per row, and the probabilities are kept for the backward. The flash kernel is in
// flash_attention.hpp.

#include <trident/core/compat.hpp>
#include <trident/core/error.hpp>
#include <trident/core/profiling.hpp>
#include <trident/ops/attention_buffers.hpp>
#include <trident/ops/detail/attention_heads.hpp>
#include <trident/ops/detail/checks.hpp>
#include <trident/ops/detail/fast_math.hpp>
#include <trident/ops/detail/launch.hpp>
#include <trident/ops/flash_attention.hpp>
#include <trident/ops/matmul.hpp>

#include <Kokkos_Core.hpp>

#include <cmath>
#include <cstdint>

namespace trident {
namespace ops {

namespace detail {

// Row r = first_row + local_row = (b*H + h) * T + t of the scaled scores becomes the probabilities, in place: columns
// [0, t] hold the softmax of the scores there, the rest of the stored row holds 0.
template <class ScoresView>
struct CausalSoftmaxRow {
  using Scalar = typename ScoresView::non_const_value_type;
  ScoresView m_p;  // [B*H, blocks.size()]
  CausalBlocks m_blocks;
  std::int64_t m_first_row;

  template <class Row>
  KOKKOS_FUNCTION void operator()(const std::int64_t local_row, const Row& row) const {
    const std::int64_t r = m_first_row + local_row, t = r % m_blocks.seq_len, visible = t + 1;
    Scalar* p = &m_p(r / m_blocks.seq_len, 0) + m_blocks.row_offset(t);
    const Scalar max = row.max(visible, [&](std::int64_t j) { return p[j]; });
    row.for_each(visible, [=](std::int64_t j) { p[j] = fast_exp(static_cast<Scalar>(p[j] - max)); });
    const Scalar sum = row.sum(visible, [&](std::int64_t j) { return p[j]; });
    const Scalar inv = Scalar(1) / sum;
    row.for_each(visible, [&](std::int64_t j) { p[j] *= inv; });
    row.for_each(m_blocks.row_width(t) - visible, [&](std::int64_t j) { p[visible + j] = Scalar(0); });
  }
};

// dS = scale * P ∘ (dP - rowsum(P ∘ dP)), in place over dP; zero right of the diagonal.
template <class GradView, class ProbView>
struct CausalSoftmaxBackwardRow {
  using Scalar = typename GradView::non_const_value_type;
  GradView m_d;  // dP in, dS out
  ProbView m_p;
  CausalBlocks m_blocks;
  Scalar m_scale;
  std::int64_t m_first_row;

  template <class Row>
  KOKKOS_FUNCTION void operator()(const std::int64_t local_row, const Row& row) const {
    const std::int64_t r = m_first_row + local_row, t = r % m_blocks.seq_len, visible = t + 1;
    const std::int64_t offset = m_blocks.row_offset(t);
    const std::int64_t bh = r / m_blocks.seq_len;
    Scalar* d = &m_d(bh, 0) + offset;
    const Scalar* p = &m_p(bh, 0) + offset;
    const Scalar dot = row.sum(visible, [&](std::int64_t j) { return p[j] * d[j]; });
    row.for_each(visible, [&](std::int64_t j) { d[j] = m_scale * p[j] * (d[j] - dot); });
    row.for_each(m_blocks.row_width(t) - visible, [&](std::int64_t j) { d[visible + j] = Scalar(0); });
  }
};

}  // namespace detail

// out[N, Cl] = causal multi-head attention of qkv[N, 3*Cl]; N = B*T, H local heads.
// Keeps what the backward reads in the buffers (probabilities or log-sum-exps).
template <class ExecutionSpace, class OutView, class Scalar, class MemorySpace, class QkvView>
void attention_forward(const ExecutionSpace& space, const OutView& out,
                       const AttentionBuffers<Scalar, MemorySpace>& buffers, const QkvView& qkv, int B, int T, int H) {
  using Buffers = AttentionBuffers<Scalar, MemorySpace>;
  detail::assert_accessible<ExecutionSpace, OutView, QkvView, typename Buffers::heads_view>();
  const char* op = "trident::ops::attention_forward";
  detail::check_attention_shapes(op, buffers, qkv, B, T, H);
  const std::int64_t n = detail::extent(qkv, 0), width = detail::extent(qkv, 1) / 3;
  detail::require_shape(out, n, width, op, "out");
  detail::require_row_major(qkv, op, "qkv");
  detail::require_row_major(out, op, "out");
  if (buffers.kernel == AttentionKernel::flash) return flash_attention_forward(space, out, buffers, qkv);

  ScopedRegion region(op);
  const Scalar scale = Scalar(1) / std::sqrt(static_cast<Scalar>(buffers.head_dim));
  const CausalBlocks& blocks = buffers.blocks;
  using Softmax = detail::CausalSoftmaxRow<typename Buffers::scores_view>;

  using Head = detail::HeadBlock<Buffers>;
  const auto scores = [&](const auto& heads, std::int64_t i) {  // S = scale * Q K^T
    const std::int64_t r0 = blocks.row_begin(i), r1 = blocks.row_end(i);
    heads.matmul(
        space, 'N', 'T', scale, [&](const Head& head) { return head.rows(buffers.q, r0, r1); },
        [&](const Head& head) { return head.rows(buffers.k, 0, r1); }, Scalar(0),
        [&](const Head& head) { return head.scores(buffers.probs, i); });
  };
  const auto softmax = [&](std::int64_t b, std::int64_t h, std::int64_t i) {  // on a host thread
    const std::int64_t first = (b * H + h) * T + blocks.row_begin(i);
    detail::for_each_row_on_this_thread(blocks.row_end(i) - blocks.row_begin(i), Softmax{buffers.probs, blocks, first});
  };
  const auto values = [&](const auto& heads, std::int64_t i) {  // Y = P V
    const std::int64_t r0 = blocks.row_begin(i), r1 = blocks.row_end(i);
    heads.matmul(
        space, 'N', 'N', Scalar(1), [&](const Head& head) { return head.scores(buffers.probs, i); },
        [&](const Head& head) { return head.rows(buffers.v, 0, r1); }, Scalar(0),
        [&](const Head& head) { return head.rows(buffers.y, r0, r1); });
  };

  detail::split_qkv(space, buffers, qkv);
  if constexpr (detail::runs_on_host<ExecutionSpace>()) {
    const std::int64_t pairs = static_cast<std::int64_t>(B) * H;  // each pair's scores are its own
    detail::for_each_head(space, B, H, blocks, false, pairs,
                          [&](std::int64_t, std::int64_t b, std::int64_t h, std::int64_t i) {
                            const detail::OneHead<Buffers> head{buffers, static_cast<int>(b), static_cast<int>(h)};
                            scores(head, i);
                            softmax(b, h, i);
                            values(head, i);
                          });
  } else {
    detail::for_each_block_of_every_head(buffers, B, H, false, scores);
    detail::for_each_row(space, "trident::ops::attention_softmax", n * H, Softmax{buffers.probs, blocks, 0});
    detail::for_each_block_of_every_head(buffers, B, H, false, values);
  }
  detail::merge_output(space, buffers, out);
}

// dqkv[N, 3*Cl] (=, or += with accumulate) the gradient of attention_forward, given dout[N, Cl],
// the forward's qkv and output out[N, Cl] (which the flash kernel reads), and what the forward
// kept in the buffers. An empty dqkv is skipped.
template <class ExecutionSpace, class DQkvView, class DOutView, class Scalar, class MemorySpace, class QkvView,
          class OutView>
void attention_backward(const ExecutionSpace& space, const DQkvView& dqkv, const DOutView& dout,
                        const AttentionBuffers<Scalar, MemorySpace>& buffers, const QkvView& qkv, const OutView& out,
                        int B, int T, int H, bool accumulate = false) {
  using Buffers = AttentionBuffers<Scalar, MemorySpace>;
  detail::assert_accessible<ExecutionSpace, DQkvView, DOutView, QkvView, OutView, typename Buffers::heads_view>();
  const char* op = "trident::ops::attention_backward";
  detail::check_attention_shapes(op, buffers, qkv, B, T, H);
  const std::int64_t n = detail::extent(qkv, 0), width = detail::extent(qkv, 1) / 3;
  detail::require_shape(dout, n, width, op, "dout");
  if (detail::is_empty(dqkv)) return;
  detail::require_shape(dqkv, n, 3 * width, op, "dqkv");
  detail::require_row_major(qkv, op, "qkv");
  detail::require_row_major(dout, op, "dout");
  detail::require_row_major(dqkv, op, "dqkv");
  if (buffers.kernel == AttentionKernel::flash) {
    detail::require_shape(out, n, width, op, "out");
    detail::require_row_major(out, op, "out");
    return flash_attention_backward(space, dqkv, dout, buffers, qkv, out, accumulate);
  }

  ScopedRegion region(op);
  const Scalar scale = Scalar(1) / std::sqrt(static_cast<Scalar>(buffers.head_dim));
  const CausalBlocks& blocks = buffers.blocks;
  const std::int64_t last = blocks.count() - 1;
  using SoftmaxBackward =
      detail::CausalSoftmaxBackwardRow<typename Buffers::scores_view, typename Buffers::scores_view>;

  // Keys [0, r1) collect gradient from every block at or below them. Blocks run from the last
  // one, which spans all keys and writes dV and dK (beta = 0); the others add to them.
  using Head = detail::HeadBlock<Buffers>;
  const auto probability_gradients = [&](const auto& heads, std::int64_t i) {
    const std::int64_t r0 = blocks.row_begin(i), r1 = blocks.row_end(i);
    const auto dy = [&](const Head& head) { return head.rows(buffers.y, r0, r1); };
    heads.matmul(
        space, 'T', 'N', Scalar(1), [&](const Head& head) { return head.scores(buffers.probs, i); }, dy,
        Scalar(i == last ? 0 : 1), [&](const Head& head) { return head.rows(buffers.dv, 0, r1); });  // dV += P^T dY
    heads.matmul(
        space, 'N', 'T', Scalar(1), dy, [&](const Head& head) { return head.rows(buffers.v, 0, r1); }, Scalar(0),
        [&](const Head& head) { return head.scores(buffers.dscores, i); });  // dP = dY V^T
  };
  const auto softmax_backward = [&](std::int64_t b, std::int64_t h, std::int64_t i) {  // on a host thread
    const std::int64_t first = (b * H + h) * T + blocks.row_begin(i);
    detail::for_each_row_on_this_thread(blocks.row_end(i) - blocks.row_begin(i),
                                        SoftmaxBackward{buffers.dscores, buffers.probs, blocks, scale, first});
  };
  const auto query_key_gradients = [&](const auto& heads, std::int64_t i) {
    const std::int64_t r0 = blocks.row_begin(i), r1 = blocks.row_end(i);
    const auto ds = [&](const Head& head) { return head.scores(buffers.dscores, i); };
    heads.matmul(
        space, 'N', 'N', Scalar(1), ds, [&](const Head& head) { return head.rows(buffers.k, 0, r1); }, Scalar(0),
        [&](const Head& head) { return head.rows(buffers.dq, r0, r1); });  // dQ = dS K
    heads.matmul(
        space, 'T', 'N', Scalar(1), ds, [&](const Head& head) { return head.rows(buffers.q, r0, r1); },
        Scalar(i == last ? 0 : 1), [&](const Head& head) { return head.rows(buffers.dk, 0, r1); });  // dK += dS^T Q
  };

  detail::split_qkv(space, buffers, qkv);
  detail::split_output_gradient(space, buffers, dout);
  if constexpr (detail::runs_on_host<ExecutionSpace>()) {
    const std::int64_t pairs = static_cast<std::int64_t>(B) * H;
    detail::for_each_head(space, B, H, blocks, true, pairs,
                          [&](std::int64_t, std::int64_t b, std::int64_t h, std::int64_t i) {
                            const detail::OneHead<Buffers> head{buffers, static_cast<int>(b), static_cast<int>(h)};
                            probability_gradients(head, i);
                            softmax_backward(b, h, i);
                            query_key_gradients(head, i);
                          });
  } else {
    detail::for_each_block_of_every_head(buffers, B, H, true, probability_gradients);
    detail::for_each_row(space, "trident::ops::attention_softmax_backward", n * H,
                         SoftmaxBackward{buffers.dscores, buffers.probs, blocks, scale, 0});
    detail::for_each_block_of_every_head(buffers, B, H, true, query_key_gradients);
  }
  detail::merge_gradients(space, buffers, dqkv, accumulate);
}

}  // namespace ops
}  // namespace trident
