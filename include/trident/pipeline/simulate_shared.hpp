#pragma once
// simulate() on ranks that share fewer cores than they are: a node runs `copies` ranks for
// every simulated rank (its data- and tensor-parallel peers, which run the same list at the
// same time), and when more of them want a core than the node has, they share the cores
// equally (the host moves ranks between cores to balance them). A rank that waits (for a
// message, or done and waiting for the step's end) need not give its core back whole: MPI polls
// while it waits, so it weighs `waiting_share` beside a computing rank's 1. No rank computes
// faster than on a core of its own, which is what the passes' costs are.

#include <trident/core/error.hpp>
#include <trident/pipeline/simulate.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

namespace trident::pipeline {

struct SharedCores {
  double cores = 0;          // the node's; 0: a core for every rank
  double copies = 1;         // ranks on the node per simulated rank
  double waiting_share = 0;  // of a core, a waiting rank's weight beside a computing rank's 1

  // The speed of a computing rank while `computing` of the `ranks` simulated ranks compute.
  double speed(int computing, int ranks) const {
    if (cores <= 0 || computing == 0) return 1.0;
    return std::min(1.0, cores / (copies * (computing + waiting_share * (ranks - computing))));
  }
};

inline Simulation simulate(const Schedule& schedule, const PassCost& pass_cost, double cost_comm,
                           const SharedCores& sharing) {
  const char* op = "trident::pipeline::simulate";
  require_argument(sharing.cores >= 0 && sharing.copies > 0 && sharing.waiting_share >= 0 && sharing.waiting_share <= 1,
                   op, ": shared cores need cores >= 0, copies > 0 and a waiting share in [0, 1], got ", sharing.cores,
                   ", ", sharing.copies, ", ", sharing.waiting_share);
  std::vector<double> arrival = detail::unsent_messages(schedule, cost_comm);
  const Schedule& s = schedule;
  const std::size_t ranks = static_cast<std::size_t>(s.ranks);
  const double not_yet = detail::not_yet;
  std::vector<double> reached(ranks, 0.0);     // when the rank reached its next action
  std::vector<double> remaining(ranks, -1.0);  // of its running pass, at a core's speed; < 0: none runs
  std::vector<std::size_t> next(ranks, 0);
  Simulation result;
  result.timeline.resize(ranks);
  result.busy.assign(ranks, 0.0);
  double now = 0;
  for (;;) {
    // Every rank that does not compute goes on as far as it can at `now`.
    for (bool progress = true; progress;) {
      progress = false;
      for (int rank = 0; rank < s.ranks; ++rank) {
        const auto r = static_cast<std::size_t>(rank);
        const auto& list = s.actions_of(rank);
        for (; remaining[r] < 0 && next[r] < list.size(); ++next[r]) {
          const Action& a = list[next[r]];
          if (is_compute(a.type)) {
            const double cost = pass_cost(rank, a);
            require_argument(std::isfinite(cost) && cost >= 0, op, ": the time of ", to_string(a.type),
                             " of micro-batch ", a.micro_batch, " on rank ", rank, " must be finite and >= 0, got ",
                             cost);
            remaining[r] = cost;
            reached[r] = now;
            break;  // its pass ends below; the index moves on then
          }
          if (is_send(a.type)) {
            arrival[detail::message_key(s, rank, a)] = now + cost_comm;
            result.timeline[r].push_back(TimedAction{a, now, now});
          } else {
            const double arrives = arrival[detail::message_key(s, rank, a)];
            if (arrives > now) break;  // not posted yet, or in flight
            result.timeline[r].push_back(TimedAction{a, reached[r], now});
          }
          reached[r] = now;
          progress = true;
        }
      }
    }
    // The next event: a pass ends, or a message a rank waits for arrives.
    int computing = 0;
    for (double left : remaining) computing += left >= 0 ? 1 : 0;
    const double speed = sharing.speed(computing, s.ranks);
    double step = not_yet;
    for (std::size_t r = 0; r < ranks; ++r) {
      if (remaining[r] >= 0) {
        step = std::min(step, remaining[r] / speed);
      } else if (next[r] < s.actions_of(static_cast<int>(r)).size()) {
        const double arrives =
            arrival[detail::message_key(s, static_cast<int>(r), s.actions_of(static_cast<int>(r))[next[r]])];
        if (arrives != not_yet) step = std::min(step, arrives - now);
      }
    }
    if (step == not_yet) break;  // every rank is through its list
    now += step;
    for (std::size_t r = 0; r < ranks; ++r) {
      if (remaining[r] < 0) continue;
      remaining[r] -= step * speed;
      if (remaining[r] > 1e-12 * step * speed) continue;
      const Action& a = s.actions_of(static_cast<int>(r))[next[r]];
      result.timeline[r].push_back(TimedAction{a, reached[r], now});
      result.busy[r] += now - reached[r];
      remaining[r] = -1;
      reached[r] = now;
      ++next[r];
    }
  }
  result.makespan = *std::max_element(reached.begin(), reached.end());
  for (std::size_t r = 0; r < ranks; ++r)
    result.bubble.push_back(result.makespan > 0 ? (result.makespan - result.busy[r]) / result.makespan : 0.0);
  return result;
}

}  // namespace trident::pipeline
