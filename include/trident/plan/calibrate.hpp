#pragma once
// Measures the machine a run is on, from inside the run: the ranks of a node time the same
// kernels as many at once as the node has cores for them, so they are measured sharing the
// memory bus and caches as a step shares them, and the times are averaged over the ranks so
// every rank plans with the same numbers.
//
//   - GEMMs at exactly the shapes the planner will ask for (plan::gemm_shapes of the candidate
//     layouts) and with the beta each is called with, through the library's own ops::matmul, in
//     three passes, and the fit over them that prices every shape (gemm_fit.hpp); on a host,
//     every shape once more with its operands out of the last-level cache (read_cache_size.hpp),
//     which prices the layouts whose ranks keep more than that cache holds;
//   - the library's other kernels (activations, LayerNorm, residual adds, biases, the loss,
//     AdamW and the gradient norm) per element, and the memory bandwidth of a triad for the rest;
//   - trident's attention, forward and backward, as model FLOP/s at the model's shape;
//   - all-reduce, all-gather and reduce-scatter over groups of consecutive ranks of every size
//     that divides the world (tensor-parallel groups are consecutive), fitted as alpha + beta;
//     a point-to-point message between neighbours likewise (calibrate_communication.hpp); how
//     much of a posted all-reduce hides behind compute beside it; and the step's small
//     agreements.
//
// A cache file keeps the measurements, keyed by backend and ranks; shapes it holds are not
// measured again (calibrate_cached).

#include <trident/comm/allgather.hpp>
#include <trident/comm/allreduce.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/comm/idle_barrier.hpp>
#include <trident/comm/link_cost.hpp>
#include <trident/comm/point_to_point.hpp>
#include <trident/comm/reduce_scatter.hpp>
#include <trident/comm/topology.hpp>
#include <trident/core/compat.hpp>
#include <trident/core/error.hpp>
#include <trident/io/atomic_file.hpp>
#include <trident/nn/spec.hpp>
#include <trident/ops/activations.hpp>
#include <trident/ops/attention.hpp>
#include <trident/ops/bias_activation.hpp>
#include <trident/ops/cross_entropy.hpp>
#include <trident/ops/gelu.hpp>
#include <trident/ops/layernorm.hpp>
#include <trident/ops/linear.hpp>
#include <trident/ops/matmul.hpp>
#include <trident/ops/residual.hpp>
#include <trident/optim/adamw.hpp>
#include <trident/optim/clip.hpp>
#include <trident/plan/calibrate_communication.hpp>
#include <trident/plan/core_binding.hpp>
#include <trident/plan/machine.hpp>
#include <trident/plan/read_cache_size.hpp>
#include <trident/plan/read_core_binding.hpp>
#include <trident/plan/timing.hpp>

#include <Kokkos_Core.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace trident::plan {

// The attention shape to time: sequences of `seq` rows, `heads` heads of `head_dim` features.
struct AttentionShape {
  std::int64_t samples = 1, seq = 1, heads = 1, head_dim = 1;
  nn::AttentionKernel kernel = nn::AttentionKernel::blocked;
};

struct CalibrationRequest {
  std::vector<Gemm> gemms;
  std::vector<Kernel> kernels;            // at the sizes a layout's layers run them
  std::vector<AttentionShape> attention;  // the largest is timed
  int repeats = 5;                        // the median of this many
  // The collectives are timed in passes over at least this long (at least communication_passes
  // passes): a minute on a host whose communication changes pace over tens of seconds, so that
  // the calibration repeats itself.
  double communication_seconds = 0;
};

