#pragma once
// Causal multi-head self-attention on a packed qkv projection.
//
// qkv[N, 3*Cl], N = B*T, holds per row [Q | K | V], each Cl = H * head_dim wide with head h in
// columns [h*hd, (h+1)*hd) (Q, K and V side by side, each by heads). Cl is the local width: under tensor
// parallelism a rank holds H local heads and Cl = C / tp. The output out[N, Cl] is the heads
// concatenated, before the output projection:
//   P = softmax(Q K^T / sqrt(hd) + causal mask),  out_h = P V
//
// Q, K and V are copied per head into [B, H, T, hd] so every product is a BLAS call on
// contiguous matrices. The scores are computed in causal row blocks: the rows [r0, r1) of a
// block only see keys [0, r1), so a block is the [r1 - r0, r1] product Q[r0:r1] K[0:r1]^T and
// nothing right of the block's diagonal corner is computed (with 64-row blocks and T = 256 the
// products do 5/8 of the work of the full T x T). The softmax and its backward are one fused,
// numerically stable pass per row, writing zeros right of the diagonal inside the block.

#include <trident/core/compat.hpp>
#include <trident/core/error.hpp>
#include <trident/core/profiling.hpp>
#include <trident/ops/detail/checks.hpp>
#include <trident/ops/detail/fast_math.hpp>
#include <trident/ops/detail/launch.hpp>
#include <trident/ops/matmul.hpp>

#include <Kokkos_Core.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

namespace trident {
namespace ops {

// Where the causal row blocks of one (b, h) score matrix lie in its packed storage. Block i
// holds rows [i*block, row_end(i)) and columns [0, row_end(i)), row-major, at offset(i).
struct CausalBlocks {
  std::int64_t seq_len = 0, block = 1;

  KOKKOS_INLINE_FUNCTION std::int64_t count() const { return (seq_len + block - 1) / block; }
  KOKKOS_INLINE_FUNCTION std::int64_t row_begin(std::int64_t i) const { return i * block; }
  KOKKOS_INLINE_FUNCTION std::int64_t row_end(std::int64_t i) const {
    return (i + 1) * block < seq_len ? (i + 1) * block : seq_len;
  }
  // All blocks before i are full: sum_{j < i} block * (j + 1) * block.
  KOKKOS_INLINE_FUNCTION std::int64_t offset(std::int64_t i) const { return block * block * i * (i + 1) / 2; }
  KOKKOS_INLINE_FUNCTION std::int64_t size() const {
    const std::int64_t last = count() - 1;
    return offset(last) + (seq_len - row_begin(last)) * seq_len;
  }
  // Row t of the score matrix: where it starts and how many columns it stores (>= t + 1).
  KOKKOS_INLINE_FUNCTION std::int64_t row_offset(std::int64_t t) const {
    const std::int64_t i = t / block;
    return offset(i) + (t - row_begin(i)) * row_end(i);
  }
  KOKKOS_INLINE_FUNCTION std::int64_t row_width(std::int64_t t) const { return row_end(t / block); }
};

// Rows per causal block: small blocks skip more of the masked half, large ones make larger
// (more efficient) products and fewer calls. 64 measured best on one CPU core at T = 256
// (against 32 and 128); 256 on devices favours fewer, larger launches and is not tuned.
template <class MemorySpace>
constexpr int default_causal_block() {
  return std::is_same<MemorySpace, Kokkos::HostSpace>::value ? 64 : 256;
}

// What attention keeps between forward and backward, and its scratch.
//
// probs is per layer: the softmax probabilities from the forward, read by the backward, stored
// as causal blocks (see CausalBlocks) per (b, h): probs(b * H + h, blocks.row_offset(t) + j) is
// P[b, h, t, j] for j < blocks.row_width(t) (zero for j > t); entries further right are not
// stored and are zero. All other views are scratch, overwritten by every call (the backward
// re-splits qkv itself), so the layers of a model may share them: AttentionBuffers(B, T, H, hd)
// for the first layer, AttentionBuffers::sharing_scratch_with(first) for the others.
template <class Scalar, class MemorySpace = typename Kokkos::DefaultExecutionSpace::memory_space>
struct AttentionBuffers {
  using heads_view = Kokkos::View<Scalar****, Kokkos::LayoutRight, MemorySpace>;
  using scores_view = Kokkos::View<Scalar**, Kokkos::LayoutRight, MemorySpace>;

