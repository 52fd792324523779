#pragma once
// Adds the point-to-point transfers to a schedule written as compute passes only. Each
// receive goes right before the pass that consumes it and each send right after the pass
// that produces it, so a rank never waits for data earlier than it needs to, and a rank
// never holds back data another rank may be waiting for.

#include <trident/core/error.hpp>
#include <trident/pipeline/action.hpp>
#include <trident/pipeline/schedule.hpp>

#include <cstddef>
#include <utility>
#include <vector>

namespace trident::pipeline {

inline Schedule with_communication(Schedule compute_only) {
  const Schedule& s = compute_only;
  require_schedule_shape("trident::pipeline::with_communication", s.ranks, s.micro_batches, s.chunks);
  require_argument(static_cast<int>(s.actions.size()) == s.ranks, "trident::pipeline::with_communication: '", s.name,
                   "' has ", s.actions.size(), " action lists for p = ", s.ranks, " ranks");
  const int last_stage = s.stages() - 1;
  std::vector<std::vector<Action>> lists(s.actions.size());
  for (int rank = 0; rank < s.ranks; ++rank) {
    std::vector<Action>& out = lists[static_cast<std::size_t>(rank)];
    for (const Action& action : s.actions_of(rank)) {
      require_argument(is_compute(action.type), "trident::pipeline::with_communication: '", s.name, "' rank ", rank,
                       " already holds a transfer (", to_string(action.type), ")");
      const int stage = s.stage_of(rank, action);
      const int previous_rank = stage > 0 ? s.rank_of_stage(stage - 1) : rank;
      const int next_rank = stage < last_stage ? s.rank_of_stage(stage + 1) : rank;
      const auto transfer = [&](ActionType type, int peer) {
        out.push_back(Action{type, action.micro_batch, action.chunk, peer});
      };
      if (action.type == ActionType::forward) {
        if (previous_rank != rank) transfer(ActionType::recv_forward, previous_rank);
        out.push_back(action);
        if (next_rank != rank) transfer(ActionType::send_forward, next_rank);
      } else if (computes_input_gradient(action.type)) {
        if (next_rank != rank) transfer(ActionType::recv_backward, next_rank);
        out.push_back(action);
        if (previous_rank != rank) transfer(ActionType::send_backward, previous_rank);
      } else {
        out.push_back(action);  // the weight gradient stays on the rank
      }
    }
  }
  compute_only.actions = std::move(lists);
  return compute_only;
}

}  // namespace trident::pipeline
