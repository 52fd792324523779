#pragma once
// Data parallelism over one group of ranks, for any model held in a ParameterStore whose
// forward and backward call unit hooks (see UnitPlan): plain data parallelism with bucketed,
// overlapped gradient all-reduce (PyTorch DDP), and ZeRO stages 1-3 (DeepSpeed, FSDP).
//
// Every rank computes its rows of the global batch; the model's backward already scales by
// 1/(global tokens), so reductions are sums and the step is the one-rank step on the global
// batch, up to the order of floating-point sums. A driver calls, per step:
//   begin_step();
//   for each micro-batch: begin_micro_batch(last); forward; backward   (hooks call in here)
//   auto g = finish_gradients(local_loss_sum);   // global loss and gradient norm
//   scale_gradients(clip coefficient);            // optional
//   step(step, lr);                               // AdamW on this rank's range
//
// What each rank holds between steps (fp32, Ψ parameters, N ranks):
//   stage 0: parameters, gradients, both AdamW moments: 16Ψ bytes;
//   stage 1: parameters, gradients, moments of its shard: 8Ψ + 8Ψ/N, plus a 4Ψ/N gradient
//            shard the reduce-scatter writes and the parameter all-gather sends;
//   stage 2: parameters, gradient shard, moment shard: 4Ψ + 12Ψ/N (the full gradient buffer
//            exists only from begin_step() until the reduction is done);
//   stage 3: parameter, gradient and moment shards: 16Ψ/N (plus, during forward and backward,
//            the gathered parameters and gradients of at most a few units; under a pipeline,
//            all of them for the step, gather_for_step()).
// memory() counts it all, and the activations the driver reports.