  int batch = 0, seq_len = 0, heads = 0, head_dim = 0;
  CausalBlocks blocks;
  scores_view probs;      // [B*H, blocks.size()] softmax probabilities
  scores_view dscores;    // [B*H, blocks.size()] scratch: gradient of the probabilities, then of the scores
  heads_view q, k, v;     // [B, H, T, hd] scratch: the heads of qkv
  heads_view y;           // [B, H, T, hd] scratch: per-head output, then its gradient
  heads_view dq, dk, dv;  // [B, H, T, hd] scratch: per-head gradients

  AttentionBuffers() = default;

  AttentionBuffers(int batch_, int seq_len_, int heads_, int head_dim_,
                   int causal_block = default_causal_block<MemorySpace>())
      : batch(batch_), seq_len(seq_len_), heads(heads_), head_dim(head_dim_) {
    require_argument(batch > 0 && seq_len > 0 && heads > 0 && head_dim > 0 && causal_block > 0,
                     "trident::ops::AttentionBuffers: B = ", batch, ", T = ", seq_len, ", H = ", heads,
                     ", head_dim = ", head_dim, ", causal_block = ", causal_block, " must all be positive");
    blocks = CausalBlocks{seq_len, causal_block < seq_len ? causal_block : seq_len};
    probs = allocate_scores("trident::ops::attention::probs");
    dscores = allocate_scores("trident::ops::attention::dscores");
    q = allocate_heads("trident::ops::attention::q");
    k = allocate_heads("trident::ops::attention::k");
    v = allocate_heads("trident::ops::attention::v");
    y = allocate_heads("trident::ops::attention::y");
    dq = allocate_heads("trident::ops::attention::dq");
    dk = allocate_heads("trident::ops::attention::dk");
    dv = allocate_heads("trident::ops::attention::dv");
  }

  // Buffers for another layer of the same shape: its own probabilities, `other`'s scratch.
  static AttentionBuffers sharing_scratch_with(const AttentionBuffers& other) {
    AttentionBuffers buffers = other;
    buffers.probs = other.allocate_scores("trident::ops::attention::probs");
    return buffers;
  }

  // Bytes held by these views (scratch shared with other layers counted here too).
  std::size_t bytes() const {
    std::size_t total = probs.span() + dscores.span();
    for (const heads_view* view : {&q, &k, &v, &y, &dq, &dk, &dv}) total += view->span();
    return total * sizeof(Scalar);
  }

 private:
  heads_view allocate_heads(const std::string& label) const {
    return heads_view(Kokkos::view_alloc(Kokkos::WithoutInitializing, label), batch, heads, seq_len, head_dim);
  }
  scores_view allocate_scores(const std::string& label) const {
    // Zero-initialised, so every stored entry is a number even before the first forward.
    return scores_view(label, static_cast<std::size_t>(batch) * heads, blocks.size());
  }
};

namespace detail {

// qkv-style rows [N, parts * Cl] to per-head views [B, H, T, hd] (parts = 3: Q, K, V; parts = 1:
// one [N, Cl] tensor into the first view).
template <class HeadsView, class RowsView>
struct SplitHeads {
  using Scalar = typename HeadsView::non_const_value_type;
  HeadsView m_heads[3];
  RowsView m_rows;
  std::int64_t m_seq_len, m_head_count, m_head_dim;
  int m_parts;

