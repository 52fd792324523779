#pragma once
// Stages 0-2: the gradients of the last micro-batch reduced bucket by bucket during backward.
// A bucket is posted (nonblocking) as soon as the after_backward hooks of all units owning its
// tensors have run, in bucket order on every rank; the optimizer step waits for all of them.
//   stage 0:    all-reduce in place: every rank ends with the summed gradients (in two levels
//               when given the group's node split);
//   stages 1-2: reduce-scatter: each rank receives the sum of its own shard's part of the
//               bucket (the parts of all ranks concatenate to the bucket).
// With 16-bit gradient precision a bucket is rounded into a buffer of its own when posted, and
// widened back into the gradients (or the shard) once every bucket has arrived.

#include <trident/comm/allreduce.hpp>
#include <trident/comm/hierarchical_allreduce.hpp>
#include <trident/comm/reduce_scatter.hpp>
#include <trident/comm/request.hpp>
#include <trident/core/memory_accounting.hpp>
#include <trident/core/parameter_store.hpp>
#include <trident/core/profiling.hpp>
#include <trident/data_parallel/buckets.hpp>
#include <trident/data_parallel/events.hpp>
#include <trident/data_parallel/packed_gradients.hpp>
#include <trident/data_parallel/settings.hpp>
#include <trident/data_parallel/shard_layout.hpp>
#include <trident/data_parallel/unit_plan.hpp>

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <utility>
#include <vector>

namespace trident::data_parallel {

template <class Scalar, class ExecutionSpace>
class BucketReducer {
 public:
  using memory_space = typename ExecutionSpace::memory_space;
  using store_type = ParameterStore<Scalar, memory_space>;
  using flat_view = typename store_type::flat_view;

  // `scatter` false: all-reduce (stage 0), through `node_groups` when given (it must outlive
  // this object); true: reduce-scatter into the shard given to begin_step().
  BucketReducer(const ExecutionSpace& space, comm::Communicator comm, const store_type& store,
                std::vector<GradientBucket> buckets, int unit_count, ShardLayout layout, bool scatter, bool overlap,
                GradientPrecision precision, MemoryLedger& ledger, EventLog& log,
                const comm::NodeGroups* node_groups = nullptr)
      : m_space(space),
        m_comm(std::move(comm)),
        m_node_groups(node_groups),
        m_store(store),
        m_buckets(std::move(buckets)),
        m_unit_buckets(static_cast<std::size_t>(unit_count)),
        m_layout(layout),
        m_scatter(scatter),
        m_overlap(overlap),
        m_precision(precision),
        m_ledger(ledger),
        m_log(log) {
    for (std::size_t b = 0; b < m_buckets.size(); ++b)
      for (int unit : m_buckets[b].units) m_unit_buckets[static_cast<std::size_t>(unit)].push_back(b);
  }

  const std::vector<GradientBucket>& buckets() const { return m_buckets; }

  // A new step reduces into `shard` (stages 1-2: this rank's range of the flat gradients).
  void begin_step(flat_view shard) {
    m_shard = std::move(shard);
    m_armed = false;
    m_next = 0;
    m_requests.clear();
    m_packed.clear();
  }
  // Only the last micro-batch's hooks reduce: the earlier ones accumulate locally.
  void begin_micro_batch(bool last) {
    m_armed = last;
    m_waiting.clear();
    for (const auto& bucket : m_buckets) m_waiting.push_back(bucket.units.size());
  }

  void after_backward(int unit) {
    if (!m_armed || unit < 0 || unit >= static_cast<int>(m_unit_buckets.size())) return;
    for (std::size_t b : m_unit_buckets[static_cast<std::size_t>(unit)]) --m_waiting[b];
    if (m_overlap) {
      while (m_next < m_buckets.size() && m_waiting[m_next] == 0) start(m_next++);
    }
    progress();
  }

