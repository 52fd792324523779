#pragma once
// A pipeline schedule as data: for each of p ranks, the ordered list of actions it runs for
// one training step of m micro-batches over p * v stages (v model chunks per rank).
//
// How an executor runs it: each rank walks its list in order. A send may be posted
// nonblocking and completed later; a receive must have completed before the compute that
// consumes it. Sends and receives are matched by (direction, micro-batch, stage), never by
// their order, so an executor tags each message with message_tag(). When two consecutive
// stages live on the same rank (only with p = 1) the activation and gradient are handed
// over locally and the lists carry no transfer for them.

#include <trident/core/error.hpp>
#include <trident/pipeline/action.hpp>

#include <cstddef>
#include <sstream>
#include <string>
#include <vector>

namespace trident::pipeline {

struct Schedule {
  std::string name;
  int ranks = 1;                             // p
  int micro_batches = 1;                     // m
  int chunks = 1;                            // v: model chunks (virtual stages) per rank
  std::vector<std::vector<Action>> actions;  // actions[rank], in execution order

  int stages() const { return ranks * chunks; }
  int stage(int rank, int chunk) const { return chunk * ranks + rank; }
  int rank_of_stage(int stage) const { return stage % ranks; }
  int chunk_of_stage(int stage) const { return stage / ranks; }
  int stage_of(int rank, const Action& action) const { return stage(rank, action.chunk); }
  const std::vector<Action>& actions_of(int rank) const { return actions.at(static_cast<std::size_t>(rank)); }
};

// Throws trident::InvalidArgument unless p, m and v can describe a schedule.
inline void require_schedule_shape(const char* operation, int ranks, int micro_batches, int chunks) {
  require_argument(ranks >= 1, operation, ": the number of ranks p must be at least 1, got p = ", ranks);
  require_argument(micro_batches >= 1, operation,
                   ": the number of micro-batches m must be at least 1, got m = ", micro_batches);
  require_argument(chunks >= 1, operation,
                   ": the number of model chunks per rank v must be at least 1, got v = ", chunks);
}

// The MPI tag of the message a transfer action sends or receives: equal on both sides,
// distinct for every message between one pair of ranks in one step. It lies in
// [0, 2 * m * v); an executor checks that against MPI_TAG_UB (at least 32767).
inline int message_tag(const Schedule& schedule, int rank, const Action& action) {
  const int stage = schedule.stage_of(rank, action);
  int receiving_stage = stage, direction = 0;
  switch (action.type) {
    case ActionType::send_forward:
      receiving_stage = stage + 1;
      break;
    case ActionType::recv_forward:
      break;
    case ActionType::send_backward:
      receiving_stage = stage - 1;
      direction = 1;
      break;
    case ActionType::recv_backward:
      direction = 1;
      break;
    default:
      throw InvalidArgument(trident::detail::concat("trident::pipeline::message_tag: ", to_string(action.type),
                                                    " on rank ", rank, " is not a transfer"));
  }
  const int receiving_chunk = schedule.chunk_of_stage(receiving_stage);
  return (direction * schedule.micro_batches + action.micro_batch) * schedule.chunks + receiving_chunk;
}

// A readable table, one line per rank:
//   1f1b p=2 m=3 v=1
//   rank 0: F0 F1 B0 F2 B1 B2
//   rank 1: F0 B0 F1 B1 F2 B2
// Chunks are written ("F3c1") when v > 1; transfers ("sF0>1", "rB0<1") only on request.
inline std::string to_string(const Schedule& schedule, bool with_communication = false) {
  std::ostringstream out;
  out << schedule.name << " p=" << schedule.ranks << " m=" << schedule.micro_batches << " v=" << schedule.chunks;
  for (std::size_t rank = 0; rank < schedule.actions.size(); ++rank) {
    out << "\nrank " << rank << ":";
    for (const Action& action : schedule.actions[rank]) {
      if (!with_communication && is_communication(action.type)) continue;
      out << ' ' << to_string(action, schedule.chunks > 1);
    }
  }
  return out.str();
}

}  // namespace trident::pipeline
