#pragma once
// ZB-H1 (Qi et al. 2023, "Zero Bubble Pipeline Parallelism"): the backward pass is split
// into the input gradient Bi, which the previous stage waits for, and the weight gradient W,
// which nobody waits for. Forwards and Bi passes run in 1F1B order; the W passes are moved
// into the places where 1F1B idles. Rank r postpones its first W until it has run r + 1 Bi
// passes, so later stages, which idle longest in the cool-down, keep up to r weight
// gradients in hand and run them at the end. Peak memory stays that of 1F1B (no rank holds
// more than p micro-batches' activations); with F = Bi = W the bubble shrinks to a third.

#include <trident/pipeline/communication.hpp>
#include <trident/pipeline/schedule.hpp>

#include <cstddef>

namespace trident::pipeline {

inline Schedule zero_bubble_h1(int ranks, int micro_batches) {
  require_schedule_shape("trident::pipeline::zero_bubble_h1", ranks, micro_batches, 1);
  require_argument(micro_batches >= ranks,
                   "trident::pipeline::zero_bubble_h1: needs at least as many micro-batches as ranks, got m = ",
                   micro_batches, " for p = ", ranks);
  Schedule schedule{"zb", ranks, micro_batches, 1, {}};
  schedule.actions.resize(static_cast<std::size_t>(ranks));
  for (int rank = 0; rank < ranks; ++rank) {
    auto& list = schedule.actions[static_cast<std::size_t>(rank)];
    int next_forward = 0, next_input = 0, next_weight = 0;
    const auto forward = [&] { list.push_back(compute(ActionType::forward, next_forward++)); };
    const auto input = [&] { list.push_back(compute(ActionType::backward_input, next_input++)); };
    const auto weight = [&] { list.push_back(compute(ActionType::backward_weight, next_weight++)); };
    for (int k = 0; k < ranks - rank; ++k) forward();  // warm-up, as 1F1B plus its first steady forward
    input();
    for (int k = 0; k < rank; ++k) {  // steady 1F1B, W postponed
      forward();
      input();
    }
    weight();
    for (int k = 0; k < micro_batches - ranks; ++k) {  // steady F, Bi, W
      forward();
      input();
      weight();
    }
    for (int k = 0; k < ranks - rank - 1; ++k) {  // cool-down
      input();
      weight();
    }
    for (int k = 0; k < rank; ++k) weight();  // the postponed weight gradients
  }
  return with_communication(schedule);
}

}  // namespace trident::pipeline
