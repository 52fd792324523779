#pragma once
// Where the launcher bound a node's ranks to its cores (Open MPI: mpiexec --bind-to
// core:overload-allowed --map-by core): ranks bound to the same cores share only those, and the
// host never moves them elsewhere, so two busy ranks bound to one core stay at half speed even
// while another core idles. A "core" is what the system schedules on (a hardware thread).
//   binding_from_cpus(cpus of each rank, threads per rank)   the groups of cores, or none
//   core_sharing_note(ranks, cores, binding, nodes)           a line for the planner's report
// A node whose ranks may all run anywhere has no binding: the host balances them itself.
// plan/read_core_binding.hpp reads a launch's.

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

namespace trident::plan {

struct CoreBinding {
  std::vector<int> group_of_rank;   // for each rank of the node, in rank order; empty: not bound
  std::vector<double> group_cores;  // for each group, the cores its ranks share

  bool bound() const { return !group_of_rank.empty(); }
  int groups() const { return static_cast<int>(group_cores.size()); }
  int ranks_in(int group) const {
    return static_cast<int>(std::count(group_of_rank.begin(), group_of_rank.end(), group));
  }
  // "0,1,0,1": each rank's group; "none" when not bound.
  std::string describe() const {
    if (!bound()) return "none";
    std::string text;
    for (std::size_t r = 0; r < group_of_rank.size(); ++r) text += (r ? "," : "") + std::to_string(group_of_rank[r]);
    return text;
  }
  // The most ranks any core has to run: 1 when every rank has cores of its own.
  double crowding() const {
    double most = 0;
    for (int g = 0; g < groups(); ++g) most = std::max(most, ranks_in(g) / group_cores[static_cast<std::size_t>(g)]);
    return most;
  }
};

// The groups of a node's ranks from the CPUs each may run on: ranks with the same CPUs form a
// group, which has their count over a rank's threads of cores (at least one). Sets that overlap
// without being equal, an unknown set, or one set for all ranks (the host balances them) give no
// binding.
inline CoreBinding binding_from_cpus(std::vector<std::vector<int>> cpus_of_rank, int threads_per_rank) {
  CoreBinding binding;
  std::vector<std::vector<int>> sets;
  for (auto& cpus : cpus_of_rank) {
    if (cpus.empty()) return {};
    std::sort(cpus.begin(), cpus.end());
    cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
    int group = -1;
    for (std::size_t g = 0; g < sets.size() && group < 0; ++g) {
      if (sets[g] == cpus) {
        group = static_cast<int>(g);
        continue;
      }
      const bool disjoint = std::none_of(
          cpus.begin(), cpus.end(), [&](int cpu) { return std::binary_search(sets[g].begin(), sets[g].end(), cpu); });
      if (!disjoint) return {};
    }
    if (group < 0) {
      group = static_cast<int>(sets.size());
      sets.push_back(cpus);
      binding.group_cores.push_back(std::max(1.0, static_cast<double>(cpus.size()) / std::max(threads_per_rank, 1)));
    }
    binding.group_of_rank.push_back(group);
  }
  if (sets.size() <= 1) return {};
  return binding;
}

// A line for the planner's report when a node's `ranks` share its `cores`: which share them
// where they are bound, else a hint to bind them (the binding is read when one node runs every
// rank). Empty when every rank has cores of its own.
inline std::string core_sharing_note(int ranks, int cores, const CoreBinding& binding, int nodes = 1) {
  if (binding.bound()) {
    if (binding.crowding() <= 1) return "";
    return "  ranks bound to cores, the group of each: " + binding.describe() + " (priced where they are)\n";
  }
  if (cores <= 0 || ranks <= cores) return "";
  if (nodes > 1)
    return "  " + std::to_string(ranks) + " ranks share " + std::to_string(cores) +
           " cores on each node: priced as if the host balanced them (a binding is read on one node only)\n";
  return "  " + std::to_string(ranks) + " ranks share " + std::to_string(cores) +
         " cores unbound: priced as if the host balanced them; bind them (Open MPI: mpiexec --bind-to "
         "core:overload-allowed --map-by core) for a placement the plan can price\n";
}

}  // namespace trident::plan
