#pragma once
// The predicted step time and memory per rank of one layout of a model on a machine.
//
// Time: every pipeline stage's forward, input-gradient and weight-gradient passes are the sums
// of its layers' GEMMs, attention, elementwise kernels and tensor-parallel collectives
// (layer_costs.hpp priced by machine.hpp); the schedule is replayed with these costs and the
// point-to-point transfers (pipeline::simulate), or for a quick ranking bounded by its fill and
// drain; then the data-parallel reduction (hidden behind backward when a run without a pipeline
// overlaps it), the optimizer and the step's fixed agreements. Ranks that outnumber their node's
// cores replay the schedule on shared cores (pipeline/simulate_shared.hpp): balanced over all
// of them by the host, or, where the launcher bound the ranks (machine.binding), each core shared
// by the ranks bound to it, which are the pipeline stages the layout's mesh puts there. Where
// the machine knows its last-level cache, the GEMMs are priced by the share of the node's memory
// (below) that the cache cannot hold: estimated once for the memory, then at that share.
//
// Memory: parameters, gradients and optimizer state by ZeRO stage; every micro-batch's kept
// activations times the most micro-batches the schedule keeps in flight in each chunk of the
// rank (as pipeline::peak_activations counts them), plus the scratch they share; the batch.

#include <trident/core/error.hpp>
#include <trident/data_parallel/settings.hpp>
#include <trident/mesh/mesh_layout.hpp>
#include <trident/nn/spec.hpp>
#include <trident/pipeline/activation_memory.hpp>
#include <trident/pipeline/partition.hpp>
#include <trident/pipeline/schedules.hpp>
#include <trident/pipeline/simulate.hpp>
#include <trident/pipeline/simulate_shared.hpp>
#include <trident/plan/layer_costs.hpp>
#include <trident/plan/machine.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace trident::plan {

// One layout: what train::Layout holds, with the micro-batch and the stage cuts always explicit.
struct Candidate {
  int dp = 1, tp = 1, pp = 1;
  bool sequence_parallel = false;
  std::string schedule = "1f1b";
  int virtual_stages = 1;
  std::int64_t micro_batch = 1;  // samples
  int zero_stage = 0;
  bool recompute = false;
  std::vector<int> stage_layers;         // layers per stage; empty: the cut estimate() balances
  MeshOrder order = default_mesh_order;  // how the trainer arranges the ranks (which share cores)

  int stages() const { return pp * virtual_stages; }
  std::string describe() const {
    std::ostringstream out;
    out << "dp " << dp << " x tp " << tp << " x pp " << pp;
    if (pp > 1) out << " " << schedule << (virtual_stages > 1 ? " v" + std::to_string(virtual_stages) : "");
    out << ", mb " << micro_batch << ", ZeRO-" << zero_stage;
    if (sequence_parallel) out << ", sp";
    if (recompute) out << ", recompute";
    if (order != default_mesh_order) out << ", mesh order " << to_string(order);
    return out.str();
  }
  // "3,2,2": the layers of each stage.
  std::string describe_cuts() const {
    std::string text;
    for (std::size_t s = 0; s < stage_layers.size(); ++s) text += (s ? "," : "") + std::to_string(stage_layers[s]);
    return text;
  }
};

// Where the time of a step goes (seconds) and the memory of the fullest rank (bytes).
struct Estimate {
  double step_seconds = 0;
  double compute_seconds = 0;      // the busiest rank's passes, without collectives
  double bubble_seconds = 0;       // that rank's idle time in the pipeline
  double tensor_comm_seconds = 0;  // the busiest rank's tensor-parallel collectives
  double pipeline_comm_seconds = 0;
  double data_parallel_seconds = 0;  // the reduction's part not hidden behind backward
  double optimizer_seconds = 0;
  double overhead_seconds = 0;
  double flops = 0;  // model FLOPs of the whole step, over all ranks (recomputation counted)

  double parameter_bytes = 0, gradient_bytes = 0, optimizer_bytes = 0, activation_bytes = 0, other_bytes = 0;
  double peak_bytes = 0;
  int peak_rank = 0;           // the pipeline rank it is on
  double mean_rank_bytes = 0;  // over the ranks
  double cold_share = 0;       // of the GEMMs' operands, read from memory (Machine::cold_share)
  bool fits = true;
  std::vector<int> stage_layers;  // the cut used