  // Lets MPI advance posted reductions (implementations without a progress thread move data
  // only inside MPI calls). In bucket order, stopping at the first unfinished one: a two-level
  // reduction starts its next stage when tested, and every rank must start them in one order.
  void progress() {
    for (auto& request : m_requests)
      if (!request.test()) break;
  }

  // Posts whatever is left (all buckets when not overlapping) and waits for every bucket.
  void finish() {
    ScopedRegion region("trident::data_parallel::reduce_gradients");
    while (m_next < m_buckets.size()) start(m_next++);
    const auto start_time = EventLog::clock::now();
    comm::wait_all(m_requests);
    m_log.times().blocked_seconds += EventLog::seconds_since(start_time);
    for (std::size_t b = 0; b < m_packed.size(); ++b) m_packed[b].copy_into(target(b));
    m_packed.clear();
    for (std::size_t b = 0; b < m_requests.size(); ++b)
      m_log.record(EventKind::reduction_finished, static_cast<int>(b));
    m_requests.clear();  // the requests hold the gradient buffer: ZeRO-2 frees it next
  }

 private:
  // Bucket b's gradients.
  auto gradients(std::size_t b) const {
    const auto& range = m_buckets[b].range;
    return Kokkos::subview(m_store.grads(), std::make_pair(range.begin, range.end));
  }
  // Where bucket b's reduction lands: its gradients (all-reduce), or this rank's part of them
  // in the shard (reduce-scatter).
  auto target(std::size_t b) const {
    if (!m_scatter) return gradients(b);
    const auto& range = m_buckets[b].range;
    const int rank = m_comm.rank();
    const auto mine = m_layout.part(rank, range.begin, range.end);
    const std::int64_t base = m_layout.begin(rank);
    return Kokkos::subview(m_shard, std::make_pair(mine.first - base, mine.second - base));
  }

  void start(std::size_t b) {
    const auto& range = m_buckets[b].range;
    m_log.record(EventKind::reduction_started, static_cast<int>(b));
    if (m_precision != GradientPrecision::full) {
      PackedGradients<ExecutionSpace> packed(m_space, m_precision, gradients(b), m_ledger);
      if (!m_scatter) {
        m_requests.push_back(m_node_groups != nullptr ? packed.allreduce(*m_node_groups) : packed.allreduce(m_comm));
      } else {
        m_requests.push_back(packed.reduce_scatter(m_comm, m_layout.counts_within(range.begin, range.end)));
      }
      m_packed.push_back(std::move(packed));  // buckets are posted in order: entry b is bucket b
      return;
    }
    if (!m_scatter) {
      m_requests.push_back(m_node_groups != nullptr ? comm::iallreduce(m_space, *m_node_groups, gradients(b))
                                                    : comm::iallreduce(m_space, m_comm, gradients(b)));
      return;
    }
    m_requests.push_back(comm::ireduce_scatter_v(m_space, m_comm, gradients(b), target(b),
                                                 m_layout.counts_within(range.begin, range.end)));
  }

  ExecutionSpace m_space;
  comm::Communicator m_comm;
  const comm::NodeGroups* m_node_groups;
  const store_type& m_store;
  std::vector<GradientBucket> m_buckets;
  std::vector<std::vector<std::size_t>> m_unit_buckets;  // the buckets each unit's gradients fall in
  ShardLayout m_layout;
  bool m_scatter, m_overlap;
  GradientPrecision m_precision;
  MemoryLedger& m_ledger;
  EventLog& m_log;
  flat_view m_shard;
  bool m_armed = false;
  std::size_t m_next = 0;                                 // the next bucket to post
  std::vector<std::size_t> m_waiting;                     // per bucket: owning units whose backward is still to come
  std::vector<comm::Request> m_requests;                  // posted buckets, in order
  std::vector<PackedGradients<ExecutionSpace>> m_packed;  // 16-bit precision: the posted buckets' buffers
};

}  // namespace trident::data_parallel
