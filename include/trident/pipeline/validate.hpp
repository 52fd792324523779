#pragma once
// Checks that a schedule can run before any rank runs it. validate() replays the per-rank
// lists the way the executor runs them — sends are buffered and never block, a receive
// blocks until its matching send has been posted — and throws trident::Error describing
// the first fault:
//   - an action out of range, or a transfer whose peer is not the neighbour stage's rank;
//   - a compute pass missing or duplicated: every stage runs the forward and the backward
//     (whole, or as backward_input + backward_weight) of every micro-batch exactly once;
//   - a send without its matching receive, or a receive without its matching send;
//   - a pass before its inputs on its own rank: forward of stage s > 0 needs the activation
//     of stage s - 1 received; a backward needs its own forward and, below the last stage,
//     the gradient of stage s + 1 received; backward_weight needs backward_input; a send
//     needs the pass that produces what it sends;
//   - a deadlock: every unfinished rank waits on a receive whose send can never be posted.

#include <trident/core/error.hpp>
#include <trident/pipeline/action.hpp>
#include <trident/pipeline/schedule.hpp>

#include <cstddef>
#include <sstream>
#include <string>
#include <vector>

namespace trident::pipeline {

namespace detail {

// "rank 1 action 4 (backward_input of micro-batch 2 at stage 1)"
inline std::string describe(const Schedule& s, int rank, std::size_t index) {
  const Action& a = s.actions_of(rank)[index];
  std::ostringstream out;
  out << "rank " << rank << " action " << index << " (" << to_string(a.type) << " of micro-batch " << a.micro_batch;
  const int stage = s.stage_of(rank, a);
  if (is_send(a.type)) {
    out << " from stage " << stage << " to rank " << a.peer;
  } else if (is_recv(a.type)) {
    out << " for stage " << stage << " from rank " << a.peer;
  } else {
    out << " at stage " << stage;
  }
  return out.str() + ")";
}

// Where an action sits in a schedule.
struct Position {
  int rank = -1;
  std::size_t index = 0;
  bool found() const { return rank >= 0; }
};

// One message: the direction, the micro-batch and the stage that receives it.
inline std::size_t message_key(const Schedule& s, int rank, const Action& a) {
  const int stage = s.stage_of(rank, a);
  const bool backward = a.type == ActionType::send_backward || a.type == ActionType::recv_backward;
  int receiving_stage = stage;
  if (a.type == ActionType::send_forward) receiving_stage = stage + 1;
  if (a.type == ActionType::send_backward) receiving_stage = stage - 1;
  return (static_cast<std::size_t>(backward ? 1 : 0) * static_cast<std::size_t>(s.micro_batches) +
          static_cast<std::size_t>(a.micro_batch)) *
             static_cast<std::size_t>(s.stages()) +
         static_cast<std::size_t>(receiving_stage);
}

inline std::size_t pass_key(const Schedule& s, int stage, int micro_batch) {
  return static_cast<std::size_t>(stage) * static_cast<std::size_t>(s.micro_batches) +
         static_cast<std::size_t>(micro_batch);
}

// Every fault is reported as one trident::Error naming the schedule.
template <class... Args>
[[noreturn]] void fail(const Schedule& s, const Args&... message) {
  throw Error(trident::detail::concat("trident::pipeline::validate: schedule '", s.name, "': ", message...));
}

inline void check_shape(const Schedule& s) {
  if (s.ranks < 1 || s.micro_batches < 1 || s.chunks < 1)
    fail(s, "p = ", s.ranks, ", m = ", s.micro_batches, ", v = ", s.chunks, " must all be at least 1");
  if (static_cast<int>(s.actions.size()) != s.ranks)
    fail(s, "has ", s.actions.size(), " action lists for p = ", s.ranks, " ranks");
}

inline void check_actions(const Schedule& s) {
  const int last_stage = s.stages() - 1;
  for (int rank = 0; rank < s.ranks; ++rank) {
    const auto& list = s.actions_of(rank);
    for (std::size_t k = 0; k < list.size(); ++k) {
      const Action& a = list[k];
      if (a.micro_batch < 0 || a.micro_batch >= s.micro_batches)
        fail(s, "rank ", rank, " action ", k, " (", to_string(a.type), "): micro-batch ", a.micro_batch,
             " is outside [0, ", s.micro_batches, ")");
      if (a.chunk < 0 || a.chunk >= s.chunks)
        fail(s, "rank ", rank, " action ", k, " (", to_string(a.type), "): chunk ", a.chunk, " is outside [0, ",
             s.chunks, ")");
      if (is_compute(a.type)) {
        if (a.peer != -1) fail(s, describe(s, rank, k), " is a compute pass but names peer rank ", a.peer);
        continue;
      }
      const int stage = s.stage_of(rank, a);
      const bool towards_next = a.type == ActionType::send_forward || a.type == ActionType::recv_backward;
      const int neighbour = towards_next ? stage + 1 : stage - 1;
      if (neighbour < 0 || neighbour > last_stage)
        fail(s, describe(s, rank, k), ": stage ", stage, " has no ", towards_next ? "next" : "previous",
             " stage to exchange with");
      const int neighbour_rank = s.rank_of_stage(neighbour);
      if (neighbour_rank == rank)
        fail(s, describe(s, rank, k), ": stages ", stage, " and ", neighbour, " both live on rank ", rank,
             ", which hands the data over locally without a transfer");
      if (a.peer != neighbour_rank)
        fail(s, describe(s, rank, k), ": peer rank ", a.peer, " is not rank ", neighbour_rank,
             ", which holds the neighbour stage ", neighbour);
    }
  }
}

inline void check_compute_passes(const Schedule& s) {
  const std::size_t passes = static_cast<std::size_t>(s.stages()) * static_cast<std::size_t>(s.micro_batches);
  // First position of each kind of pass of each (stage, micro-batch).
  std::vector<Position> forward(passes), backward(passes), input(passes), weight(passes);
  for (int rank = 0; rank < s.ranks; ++rank) {
    const auto& list = s.actions_of(rank);
    for (std::size_t k = 0; k < list.size(); ++k) {
      const Action& a = list[k];
      if (!is_compute(a.type)) continue;
      const std::size_t key = pass_key(s, s.stage_of(rank, a), a.micro_batch);
      std::vector<Position>* seen = &forward;
      if (a.type == ActionType::backward) seen = &backward;
      if (a.type == ActionType::backward_input) seen = &input;
      if (a.type == ActionType::backward_weight) seen = &weight;
      const Position& first = (*seen)[key];
      if (first.found()) fail(s, describe(s, rank, k), " is duplicated: it already ran as action ", first.index);
      (*seen)[key] = Position{rank, k};
      if (a.type == ActionType::backward) {
        if (input[key].found() || weight[key].found())
          fail(s, describe(s, rank, k),
               ": the backward of this micro-batch is also split into backward_input/backward_weight");
      } else if (a.type == ActionType::backward_input || a.type == ActionType::backward_weight) {
        if (backward[key].found()) fail(s, describe(s, rank, k), ": this micro-batch already ran a full backward");
      }
    }
  }
  for (int stage = 0; stage < s.stages(); ++stage) {
    const int rank = s.rank_of_stage(stage);
    for (int i = 0; i < s.micro_batches; ++i) {
      const std::size_t key = pass_key(s, stage, i);
      const auto where = [&] { return trident::detail::concat("stage ", stage, " (rank ", rank, ") "); };
      if (!forward[key].found()) fail(s, where(), "never runs the forward of micro-batch ", i);
      if (!backward[key].found() && !input[key].found())
        fail(s, where(), "never runs the backward (or backward_input) of micro-batch ", i);
      if (input[key].found() && !weight[key].found())
        fail(s, where(), "runs backward_input of micro-batch ", i, " but never its backward_weight");
      if (weight[key].found() && !input[key].found())
        fail(s, where(), "runs backward_weight of micro-batch ", i, " but never its backward_input");
    }
  }
}

inline void check_message_matching(const Schedule& s) {
  const std::size_t keys = 2 * static_cast<std::size_t>(s.micro_batches) * static_cast<std::size_t>(s.stages());
  std::vector<Position> sends(keys), recvs(keys);
  for (int rank = 0; rank < s.ranks; ++rank) {
    const auto& list = s.actions_of(rank);
    for (std::size_t k = 0; k < list.size(); ++k) {
      if (!is_communication(list[k].type)) continue;
      auto& seen = is_send(list[k].type) ? sends : recvs;
      const std::size_t key = message_key(s, rank, list[k]);
      if (seen[key].found())
        fail(s, describe(s, rank, k), " is duplicated: it already ran as action ", seen[key].index);
      seen[key] = Position{rank, k};
    }
  }
  for (std::size_t key = 0; key < keys; ++key) {
    if (sends[key].found() && !recvs[key].found()) {
      const Action& a = s.actions_of(sends[key].rank)[sends[key].index];
      fail(s, describe(s, sends[key].rank, sends[key].index), " has no matching ",
           a.type == ActionType::send_forward ? "recv_forward" : "recv_backward", " on rank ", a.peer);
    }
    if (recvs[key].found() && !sends[key].found()) {
      const Action& a = s.actions_of(recvs[key].rank)[recvs[key].index];
      fail(s, describe(s, recvs[key].rank, recvs[key].index), " has no matching ",
           a.type == ActionType::recv_forward ? "send_forward" : "send_backward", " on rank ", a.peer);
    }
  }
}

// Every input of a pass that lives on the pass's own rank must come earlier in its list.
inline void check_order_on_each_rank(const Schedule& s) {
  const std::size_t passes = static_cast<std::size_t>(s.stages()) * static_cast<std::size_t>(s.micro_batches);
  std::vector<char> forward_done(passes, 0), input_gradient_done(passes, 0);
  std::vector<char> activation_received(passes, 0), gradient_received(passes, 0);
  const int last_stage = s.stages() - 1;
  for (int rank = 0; rank < s.ranks; ++rank) {
    const auto& list = s.actions_of(rank);
    for (std::size_t k = 0; k < list.size(); ++k) {
      const Action& a = list[k];
      const int stage = s.stage_of(rank, a);
      const std::size_t key = pass_key(s, stage, a.micro_batch);
      const bool previous_is_local = stage > 0 && s.rank_of_stage(stage - 1) == rank;
      const bool next_is_local = stage < last_stage && s.rank_of_stage(stage + 1) == rank;
      switch (a.type) {
        case ActionType::forward:
          if (previous_is_local) {
            if (!forward_done[pass_key(s, stage - 1, a.micro_batch)])
              fail(s, describe(s, rank, k), " runs before the forward of stage ", stage - 1, " on the same rank");
          } else if (stage > 0) {
            if (!activation_received[key])
              fail(s, describe(s, rank, k), " runs before its recv_forward from rank ", s.rank_of_stage(stage - 1));
          }
          forward_done[key] = 1;
          break;
        case ActionType::backward:
        case ActionType::backward_input:
          if (!forward_done[key]) fail(s, describe(s, rank, k), " runs before its forward");
          if (next_is_local) {
            if (!input_gradient_done[pass_key(s, stage + 1, a.micro_batch)])
              fail(s, describe(s, rank, k), " runs before the backward of stage ", stage + 1, " on the same rank");
          } else if (stage < last_stage) {
            if (!gradient_received[key])
              fail(s, describe(s, rank, k), " runs before its recv_backward from rank ", s.rank_of_stage(stage + 1));
          }
          input_gradient_done[key] = 1;
          break;
        case ActionType::backward_weight:
          if (!input_gradient_done[key]) fail(s, describe(s, rank, k), " runs before its backward_input");
          break;
        case ActionType::send_forward:
          if (!forward_done[key]) fail(s, describe(s, rank, k), " is posted before the forward that produces it");
          break;
        case ActionType::send_backward:
          if (!input_gradient_done[key])
            fail(s, describe(s, rank, k), " is posted before the backward that produces it");
          break;
        case ActionType::recv_forward:
          activation_received[key] = 1;
          break;
        case ActionType::recv_backward:
          gradient_received[key] = 1;
          break;
      }
    }
  }
}

// With buffered sends and the local order checked, a rank can only stop at a receive.
inline void check_deadlock(const Schedule& s) {
  const std::size_t keys = 2 * static_cast<std::size_t>(s.micro_batches) * static_cast<std::size_t>(s.stages());
  std::vector<char> posted(keys, 0);
  std::vector<std::size_t> next(static_cast<std::size_t>(s.ranks), 0);
  bool progress = true;
  while (progress) {
    progress = false;
    for (int rank = 0; rank < s.ranks; ++rank) {
      const auto& list = s.actions_of(rank);
      std::size_t& k = next[static_cast<std::size_t>(rank)];
      for (; k < list.size(); ++k) {
        const std::size_t key = is_communication(list[k].type) ? message_key(s, rank, list[k]) : 0;
        if (is_recv(list[k].type) && !posted[key]) break;  // its send is not posted yet
        if (is_send(list[k].type)) posted[key] = 1;
        progress = true;
      }
    }
  }
  std::string blocked;
  for (int rank = 0; rank < s.ranks; ++rank) {
    const std::size_t k = next[static_cast<std::size_t>(rank)];
    if (k == s.actions_of(rank).size()) continue;
    const Action& a = s.actions_of(rank)[k];
    blocked += trident::detail::concat(blocked.empty() ? "" : "; ", describe(s, rank, k), " waits for ",
                                       a.type == ActionType::recv_forward ? "send_forward" : "send_backward",
                                       " on rank ", a.peer);
  }
  if (!blocked.empty()) fail(s, "deadlock, no rank can progress: ", blocked);
}

}  // namespace detail

inline void validate(const Schedule& schedule) {
  detail::check_shape(schedule);
  detail::check_actions(schedule);
  detail::check_compute_passes(schedule);
  detail::check_message_matching(schedule);
  detail::check_order_on_each_rank(schedule);
  detail::check_deadlock(schedule);
}

}  // namespace trident::pipeline