  KOKKOS_FUNCTION void operator()(RowTag, const std::int64_t n) const {
    const std::int64_t b = n / m_seq_len, t = n % m_seq_len;
    const auto* source = &m_rows(n, 0);
    for (int part = 0; part < m_parts; ++part)
      for (std::int64_t h = 0; h < m_head_count; ++h) {
        Scalar* target = &m_heads[part](b, h, t, 0);
        const auto* from = source + (part * m_head_count + h) * m_head_dim;
        for (std::int64_t d = 0; d < m_head_dim; ++d) target[d] = from[d];
      }
  }
  KOKKOS_FUNCTION void operator()(ElementTag, const std::int64_t index) const {
    const std::int64_t width = m_parts * m_head_count * m_head_dim, n = index / width, c = index % width;
    const std::int64_t part = c / (m_head_count * m_head_dim), h = (c / m_head_dim) % m_head_count, d = c % m_head_dim;
    m_heads[part](n / m_seq_len, h, n % m_seq_len, d) = m_rows(n, c);
  }
};

// Per-head views [B, H, T, hd] back to rows [N, parts * Cl], written or added.
template <class RowsView, class HeadsView, bool Accumulate>
struct MergeHeads {
  using Scalar = typename RowsView::non_const_value_type;
  RowsView m_rows;
  HeadsView m_heads[3];
  std::int64_t m_seq_len, m_head_count, m_head_dim;
  int m_parts;

  KOKKOS_FUNCTION void operator()(RowTag, const std::int64_t n) const {
    const std::int64_t b = n / m_seq_len, t = n % m_seq_len;
    Scalar* target = &m_rows(n, 0);
    for (int part = 0; part < m_parts; ++part)
      for (std::int64_t h = 0; h < m_head_count; ++h) {
        const Scalar* from = &m_heads[part](b, h, t, 0);
        Scalar* to = target + (part * m_head_count + h) * m_head_dim;
        for (std::int64_t d = 0; d < m_head_dim; ++d) {
          if (Accumulate) {
            to[d] += from[d];
          } else {
            to[d] = from[d];
          }
        }
      }
  }
  KOKKOS_FUNCTION void operator()(ElementTag, const std::int64_t index) const {
    const std::int64_t width = m_parts * m_head_count * m_head_dim, n = index / width, c = index % width;
    const std::int64_t part = c / (m_head_count * m_head_dim), h = (c / m_head_dim) % m_head_count, d = c % m_head_dim;
    const Scalar value = m_heads[part](n / m_seq_len, h, n % m_seq_len, d);
    if (Accumulate) {
      m_rows(n, c) += value;
    } else {
      m_rows(n, c) = value;
    }
  }
};

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

// The products of one (b, h) pair, on rows [r0, r1) of the per-head views and causal block i.
template <class Buffers>
struct HeadBlock {
  using Scalar = typename Buffers::scores_view::non_const_value_type;
  using Block = Kokkos::View<Scalar**, Kokkos::LayoutRight, typename Buffers::scores_view::memory_space,
                             Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  const Buffers& buffers;
  int b, h;

