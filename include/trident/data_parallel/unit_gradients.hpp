#pragma once
// ZeRO-3's gradients: a unit's gradients live in a buffer of their own from the first backward
// that writes them (a tied head writes its embedding's table's) until the owning unit's
// backward has finished; then they are reduce-scattered (nonblocking) and each rank adds its
// part into its gradient shard. Every micro-batch reduces this way, as FSDP does; the shard
// accumulates the parts in posting order, so results do not depend on timing. At most one
// reduction stays in flight when the next is posted (FSDP limits its all-gathers alike), so the
// gradients held are at most two units' whatever the network's timing, and a plan can count them.
// With 16-bit gradient precision a unit's gradients are rounded into a buffer of half the size
// (or a quarter of double's) when posted, and their own buffer goes at once.

#include <trident/comm/reduce_scatter.hpp>
#include <trident/comm/request.hpp>
#include <trident/core/memory_accounting.hpp>
#include <trident/core/parameter_store.hpp>
#include <trident/core/profiling.hpp>
#include <trident/data_parallel/events.hpp>
#include <trident/data_parallel/packed_gradients.hpp>
#include <trident/data_parallel/settings.hpp>
#include <trident/data_parallel/shard_layout.hpp>
#include <trident/data_parallel/unit_plan.hpp>

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <utility>
#include <vector>

namespace trident::data_parallel {

template <class Scalar, class ExecutionSpace>
class UnitGradients {
 public:
  using memory_space = typename ExecutionSpace::memory_space;
  using store_type = ParameterStore<Scalar, memory_space>;
  using flat_view = typename store_type::flat_view;

  // `shard` holds this rank's elements [layout.begin(rank), layout.end(rank)) of the gradients.
  UnitGradients(const ExecutionSpace& space, comm::Communicator comm, store_type& store, const UnitPlan& plan,
                ShardLayout layout, flat_view shard, GradientPrecision precision, MemoryLedger& ledger, EventLog& log)
      : m_space(space),
        m_comm(std::move(comm)),
        m_store(store),
        m_plan(plan),
        m_layout(layout),
        m_shard(std::move(shard)),
        m_precision(precision),
        m_ledger(ledger),
        m_log(log) {}

  // Before `unit`'s backward: every tensor it reads gets the zeroed gradient buffer of the unit
  // that owns it.
  void prepare(int unit) {
    for (const auto& range : m_plan.reads(unit)) {
      const int owner = m_plan.unit_of_tensor(range.first);
      if (m_buffers.count(owner) != 0) continue;
      const auto& owned = m_plan.owned(owner);
      TrackedView<flat_view> buffer(
          m_ledger, MemoryCategory::gradients,
          flat_view("trident::data_parallel::unit_grads", static_cast<std::size_t>(owned.size())));
      m_store.back_grads(owned.first, owned.last, buffer.view());
      m_buffers.emplace(owner, std::move(buffer));
    }
  }

  // After `unit`'s backward: its gradients are final; posts their reduce-scatter.
  void reduce(int unit) {
    auto it = m_buffers.find(unit);
    if (it == m_buffers.end()) return;
    ScopedRegion region("trident::data_parallel::reduce_scatter_unit");
    complete_until(1);
    const auto& owned = m_plan.owned(unit);
    m_store.back_grads(owned.first, owned.last, flat_view());
    const int rank = m_comm.rank();
    Pending pending;
    pending.unit = unit;
    pending.part = m_layout.part(rank, owned.begin, owned.end);
    const auto counts = m_layout.counts_within(owned.begin, owned.end);
    if (m_precision != GradientPrecision::full) {
      pending.packed = PackedGradients<ExecutionSpace>(m_space, m_precision, it->second.view(), m_ledger);
      pending.request = pending.packed.reduce_scatter(m_comm, counts);  // has fenced: the rounding is done
    } else {
      pending.received = TrackedView<flat_view>(
          m_ledger, MemoryCategory::communication,
          flat_view(Kokkos::view_alloc(Kokkos::WithoutInitializing, "trident::data_parallel::reduced_part"),
                    static_cast<std::size_t>(pending.part.second - pending.part.first)));
      pending.request = comm::ireduce_scatter_v(m_space, m_comm, it->second.view(), pending.received.view(), counts);
      pending.sent = std::move(it->second);  // the request reads it until the reduction finishes
    }
    m_buffers.erase(it);
    m_pending.push_back(std::move(pending));
    m_log.record(EventKind::reduction_started, unit);
  }

  // Completes finished reductions, oldest first, without blocking.
  void progress() {
    while (!m_pending.empty() && m_pending.front().request.test()) complete_front();
  }

  // Waits for every posted reduction.
  void finish() { complete_until(0); }

  // Drops gradient buffers a backward left unreduced (none after a full backward).
  void discard() {
    for (auto& [unit, buffer] : m_buffers) {
      const auto& owned = m_plan.owned(unit);
      m_store.back_grads(owned.first, owned.last, flat_view());
      buffer.reset();
    }
    m_buffers.clear();
  }

 private:
  struct Pending {
    int unit = 0;
    std::pair<std::int64_t, std::int64_t> part;  // this rank's flat range of the unit
    TrackedView<flat_view> sent, received;
    PackedGradients<ExecutionSpace> packed;  // 16-bit precision: instead of sent and received
    comm::Request request;
  };

  // Waits for the oldest reductions until at most `left` are in flight.
  void complete_until(std::size_t left) {
    if (m_pending.size() <= left) return;
    const auto start = EventLog::clock::now();
    while (m_pending.size() > left) {
      m_pending.front().request.wait();
      complete_front();
    }
    m_log.times().blocked_seconds += EventLog::seconds_since(start);
  }

  void complete_front() {
    auto& pending = m_pending.front();
    const std::int64_t base = m_layout.begin(m_comm.rank());
    auto target = Kokkos::subview(m_shard, std::make_pair(pending.part.first - base, pending.part.second - base));
    if (pending.packed.packed()) {
      pending.packed.add_into(target);
    } else {
      ops::add_converted(m_space, target, pending.received.view());
    }
    m_log.record(EventKind::reduction_finished, pending.unit);
    m_pending.pop_front();
  }

  ExecutionSpace m_space;
  comm::Communicator m_comm;
  store_type& m_store;
  const UnitPlan& m_plan;
  ShardLayout m_layout;
  flat_view m_shard;
  GradientPrecision m_precision;
  MemoryLedger& m_ledger;
  EventLog& m_log;
  std::map<int, TrackedView<flat_view>> m_buffers;  // by owning unit
  std::deque<Pending> m_pending;                    // posted reductions, oldest first
};

}  // namespace trident::data_parallel
