#pragma once
// simulate() on ranks that share fewer cores than they are: a node runs `copies` ranks for
// every simulated rank (its data- and tensor-parallel peers, which run the same list at the
// same time), and when more of them want a core than the node has, they share the cores
// equally (the host moves ranks between cores to balance them). A rank that waits (for a
// message, or done and waiting for the step's end) need not give its core back whole: MPI polls
// while it waits, so it weighs `waiting_share` beside a computing rank's 1. No rank computes
// faster than on a core of its own, which is what the passes' costs are.
//
// When the launcher bound the ranks to cores (`bound`), the host no longer balances them: each
// group of cores is shared by the ranks bound to it alone, and a simulated rank goes at the
// speed of its slowest copy. Its tensor-parallel peers wait for each other at every layer; its
// replicas only at the step's reduction, so for them this is an approximation, exact when
// every copy's core is shared alike (as a round-robin binding shares them).

#include <trident/core/error.hpp>
#include <trident/pipeline/simulate.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace trident::pipeline {

// Cores that only the ranks bound to them run on: the simulated rank of each.
struct BoundCores {
  double cores = 1;
  std::vector<int> ranks;
};

struct SharedCores {
  double cores = 0;               // the node's; 0: a core for every rank
  double copies = 1;              // ranks on the node per simulated rank
  double waiting_share = 0;       // of a core, a waiting rank's weight beside a computing rank's 1
  std::vector<BoundCores> bound;  // empty: the ranks are not bound, the host balances them

  // The speed of each simulated rank while those with `computing[r]` compute, into `speed`.
  void speeds(const std::vector<bool>& computing, std::vector<double>& speed) const {
    const int ranks = static_cast<int>(computing.size());
    const int busy = static_cast<int>(std::count(computing.begin(), computing.end(), true));
    if (bound.empty()) {
      const double each =
          cores <= 0 || busy == 0 ? 1.0 : std::min(1.0, cores / (copies * (busy + waiting_share * (ranks - busy))));
      speed.assign(computing.size(), each);
      return;
    }
    speed.assign(computing.size(), 1.0);
    for (const BoundCores& group : bound) {
      double load = 0;
      for (int r : group.ranks) load += computing[static_cast<std::size_t>(r)] ? 1.0 : waiting_share;
      const double share = load > 0 ? std::min(1.0, group.cores / load) : 1.0;
      for (int r : group.ranks)
        speed[static_cast<std::size_t>(r)] = std::min(speed[static_cast<std::size_t>(r)], share);
    }
  }
  std::vector<double> speeds(const std::vector<bool>& computing) const {
    std::vector<double> speed;
    speeds(computing, speed);
    return speed;
  }
};

inline Simulation simulate(const Schedule& schedule, const PassCost& pass_cost, double cost_comm,
                           const SharedCores& sharing) {
  const char* op = "trident::pipeline::simulate";
  require_argument(sharing.cores >= 0 && sharing.copies > 0 && sharing.waiting_share >= 0 && sharing.waiting_share <= 1,
                   op, ": shared cores need cores >= 0, copies > 0 and a waiting share in [0, 1], got ", sharing.cores,
                   ", ", sharing.copies, ", ", sharing.waiting_share);
  std::vector<bool> placed(static_cast<std::size_t>(schedule.ranks), sharing.bound.empty());
  for (const BoundCores& group : sharing.bound) {
    require_argument(group.cores > 0, op, ": bound cores need at least one core, got ", group.cores);
    for (int r : group.ranks) {
      require_argument(r >= 0 && r < schedule.ranks, op, ": a rank bound to cores is ", r, ", outside the schedule's ",
                       schedule.ranks, " ranks");
      placed[static_cast<std::size_t>(r)] = true;
    }
  }
  const auto unplaced = std::find(placed.begin(), placed.end(), false);
  require_argument(unplaced == placed.end(), op, ": rank ", unplaced - placed.begin(),
                   " is bound to no cores; bound cores must hold every rank of the schedule");
  std::vector<double> arrival = detail::unsent_messages(schedule, cost_comm);
  const Schedule& s = schedule;
  const std::size_t ranks = static_cast<std::size_t>(s.ranks);
  const double not_yet = detail::not_yet;
  std::vector<double> reached(ranks, 0.0);     // when the rank reached its next action
  std::vector<double> remaining(ranks, -1.0);  // of its running pass, at a core's speed; < 0: none runs
  std::vector<std::size_t> next(ranks, 0);
  std::vector<bool> computing(ranks);  // which ranks run a pass, and at what speed
  std::vector<double> speed(ranks);
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
    for (std::size_t r = 0; r < ranks; ++r) computing[r] = remaining[r] >= 0;
    sharing.speeds(computing, speed);
    double step = not_yet;
    for (std::size_t r = 0; r < ranks; ++r) {
      if (remaining[r] >= 0) {
        step = std::min(step, remaining[r] / speed[r]);
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
      remaining[r] -= step * speed[r];
      if (remaining[r] > 1e-12 * step * speed[r]) continue;
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