  auto rows(const typename Buffers::heads_view& view, std::int64_t r0, std::int64_t r1) const {
    return Kokkos::subview(view, b, h, Kokkos::make_pair(r0, r1), Kokkos::ALL);
  }
  Block scores(const typename Buffers::scores_view& view, std::int64_t i) const {
    const CausalBlocks& blocks = buffers.blocks;
    const std::int64_t rows_in_block = blocks.row_end(i) - blocks.row_begin(i);
    return Block(view.data() + (static_cast<std::int64_t>(b) * buffers.heads + h) * blocks.size() + blocks.offset(i),
                 rows_in_block, blocks.row_end(i));
  }
};

template <class Buffers, class QkvView>
void check_attention_shapes(const char* op, const Buffers& buffers, const QkvView& qkv, int B, int T, int H) {
  require_argument(B > 0 && T > 0 && H > 0, op, ": B = ", B, ", T = ", T, ", H = ", H, " must be positive");
  const std::int64_t n = extent(qkv, 0), width3 = extent(qkv, 1);
  require_argument(n == static_cast<std::int64_t>(B) * T, op, ": qkv has ", n, " rows but B*T = ", B, "*", T);
  require_argument(width3 % (3 * static_cast<std::int64_t>(H)) == 0, op, ": qkv has ", width3,
                   " columns, not 3 * H * head_dim with H = ", H);
  const int head_dim = static_cast<int>(width3 / (3 * H));
  require_argument(buffers.batch == B && buffers.seq_len == T && buffers.heads == H && buffers.head_dim == head_dim, op,
                   ": buffers were made for B = ", buffers.batch, ", T = ", buffers.seq_len, ", H = ", buffers.heads,
                   ", head_dim = ", buffers.head_dim, " but the call has B = ", B, ", T = ", T, ", H = ", H,
                   ", head_dim = ", head_dim);
}

template <class ExecutionSpace, class Buffers, class QkvView>
void split_qkv(const ExecutionSpace& space, const Buffers& buffers, const QkvView& qkv) {
  using Split = SplitHeads<typename Buffers::heads_view, QkvView>;
  for_each_row_or_element(
      space, "trident::ops::attention_split_qkv", extent(qkv, 0), extent(qkv, 1),
      Split{{buffers.q, buffers.k, buffers.v}, qkv, buffers.seq_len, buffers.heads, buffers.head_dim, 3});
}

// How the steps of attention are ordered. On host spaces each causal block of each (b, h)
// goes through all its steps (products, softmax) while its scores are in cache; on devices
// each step runs once over all blocks, so kernels are few and large.
template <class ExecutionSpace, class BlockStep>
void for_each_head_block(const std::int64_t B, const std::int64_t H, const CausalBlocks& blocks, bool descending,
                         const BlockStep& step) {
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t k = 0; k < blocks.count(); ++k) step(b, h, descending ? blocks.count() - 1 - k : k);
}

}  // namespace detail

// out[N, Cl] = causal multi-head attention of qkv[N, 3*Cl]; N = B*T, H local heads.
// Keeps the probabilities in buffers.probs for the backward.
template <class ExecutionSpace, class OutView, class Scalar, class MemorySpace, class QkvView>
void attention_forward(const ExecutionSpace& space, const OutView& out,
                       const AttentionBuffers<Scalar, MemorySpace>& buffers, const QkvView& qkv, int B, int T, int H) {
  using Buffers = AttentionBuffers<Scalar, MemorySpace>;
  detail::assert_accessible<ExecutionSpace, OutView, QkvView, typename Buffers::heads_view>();
  ScopedRegion region("trident::ops::attention_forward");
  const char* op = "trident::ops::attention_forward";
  detail::check_attention_shapes(op, buffers, qkv, B, T, H);
  const std::int64_t n = detail::extent(qkv, 0), width = detail::extent(qkv, 1) / 3;
  detail::require_shape(out, n, width, op, "out");
  detail::require_row_major(qkv, op, "qkv");
  detail::require_row_major(out, op, "out");
  const Scalar scale = Scalar(1) / std::sqrt(static_cast<Scalar>(buffers.head_dim));
  const CausalBlocks& blocks = buffers.blocks;
  using Softmax = detail::CausalSoftmaxRow<typename Buffers::scores_view>;

  const auto scores = [&](std::int64_t b, std::int64_t h, std::int64_t i) {  // S = scale * Q K^T
    const detail::HeadBlock<Buffers> head{buffers, static_cast<int>(b), static_cast<int>(h)};
    matmul(space, 'N', 'T', scale, head.rows(buffers.q, blocks.row_begin(i), blocks.row_end(i)),
           head.rows(buffers.k, 0, blocks.row_end(i)), Scalar(0), head.scores(buffers.probs, i));
  };
  const auto softmax = [&](std::int64_t b, std::int64_t h, std::int64_t i) {
    const std::int64_t first = (b * H + h) * T + blocks.row_begin(i);
    detail::for_each_row(space, "trident::ops::attention_softmax", blocks.row_end(i) - blocks.row_begin(i),
                         Softmax{buffers.probs, blocks, first});
  };
  const auto values = [&](std::int64_t b, std::int64_t h, std::int64_t i) {  // Y = P V
    const detail::HeadBlock<Buffers> head{buffers, static_cast<int>(b), static_cast<int>(h)};
    matmul(space, 'N', 'N', Scalar(1), head.scores(buffers.probs, i), head.rows(buffers.v, 0, blocks.row_end(i)),
           Scalar(0), head.rows(buffers.y, blocks.row_begin(i), blocks.row_end(i)));
  };

  detail::split_qkv(space, buffers, qkv);
  if constexpr (detail::runs_on_host<ExecutionSpace>()) {
    detail::for_each_head_block<ExecutionSpace>(B, H, blocks, false,
                                                [&](std::int64_t b, std::int64_t h, std::int64_t i) {
                                                  scores(b, h, i);
                                                  softmax(b, h, i);
                                                  values(b, h, i);
                                                });
  } else {
    detail::for_each_head_block<ExecutionSpace>(B, H, blocks, false, scores);
    detail::for_each_row(space, "trident::ops::attention_softmax", n * H, Softmax{buffers.probs, blocks, 0});
    detail::for_each_head_block<ExecutionSpace>(B, H, blocks, false, values);
  }
  using Merge = detail::MergeHeads<OutView, typename Buffers::heads_view, false>;
  detail::for_each_row_or_element(space, "trident::ops::attention_merge_heads", n, width,
                                  Merge{out, {buffers.y, buffers.y, buffers.y}, T, H, buffers.head_dim, 1});
}

// dqkv[N, 3*Cl] (=, or += with accumulate) the gradient of attention_forward, given dout[N, Cl]
// and the forward's qkv and buffers.probs. An empty dqkv is skipped.
template <class ExecutionSpace, class DQkvView, class DOutView, class Scalar, class MemorySpace, class QkvView>
void attention_backward(const ExecutionSpace& space, const DQkvView& dqkv, const DOutView& dout,
                        const AttentionBuffers<Scalar, MemorySpace>& buffers, const QkvView& qkv, int B, int T, int H,
                        bool accumulate = false) {
  using Buffers = AttentionBuffers<Scalar, MemorySpace>;
  detail::assert_accessible<ExecutionSpace, DQkvView, DOutView, QkvView, typename Buffers::heads_view>();
  ScopedRegion region("trident::ops::attention_backward");
  const char* op = "trident::ops::attention_backward";
  detail::check_attention_shapes(op, buffers, qkv, B, T, H);
  const std::int64_t n = detail::extent(qkv, 0), width = detail::extent(qkv, 1) / 3;
  detail::require_shape(dout, n, width, op, "dout");
  if (detail::is_empty(dqkv)) return;
  detail::require_shape(dqkv, n, 3 * width, op, "dqkv");
  detail::require_row_major(qkv, op, "qkv");
  detail::require_row_major(dout, op, "dout");
  detail::require_row_major(dqkv, op, "dqkv");
  const Scalar scale = Scalar(1) / std::sqrt(static_cast<Scalar>(buffers.head_dim));
  const CausalBlocks& blocks = buffers.blocks;
  const std::int64_t last = blocks.count() - 1;
  using SoftmaxBackward =
      detail::CausalSoftmaxBackwardRow<typename Buffers::scores_view, typename Buffers::scores_view>;

  // Keys [0, r1) collect gradient from every block at or below them. Blocks run from the last
  // one, which spans all keys and writes dV and dK (beta = 0); the others add to them.
  const auto probability_gradients = [&](std::int64_t b, std::int64_t h, std::int64_t i) {
    const detail::HeadBlock<Buffers> head{buffers, static_cast<int>(b), static_cast<int>(h)};
    const std::int64_t r0 = blocks.row_begin(i), r1 = blocks.row_end(i);
    const auto dy = head.rows(buffers.y, r0, r1);
    matmul(space, 'T', 'N', Scalar(1), head.scores(buffers.probs, i), dy, Scalar(i == last ? 0 : 1),
           head.rows(buffers.dv, 0, r1));  // dV += P^T dY
    matmul(space, 'N', 'T', Scalar(1), dy, head.rows(buffers.v, 0, r1), Scalar(0),
           head.scores(buffers.dscores, i));  // dP = dY V^T
  };
  const auto softmax_backward = [&](std::int64_t b, std::int64_t h, std::int64_t i) {
    const std::int64_t first = (b * H + h) * T + blocks.row_begin(i);
    detail::for_each_row(space, "trident::ops::attention_softmax_backward", blocks.row_end(i) - blocks.row_begin(i),
                         SoftmaxBackward{buffers.dscores, buffers.probs, blocks, scale, first});
  };
  const auto query_key_gradients = [&](std::int64_t b, std::int64_t h, std::int64_t i) {
    const detail::HeadBlock<Buffers> head{buffers, static_cast<int>(b), static_cast<int>(h)};
    const std::int64_t r0 = blocks.row_begin(i), r1 = blocks.row_end(i);
    const auto ds = head.scores(buffers.dscores, i);
    matmul(space, 'N', 'N', Scalar(1), ds, head.rows(buffers.k, 0, r1), Scalar(0),
           head.rows(buffers.dq, r0, r1));  // dQ = dS K
    matmul(space, 'T', 'N', Scalar(1), ds, head.rows(buffers.q, r0, r1), Scalar(i == last ? 0 : 1),
           head.rows(buffers.dk, 0, r1));  // dK += dS^T Q
  };

  detail::split_qkv(space, buffers, qkv);
  using SplitOut = detail::SplitHeads<typename Buffers::heads_view, DOutView>;
  detail::for_each_row_or_element(space, "trident::ops::attention_split_dout", n, width,
                                  SplitOut{{buffers.y, buffers.y, buffers.y}, dout, T, H, buffers.head_dim, 1});
  if constexpr (detail::runs_on_host<ExecutionSpace>()) {
    detail::for_each_head_block<ExecutionSpace>(B, H, blocks, true,
                                                [&](std::int64_t b, std::int64_t h, std::int64_t i) {
                                                  probability_gradients(b, h, i);
                                                  softmax_backward(b, h, i);
                                                  query_key_gradients(b, h, i);
                                                });
  } else {
    detail::for_each_head_block<ExecutionSpace>(B, H, blocks, true, probability_gradients);
    detail::for_each_row(space, "trident::ops::attention_softmax_backward", n * H,
                         SoftmaxBackward{buffers.dscores, buffers.probs, blocks, scale, 0});
    detail::for_each_head_block<ExecutionSpace>(B, H, blocks, true, query_key_gradients);
  }
  using Heads = typename Buffers::heads_view;
  if (accumulate) {
    detail::for_each_row_or_element(space, "trident::ops::attention_merge_dqkv", n, 3 * width,
                                    detail::MergeHeads<DQkvView, Heads, true>{
                                        dqkv, {buffers.dq, buffers.dk, buffers.dv}, T, H, buffers.head_dim, 3});
  } else {
    detail::for_each_row_or_element(space, "trident::ops::attention_merge_dqkv", n, 3 * width,
                                    detail::MergeHeads<DQkvView, Heads, false>{
                                        dqkv, {buffers.dq, buffers.dk, buffers.dv}, T, H, buffers.head_dim, 3});
  }
}

}  // namespace ops
}  // namespace trident
