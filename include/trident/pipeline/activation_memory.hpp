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

namespace detail {

inline bool frees_activations(const Action& action, ActivationsFreedBy freed_by) {
  return action.type == ActionType::backward ||
         (freed_by == ActivationsFreedBy::backward_input ? action.type == ActionType::backward_input
                                                         : action.type == ActionType::backward_weight);
}

// The most micro-batches alive at once in `rank`'s list, counting only chunk `chunk` (-1: all).
inline int peak_alive(const Schedule& schedule, int rank, int chunk, ActivationsFreedBy freed_by) {
  int alive = 0, most = 0;
  for (const Action& action : schedule.actions_of(rank)) {
    if (chunk >= 0 && action.chunk != chunk) continue;
    if (action.type == ActionType::forward) most = std::max(most, ++alive);
    if (frees_activations(action, freed_by)) --alive;
  }
  return most;
}

inline void require_action_lists(const char* operation, const Schedule& schedule) {
  require_argument(static_cast<int>(schedule.actions.size()) == schedule.ranks, operation, ": '", schedule.name,
                   "' has ", schedule.actions.size(), " action lists for p = ", schedule.ranks, " ranks");
}

}  // namespace detail

// Per rank, the largest number of (chunk, micro-batch) pairs whose forward has run and whose
// backward has not. For v > 1 one pair holds one chunk, 1/v of the rank's layers.
// 1F1B: p - r on rank r; GPipe: m on every rank.
inline std::vector<int> peak_activations(const Schedule& schedule,
                                         ActivationsFreedBy freed_by = ActivationsFreedBy::backward_input) {
  detail::require_action_lists("trident::pipeline::peak_activations", schedule);
  std::vector<int> peak;
  for (int rank = 0; rank < schedule.ranks; ++rank) peak.push_back(detail::peak_alive(schedule, rank, -1, freed_by));
  return peak;
}

// Per rank and chunk, the largest number of that chunk's micro-batches alive at once: the slots
// the chunk's stage allocates, since a stage reuses its slots and never frees them. With v = 1
// it is peak_activations().
inline std::vector<std::vector<int>> peak_activations_per_chunk(
    const Schedule& schedule, ActivationsFreedBy freed_by = ActivationsFreedBy::backward_input) {
  detail::require_action_lists("trident::pipeline::peak_activations_per_chunk", schedule);
  std::vector<std::vector<int>> peak(static_cast<std::size_t>(schedule.ranks));
  for (int rank = 0; rank < schedule.ranks; ++rank)
    for (int chunk = 0; chunk < schedule.chunks; ++chunk)
      peak[static_cast<std::size_t>(rank)].push_back(detail::peak_alive(schedule, rank, chunk, freed_by));
  return peak;
}

}  // namespace trident::pipeline
