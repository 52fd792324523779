#pragma once
// What a causal self-attention keeps between its forward and its backward, and its scratch.
//
// Q, K and V are copied per head into [B, H, T, hd] views, so every product reads contiguous
// matrices. The blocked kernel keeps the softmax probabilities in causal row blocks (see
// CausalBlocks): a block of rows [r0, r1) only sees keys [0, r1), so nothing right of its
// diagonal corner is stored or computed. The flash kernel keeps one log-sum-exp per row.

#include <trident/core/error.hpp>
#include <trident/ops/attention_kernel.hpp>

#include <Kokkos_Core.hpp>

#include <algorithm>
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

// The kept views are per layer; all others are scratch, overwritten by every call (the
// backward re-splits qkv itself), so the layers of a model may share them:
// AttentionBuffers(B, T, H, hd, ...) for the first layer, sharing_scratch_with(first) for the
// others.
//
// blocked: probs(b * H + h, blocks.row_offset(t) + j) is P[b, h, t, j] for j < blocks.row_width(t)
//   (zero for j > t); entries further right are not stored and are zero.
// flash: log_sum_exp(b * H + h, t) is max_j S[t, j] + log(sum_j exp(S[t, j] - max)) over the
//   visible keys j <= t of the scaled scores S, from which the backward recomputes P.
template <class Scalar, class MemorySpace = typename Kokkos::DefaultExecutionSpace::memory_space>
struct AttentionBuffers {
  using heads_view = Kokkos::View<Scalar****, Kokkos::LayoutRight, MemorySpace>;
  using scores_view = Kokkos::View<Scalar**, Kokkos::LayoutRight, MemorySpace>;

  int batch = 0, seq_len = 0, heads = 0, head_dim = 0;
  AttentionKernel kernel = AttentionKernel::blocked;
  // blocked: the stored score blocks; flash on a host: the row blocks of its products
  CausalBlocks blocks;
  int flash_tile = 0;  // flash on a device: queries and keys per team tile (0: the largest that fits)

  scores_view probs;        // kept, blocked: [B*H, blocks.size()] softmax probabilities
  scores_view log_sum_exp;  // kept, flash: [B*H, T]
  // scratch, blocked: [B*H, blocks.size()] the probabilities' gradient, then the scores';
  // flash on a host: [2 * pairs at once, block * T] row blocks' probabilities and gradients
  scores_view dscores;
  scores_view row_dots;   // scratch, flash: [B*H, T] rowsum(dY * Y), the softmax backward's term
  heads_view q, k, v;     // [B, H, T, hd] scratch: the heads of qkv
  heads_view y;           // [B, H, T, hd] scratch: per-head output, then its gradient
  heads_view dq, dk, dv;  // [B, H, T, hd] scratch: per-head gradients

  AttentionBuffers() = default;

  AttentionBuffers(int batch_, int seq_len_, int heads_, int head_dim_,
                   int causal_block = default_causal_block<MemorySpace>(),
                   AttentionKernel kernel_ = AttentionKernel::blocked, int flash_tile_ = 0)
      : batch(batch_), seq_len(seq_len_), heads(heads_), head_dim(head_dim_), kernel(kernel_), flash_tile(flash_tile_) {
    require_argument(batch > 0 && seq_len > 0 && heads > 0 && head_dim > 0 && causal_block > 0 && flash_tile >= 0,
                     "trident::ops::AttentionBuffers: B = ", batch, ", T = ", seq_len, ", H = ", heads,
                     ", head_dim = ", head_dim, ", causal_block = ", causal_block, " must all be positive",
                     " (and flash_tile = ", flash_tile, " not negative)");
    blocks = CausalBlocks{seq_len, causal_block < seq_len ? causal_block : seq_len};
    allocate_kept();
    const auto rows = static_cast<std::size_t>(batch) * heads;
    if (kernel == AttentionKernel::blocked) {
      dscores = scores_view(Kokkos::view_alloc(Kokkos::WithoutInitializing, "trident::ops::attention::dscores"), rows,
                            blocks.size());
    } else {
      if (std::is_same<MemorySpace, Kokkos::HostSpace>::value) {
        // Two row blocks for each (b, h) pair the host's threads run at once.
        const auto at_once =
            std::min<std::size_t>(rows, static_cast<std::size_t>(Kokkos::DefaultHostExecutionSpace().concurrency()));
        dscores = scores_view(Kokkos::view_alloc(Kokkos::WithoutInitializing, "trident::ops::attention::row_block"),
                              2 * at_once, blocks.block * seq_len);
      }
      row_dots = scores_view(Kokkos::view_alloc(Kokkos::WithoutInitializing, "trident::ops::attention::row_dots"), rows,
                             seq_len);
    }
    q = allocate_heads("trident::ops::attention::q");
    k = allocate_heads("trident::ops::attention::k");
    v = allocate_heads("trident::ops::attention::v");
    y = allocate_heads("trident::ops::attention::y");
    dq = allocate_heads("trident::ops::attention::dq");
    dk = allocate_heads("trident::ops::attention::dk");
    dv = allocate_heads("trident::ops::attention::dv");
  }

  // Buffers for another layer of the same shape: its own kept views, `other`'s scratch.
  static AttentionBuffers sharing_scratch_with(const AttentionBuffers& other) {
    AttentionBuffers buffers = other;
    buffers.allocate_kept();
    return buffers;
  }

  // Takes `owner`'s scratch (buffers of the same shape) and keeps its own kept views.
  void share_scratch_of(const AttentionBuffers& owner) {
    const scores_view own_probs = probs, own_log_sum_exp = log_sum_exp;
    *this = owner;
    probs = own_probs;
    log_sum_exp = own_log_sum_exp;
  }

  // f(view) on the views kept from forward to backward, then on the scratch views.
  template <class F>
  void for_each_kept_view(F&& f) const {
    f(probs);
    f(log_sum_exp);
  }
  template <class F>
  void for_each_scratch_view(F&& f) const {
    // One call per view: nvcc does not take a range-for over a braced list of views here.
    f(dscores);
    f(row_dots);
    f(q);
    f(k);
    f(v);
    f(y);
    f(dq);
    f(dk);
    f(dv);
  }

  // Bytes held by these views (scratch shared with other layers counted here too).
  std::size_t bytes() const {
    std::size_t total = 0;
    const auto add = [&](const auto& view) { total += view.span(); };
    for_each_kept_view(add);
    for_each_scratch_view(add);
    return total * sizeof(Scalar);
  }

 private:
  heads_view allocate_heads(const std::string& label) const {
    return heads_view(Kokkos::view_alloc(Kokkos::WithoutInitializing, label), batch, heads, seq_len, head_dim);
  }
  // Zero-initialised, so every stored entry is a number even before the first forward.
  void allocate_kept() {
    const auto rows = static_cast<std::size_t>(batch) * heads;
    if (kernel == AttentionKernel::blocked) {
      probs = scores_view("trident::ops::attention::probs", rows, blocks.size());
    } else {
      log_sum_exp = scores_view("trident::ops::attention::log_sum_exp", rows, seq_len);
    }
  }
};

}  // namespace ops
}  // namespace trident