  double flops_per_rank_per_s(int ranks) const { return flops / step_seconds / ranks; }
};

// Whether `tp` splits every parallel layer of `spec` evenly (Model's own rule).
inline bool tensor_parallel_fits(const nn::ModelSpec& spec, int tp) {
  if (tp == 1) return true;
  bool fits = true;
  const auto check = [&](const nn::LayerSpec& layer, auto&& self) -> void {
    switch (layer.kind) {
      case nn::LayerKind::linear:
        if (layer.parallel == nn::Parallel::column) fits &= layer.out % (tp * layer.parts) == 0;
        if (layer.parallel == nn::Parallel::row) fits &= layer.in % tp == 0;
        break;
      case nn::LayerKind::causal_self_attention:
        fits &= layer.heads % tp == 0;
        break;
      case nn::LayerKind::embedding:
      case nn::LayerKind::tied_head:
        fits &= layer.vocab % tp == 0;
        break;
      default:
        break;
    }
    for (const auto& inner : layer.inner) self(inner, self);
  };
  for (const auto& layer : spec.layers) check(layer, check);
  return fits;
}

namespace detail {

struct LayerTimes {
  double forward = 0, backward_input = 0, backward_weight = 0;  // seconds, collectives included
  double tensor_comm_forward = 0, tensor_comm_backward = 0;
};

inline double collectives_seconds(const std::vector<Collective>& list, const Machine& machine, int tp, int tp_nodes) {
  double seconds = 0;
  for (const Collective& c : list) seconds += machine.collective_seconds(c.kind, tp, c.bytes, tp_nodes);
  return seconds;
}

inline LayerTimes layer_times(const LayerCost& cost, const Machine& machine, int tp, int tp_nodes, double cold_share) {
  LayerTimes t;
  for (const Gemm& g : cost.forward.gemms) t.forward += machine.gemm_seconds(g, cold_share);
  t.forward += machine.attention_seconds(cost.forward.attention_flops) + machine.kernels_seconds(cost.forward.kernels);
  for (const Gemm& g : cost.backward.gemms)
    (g.weight ? t.backward_weight : t.backward_input) += machine.gemm_seconds(g, cold_share);
  t.backward_input +=
      machine.attention_seconds(cost.backward.attention_flops) + machine.kernels_seconds(cost.backward.kernels);
  t.tensor_comm_forward = collectives_seconds(cost.forward.collectives, machine, tp, tp_nodes);
  t.tensor_comm_backward = collectives_seconds(cost.backward.collectives, machine, tp, tp_nodes);
  t.forward += t.tensor_comm_forward;
  t.backward_input += t.tensor_comm_backward;
  return t;
}

// The nodes a group of `size` ranks at `stride` spans, ranks numbered node by node.
inline int nodes_spanned(int size, int stride, int devices_per_node) {
  if (size <= 1) return 1;
  const long span = static_cast<long>(size - 1) * stride + 1;
  return static_cast<int>(std::min<long>(size, (span + devices_per_node - 1) / devices_per_node));
}

}  // namespace detail

// What estimate() needs besides the layout: the model, the global batch in samples, the
// bytes per row of the batch each rank receives (inputs and targets; 0 for none), and the
// bytes a gradient element is reduced in between replicas (0: the parameters' own).
struct Workload {
  nn::ModelSpec spec;
  std::int64_t global_batch = 1;
  double batch_bytes_per_row = 0;
  double reduced_gradient_bytes = 0;
  // Bytes of an activation value: 2 trains in mixed precision (bf16, fp16 activations; the
  // parameters, gradients and optimizer stay in the compute type); 0: the runtime's.
  double activation_bytes = 0;
  // Bytes of a parameter, gradient and optimizer value, and of what mixed precision keeps in
  // the compute type (nn/types.hpp: 8 for double); 0: the runtime's.
  double compute_bytes = 0;
  // The data-parallel engine's gradient bucket cap, in bytes of the compute type.
  double bucket_bytes = static_cast<double>(data_parallel::DataParallelSettings{}.bucket_bytes());
};