// The GEMM shapes and the attention shape of every layer of `spec` at the given micro-batch
// sizes and tensor-parallel sizes (with and without sequence parallelism): what estimate()
// will price.
inline CalibrationRequest calibration_request(const nn::ModelSpec& spec, const std::vector<std::int64_t>& micro_batches,
                                              const std::vector<int>& tp_sizes) {
  CalibrationRequest request;
  std::set<std::tuple<std::int64_t, std::int64_t, std::int64_t, std::string, bool>> seen;
  std::set<std::tuple<std::string, double, double>> seen_kernels;
  const std::int64_t seq = nn::rows_per_sample(spec);
  for (std::int64_t mb : micro_batches)
    for (int tp : tp_sizes)
      for (int sp = 0; sp <= (tp > 1 ? 1 : 0); ++sp) {
        CostShape shape;
        shape.samples = mb;
        shape.seq = seq;
        shape.tp = tp;
        shape.sequence_parallel = sp != 0;
        if (sp && (mb * seq) % tp != 0) continue;
        for (const auto& cost : layer_costs(spec, shape))
          for (const auto* pass : {&cost.forward, &cost.backward}) {
            for (const Gemm& g : pass->gemms)
              if (seen.insert({g.m, g.n, g.k, std::string{g.trans_a, g.trans_b}, g.accumulate}).second)
                request.gemms.push_back(g);
            for (const Kernel& k : pass->kernels)
              if (seen_kernels.insert({k.name, k.elements, k.width}).second) request.kernels.push_back(k);
          }
      }
  // The optimizer's kernels over the parameters, whole and in shards.
  CostShape whole;
  whole.seq = seq;
  double parameters = 0;
  for (const auto& cost : layer_costs(spec, whole)) parameters += cost.parameters;
  for (double part = 1; part <= 16; part *= 2)
    for (const char* name : {"adamw", "sum_of_squares", "scale", "zero"})
      request.kernels.push_back({name, std::floor(parameters / part), 0, 0});
  const auto find_attention = [&](const nn::LayerSpec& layer, auto&& self) -> void {
    if (layer.kind == nn::LayerKind::causal_self_attention && request.attention.empty()) {
      const std::int64_t mb = *std::max_element(micro_batches.begin(), micro_batches.end());
      request.attention.push_back({mb, layer.seq, layer.heads, layer.out / layer.heads, layer.attention});
    }
    for (const auto& inner : layer.inner) self(inner, self);
  };
  for (const auto& layer : spec.layers) find_attention(layer, find_attention);
  return request;
}

