#pragma once
// ZeRO-3: each rank keeps only its shard of the parameters; a unit's parameters are gathered
// into buffers of their own just before its forward or backward, back the store's tensors
// while it computes, and are freed after. Gathers are posted ahead (prefetch) so they travel
// while the previous unit computes.

#include <trident/comm/allgather.hpp>
#include <trident/comm/request.hpp>
#include <trident/core/memory_accounting.hpp>
#include <trident/core/parameter_store.hpp>
#include <trident/core/profiling.hpp>
#include <trident/data_parallel/events.hpp>
#include <trident/data_parallel/shard_layout.hpp>
#include <trident/data_parallel/unit_plan.hpp>

#include <Kokkos_Core.hpp>

#include <map>
#include <utility>
#include <vector>

namespace trident::data_parallel {

template <class Scalar, class ExecutionSpace>
class UnitGatherer {
 public:
  using memory_space = typename ExecutionSpace::memory_space;
  using store_type = ParameterStore<Scalar, memory_space>;
  using flat_view = typename store_type::flat_view;

  // `shard` holds this rank's elements [layout.begin(rank), layout.end(rank)) of the parameters.
  UnitGatherer(const ExecutionSpace& space, comm::Communicator comm, store_type& store, const UnitPlan& plan,
               ShardLayout layout, flat_view shard, MemoryLedger& ledger, EventLog& log)
      : m_space(space),
        m_comm(std::move(comm)),
        m_store(store),
        m_plan(plan),
        m_layout(layout),
        m_shard(std::move(shard)),
        m_ledger(ledger),
        m_log(log) {}

  bool holds(int unit) const { return m_units.count(unit) != 0; }

  // Posts the all-gathers of everything `unit` reads, unless they are posted already.
  void prefetch(int unit) {
    if (holds(unit) || m_plan.reads(unit).empty()) return;
    ScopedRegion region("trident::data_parallel::gather_parameters");
    auto& gathered = m_units[unit];
    const int rank = m_comm.rank();
    for (const auto& range : m_plan.reads(unit)) {
      flat_view buffer(Kokkos::view_alloc(Kokkos::WithoutInitializing, "trident::data_parallel::gathered"),
                       static_cast<std::size_t>(range.size()));
      const auto mine = m_layout.part(rank, range.begin, range.end);
      const std::int64_t base = m_layout.begin(rank);
      auto send = Kokkos::subview(m_shard, std::make_pair(mine.first - base, mine.second - base));
      gathered.requests.push_back(
          comm::iallgatherv(m_space, m_comm, send, buffer, m_layout.counts_within(range.begin, range.end)));
      gathered.buffers.emplace_back(m_ledger, MemoryCategory::parameters, std::move(buffer));
    }
    m_log.record(EventKind::gather_started, unit);
  }

  // Waits for `unit`'s gathers (posting them first if needed) and backs its tensors by them.
  void acquire(int unit) {
    prefetch(unit);
    auto it = m_units.find(unit);
    if (it == m_units.end() || it->second.bound) return;
    const auto start = EventLog::clock::now();
    comm::wait_all(it->second.requests);
    m_log.times().blocked_seconds += EventLog::seconds_since(start);
    it->second.requests.clear();
    it->second.bound = true;
    bind(unit, it->second);
    m_log.record(EventKind::gather_finished, unit);
  }

  // Frees `unit`'s gathered parameters (after waiting for any gather still in flight).
  void release(int unit) {
    auto it = m_units.find(unit);
    if (it == m_units.end()) return;
    comm::wait_all(it->second.requests);
    if (it->second.bound)
      for (const auto& range : m_plan.reads(unit)) m_store.back_values(range.first, range.last, flat_view());
    m_units.erase(it);  // the store's backing went first, so the buffers are freed now
    // Another unit may read a tensor this one read too: it keeps its own copy in place.
    for (const auto& [other, gathered] : m_units)
      if (gathered.bound) bind(other, gathered);
  }

  void release_all() {
    while (!m_units.empty()) release(m_units.begin()->first);
  }

 private:
  struct Gathered {
    std::vector<TrackedView<flat_view>> buffers;  // one per range the unit reads
    std::vector<comm::Request> requests;
    bool bound = false;
  };

  void bind(int unit, const Gathered& gathered) {
    const auto& reads = m_plan.reads(unit);
    for (std::size_t i = 0; i < reads.size(); ++i)
      m_store.back_values(reads[i].first, reads[i].last, gathered.buffers[i].view());
  }

  ExecutionSpace m_space;
  comm::Communicator m_comm;
  store_type& m_store;
  const UnitPlan& m_plan;
  ShardLayout m_layout;
  flat_view m_shard;
  MemoryLedger& m_ledger;
  EventLog& m_log;
  std::map<int, Gathered> m_units;
};

}  // namespace trident::data_parallel