namespace detail {

// estimate() with `cold_share` of the GEMMs' operands read from memory.
inline Estimate estimate_at_cold_share(const Workload& work, const Candidate& layout, const Machine& machine,
                                       bool simulate_schedule, double cold_share) {
  const nn::ModelSpec& spec = work.spec;
  const char* op = "trident::plan::estimate";
  const std::int64_t seq = nn::rows_per_sample(spec);
  const int stages = layout.stages();
  const int layers = static_cast<int>(spec.layers.size());
  require_argument(layout.dp >= 1 && layout.tp >= 1 && layout.pp >= 1 && layout.micro_batch >= 1, op,
                   ": dp, tp, pp and the micro-batch must be >= 1");
  require_argument(work.global_batch % layout.dp == 0 && (work.global_batch / layout.dp) % layout.micro_batch == 0, op,
                   ": a global batch of ", work.global_batch, " samples does not split into dp ", layout.dp,
                   " replicas of micro-batches of ", layout.micro_batch);
  require_argument(stages <= layers, op, ": ", stages, " stages for ", layers, " layers");
  const int m = static_cast<int>(work.global_batch / layout.dp / layout.micro_batch);
  const int dpn = machine.devices_per_node;
  const int tp_nodes = detail::nodes_spanned(layout.tp, 1, dpn);
  const bool pp_across = layout.tp * layout.pp > dpn;
  const int dp_nodes = detail::nodes_spanned(layout.dp, layout.tp * layout.pp, dpn);
  // the data-parallel groups that share a node's link: one per rank of a replica on the node
  const int dp_sharing = dp_nodes > 1 ? std::max(1, std::min(dpn, layout.tp * layout.pp)) : 1;

  CostShape shape;
  shape.samples = layout.micro_batch;
  shape.seq = seq;
  shape.tp = layout.tp;
  shape.sequence_parallel = layout.sequence_parallel;
  const double compute_bytes = work.compute_bytes > 0 ? work.compute_bytes : machine.element_bytes();
  shape.element_bytes = work.activation_bytes > 0 ? work.activation_bytes : compute_bytes;
  shape.compute_bytes = compute_bytes;
  shape.attention_slots = machine.attention_slots;
  if (machine.runtime == Runtime::megatron) {  // whole score squares, masked; dropout
    shape.causal_block = static_cast<int>(seq);
    shape.dropout = true;
    shape.residual_gradient_joined = false;
  }
  const std::vector<LayerCost> costs = layer_costs(spec, shape);
  std::vector<detail::LayerTimes> times;
  for (const auto& c : costs) times.push_back(detail::layer_times(c, machine, layout.tp, tp_nodes, cold_share));

  // The cut: the layout's, or the one that balances forward + backward (+ recomputation).
  Estimate result;
  std::vector<pipeline::LayerRange> ranges;
  if (!layout.stage_layers.empty()) {
    require_argument(static_cast<int>(layout.stage_layers.size()) == stages, op, ": ", layout.stage_layers.size(),
                     " stage_layers entries for ", stages, " stages");
    int first = 0;
    for (int count : layout.stage_layers) ranges.push_back({first, first += count});
    require_argument(first == layers, op, ": stage_layers add up to ", first, ", not ", layers);
  } else {
    std::vector<double> balance;
    for (std::size_t i = 0; i < times.size(); ++i)
      balance.push_back(times[i].forward * (layout.recompute ? 2 : 1) + times[i].backward_input +
                        times[i].backward_weight);
    ranges = pipeline::partition_layers(balance, stages).stages;
  }
  for (const auto& r : ranges) result.stage_layers.push_back(r.layers());

  // Per stage: pass times, parameters, activations.
  struct StageTotals {
    double forward = 0, backward_input = 0, backward_weight = 0, tensor_comm = 0, compute = 0;
    double parameters = 0, kept = 0, input_bytes = 0, output_bytes = 0;
    std::map<std::string, double> shared;
    // nn::Model builds a micro-batch's slot layer by layer; a layer whose scratch an earlier state
    // already owns (one of the same structure, or the same layer in an earlier slot) allocates
    // its own before taking the owner's, so while a slot is built it can hold one scratch more
    // than afterwards: the excess over kept + shared, for the first slot and for later ones.
    double first_slot_excess = 0, later_slot_excess = 0;
  };
  std::vector<StageTotals> stage(static_cast<std::size_t>(stages));
  const std::vector<TiedTableSize> tied_tables = tied_table_sizes(spec);
  for (int s = 0; s < stages; ++s) {
    StageTotals& st = stage[static_cast<std::size_t>(s)];
    const auto& r = ranges[static_cast<std::size_t>(s)];
    const bool last_stage = s + 1 == stages;
    double built = r.first > 0 ? costs[static_cast<std::size_t>(r.first - 1)].output_bytes : 0.0;  // the input copy
    double registered = 0, building_peak = 0;
    std::vector<std::pair<double, double>> later;  // per layer: kept before its state, its scratch
    std::set<std::string> structures;
    for (int i = r.first; i < r.end; ++i) {
      const auto& c = costs[static_cast<std::size_t>(i)];
      const auto& t = times[static_cast<std::size_t>(i)];
      const bool recomputed = layout.recompute && !(last_stage && i + 1 == r.end);
      if (machine.runtime == Runtime::trident) {
        double scratch = 0;
        for (const auto& entry : c.trident.shared) scratch += entry.second;
        const bool seen = !structures.insert(c.trident.structure).second;
        const double state = c.trident.kept - c.trident.output;
        if (recomputed) {
          if (!seen) registered += state + scratch;  // the workspace
        } else {
          if (seen) building_peak = std::max(building_peak, built + state + registered + scratch);
          if (!seen) registered += scratch;
          later.push_back({built + state, scratch});
          built += state;
        }
        built += c.trident.output;
      }
      st.forward += t.forward;
      st.backward_input += t.backward_input + (recomputed ? t.forward : 0.0);
      st.backward_weight += t.backward_weight;
      st.tensor_comm += t.tensor_comm_forward * (recomputed ? 2 : 1) + t.tensor_comm_backward;
      st.parameters += c.parameters;
      double kept = machine.runtime == Runtime::trident ? c.trident.kept : c.megatron;
      if (recomputed) {
        // the output stays; the rest is the one workspace all micro-batches share while recomputing
        const double rest = kept - c.trident.output;
        kept = machine.runtime == Runtime::trident ? c.trident.output : c.output_bytes;
        if (machine.runtime == Runtime::trident) {
          st.shared["workspace " + c.what] = std::max(st.shared["workspace " + c.what], rest);
        } else {
          st.shared["workspace"] = std::max(st.shared["workspace"], c.megatron);
        }
      }
      st.kept += kept;
      if (machine.runtime == Runtime::trident)
        for (const auto& [key, bytes] : c.trident.shared) st.shared[key] = std::max(st.shared[key], bytes);
    }
    st.parameters += tied_table_elements(tied_tables, r.first, r.end, layout.tp);
    if (machine.runtime == Runtime::trident) {
      st.first_slot_excess = std::max(0.0, building_peak - built - registered);
      for (const auto& [before, scratch] : later)
        st.later_slot_excess = std::max(st.later_slot_excess, before + scratch - built);
      // A zero-bubble slot copies its output gradients for the weight pass as its input pass
      // runs (the last stage's loss gradient is the slot's own).
      if (layout.schedule == "zb" && stages > 1)
        for (int i = r.first; i < r.end - (last_stage ? 1 : 0); ++i) {
          const double deferred = costs[static_cast<std::size_t>(i)].trident.deferred;
          st.kept += deferred;
          st.backward_input += machine.kernel_seconds({"deferred_copy", deferred / shape.element_bytes, 2 * deferred});
        }
    }
    st.compute = st.forward + st.backward_input + st.backward_weight - st.tensor_comm;
    st.output_bytes = costs[static_cast<std::size_t>(r.end - 1)].output_bytes;
    st.input_bytes = r.first > 0 ? costs[static_cast<std::size_t>(r.first - 1)].output_bytes : 0;
    // Boundary gradients inside the stage: two buffers per shape, shared by the micro-batches.
    if (machine.runtime == Runtime::trident) {
      std::map<double, int> boundaries;
      for (int i = r.first; i + 1 < r.end; ++i) ++boundaries[costs[static_cast<std::size_t>(i)].output_bytes];
      for (const auto& [bytes, count] : boundaries)
        st.shared["boundary " + std::to_string(bytes)] = bytes * std::min(count, 2);
    }
  }

  // ---- time ----
  const pipeline::Schedule schedule =
      stages > 1 ? pipeline::make_schedule(layout.schedule, layout.pp, m, layout.virtual_stages) : pipeline::Schedule{};
  const double p2p = layout.pp > 1 ? machine.point_to_point_seconds(stage.front().output_bytes, pp_across) : 0.0;
  std::vector<double> rank_work(static_cast<std::size_t>(layout.pp), 0.0), rank_comm(rank_work),
      rank_compute(rank_work);
  for (int s = 0; s < stages; ++s) {
    const auto& st = stage[static_cast<std::size_t>(s)];
    const auto r = static_cast<std::size_t>(s % layout.pp);
    rank_work[r] += m * (st.forward + st.backward_input + st.backward_weight);
    rank_comm[r] += m * st.tensor_comm;
    rank_compute[r] += m * st.compute;
  }
  const auto busiest =
      static_cast<std::size_t>(std::max_element(rank_work.begin(), rank_work.end()) - rank_work.begin());
  double makespan = rank_work[busiest];
  // More ranks than cores on a node: they share the cores, computing and waiting alike. Bound
  // ranks share only the cores they are bound to (one node running the whole world); the
  // trainer's mesh, in the layout's order, says which pipeline stage each rank runs.
  const int world = layout.dp * layout.tp * layout.pp;
  const int ranks_per_node = std::min(world, machine.devices_per_node);
  const CoreBinding& binding = machine.binding;
  const bool bound = binding.bound() && static_cast<int>(binding.group_of_rank.size()) == world;
  std::vector<pipeline::BoundCores> bound_cores;
  if (bound) {
    for (int group : binding.group_of_rank)
      require_argument(group >= 0 && group < binding.groups(), op, ": the core binding names group ", group, " of ",
                       binding.groups());
    const MeshLayout mesh(layout.dp, layout.tp, layout.pp, layout.order);
    bound_cores.resize(static_cast<std::size_t>(binding.groups()));
    for (int g = 0; g < binding.groups(); ++g) bound_cores[std::size_t(g)].cores = binding.group_cores[std::size_t(g)];
    for (int rank = 0; rank < world; ++rank)
      bound_cores[std::size_t(binding.group_of_rank[std::size_t(rank)])].ranks.push_back(mesh.coords_of(rank).pp);
  }
  // The most ranks a core runs at once.
  const double crowding = bound               ? binding.crowding()
                          : machine.cores > 0 ? static_cast<double>(ranks_per_node) / machine.cores
                                              : 1.0;
  const bool shared_cores = crowding > 1;
  bool replayed_shared = false;
  if (stages > 1) {
    const std::int64_t actions = static_cast<std::int64_t>(m) * stages * 6;
    if (simulate_schedule && actions <= 2000000) {
      const pipeline::PassCost pass = [&](int rank, const pipeline::Action& a) {
        const auto& st = stage[static_cast<std::size_t>(schedule.stage_of(rank, a))];
        switch (a.type) {
          case pipeline::ActionType::forward:
            return st.forward;
          case pipeline::ActionType::backward:
            return st.backward_input + st.backward_weight;
          case pipeline::ActionType::backward_input:
            return st.backward_input;
          default:
            return st.backward_weight;
        }
      };
      if (shared_cores) {
        // every pipeline rank's copies on the node: its replicas and tensor-parallel peers
        const pipeline::SharedCores sharing{static_cast<double>(machine.cores),
                                            static_cast<double>(ranks_per_node) / layout.pp,
                                            machine.waiting_rank_share.value_or(0.0), bound_cores};
        makespan = pipeline::simulate(schedule, pass, p2p, sharing).makespan;
        replayed_shared = true;
      } else {
        makespan = pipeline::simulate(schedule, pass, p2p).makespan;
      }
    } else {
      double fill = 0;
      for (const auto& st : stage) {
        const double pass =
            layout.schedule == "zb"
                ? std::max({st.forward + st.backward_input - st.backward_weight, st.forward, st.backward_input})
                : st.forward + st.backward_input + st.backward_weight;
        fill = std::max(fill, pass);
      }
      makespan += (layout.pp - 1) * (fill + 2 * p2p);
    }
  }
  result.compute_seconds = rank_compute[busiest];
  result.tensor_comm_seconds = rank_comm[busiest];
  result.pipeline_comm_seconds = layout.pp > 1 ? 2.0 * m * layout.virtual_stages * p2p : 0.0;
  result.bubble_seconds = std::max(0.0, makespan - rank_work[busiest]);

  // Data parallelism and the optimizer, on the rank with the most parameters.
  double rank_parameters = 0;
  std::vector<double> parameters_of_rank(static_cast<std::size_t>(layout.pp), 0.0);
  for (int s = 0; s < stages; ++s)
    parameters_of_rank[static_cast<std::size_t>(s % layout.pp)] += stage[static_cast<std::size_t>(s)].parameters;
  rank_parameters = *std::max_element(parameters_of_rank.begin(), parameters_of_rank.end());
  const double e = compute_bytes;
  const double grad_bytes = rank_parameters * (work.reduced_gradient_bytes > 0 ? work.reduced_gradient_bytes : e);
  const double parameter_bytes = rank_parameters * e;
  // ZeRO-0 all-reduces the gradients, ZeRO-1 and 2 reduce-scatter them (both posted nonblocking,
  // bucket by bucket) and all-gather the updated parameters after the optimizer; ZeRO-3 also
  // gathers the parameters for forward and backward.
  const auto dp_collective = [&](CollectiveKind kind, double bytes, bool nonblocking) {
    return machine.collective_seconds(kind, layout.dp, bytes, dp_nodes, dp_sharing, nonblocking);
  };
  // trident reduces gradients bucket by bucket during the last micro-batch's backward when there is
  // no pipeline. Not on cores that more ranks than one compute on: every rank is in backward at
  // once, so no core is free to run a reduction beside it.
  const bool overlapped = machine.runtime == Runtime::trident && stages == 1 && layout.zero_stage <= 2 && !shared_cores;
  // The buckets as the engine fills them (data_parallel/buckets.hpp): the layers' gradients in
  // backward order up to the cap, each posted once its layers' backward is done and reduced after
  // the one before. What ends after the backward shows; of the rest, the machine's overlap share
  // hides.
  const auto overlapped_reduction = [&](CollectiveKind kind) {
    const auto& range = ranges.front();
    const double wire_bytes = grad_bytes / std::max(rank_parameters, 1.0);  // per parameter
    double backward = 0, finish = 0, total = 0, filled = 0;
    for (int i = range.end - 1; i >= range.first; --i) {
      const auto& t = times[static_cast<std::size_t>(i)];
      const bool recomputed = layout.recompute && i + 1 != range.end;
      backward += t.backward_input + t.backward_weight + (recomputed ? t.forward : 0.0);
      filled += costs[static_cast<std::size_t>(i)].parameters;
      if (filled * e < work.bucket_bytes && i > range.first) continue;
      const double seconds = dp_collective(kind, filled * wire_bytes, true);
      finish = std::max(finish, backward) + seconds;
      total += seconds;
      filled = 0;
    }
    const double after_backward = std::max(finish - backward, 0.0);
    return total - machine.reduction_overlap.value_or(1.0) * (total - after_backward);
  };
  double reduction = 0, after_step = 0;
  if (layout.dp > 1) {
    const CollectiveKind kind = layout.zero_stage == 0 ? CollectiveKind::all_reduce : CollectiveKind::reduce_scatter;
    reduction = overlapped ? overlapped_reduction(kind) : dp_collective(kind, grad_bytes, true);
    if (layout.zero_stage == 1 || layout.zero_stage == 2)
      after_step = dp_collective(CollectiveKind::all_gather, parameter_bytes, false);
    if (layout.zero_stage == 3)
      reduction += (stages > 1 ? 1 : 2 * m) * dp_collective(CollectiveKind::all_gather, parameter_bytes, false);
  }
  reduction += after_step;
  result.data_parallel_seconds = reduction;
  // AdamW on the rank's shard; the gradients zeroed, their norm and the clipping.
  const double shard = layout.zero_stage >= 1 ? rank_parameters / layout.dp : rank_parameters;
  std::vector<Kernel> optimizer = {{"adamw", shard, 7 * 4 * shard},
                                   {"sum_of_squares", shard, e * shard},
                                   {"scale", shard, 2 * e * shard},
                                   {"zero", rank_parameters, e * rank_parameters}};
  // Megatron-LM's fp16 optimizer copies the 16-bit gradients into its fp32 ones and its fp32
  // master weights back into the 16-bit parameters around AdamW.
  if (machine.runtime == Runtime::megatron) optimizer.push_back({"master_copies", shard, 2 * (e + 4) * shard});
  result.optimizer_seconds = machine.kernels_seconds(optimizer);
  result.overhead_seconds = machine.step_overhead_s;
  result.step_seconds = makespan + result.data_parallel_seconds + result.optimizer_seconds + result.overhead_seconds;
  // Shared cores: the optimizer runs on every rank at once. Where the schedule was not replayed on
  // them, a step takes at least the node's whole compute over its cores (ranks that wait in a
  // bubble lend theirs).
  if (replayed_shared) {
    const double optimizer_shared = result.optimizer_seconds * crowding;
    result.step_seconds += optimizer_shared - result.optimizer_seconds;
    result.optimizer_seconds = optimizer_shared;
    result.bubble_seconds = std::max(0.0, makespan - rank_work[busiest] * crowding);
  } else if (shared_cores) {
    // the busiest cores' work: all of the node's, or that of the ranks bound to one group
    double core_work = 0;
    if (bound) {
      for (const pipeline::BoundCores& group : bound_cores) {
        double work = 0;
        for (int r : group.ranks) work += rank_compute[static_cast<std::size_t>(r)] + result.optimizer_seconds;
        core_work = std::max(core_work, work / group.cores);
      }
    } else {
      for (int r = 0; r < layout.pp; ++r)
        core_work += rank_compute[static_cast<std::size_t>(r)] + result.optimizer_seconds;
      core_work *= static_cast<double>(ranks_per_node) / layout.pp / machine.cores;
    }
    const double shared =
        core_work + result.data_parallel_seconds + result.overhead_seconds + result.tensor_comm_seconds;
    if (shared > result.step_seconds) {
      result.bubble_seconds = 0;  // the waits are other ranks' compute
      result.compute_seconds =
          shared - result.data_parallel_seconds - result.overhead_seconds - result.tensor_comm_seconds;
      result.step_seconds = shared;
    }
  }

  // Model FLOPs of the step: every micro-batch of every replica, a recomputed layer's forward twice.
  double flops = 0;
  for (int s = 0; s < stages; ++s) {
    const auto& r = ranges[static_cast<std::size_t>(s)];
    for (int i = r.first; i < r.end; ++i) {
      const auto& c = costs[static_cast<std::size_t>(i)];
      const bool recomputed = layout.recompute && !(s + 1 == stages && i + 1 == r.end);
      flops += c.forward.flops() * (recomputed ? 2 : 1) + c.backward.flops();
    }
  }
  result.flops = flops * layout.tp * m * layout.dp;

  // ---- memory, on each pipeline rank ----
  // A zero-bubble schedule's slots stay taken until their weight pass.
  const auto freed_by = layout.schedule == "zb" ? pipeline::ActivationsFreedBy::backward_weight
                                                : pipeline::ActivationsFreedBy::backward_input;
  // The slots each chunk of each rank keeps (a stage reuses its slots and never frees them).
  const std::vector<std::vector<int>> slots =
      stages > 1 ? pipeline::peak_activations_per_chunk(schedule, freed_by) : std::vector<std::vector<int>>{{1}};
  const double d = layout.dp;
  // ZeRO-3 gathers by top-level layer, one ahead.
  std::vector<double> largest_unit(static_cast<std::size_t>(layout.pp), 0.0), largest_pair(largest_unit);
  for (int s = 0; s < stages; ++s) {
    const auto& range = ranges[static_cast<std::size_t>(s)];
    auto& unit = largest_unit[static_cast<std::size_t>(s % layout.pp)];
    auto& pair = largest_pair[static_cast<std::size_t>(s % layout.pp)];
    for (int i = range.first; i < range.end; ++i) {
      const double here = costs[static_cast<std::size_t>(i)].parameters;
      const double next = i + 1 < range.end ? costs[static_cast<std::size_t>(i + 1)].parameters : 0.0;
      unit = std::max(unit, here);
      pair = std::max(pair, here + next);
    }
  }
  for (int r = 0; r < layout.pp; ++r) {
    const double p = parameters_of_rank[static_cast<std::size_t>(r)];
    double params = 0, grads = 0, optimizer = 0;
    if (machine.runtime == Runtime::trident) {
      params = layout.zero_stage == 3 ? p * e / d : p * e;
      grads = layout.zero_stage <= 1 ? p * e + (layout.zero_stage == 1 ? p * e / d : 0.0) : p * e / d;
      if (layout.zero_stage == 2) grads += p * e;  // the step's full gradients, freed after the reduction
      if (layout.zero_stage == 3 && stages > 1) {  // a pipeline gathers the whole chunk for the step
        params += p * e;
        grads += p * e + p * e / d;         // and reduce-scatters it after: every unit's part in flight
      } else if (layout.zero_stage == 3) {  // a unit gathered and the next prefetched; a unit's gradients
        params += largest_pair[static_cast<std::size_t>(r)] * e;  // written while the one after it is in
        grads += largest_pair[static_cast<std::size_t>(r)] * e +  // flight, with this rank's part of it
                 largest_unit[static_cast<std::size_t>(r)] * e / d;
      }
      optimizer = 2 * p * e / (layout.zero_stage >= 1 ? d : 1.0);
    } else {  // fp16 weights and gradients, fp32 master weights and moments
      params = 2 * p;
      grads = 2 * p;
      optimizer = 12 * p / (layout.zero_stage >= 1 ? d : 1.0);
    }
    // Each chunk is its own model, with its own slots and shared scratch.
    double activations = 0, building = 0, other = 0;
    double transient = 0;  // a kernel's own allocation while it runs, on top of what is kept
    for (int s = r; s < stages; s += layout.pp) {
      const auto& range = ranges[static_cast<std::size_t>(s)];
      for (int i = range.first; i < range.end; ++i)
        transient = std::max(transient, costs[static_cast<std::size_t>(i)].transient_bytes);
      const auto& st = stage[static_cast<std::size_t>(s)];
      const int held = slots[static_cast<std::size_t>(r)][static_cast<std::size_t>(s / layout.pp)];
      activations += held * (st.kept + st.input_bytes);
      for (const auto& entry : st.shared) activations += entry.second;
      building = std::max(building, held > 1 ? st.later_slot_excess : st.first_slot_excess);
      if (stages > 1)  // the executor's transfer buffers, in and out
        other += 2 * (st.input_bytes + (s + 1 < stages ? st.output_bytes : 0.0));
    }
    // A kernel's copies live while its layer runs. ZeRO-3 without a pipeline holds a unit
    // gathered and the next in flight exactly then, so they add to that peak; elsewhere the
    // peak is where a slot is built, beside the larger of the two.
    const bool gathered_units = machine.runtime == Runtime::trident && layout.zero_stage == 3 && stages == 1;
    activations += gathered_units ? building + transient : std::max(building, transient);
    other += work.batch_bytes_per_row * static_cast<double>(work.global_batch * seq);
    const double total = params + grads + optimizer + activations + other;
    result.mean_rank_bytes += total / layout.pp;
    if (total > result.peak_bytes) {
      result.peak_bytes = total;
      result.peak_rank = r;
      result.parameter_bytes = params;
      result.gradient_bytes = grads;
      result.optimizer_bytes = optimizer;
      result.activation_bytes = activations;
      result.other_bytes = other;
    }
  }
  result.fits = machine.memory_bytes <= 0 || result.peak_bytes <= machine.memory_bytes;
  result.cold_share = cold_share;
  return result;
}

}  // namespace detail

// With `simulate`, the pipeline's schedule is replayed; without, its time is the busiest rank's
// work plus a fill and drain of (p - 1) stage passes, which ranks candidates quickly.
// Where the machine's cache is known, the GEMMs are priced by how much of what the node's ranks
// keep (their memory, which the schedule's replay does not change) the cache cannot hold: as
// measured with their operands cached, and with them out of the cache for that share. A cut
// left to the estimate is balanced at those prices.
inline Estimate estimate(const Workload& work, const Candidate& layout, const Machine& machine,
                         bool simulate_schedule = true) {
  double share = 0;
  if (machine.cache_bytes > 0) {
    const Estimate memory = detail::estimate_at_cold_share(work, layout, machine, false, 0.0);
    share = machine.cold_share(memory.mean_rank_bytes,
                               std::min(layout.dp * layout.tp * layout.pp, machine.devices_per_node));
  }
  return detail::estimate_at_cold_share(work, layout, machine, simulate_schedule, share);
}

}  // namespace trident::plan