namespace detail {

// How many passes over every GEMM shape calibrate() times: a slow spell of the machine (another
// process, the host's own work) lands on one pass, and the passes' geometric mean weighs it
// down. Each pass times each shape `repeats` times.
inline constexpr int gemm_passes = 3;

// Which ranks time work that needs no other rank together: as many of a node's ranks at once as
// the node has cores for them, so that each is measured as a step runs it, beside the other
// cores computing (sharing their cache and memory bus), never beside a rank of its own core.
struct ComputeTurns {
  int turn = 0;                 // the calling rank's
  int turns = 1;                // the most any node takes
  int first = 1;                // ranks of the calling rank's node in the first turn
  comm::Communicator together;  // the ranks of the caller's turn, on every node (split by calibrate)
};

// The turn of `topology`'s calling rank when each node times `cores` ranks at once: its place
// among the ranks of its node, divided by the cores. Ranks bound to cores (one node's `binding`)
// take turns within their group instead, as many at once as the group has cores.
inline ComputeTurns compute_turns(const comm::Topology& topology, int cores, const CoreBinding& binding = {}) {
  ComputeTurns t;
  if (binding.bound()) {
    const int group = binding.group_of_rank.at(static_cast<std::size_t>(topology.rank));
    const auto group_cores = [&](int g) { return std::max(1, static_cast<int>(binding.group_cores[std::size_t(g)])); };
    const int before = static_cast<int>(
        std::count(binding.group_of_rank.begin(), binding.group_of_rank.begin() + topology.rank, group));
    t.turn = before / group_cores(group);
    t.first = 0;
    for (int g = 0; g < binding.groups(); ++g) {
      t.turns = std::max(t.turns, (binding.ranks_in(g) + group_cores(g) - 1) / group_cores(g));
      t.first += std::min(binding.ranks_in(g), group_cores(g));
    }
    return t;
  }
  cores = std::max(cores, 1);
  int before = 0;
  for (int r = 0; r < topology.rank; ++r) before += topology.node_of(r) == topology.node() ? 1 : 0;
  t.turn = before / cores;
  t.first = std::min(cores, topology.ranks_on(topology.node()));
  for (int node = 0; node < topology.nodes(); ++node)
    t.turns = std::max(t.turns, (topology.ranks_on(node) + cores - 1) / cores);
  return t;
}

// What a rank writes before each timing: in a step a kernel reads what other kernels wrote a while
// ago, so its operands are partly in the caches.
inline constexpr std::size_t cache_fill_bytes = std::size_t(8) << 20;

// The mean over the world of each rank's median timing of `run`, the ranks of one turn at once
// (the others wait), each timing after the rank wrote `fill_bytes` of something else. When ranks
// outnumber cores, estimate() shares the cores between the ranks that compute at once.
template <class Run>
double timed_per_core(const comm::Communicator& world, const ComputeTurns& turns, int repeats, Run&& run,
                      std::size_t fill_bytes = cache_fill_bytes) {
  std::vector<char> other(fill_bytes);
  const auto fill_caches = [&](int i) {
    for (std::size_t b = 0; b < other.size(); b += 64) other[b] = static_cast<char>(b + static_cast<std::size_t>(i));
  };
  double mine = 0;
  for (int turn = 0; turn < turns.turns; ++turn) {
    comm::idle_barrier(world);  // the ranks of other turns wait without taking the cores
    if (turn == turns.turn)
      mine = median_seconds(
          repeats,
          [&](int i) {
            fill_caches(i);
            turns.together.barrier();  // the ranks of this turn start together
          },
          run);
  }
  return mean_over(world, mine);
}

// The share of a core a waiting rank takes when `computing` ranks ran `slowdown` times slower
// beside `waiting` ranks than alone: equal shares make the slowdown (c + share w) / c.
inline double waiting_share_from(double slowdown, int computing, int waiting) {
  if (waiting <= 0 || !(slowdown > 1)) return 0;
  return std::min((slowdown - 1) * computing / waiting, 1.0);
}

// How much of a core a rank takes while it waits in MPI, beside a computing rank's whole core,
// when a node runs more ranks than cores: the first turn's ranks time `run` while the node's
// other ranks sleep, then while they wait in a barrier (MPI polls there, as in a pipeline's
// receives). 0 when every rank has a core.
template <class Run>
double waiting_rank_share(const comm::Communicator& world, const ComputeTurns& turns, int computing, int waiting,
                          int repeats, Run&& run) {
  if (waiting <= 0 || turns.turns < 2) return 0;
  const auto timed = [&] {
    return median_seconds(
        repeats, [&](int) { turns.together.barrier(); }, run);
  };
  double alone = 0, beside_waiting = 0;
  comm::idle_barrier(world);
  if (turns.turn == 0) alone = timed();
  comm::idle_barrier(world);
  if (turns.turn == 0) beside_waiting = timed();
  world.barrier();  // where the other turns wait, polling, meanwhile
  Kokkos::View<double*, Kokkos::HostSpace> sums("trident::plan::calibrate::waiting", 2);
  sums(0) = turns.turn == 0 ? beside_waiting / alone : 0.0;
  sums(1) = turns.turn == 0 ? 1.0 : 0.0;
  comm::allreduce(Kokkos::DefaultHostExecutionSpace(), world, sums);
  return waiting_share_from(sums(0) / sums(1), computing, waiting);
}

// Of the shorter of two jobs, the share that running them together saved.
inline double overlap_share(double compute, double reduction, double together) {
  const double shorter = std::min(compute, reduction);
  if (!(shorter > 0)) return 0;
  return std::clamp((compute + reduction - together) / shorter, 0.0, 1.0);
}

// Of a posted reduction, the share that hides behind compute beside it, as the data-parallel
// engine runs them: the first turn's ranks (a core each, the others asleep) time `reduce`
// (posted, then waited for) alone, eight chunks of `compute` alone (about twice the reduction),
// and both together with the request tested between chunks, each repetition timing all three
// so that a change of the machine's pace meets them alike. The mean over those ranks; 0 when
// fewer than two ranks compute at once.
template <class Reduce, class Compute>
double reduction_overlap(const comm::Communicator& world, const ComputeTurns& turns, int repeats, Reduce&& reduce,
                         Compute&& compute) {
  if (turns.first < 2) return 0;
  Kokkos::View<double*, Kokkos::HostSpace> sums("trident::plan::calibrate::overlap", 2);
  comm::idle_barrier(world);  // the other turns wait without taking the cores
  if (turns.turn == 0) {
    const comm::Communicator& group = turns.together;
    const auto timed = [&](auto&& run) {
      group.barrier();
      return seconds_of(run);
    };
    const double chunk = median_seconds(
        repeats, [&](int) { group.barrier(); }, [&] { compute(); });
    const double alone = median_seconds(
        repeats, [&](int) { group.barrier(); }, [&] { reduce().wait(); });
    // a chunk of GEMMs a quarter of the reduction, at least one (the same count on every rank)
    const double ratio = comm::allreduce_value(group, alone / 4 / chunk, comm::ReduceOp::max);
    const int per_chunk = std::clamp(static_cast<int>(std::lround(ratio)), 1, 64);
    const auto chunks = [&](comm::Request* request) {
      for (int c = 0; c < 8; ++c) {
        for (int i = 0; i < per_chunk; ++i) compute();
        if (request != nullptr) request->test();
      }
    };
    std::vector<double> computing, reducing, both;
    for (int i = 0; i < repeats; ++i) {
      computing.push_back(timed([&] { chunks(nullptr); }));
      reducing.push_back(timed([&] { reduce().wait(); }));
      both.push_back(timed([&] {
        comm::Request request = reduce();
        chunks(&request);
        request.wait();
      }));
    }
    sums(0) = overlap_share(median_of(computing), median_of(reducing), median_of(both));
    sums(1) = 1;
  }
  world.barrier();
  comm::allreduce(Kokkos::DefaultHostExecutionSpace(), world, sums);
  return sums(0) / sums(1);
}

// The kernels calibrate() times, by the names layer_costs() and estimate() give them.
inline constexpr const char* calibrated_kernels[] = {"gelu_forward",
                                                     "gelu_backward",
                                                     "relu_forward",
                                                     "relu_backward",
                                                     "tanh_forward",
                                                     "tanh_backward",
                                                     "silu_forward",
                                                     "silu_backward",
                                                     "bias_gelu_forward",
                                                     "bias_gelu_backward",
                                                     "bias_relu_forward",
                                                     "bias_relu_backward",
                                                     "bias_tanh_forward",
                                                     "bias_tanh_backward",
                                                     "bias_silu_forward",
                                                     "bias_silu_backward",
                                                     "layer_norm_forward",
                                                     "layer_norm_backward",
                                                     "add",
                                                     "bias_forward",
                                                     "bias_backward",
                                                     "cross_entropy",
                                                     "adamw",
                                                     "sum_of_squares",
                                                     "scale",
                                                     "zero"};

inline bool is_calibrated_kernel(const std::string& name) {
  return std::any_of(std::begin(calibrated_kernels), std::end(calibrated_kernels),
                     [&](const char* known) { return name == known; });
}

// The time of one call of kernel `name` on `rows` x `cols` elements (a flat vector of both for
// the optimizer's), a core's ranks at a time.
template <class Scalar, class ExecutionSpace>
double time_kernel(const ExecutionSpace& space, const comm::Communicator& world, const ComputeTurns& turns, int repeats,
                   const std::string& name, std::int64_t rows, std::int64_t cols) {
  using memory_space = typename ExecutionSpace::memory_space;
  using matrix = Kokkos::View<Scalar**, Kokkos::LayoutRight, memory_space>;
  using vector = Kokkos::View<Scalar*, memory_space>;
  const std::int64_t n = rows * cols;
  const auto run = [&](auto&& f) {
    return timed_per_core(world, turns, repeats, [&] {
      f();
      compat::fence(space, "trident::plan::calibrate");
    });
  };
  if (name == "adamw" || name == "sum_of_squares" || name == "scale" || name == "zero") {
    vector p("trident::plan::calibrate::p", n), g("trident::plan::calibrate::g", n),
        m1("trident::plan::calibrate::m", n), m2("trident::plan::calibrate::v", n);
    if (name == "adamw")
      return run([&] { optim::adamw_update(space, p, g, m1, m2, optim::AdamWSettings{}, 1, 1e-3, true); });
    if (name == "sum_of_squares") return run([&] { (void)optim::sum_of_squares(space, g); });
    if (name == "scale") return run([&] { optim::scale_in_place(space, g, 0.5); });
    return run([&] { Kokkos::deep_copy(space, g, Scalar(0)); });
  }
  matrix x("trident::plan::calibrate::x", rows, cols), y("trident::plan::calibrate::y", rows, cols),
      dy("trident::plan::calibrate::dy", rows, cols), dx("trident::plan::calibrate::dx", rows, cols);
  Kokkos::deep_copy(space, x, Scalar(0.1));
  Kokkos::deep_copy(space, dy, Scalar(0.01));
  if (name == "gelu_forward") return run([&] { ops::gelu_forward(space, y, x); });
  if (name == "gelu_backward") return run([&] { ops::gelu_backward(space, dx, x, dy); });
  if (name == "relu_forward") return run([&] { ops::relu_forward(space, y, x); });
  if (name == "relu_backward") return run([&] { ops::relu_backward(space, dx, x, dy); });
  if (name == "tanh_forward") return run([&] { ops::tanh_forward(space, y, x); });
  if (name == "tanh_backward") return run([&] { ops::tanh_backward(space, dx, x, dy); });
  if (name == "silu_forward") return run([&] { ops::silu_forward(space, y, x); });
  if (name == "silu_backward") return run([&] { ops::silu_backward(space, dx, x, dy); });
  if (name == "add") return run([&] { ops::add_inplace(space, y, x); });
  vector gain("trident::plan::calibrate::gain", cols), bias("trident::plan::calibrate::bias", cols),
      dgain("trident::plan::calibrate::dgain", cols), dbias("trident::plan::calibrate::dbias", cols),
      mean("trident::plan::calibrate::mean", rows), rstd("trident::plan::calibrate::rstd", rows);
  Kokkos::deep_copy(space, gain, Scalar(1));
  // An activation adding a linear's bias (zero here, so repeats leave x as it was).
  const auto fused = [&](auto activation) {
    using Activation = decltype(activation);
    if (name.size() > 8 && name.compare(name.size() - 8, 8, "_forward") == 0)
      return run([&] { ops::bias_activation_forward<Activation>(space, x, y, bias); });
    return run([&] { ops::bias_activation_backward<Activation>(space, dx, dbias, x, dy); });
  };
  if (name.rfind("bias_gelu_", 0) == 0) return fused(ops::Gelu{});
  if (name.rfind("bias_relu_", 0) == 0) return fused(ops::Relu{});
  if (name.rfind("bias_tanh_", 0) == 0) return fused(ops::Tanh{});
  if (name.rfind("bias_silu_", 0) == 0) return fused(ops::Silu{});
  if (name == "layer_norm_forward") return run([&] { ops::layernorm_forward(space, y, mean, rstd, x, gain, bias); });
  if (name == "layer_norm_backward")
    return run([&] { ops::layernorm_backward(space, dx, dgain, dbias, dy, x, gain, mean, rstd); });
  matrix one("trident::plan::calibrate::one", rows, 1), row("trident::plan::calibrate::row", 1, cols);
  if (name == "bias_forward") return run([&] { ops::linear_forward(space, y, one, row, bias); });
  if (name == "bias_backward")
    return run([&] { ops::linear_backward(space, matrix(), matrix(), dbias, dy, one, row); });
  Kokkos::View<int*, memory_space> classes("trident::plan::calibrate::classes", rows);
  vector losses("trident::plan::calibrate::losses", rows);
  require_argument(name == "cross_entropy", "trident::plan::calibrate: no kernel '", name, "' to time");
  return run([&] {
    Kokkos::deep_copy(space, y, x);
    ops::cross_entropy_forward_backward(space, losses, y, y, classes, Scalar(1));
  });
}

}  // namespace detail

