#pragma once
// How many micro-batches' activations each rank keeps alive at once under a schedule: the
// memory side of the bubble / memory trade-off between schedules.

#include <trident/core/error.hpp>
#include <trident/pipeline/action.hpp>
#include <trident/pipeline/schedule.hpp>

#include <algorithm>
#include <vector>

namespace trident::pipeline {

// When a micro-batch's activations count as freed. The input-gradient pass frees most of
// them; the weight-gradient pass of a split backward still reads the inputs of the weight
// GEMMs, so counting until it gives the upper bound for zero-bubble schedules.
enum class ActivationsFreedBy { backward_input, backward_weight };

// Per rank, the largest number of (chunk, micro-batch) pairs whose forward has run and whose
// backward has not. For v > 1 one pair holds one chunk, 1/v of the rank's layers.
// 1F1B: p - r on rank r; GPipe: m on every rank.
inline std::vector<int> peak_activations(const Schedule& schedule,
                                         ActivationsFreedBy freed_by = ActivationsFreedBy::backward_input) {
  require_argument(static_cast<int>(schedule.actions.size()) == schedule.ranks,
                   "trident::pipeline::peak_activations: '", schedule.name, "' has ", schedule.actions.size(),
                   " action lists for p = ", schedule.ranks, " ranks");
  std::vector<int> peak;
  for (const auto& list : schedule.actions) {
    int alive = 0, most = 0;
    for (const Action& action : list) {
      if (action.type == ActionType::forward) most = std::max(most, ++alive);
      const bool frees = action.type == ActionType::backward ||
                         (freed_by == ActivationsFreedBy::backward_input ? action.type == ActionType::backward_input
                                                                         : action.type == ActionType::backward_weight);
      if (frees) --alive;
    }
    peak.push_back(most);
  }
  return peak;
}

}  // namespace trident::pipeline