#include <trident/comm/agreement.hpp>
#include <trident/comm/allgather.hpp>
#include <trident/comm/allreduce.hpp>
#include <trident/comm/broadcast.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/comm/hierarchical_allreduce.hpp>
#include <trident/comm/point_to_point.hpp>
#include <trident/core/compat.hpp>
#include <trident/core/error.hpp>
#include <trident/core/memory_accounting.hpp>
#include <trident/core/parameter_store.hpp>
#include <trident/core/profiling.hpp>
#include <trident/data_parallel/bucket_reducer.hpp>
#include <trident/data_parallel/buckets.hpp>
#include <trident/data_parallel/events.hpp>
#include <trident/data_parallel/replica_check.hpp>
#include <trident/data_parallel/settings.hpp>
#include <trident/data_parallel/shard_layout.hpp>
#include <trident/data_parallel/sharded_adamw.hpp>
#include <trident/data_parallel/unit_gatherer.hpp>
#include <trident/data_parallel/unit_gradients.hpp>
#include <trident/data_parallel/unit_plan.hpp>
#include <trident/optim/adamw.hpp>
#include <trident/optim/clip.hpp>

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace trident::data_parallel {

// The step's loss and gradient size over the whole group (one all-reduce of both).
struct GradientSummary {
  double loss_sum = 0;        // sum of the per-token losses of the global batch
  double sum_of_squares = 0;  // of the full reduced gradient
};

template <class Scalar, class ExecutionSpace>
class DataParallel {
 public:
  using memory_space = typename ExecutionSpace::memory_space;
  using store_type = ParameterStore<Scalar, memory_space>;
  using flat_view = typename store_type::flat_view;

  // Collective over `comm`. Checks, on every rank together, the settings and that every rank
  // holds the same model and settings (and `context`: the driver's own settings, as text);
  // gives every rank rank 0's parameter values, then keeps what this rank's stage holds and
  // releases the rest of the store's buffers. `store` must outlive this object and is left in
  // its hands.
  DataParallel(const ExecutionSpace& space, comm::Communicator comm, store_type& store, UnitPlan plan,
               const optim::AdamWSettings& adamw, const DataParallelSettings& settings, const std::string& context = "")
      : m_space(space),
        m_comm(std::move(comm)),
        m_store(store),
        m_plan(std::move(plan)),
        m_settings(settings),
        m_log(settings.record_events) {
    ScopedRegion region("trident::data_parallel::DataParallel");
    comm::agree_on_failure(m_comm, "trident::data_parallel::DataParallel: checking the settings", [&] {
      m_settings.validate();
      require_argument(static_cast<std::int64_t>(m_store.values().extent(0)) == m_store.size(),
                       "trident::data_parallel::DataParallel: the store must hold its full parameters to start");
    });
    check_replicas_match(m_comm, m_store, m_settings.describe() + (context.empty() ? "" : " " + context));
    m_layout = ShardLayout(m_store.size(), m_comm.size());
    comm::broadcast(m_space, m_comm, m_store.values(), 0);
    const int rank = m_comm.rank();
    const std::int64_t begin = stage() == 0 ? 0 : m_layout.begin(rank);
    const std::int64_t end = stage() == 0 ? m_store.size() : m_layout.end(rank);
    m_adamw.emplace(m_store.tensors(), begin, end, adamw, m_ledger);
    const auto full_bytes = static_cast<std::int64_t>(m_store.size() * sizeof(Scalar));
    const auto shard_elements = static_cast<std::size_t>(end - begin);
    if (stage() >= 1) {
      const auto category = stage() == 1 ? MemoryCategory::communication : MemoryCategory::gradients;
      m_shard_grads =
          TrackedView<flat_view>(m_ledger, category, flat_view("trident::data_parallel::grad_shard", shard_elements));
    }
    if (stage() <= 2) m_ledger.add(MemoryCategory::parameters, full_bytes);
    if (stage() <= 1) m_ledger.add(MemoryCategory::gradients, full_bytes);
    if (stage() >= 2) m_store.set_grads(flat_view());
    if (stage() == 0) m_node_groups = choose_node_groups();
    if (stage() <= 2) {
      m_reducer = std::make_unique<BucketReducer<Scalar, ExecutionSpace>>(
          m_space, m_comm, m_store,
          make_gradient_buckets(m_store.tensors(), m_plan, m_settings.bucket_bytes(), sizeof(Scalar)),
          m_plan.unit_count(), m_layout, stage() >= 1, m_settings.overlap, m_settings.gradient_precision, m_ledger,
          m_log, m_node_groups.get());
    } else {
      flat_view shard(Kokkos::view_alloc(Kokkos::WithoutInitializing, "trident::data_parallel::parameter_shard"),
                      shard_elements);
      Kokkos::deep_copy(m_space, shard, Kokkos::subview(m_store.values(), std::make_pair(begin, end)));
      compat::fence(m_space, "trident::data_parallel::DataParallel::shard_parameters");
      m_shard_values = TrackedView<flat_view>(m_ledger, MemoryCategory::parameters, std::move(shard));
      m_store.set_values(flat_view());
      m_gatherer = std::make_unique<UnitGatherer<Scalar, ExecutionSpace>>(m_space, m_comm, m_store, m_plan, m_layout,
                                                                          m_shard_values.view(), m_ledger, m_log);
      m_unit_grads = std::make_unique<UnitGradients<Scalar, ExecutionSpace>>(
          m_space, m_comm, m_store, m_plan, m_layout, m_shard_grads.view(), m_settings.gradient_precision, m_ledger,
          m_log);
    }
    m_ledger.reset_peaks();
  }

  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  int stage() const { return m_settings.zero_stage; }
  const DataParallelSettings& settings() const { return m_settings; }
  const comm::Communicator& communicator() const { return m_comm; }
  // The node split stage 0 all-reduces through, in two levels; null when it reduces flat.
  const comm::NodeGroups* node_groups() const { return m_node_groups.get(); }
  const ShardLayout& layout() const { return m_layout; }
  const UnitPlan& plan() const { return m_plan; }
  // Stages 0-2 (empty for stage 3, which reduces unit by unit).
  std::vector<GradientBucket> buckets() const {
    return m_reducer ? m_reducer->buckets() : std::vector<GradientBucket>();
  }
  MemoryLedger& memory() { return m_ledger; }
  const MemoryLedger& memory() const { return m_ledger; }
  // This step's timeline (when settings().record_events) and blocked time.
  const std::vector<Event>& events() const { return m_log.events(); }
  const CommunicationTimes& times() const { return m_log.times(); }

  void begin_step() {
    ScopedRegion region("trident::data_parallel::begin_step");
    m_log.begin_step();
    if (stage() == 2) {
      m_full_grads =
          TrackedView<flat_view>(m_ledger, MemoryCategory::gradients,
                                 flat_view("trident::data_parallel::grads", static_cast<std::size_t>(m_store.size())));
      m_store.set_grads(m_full_grads.view());
    } else if (stage() <= 1) {
      Kokkos::deep_copy(m_space, m_store.grads(), Scalar(0));
    }
    if (stage() <= 2) {
      m_reducer->begin_step(m_shard_grads.view());
    } else {
      Kokkos::deep_copy(m_space, m_shard_grads.view(), Scalar(0));
      m_gatherer->release_all();
    }
  }

  // ZeRO-3 under a pipeline, whose schedule interleaves the micro-batches' forwards and
  // backwards: after begin_step, gathers every unit's parameters and gives every unit a zeroed
  // gradient buffer, all held until finish_gradients reduce-scatters them; the model then runs
  // without hooks. Gathering each unit once per step instead of twice per micro-batch is
  // FSDP's choice for pipelines (no resharding after forward): during the step the parameters
  // and gradients are whole, between steps only the shards remain.
  void gather_for_step() {
    require(stage() == 3, "trident::data_parallel::gather_for_step: only ZeRO-3 gathers (the stage is ", stage(), ")");
    ScopedRegion region("trident::data_parallel::gather_for_step");
    for (int unit = 0; unit < m_plan.unit_count(); ++unit) m_gatherer->prefetch(unit);
    for (int unit = 0; unit < m_plan.unit_count(); ++unit) {
      m_gatherer->acquire(unit);
      m_unit_grads->prepare(unit);
    }
  }

  // `last`: the step's last micro-batch, whose backward reduces the gradients (stages 0-2).
  void begin_micro_batch(bool last) {
    m_log.begin_micro_batch();
    if (m_reducer) m_reducer->begin_micro_batch(last);
  }

  // The model's hooks.
  void before_forward(int unit) {
    if (!m_gatherer) return m_reducer->progress();
    if (unit == 0) m_gatherer->release_all();  // left from a forward without backward
    if (unit > 0) m_gatherer->release(unit - 1);
    m_gatherer->prefetch(unit);
    if (m_settings.overlap && unit + 1 < m_plan.unit_count()) m_gatherer->prefetch(unit + 1);
    m_gatherer->acquire(unit);
    m_unit_grads->progress();
  }
  void before_backward(int unit) {
    if (!m_gatherer) return m_reducer->progress();
    m_gatherer->prefetch(unit);  // the last unit is still held from its forward
    if (m_settings.overlap && unit > 0) m_gatherer->prefetch(unit - 1);
    m_gatherer->acquire(unit);
    m_unit_grads->prepare(unit);
    m_unit_grads->progress();
  }
  void after_backward(int unit) {
    m_log.record(EventKind::backward_done, unit);
    if (!m_gatherer) return m_reducer->after_backward(unit);
    m_unit_grads->reduce(unit);
    m_gatherer->release(unit);
    if (m_settings.overlap) {
      m_unit_grads->progress();
    } else {
      m_unit_grads->finish();
    }
  }

  // Completes the gradient reduction and returns the global loss sum and the squared norm of
  // the full reduced gradient, computed from this rank's range with one all-reduce. `counted`
  // (default: every tensor) picks the tensors the norm includes: under tensor or pipeline
  // parallelism the store is a part of the model, the caller sums the norms over the other
  // groups and counts a tensor several ranks hold (replicated over tp, a tied copy) once.
  GradientSummary finish_gradients(double local_loss_sum,
                                   const std::function<bool(const ParameterInfo&)>& counted = {}) {
    ScopedRegion region("trident::data_parallel::finish_gradients");
    if (m_reducer) {
      m_reducer->finish();
      if (stage() == 2) {
        m_store.set_grads(flat_view());
        m_full_grads.reset();
      }
    } else {
      // Units whose gradients are still whole (all of them after gather_for_step) reduce now.
      for (int unit = 0; unit < m_plan.unit_count(); ++unit) m_unit_grads->reduce(unit);
      m_unit_grads->finish();
      m_unit_grads->discard();
      m_gatherer->release_all();
    }
    const auto start = EventLog::clock::now();
    Kokkos::View<double*, Kokkos::HostSpace> sums("trident::data_parallel::loss_and_norm", 2);
    sums(0) = local_loss_sum;
    sums(1) = own_sum_of_squares(counted);
    comm::allreduce(Kokkos::DefaultHostExecutionSpace(), m_comm, sums);
    m_log.times().collective_seconds += EventLog::seconds_since(start);
    return {sums(0), sums(1)};
  }

  // Multiplies the reduced gradients by `factor` (gradient clipping).
  void scale_gradients(double factor) {
    if (stage() == 0) {
      optim::scale_in_place(m_space, m_store.grads(), factor);
    } else {
      optim::scale_in_place(m_space, m_shard_grads.view(), factor);
    }
  }

  // AdamW step `step` (from 1) on this rank's range; ZeRO-1/2 then all-gather the parameters.
  void step(std::int64_t step, double lr) {
    ScopedRegion region("trident::data_parallel::step");
    if (stage() == 0) {
      m_adamw->step(m_space, m_store.values(), m_store.grads(), step, lr);
    } else if (stage() == 3) {
      m_adamw->step(m_space, m_shard_values.view(), m_shard_grads.view(), step, lr);
    } else {
      auto mine = Kokkos::subview(m_store.values(), std::make_pair(m_adamw->begin(), m_adamw->end()));
      m_adamw->step(m_space, mine, m_shard_grads.view(), step, lr);
      // The gradient shard is spent: it carries the updated shard (MPI forbids sending from the
      // buffer it gathers into).
      Kokkos::deep_copy(m_space, m_shard_grads.view(), mine);
      const auto start = EventLog::clock::now();
      comm::allgatherv(m_space, m_comm, m_shard_grads.view(), m_store.values(),
                       m_layout.counts_within(0, m_store.size()));
      m_log.times().collective_seconds += EventLog::seconds_since(start);
    }
    compat::fence(m_space, "trident::data_parallel::step");
  }

  // ---- Whole-model state, for checkpoints and tests (collective) ----

  // Every rank gets the full parameters.
  flat_view full_values() {
    ScopedRegion region("trident::data_parallel::full_values");
    flat_view full("trident::data_parallel::full_values", static_cast<std::size_t>(m_store.size()));
    if (stage() <= 2) {
      Kokkos::deep_copy(m_space, full, m_store.values());
    } else {
      comm::allgatherv(m_space, m_comm, m_shard_values.view(), full, m_layout.counts_within(0, m_store.size()));
    }
    compat::fence(m_space, "trident::data_parallel::full_values");
    return full;
  }

  // This rank's range [begin, end) of the flat buffers, with its parameter values and AdamW
  // moments over it (views of end - begin elements). The ranks' ranges tile the buffers, so
  // together they write a one-rank checkpoint without gathering it; under ZeRO-0 every rank
  // holds everything and offers the range ZeRO would give it.
  struct OwnedState {
    std::int64_t begin = 0, end = 0;
    flat_view values, exp_avg, exp_avg_sq;
  };
  OwnedState owned_state() const {
    OwnedState state;
    state.begin = m_layout.begin(m_comm.rank());
    state.end = m_layout.end(m_comm.rank());
    state.values =
        stage() <= 2 ? flat_view(m_store.values(), std::make_pair(state.begin, state.end)) : m_shard_values.view();
    const auto moments = std::make_pair(state.begin - m_adamw->begin(), state.end - m_adamw->begin());
    state.exp_avg = flat_view(m_adamw->exp_avg(), moments);
    state.exp_avg_sq = flat_view(m_adamw->exp_avg_sq(), moments);
    return state;
  }

  // The inverse of owned_state(): every rank passes its range of the parameters and AdamW
  // moments (buffers of its own, e.g. just read from a checkpoint) and the engine rebuilds
  // what its stage holds whole from the ranks' ranges (collective).
  void load_owned_state(const flat_view& values, const flat_view& exp_avg, const flat_view& exp_avg_sq) {
    ScopedRegion region("trident::data_parallel::load_owned_state");
    const int rank = m_comm.rank();
    for (const auto* part : {&values, &exp_avg, &exp_avg_sq})
      require_argument(static_cast<std::int64_t>(part->extent(0)) == m_layout.size(rank),
                       "trident::data_parallel::load_owned_state: rank ", rank, " owns ", m_layout.size(rank),
                       " elements, a view holds ", part->extent(0));
    const auto counts = m_layout.counts_within(0, m_store.size());
    if (stage() == 3) {
      m_gatherer->release_all();
      Kokkos::deep_copy(m_space, m_shard_values.view(), values);
    } else {
      comm::allgatherv(m_space, m_comm, values, m_store.values(), counts);
    }
    if (stage() == 0) {
      comm::allgatherv(m_space, m_comm, exp_avg, m_adamw->exp_avg(), counts);
      comm::allgatherv(m_space, m_comm, exp_avg_sq, m_adamw->exp_avg_sq(), counts);
    } else {
      Kokkos::deep_copy(m_space, m_adamw->exp_avg(), exp_avg);
      Kokkos::deep_copy(m_space, m_adamw->exp_avg_sq(), exp_avg_sq);
    }
    compat::fence(m_space, "trident::data_parallel::load_owned_state");
  }

 private:
  // Collective: the group's node split when its all-reduce goes in two levels.
  std::unique_ptr<comm::NodeGroups> choose_node_groups() const {
    if (m_settings.reduction == Reduction::flat || m_comm.size() == 1) return nullptr;
    auto groups = std::make_unique<comm::NodeGroups>(m_comm);
    if (m_settings.reduction == Reduction::automatic) return groups->worthwhile() ? std::move(groups) : nullptr;
    // Every rank sees the whole topology, so all refuse together.
    require_argument(groups->uniform(), "trident::data_parallel::DataParallel: the hierarchical reduction needs the ",
                     "same number of ranks on every node, but the group spans ", groups->describe());
    return groups;
  }

  // The squared norm of this rank's range of the reduced gradients, of the `counted` tensors,
  // in one pass over the range (neighbouring counted tensors merged into one run).
  double own_sum_of_squares(const std::function<bool(const ParameterInfo&)>& counted) const {
    const flat_view own = own_gradients();
    if (!counted) return optim::sum_of_squares(m_space, own);
    const std::int64_t begin = m_layout.begin(m_comm.rank()), end = m_layout.end(m_comm.rank());
    std::vector<std::pair<std::int64_t, std::int64_t>> runs;
    for (const auto& t : m_store.tensors()) {
      const std::int64_t lo = std::max(begin, t.offset), hi = std::min(end, t.offset + t.size());
      if (lo >= hi || !counted(t)) continue;
      if (!runs.empty() && runs.back().second == lo - begin) {
        runs.back().second = hi - begin;
      } else {
        runs.emplace_back(lo - begin, hi - begin);
      }
    }
    return runs.empty() ? 0.0 : optim::sum_of_squares(m_space, own, runs);
  }

  // The reduced gradients of this rank's range (for the norm).
  flat_view own_gradients() const {
    if (stage() >= 1) return m_shard_grads.view();
    const std::int64_t begin = m_layout.begin(m_comm.rank()), end = m_layout.end(m_comm.rank());
    return flat_view(m_store.grads(), std::make_pair(begin, end));
  }

  ExecutionSpace m_space;
  comm::Communicator m_comm;
  store_type& m_store;
  UnitPlan m_plan;
  DataParallelSettings m_settings;
  MemoryLedger m_ledger;  // before every tracked buffer: they report to it when freed
  EventLog m_log;
  ShardLayout m_layout;
  std::optional<ShardedAdamW<Scalar, memory_space>> m_adamw;
  TrackedView<flat_view> m_shard_values;                                // stage 3
  TrackedView<flat_view> m_shard_grads;                                 // stages 1-3
  TrackedView<flat_view> m_full_grads;                                  // stage 2, during a step
  std::unique_ptr<comm::NodeGroups> m_node_groups;                      // stage 0 in two levels
  std::unique_ptr<BucketReducer<Scalar, ExecutionSpace>> m_reducer;     // stages 0-2
  std::unique_ptr<UnitGatherer<Scalar, ExecutionSpace>> m_gatherer;     // stage 3
  std::unique_ptr<UnitGradients<Scalar, ExecutionSpace>> m_unit_grads;  // stage 3
};

}  // namespace trident::data_parallel