// Measures what `request` asks for, and the bandwidth, collectives and point-to-point, into
// `machine` (what it already holds is kept). Collective over `world`.
template <class Scalar, class ExecutionSpace>
void calibrate(const ExecutionSpace& space, const comm::Communicator& world, const CalibrationRequest& request,
               Machine& machine) {
  using memory_space = typename ExecutionSpace::memory_space;
  using matrix = Kokkos::View<Scalar**, Kokkos::LayoutRight, memory_space>;
  using vector = Kokkos::View<Scalar*, memory_space>;
  const int repeats = std::max(request.repeats, 1);
  // Before anything is timed; every rank is given the same request, so every rank refuses alike.
  require_communication_window(request.communication_seconds, "trident::plan::calibrate");
  const auto fenced = [&](auto&& f) {
    return [&, f]() {
      f();
      compat::fence(space, "trident::plan::calibrate");
    };
  };
  machine.runtime = Runtime::trident;
  // This machine as the planner's cluster: a node runs the ranks that share its memory, on its
  // cores when they run on the host.
  const comm::Topology topology = comm::discover_topology(world);
  machine.devices_per_node = topology.ranks_on(topology.node());
  machine.attention_slots = 0;
  if (std::is_same<memory_space, Kokkos::HostSpace>::value) {
    const int threads = std::max(1, static_cast<int>(ExecutionSpace().concurrency()));
    machine.cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / threads);
    machine.attention_slots = std::max(1, static_cast<int>(Kokkos::DefaultHostExecutionSpace().concurrency()));
    const comm::Communicator node = world.split(topology.node(), world.rank(), "trident::plan::calibrate::node");
    const std::vector<std::vector<int>> node_cpus = allowed_cpus_of_ranks(node);
    // where this launch bound the ranks, when one node runs them all
    machine.binding = topology.nodes() == 1 ? binding_from_cpus(node_cpus, threads) : CoreBinding{};
    // The last-level caches of the CPUs the node's ranks may run on; the least over the nodes, so
    // that every rank prices alike.
    std::vector<int> cpus;
    for (const auto& of_rank : node_cpus) cpus.insert(cpus.end(), of_rank.begin(), of_rank.end());
    const double cache =
        comm::allreduce_value(world, last_level_cache_bytes("/sys/devices/system/cpu", cpus), comm::ReduceOp::min);
    // A cache file timed its cold GEMMs past another cache (ranks bound elsewhere): again.
    if (cache != machine.cache_bytes)
      for (GemmSample& s : machine.gemms) s.cold_seconds = 0;
    machine.cache_bytes = cache;
  }
  // On a device every rank of a node computes on its own: all of them at once.
  detail::ComputeTurns turns =
      detail::compute_turns(topology, machine.cores > 0 ? machine.cores : machine.devices_per_node, machine.binding);
  turns.together = world.split(turns.turn, world.rank(), "trident::plan::calibrate::turn");
  // GEMMs not yet measured, with their transposes, each timed in `gemm_passes` passes over all of
  // them (so that a slow spell of the machine lands on different shapes); the sample is their
  // geometric mean, and how well the passes agree sets how far a sample may pull its price off
  // the fit.
  std::vector<Gemm> missing;
  for (const Gemm& g : request.gemms) {
    const bool known =
        machine.measured(g) != nullptr || std::any_of(missing.begin(), missing.end(), [&](const Gemm& m) {
          return GemmSample{m.m, m.n, m.k, m.trans_a, m.trans_b, 0, m.accumulate}.same_shape(g);
        });
    if (!known) missing.push_back(g);
  }
  const auto time_gemm = [&](const Gemm& g, std::size_t fill_bytes) {
    const bool ta = g.trans_a == 'T', tb = g.trans_b == 'T';
    matrix a("trident::plan::calibrate::a", ta ? g.k : g.m, ta ? g.m : g.k),
        b("trident::plan::calibrate::b", tb ? g.n : g.k, tb ? g.k : g.n), c("trident::plan::calibrate::c", g.m, g.n);
    Kokkos::deep_copy(space, a, Scalar(0.5));
    Kokkos::deep_copy(space, b, Scalar(0.25));
    const Scalar beta = g.accumulate ? Scalar(1) : Scalar(0);  // as the layer calls it
    return detail::timed_per_core(world, turns, repeats,
                                  fenced([&] { ops::matmul(space, g.trans_a, g.trans_b, Scalar(1), a, b, beta, c); }),
                                  fill_bytes);
  };
  std::vector<std::vector<GemmTiming>> passes(detail::gemm_passes);
  for (auto& pass : passes)
    for (const Gemm& g : missing) pass.push_back({g, time_gemm(g, detail::cache_fill_bytes)});
  std::vector<std::vector<double>> pass_seconds;
  for (const auto& pass : passes) {
    pass_seconds.emplace_back();
    for (const GemmTiming& t : pass) pass_seconds.back().push_back(t.seconds);
  }
  const std::vector<double> samples = detail::geometric_means(pass_seconds);
  for (std::size_t i = 0; i < missing.size(); ++i) {
    const Gemm& g = missing[i];
    machine.gemms.push_back({g.m, g.n, g.k, g.trans_a, g.trans_b, samples[i], g.accumulate});
  }
  // Every shape not yet timed so (a cache may predate it) once more with the operands out of the
  // last-level cache: the ranks timing at once write twice all of it first (estimate() prices by
  // how much of a step's memory the cache holds).
  if (machine.cache_bytes > 0) {
    const auto fill = static_cast<std::size_t>(2 * machine.cache_bytes / std::max(turns.first, 1));
    for (GemmSample& s : machine.gemms)
      if (s.cold_seconds <= 0) s.cold_seconds = time_gemm(s.gemm(), fill);
  }
  if (!machine.gemms.empty()) {
    std::vector<GemmTiming> all;
    for (const GemmSample& s : machine.gemms) all.push_back({s.gemm(), s.seconds});
    const double kept_weight = machine.gemm_fit.fitted() ? machine.gemm_fit.sample_weight : 1.0;
    machine.gemm_fit = fit_gemms(all, machine.element_bytes());
    machine.gemm_fit.sample_weight =
        missing.size() >= 2 ? gemm_sample_weight(passes, machine.gemm_fit, machine.element_bytes()) : kept_weight;
  }
  // Elementwise: y = 2 x + z over 4 Mi elements reads two and writes one.
  if (machine.memory_bytes_per_s <= 0) {
    const std::int64_t n = std::int64_t(1) << 22;
    vector x("trident::plan::calibrate::x", n), y("trident::plan::calibrate::y", n),
        z("trident::plan::calibrate::z", n);
    const double seconds = detail::timed_per_core(
        world, turns, repeats, fenced([&] {
          Kokkos::parallel_for(
              "trident::plan::calibrate::triad", Kokkos::RangePolicy<ExecutionSpace>(space, 0, n),
              KOKKOS_LAMBDA(std::int64_t i) { y(i) = Scalar(2) * x(i) + z(i); });
        }));
    machine.memory_bytes_per_s = 3.0 * n * sizeof(Scalar) / seconds;
  }
  // What a waiting rank takes of a shared core: a GEMM long enough for the scheduler to share.
  const int node_ranks = topology.ranks_on(topology.node());
  const bool crowded =
      machine.binding.bound() ? machine.binding.crowding() > 1 : machine.cores > 0 && node_ranks > machine.cores;
  if (crowded && !machine.waiting_rank_share) {
    const std::int64_t n = 384;
    matrix a("trident::plan::calibrate::a", n, n), b("trident::plan::calibrate::b", n, n),
        c("trident::plan::calibrate::c", n, n);
    Kokkos::deep_copy(space, a, Scalar(0.5));
    Kokkos::deep_copy(space, b, Scalar(0.25));
    machine.waiting_rank_share = detail::waiting_rank_share(
        world, turns, turns.first, node_ranks - turns.first, std::max(repeats, 5), fenced([&] {
          for (int i = 0; i < 8; ++i) ops::matmul(space, 'N', 'N', Scalar(1), a, b, Scalar(0), c);
        }));
  }
  // The library's own non-GEMM kernels: at the sizes asked for, and per element on 1024 rows
  // of 256 for any other size.
  const auto time_kernel = [&](const std::string& name, std::int64_t rows, std::int64_t cols) {
    return detail::time_kernel<Scalar>(space, world, turns, repeats, name, rows, cols);
  };
  if (machine.kernel_seconds_per_element.empty()) {
    for (const char* name : detail::calibrated_kernels)
      machine.kernel_seconds_per_element[name] = time_kernel(name, 1024, 256) / (1024 * 256);
    // the attention's softmax is inside its measured time below
    machine.kernel_seconds_per_element["attention_softmax_forward"] = 0;
    machine.kernel_seconds_per_element["attention_softmax_backward"] = 0;
  }
  for (const Kernel& k : request.kernels) {
    if (!detail::is_calibrated_kernel(k.name)) continue;
    const bool known = std::any_of(machine.kernels.begin(), machine.kernels.end(), [&](const KernelSample& s) {
      return s.name == k.name && s.elements == k.elements && s.width == k.width;
    });
    if (known) continue;
    const auto cols = static_cast<std::int64_t>(k.width > 0 ? k.width : k.elements);
    const auto rows =
        std::max<std::int64_t>(1, static_cast<std::int64_t>(k.elements) / std::max<std::int64_t>(cols, 1));
    machine.kernels.push_back({k.name, k.elements, k.width, time_kernel(k.name, rows, cols)});
  }
  // Attention, forward and backward, as FLOP/s of what it executes (12 T C per row; the flash
  // kernel's recomputed scores 2 T C more, as layer_costs counts them).
  if (!request.attention.empty() && machine.attention_flops_per_s <= 0) {
    const AttentionShape& s = request.attention.front();
    const std::int64_t rows = s.samples * s.seq, width = s.heads * s.head_dim;
    ops::AttentionBuffers<Scalar, memory_space> buffers(static_cast<int>(s.samples), static_cast<int>(s.seq),
                                                        static_cast<int>(s.heads), static_cast<int>(s.head_dim),
                                                        ops::default_causal_block<memory_space>(), s.kernel);
    matrix qkv("trident::plan::calibrate::qkv", rows, 3 * width), out("trident::plan::calibrate::out", rows, width),
        dqkv("trident::plan::calibrate::dqkv", rows, 3 * width);
    Kokkos::deep_copy(space, qkv, Scalar(0.01));
    Kokkos::deep_copy(space, out, Scalar(0.01));
    const int B = static_cast<int>(s.samples), T = static_cast<int>(s.seq), H = static_cast<int>(s.heads);
    const double seconds =
        detail::timed_per_core(world, turns, repeats, fenced([&] {
                                 ops::attention_forward(space, out, buffers, qkv, B, T, H);
                                 ops::attention_backward(space, dqkv, out, buffers, qkv, out, B, T, H);
                               }));
    const double flops_per_row = s.kernel == nn::AttentionKernel::flash ? 14.0 : 12.0;
    machine.attention_flops_per_s = flops_per_row * rows * s.seq * width / seconds;
  }
  // Collectives and the point-to-point message (calibrate_communication.hpp), again where the
  // request asks for a longer window than they were timed over.
  if (world.size() >= 2 &&
      (!machine.collectives.count({CollectiveKind::all_reduce, world.size()}) ||
       machine.point_to_point.bytes_per_s <= 0 || request.communication_seconds > machine.communication_seconds)) {
    fit_communication(
        time_communication_for<Scalar>(space, world, repeats, communication_passes, request.communication_seconds),
        machine);
    machine.communication_seconds = request.communication_seconds;
  }
  // How much of the data-parallel engine's posted reduction hides behind backward: a 4 MiB
  // all-reduce over the ranks that compute at once beside square GEMMs.
  if (world.size() >= 2 && !machine.reduction_overlap) {
    const std::int64_t n = 256;
    matrix a("trident::plan::calibrate::a", n, n), b("trident::plan::calibrate::b", n, n),
        c("trident::plan::calibrate::c", n, n);
    Kokkos::deep_copy(space, a, Scalar(0.5));
    Kokkos::deep_copy(space, b, Scalar(0.25));
    vector gradients("trident::plan::calibrate::gradients", (std::int64_t(4) << 20) / std::int64_t(sizeof(Scalar)));
    machine.reduction_overlap = detail::reduction_overlap(
        world, turns, std::max(repeats, 7), [&] { return comm::iallreduce(space, turns.together, gradients); },
        fenced([&] { ops::matmul(space, 'N', 'N', Scalar(1), a, b, Scalar(0), c); }));
  }
  // The step's own small agreements over the world: loss, non-finite check, norm, and the like.
  if (world.size() >= 2 && machine.step_overhead_s <= 0) {
    Kokkos::View<double*, Kokkos::HostSpace> value("trident::plan::calibrate::value", 2);
    machine.step_overhead_s = 4 * detail::timed_on_all(world, repeats, [&] {
                                comm::allreduce(Kokkos::DefaultHostExecutionSpace(), world, value);
                              });
  }
  take_links_from_collectives(machine);
}

