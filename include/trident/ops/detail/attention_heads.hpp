#pragma once
// The per-head views of attention: qkv rows [N, 3 Cl] split into [B, H, T, hd] heads and
// back, the shape checks both attention kernels make, and the products of one (b, h) pair.

#include <trident/core/blas_threads.hpp>
#include <trident/core/compat.hpp>
#include <trident/core/error.hpp>
#include <trident/ops/attention_buffers.hpp>
#include <trident/ops/detail/checks.hpp>
#include <trident/ops/detail/launch.hpp>
#include <trident/ops/detail/vendor_gemm.hpp>
#include <trident/ops/matmul.hpp>

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cstdint>

namespace trident {
namespace ops {
namespace detail {

// qkv-style rows [N, parts * Cl] to per-head views [B, H, T, hd] (parts = 3: Q, K, V; parts = 1:
// one [N, Cl] tensor into the first view). 16-bit rows widen into float heads: attention on
// bfloat16 or float16 activations computes in float buffers (AttentionBuffers<float>).
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

// Per-head views [B, H, T, hd] back to rows [N, parts * Cl], written or added (16-bit rows
// from float heads: rounded once, the sum in float).
template <class RowsView, class HeadsView, bool Accumulate>
struct MergeHeads {
  RowsView m_rows;
  HeadsView m_heads[3];
  std::int64_t m_seq_len, m_head_count, m_head_dim;
  int m_parts;

