#pragma once
// Interleaved 1F1B (Narayanan et al. 2021, Megatron-LM): each rank holds v model chunks,
// rank r the stages r, r + p, ..., r + (v - 1) p. Micro-batches travel through the ranks v
// times, and a rank switches chunk every p micro-batches, so the pipeline fills and drains
// in chunk-sized steps: the bubble shrinks by v at the price of v times more transfers.
//
// The order is Megatron's: the k-th forward of a rank runs chunk (k mod pv) / p of
// micro-batch (k / pv) p + k mod p, the k-th backward the same micro-batch of chunk
// v - 1 - (k mod pv) / p. Rank r first runs (v - 1) p + 2 (p - r - 1) warm-up forwards,
// then one forward and one backward in turn, then the remaining backwards. The warm-up
// covers the (v - 1) p forwards of the earlier chunks, plus, as in Megatron, twice 1F1B's
// p - r - 1: with free transfers p - r - 1 would give the same bubble, but the extra
// forwards keep a rank busy while a chunk's activations and gradients are in flight.

#include <trident/pipeline/communication.hpp>
#include <trident/pipeline/schedule.hpp>

#include <algorithm>
#include <cstddef>

namespace trident::pipeline {

namespace detail {

// The chunk and micro-batch of a rank's k-th forward (or, mirrored, backward).
struct InterleavedSlot {
  int chunk;
  int micro_batch;
};

inline InterleavedSlot interleaved_slot(int k, int ranks, int chunks, bool backward) {
  const int round = ranks * chunks;
  const int chunk = (k % round) / ranks;
  return {backward ? chunks - 1 - chunk : chunk, (k / round) * ranks + k % ranks};
}

}  // namespace detail

inline Schedule interleaved_one_f_one_b(int ranks, int micro_batches, int chunks) {
  require_schedule_shape("trident::pipeline::interleaved_one_f_one_b", ranks, micro_batches, chunks);
  require_argument(micro_batches % ranks == 0,
                   "trident::pipeline::interleaved_one_f_one_b: the number of micro-batches m = ", micro_batches,
                   " must be a multiple of the number of ranks p = ", ranks);
  Schedule schedule{"interleaved", ranks, micro_batches, chunks, {}};
  schedule.actions.resize(static_cast<std::size_t>(ranks));
  const int passes = micro_batches * chunks;  // forwards (and backwards) per rank
  for (int rank = 0; rank < ranks; ++rank) {
    auto& list = schedule.actions[static_cast<std::size_t>(rank)];
    const int warmup = std::min((chunks - 1) * ranks + 2 * (ranks - rank - 1), passes);
    int next_forward = 0, next_backward = 0;
    const auto forward = [&] {
      const auto slot = detail::interleaved_slot(next_forward++, ranks, chunks, false);
      list.push_back(compute(ActionType::forward, slot.micro_batch, slot.chunk));
    };
    const auto backward = [&] {
      const auto slot = detail::interleaved_slot(next_backward++, ranks, chunks, true);
      list.push_back(compute(ActionType::backward, slot.micro_batch, slot.chunk));
    };
    while (next_forward < warmup) forward();
    while (next_forward < passes) {
      forward();
      backward();
    }
    while (next_backward < passes) backward();
  }
  return with_communication(schedule);
}

}  // namespace trident::pipeline
