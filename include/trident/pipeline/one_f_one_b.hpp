#pragma once
// 1F1B, PipeDream-Flush (Narayanan et al. 2021): rank r first runs p - r - 1 warm-up
// forwards, then alternates one forward and one backward, and drains the remaining
// backwards at the end. The bubble equals GPipe's, but rank r holds at most p - r
// micro-batches' activations instead of m.

#include <trident/pipeline/communication.hpp>
#include <trident/pipeline/schedule.hpp>

#include <algorithm>
#include <cstddef>

namespace trident::pipeline {

inline Schedule one_f_one_b(int ranks, int micro_batches) {
  require_schedule_shape("trident::pipeline::one_f_one_b", ranks, micro_batches, 1);
  Schedule schedule{"1f1b", ranks, micro_batches, 1, {}};
  schedule.actions.resize(static_cast<std::size_t>(ranks));
  for (int rank = 0; rank < ranks; ++rank) {
    auto& list = schedule.actions[static_cast<std::size_t>(rank)];
    // With fewer micro-batches than ranks the warm-up is cut short and 1F1B becomes GPipe.
    const int warmup = std::min(ranks - rank - 1, micro_batches);
    int next_forward = 0, next_backward = 0;
    while (next_forward < warmup) list.push_back(compute(ActionType::forward, next_forward++));
    while (next_forward < micro_batches) {
      list.push_back(compute(ActionType::forward, next_forward++));
      list.push_back(compute(ActionType::backward, next_backward++));
    }
    while (next_backward < micro_batches) list.push_back(compute(ActionType::backward, next_backward++));
  }
  return with_communication(schedule);
}

}  // namespace trident::pipeline