  KOKKOS_FUNCTION void operator()(RowTag, const std::int64_t n) const {
    const std::int64_t b = n / m_seq_len, t = n % m_seq_len;
    auto* target = &m_rows(n, 0);
    for (int part = 0; part < m_parts; ++part)
      for (std::int64_t h = 0; h < m_head_count; ++h) {
        const auto* from = &m_heads[part](b, h, t, 0);
        auto* to = target + (part * m_head_count + h) * m_head_dim;
        for (std::int64_t d = 0; d < m_head_dim; ++d) {
          if (Accumulate) {
            to[d] = to[d] + from[d];
          } else {
            to[d] = from[d];
          }
        }
      }
  }
  KOKKOS_FUNCTION void operator()(ElementTag, const std::int64_t index) const {
    const std::int64_t width = m_parts * m_head_count * m_head_dim, n = index / width, c = index % width;
    const std::int64_t part = c / (m_head_count * m_head_dim), h = (c / m_head_dim) % m_head_count, d = c % m_head_dim;
    const auto value = m_heads[part](n / m_seq_len, h, n % m_seq_len, d);
    if (Accumulate) {
      m_rows(n, c) = m_rows(n, c) + value;
    } else {
      m_rows(n, c) = value;
    }
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
  // Row `part` of a [parts, block * T] scratch as causal block i's [rows, row_end(i)] matrix.
  Block tile(const typename Buffers::scores_view& view, int part, std::int64_t i) const {
    const CausalBlocks& blocks = buffers.blocks;
    return Block(&view(part, 0), blocks.row_end(i) - blocks.row_begin(i), blocks.row_end(i));
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

// The (b, h) pairs whose products a step of attention makes: one pair (host spaces, where each
// pair's blocks stay on one thread while its scores are in cache), or every pair at once
// (devices, so kernels are few and large). `x_of(head)` gives an operand of one pair.
template <class Buffers>
struct OneHead {
  const Buffers& buffers;
  int b, h;

  template <class ExecutionSpace, class Scalar, class AOf, class BOf, class COf>
  void matmul(const ExecutionSpace& space, char trans_a, char trans_b, Scalar alpha, const AOf& a_of, const BOf& b_of,
              Scalar beta, const COf& c_of) const {
    const HeadBlock<Buffers> head{buffers, b, h};
    ops::matmul(space, trans_a, trans_b, alpha, a_of(head), b_of(head), beta, c_of(head));
  }
};

// Every pair's operands lie at one distance from the previous pair's (heads are [B, H, T, hd],
// scores [B H, blocks]), so one strided-batched product makes them all where the vendor's BLAS
// has one; elsewhere, one product a pair.
template <class Buffers>
struct EveryHead {
  const Buffers& buffers;
  int batch, heads;

  template <class ExecutionSpace, class Scalar, class AOf, class BOf, class COf>
  void matmul(const ExecutionSpace& space, char trans_a, char trans_b, Scalar alpha, const AOf& a_of, const BOf& b_of,
              Scalar beta, const COf& c_of) const {
    const std::int64_t pairs = static_cast<std::int64_t>(batch) * heads;
    if (has_vendor_gemm<ExecutionSpace>() && pairs > 1) {
      const HeadBlock<Buffers> first{buffers, 0, 0}, second{buffers, heads > 1 ? 0 : 1, heads > 1 ? 1 : 0};
      const auto a = a_of(first);
      const auto b = b_of(first);
      const auto c = c_of(first);
      const GemmBatch every{pairs, a_of(second).data() - a.data(), b_of(second).data() - b.data(),
                            c_of(second).data() - c.data()};
      const bool a_t = is_transposed(trans_a), b_t = is_transposed(trans_b);
      if (vendor_gemm(space, a_t, b_t, extent(a, a_t ? 1 : 0), extent(b, b_t ? 0 : 1), extent(a, a_t ? 0 : 1), alpha, a,
                      b, beta, c, every))
        return;
    }
    for (int b = 0; b < batch; ++b)
      for (int h = 0; h < heads; ++h)
        OneHead<Buffers>{buffers, b, h}.matmul(space, trans_a, trans_b, alpha, a_of, b_of, beta, c_of);
  }
};

// Devices: each causal block, from the first or from the last, as step(EveryHead, i).
template <class Buffers, class BlockStep>
void for_each_block_of_every_head(const Buffers& buffers, int B, int H, bool descending, const BlockStep& step) {
  const std::int64_t count = buffers.blocks.count();
  for (std::int64_t k = 0; k < count; ++k) step(EveryHead<Buffers>{buffers, B, H}, descending ? count - 1 - k : k);
}

// Every causal block of every (b, h), each pair's blocks in order, as
// step(slot, b, h, i). With several threads up to `most_at_once` slots run at once, one to a
// thread, slot s taking pairs s, s + slots, ... with each BLAS call on its own thread: attention
// is thousands of small products, which a threaded BLAS splits badly. A pair's blocks stay on
// one thread in the same order, so every sum is the one-thread sum, bit for bit. A step runs
// inside a parallel region on `space`, so it launches no kernel there (a launch would wait for
// the region): its rows go through for_each_row_on_this_thread, its products straight to the
// BLAS. It may use scratch of its own slot.
template <class ExecutionSpace, class BlockStep>
void for_each_head(const ExecutionSpace& space, const std::int64_t B, const std::int64_t H, const CausalBlocks& blocks,
                   bool descending, std::int64_t most_at_once, const BlockStep& step) {
  const std::int64_t pairs = B * H;
  const std::int64_t threads = runs_on_host<ExecutionSpace>() ? space.concurrency() : 1;  // one at a time on a device
  // A profiling tool's region callbacks may fence the space and keep one stack of regions: with
  // one attached, the pairs run one after the other.
  const std::int64_t at_once = Kokkos::Tools::profileLibraryLoaded() ? 1 : std::min({threads, pairs, most_at_once});
  const std::int64_t slots = std::max<std::int64_t>(1, at_once);
  const auto run_slot = [&](const std::int64_t slot) {
    for (std::int64_t pair = slot; pair < pairs; pair += slots)
      for (std::int64_t k = 0; k < blocks.count(); ++k)
        step(slot, pair / H, pair % H, descending ? blocks.count() - 1 - k : k);
  };
  if constexpr (runs_on_host<ExecutionSpace>()) {
    if (slots > 1) {
      const OneThreadedBlas one_thread;
      Kokkos::parallel_for("trident::ops::attention_heads", IndexRange<ExecutionSpace>(space, 0, slots), run_slot);
      compat::fence(space, "trident::ops::attention_heads");
      return;
    }
  }
  run_slot(0);
}

// The per-head views back into rows: out[N, Cl] from y (forward), dqkv[N, 3 Cl] from dq, dk,
// dv (backward; added with accumulate).
template <class ExecutionSpace, class Buffers, class OutView>
void merge_output(const ExecutionSpace& space, const Buffers& buffers, const OutView& out) {
  using Merge = MergeHeads<OutView, typename Buffers::heads_view, false>;
  for_each_row_or_element(
      space, "trident::ops::attention_merge_heads", extent(out, 0), extent(out, 1),
      Merge{out, {buffers.y, buffers.y, buffers.y}, buffers.seq_len, buffers.heads, buffers.head_dim, 1});
}

template <class ExecutionSpace, class Buffers, class DQkvView>
void merge_gradients(const ExecutionSpace& space, const Buffers& buffers, const DQkvView& dqkv, bool accumulate) {
  using Heads = typename Buffers::heads_view;
  const std::int64_t n = extent(dqkv, 0), width = extent(dqkv, 1);
  if (accumulate) {
    for_each_row_or_element(
        space, "trident::ops::attention_merge_dqkv", n, width,
        MergeHeads<DQkvView, Heads, true>{
            dqkv, {buffers.dq, buffers.dk, buffers.dv}, buffers.seq_len, buffers.heads, buffers.head_dim, 3});
  } else {
    for_each_row_or_element(
        space, "trident::ops::attention_merge_dqkv", n, width,
        MergeHeads<DQkvView, Heads, false>{
            dqkv, {buffers.dq, buffers.dk, buffers.dv}, buffers.seq_len, buffers.heads, buffers.head_dim, 3});
  }
}

// The output gradient dout[N, Cl] into the per-head view y.
template <class ExecutionSpace, class Buffers, class DOutView>
void split_output_gradient(const ExecutionSpace& space, const Buffers& buffers, const DOutView& dout) {
  using Split = SplitHeads<typename Buffers::heads_view, DOutView>;
  for_each_row_or_element(
      space, "trident::ops::attention_split_dout", extent(dout, 0), extent(dout, 1),
      Split{{buffers.y, buffers.y, buffers.y}, dout, buffers.seq_len, buffers.heads, buffers.head_dim, 1});
}

}  // namespace detail
}  // namespace ops
}  // namespace trident