// The name a cache of `world` on ExecutionSpace keys its measurements by.
template <class ExecutionSpace>
std::string calibration_name(const comm::Communicator& world) {
  return std::string(ExecutionSpace::name()) + " x " + std::to_string(world.size()) + " ranks, " +
         std::to_string(ExecutionSpace().concurrency()) + " threads each";
}

// calibrate() with a cache: rank 0 reads `path` (when it exists and was measured on the same
// backend and ranks), every rank measures what is missing, and rank 0 writes the file back
// atomically. Collective over `world`; every rank returns the same machine.
template <class Scalar, class ExecutionSpace>
Machine calibrate_cached(const ExecutionSpace& space, const comm::Communicator& world,
                         const CalibrationRequest& request, const std::string& path) {
  const std::string name = calibration_name<ExecutionSpace>(world);
  std::string text;
  if (world.rank() == 0 && !path.empty()) {
    std::ifstream in(path);
    std::stringstream buffer;
    if (in.good()) buffer << in.rdbuf();
    text = buffer.str();
  }
  // Every rank takes rank 0's cache.
  const auto length = comm::allreduce_value(world, static_cast<std::int64_t>(text.size()), comm::ReduceOp::max);
  Kokkos::View<char*, Kokkos::HostSpace> bytes("trident::plan::calibrate::cache", static_cast<std::size_t>(length));
  if (world.rank() == 0) std::copy(text.begin(), text.end(), bytes.data());
  if (length > 0) comm::allreduce(Kokkos::DefaultHostExecutionSpace(), world, bytes, comm::ReduceOp::max);
  Machine machine;
  machine.name = name;
  if (length > 0) {
    const auto json = nlohmann::json::parse(std::string(bytes.data(), bytes.extent(0)), nullptr, false);
    if (!json.is_discarded() && json.value("name", std::string()) == name) machine = machine_from_json(json);
  }
  const auto timed_cold = [&] {
    return std::count_if(machine.gemms.begin(), machine.gemms.end(),
                         [](const GemmSample& s) { return s.cold_seconds > 0; });
  };
  const std::size_t known = machine.gemms.size() + machine.kernels.size();
  const auto known_cold = timed_cold();
  const bool complete = known > 0 && machine.memory_bytes_per_s > 0;
  const std::optional<double> share = machine.waiting_rank_share, overlap = machine.reduction_overlap;
  const double communication_seconds = machine.communication_seconds, cache_bytes = machine.cache_bytes;
  calibrate<Scalar>(space, world, request, machine);
  if (world.rank() == 0 && !path.empty() &&
      (!complete || machine.gemms.size() + machine.kernels.size() != known || timed_cold() != known_cold ||
       machine.waiting_rank_share != share || machine.reduction_overlap != overlap ||
       machine.communication_seconds != communication_seconds || machine.cache_bytes != cache_bytes)) {
    const std::string json = to_json(machine).dump(1);
    io::AtomicFileWriter file(path, "trident::plan::calibrate_cached");
    file.write(json.data(), json.size());
    file.commit();
  }
  return machine;
}

}  // namespace trident::plan
