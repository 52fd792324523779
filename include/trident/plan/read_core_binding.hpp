#pragma once
// Where a launch let a node's ranks run, as calibration reads it at every start: each rank's
// CPUs, gathered over the node, which give the binding (plan/core_binding.hpp) and the caches
// the ranks meet (plan/read_cache_size.hpp).
//   allowed_cpus()                         the calling thread's CPUs (Linux; else none)
//   allowed_cpus_of_ranks(node)            each rank's, collective over one node's ranks; with
//                                          binding_from_cpus, the node's binding
// Read before the host threads bind themselves (OMP_PROC_BIND), or with them unbound: a bound
// OpenMP master thread reports its own place, not its rank's (and calibration would count that
// place's last-level cache alone).

#include <trident/comm/allreduce.hpp>
#include <trident/comm/communicator.hpp>

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

#ifdef __linux__
#include <sched.h>
#endif

namespace trident::plan {

// The CPUs the calling thread may run on; empty where the system does not say.
inline std::vector<int> allowed_cpus() {
  std::vector<int> cpus;
#ifdef __linux__
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0)
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
      if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
#endif
  return cpus;
}

// The CPUs each rank of `node` (a communicator of one node's ranks) may run on, in rank order.
// Collective over `node`; every rank returns the same.
inline std::vector<std::vector<int>> allowed_cpus_of_ranks(const comm::Communicator& node) {
  constexpr int words = 1024 / 64;  // CPU_SETSIZE bits
  Kokkos::View<std::int64_t*, Kokkos::HostSpace> masks("trident::plan::core_binding",
                                                       static_cast<std::size_t>(node.size()) * words);
  for (int cpu : allowed_cpus())
    if (cpu < 64 * words)
      masks(static_cast<std::size_t>(node.rank()) * words + cpu / 64) |= std::int64_t(1) << (cpu % 64);
  comm::allreduce(Kokkos::DefaultHostExecutionSpace(), node, masks);  // each rank fills its own row
  std::vector<std::vector<int>> cpus(static_cast<std::size_t>(node.size()));
  for (int r = 0; r < node.size(); ++r)
    for (int cpu = 0; cpu < 64 * words; ++cpu)
      if ((masks(static_cast<std::size_t>(r) * words + cpu / 64) >> (cpu % 64)) & 1)
        cpus[static_cast<std::size_t>(r)].push_back(cpu);
  return cpus;
}

}  // namespace trident::plan
