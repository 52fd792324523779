#pragma once
// What the planner knows of the machine a run will use: how fast its GEMMs, attention and
// elementwise kernels go, what a collective over a group costs, and how much memory a rank has.
//
// Two sources fill it: calibrate() (calibrate.hpp) measures this machine from inside the run
// (every rank at once, so ranks that share cores are measured sharing them), and a cluster
// description (a JSON file of devices per node, peak FLOP/s, memory and links) describes one the
// planner cannot run on. Both are saved and read as JSON.
//
// A calibrated machine prices every GEMM by the fit over the shapes it measured (gemm_fit.hpp),
// a measured shape moved towards its own time as far as calibration found its timings repeat.
// Otherwise a GEMM measured at its exact shape takes that time; another shape is priced by the
// roofline of the cluster description, or scaled from the measured shape nearest in log-space
// (sizes with similar arithmetic intensity run at similar rates). A shape also timed with its
// operands out of the host's last-level cache is priced between the two times by the share of
// the ranks' memory that cache cannot hold (cold_share). A collective measured at its group
// size takes its fitted alpha + bytes / beta; otherwise the ring model over the node links.

#include <trident/comm/link_cost.hpp>
#include <trident/core/error.hpp>
#include <trident/plan/core_binding.hpp>
#include <trident/plan/gemm_fit.hpp>
#include <trident/plan/layer_costs.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace trident::plan {

// What a run keeps per parameter and per activation, by whose implementation it is modelled.
enum class Runtime {
  trident,  // fp32 parameters, gradients and AdamW moments; nn::Model's activations
  megatron  // Megatron-LM 2021: fp16 weights and activations, fp32 master weights and moments
};

inline const char* runtime_name(Runtime runtime) {
  return runtime == Runtime::trident ? "trident" : "megatron";
}

struct GemmSample {
  std::int64_t m = 0, n = 0, k = 0;
  char trans_a = 'N', trans_b = 'N';
  double seconds = 0;
  bool accumulate = true;   // timed with beta 1, or with beta 0
  double cold_seconds = 0;  // timed with its operands out of the caches (0: not measured)
  bool same_shape(const Gemm& g) const {
    return m == g.m && n == g.n && k == g.k && trans_a == g.trans_a && trans_b == g.trans_b &&
           accumulate == g.accumulate;
  }
  Gemm gemm() const { return {m, n, k, false, trans_a, trans_b, accumulate}; }
};

struct KernelSample {
  std::string name;
  double elements = 0, width = 0;
  double seconds = 0;
};

// alpha + bytes / beta of one collective over a group of a given size, bytes of the whole buffer.
struct CollectiveFit {
  double latency_s = 0;
  double bytes_per_s = 0;
  double seconds(double bytes) const { return latency_s + bytes / bytes_per_s; }
};

struct Machine {
  std::string name;
  Runtime runtime = Runtime::trident;
  int devices_per_node = 1;  // ranks a node runs
  int cores = 0;             // what those ranks compute on, when fewer than them (0: one each)
  // Of a core, what a rank that waits in MPI takes beside a computing rank's whole one, when the
  // ranks share the cores: Open MPI polls while it waits (0: it gives its core back). Unset until
  // calibration measures it, and then taken as 0.
  std::optional<double> waiting_rank_share;
  // Of a posted (nonblocking) reduction, the share that hides behind compute running beside it
  // with the engine's tests between: where the rank's own core moves the data (a host without a
  // progress thread) little hides. Unset until calibration measures it, and then taken as 1.
  std::optional<double> reduction_overlap;
  // Where this launch bound the node's ranks to cores (calibrate() reads it at every start; a
  // property of the launch, so not saved): the ranks of a group share only its cores.
  CoreBinding binding;
  // (b, h) pairs of flash attention a rank runs at once on a host, each with two row blocks of
  // scratch (ops/attention_buffers.hpp): its host threads; 0 on a device, which keeps none.
  int attention_slots = 1;
  double memory_bytes = 0;  // per rank; 0: no cap
  // Compute: the peak a roofline uses when a GEMM shape was not measured, its reachable
  // fraction, and the memory bandwidth of elementwise kernels (and of the roofline).
  double peak_flops = 0;
  double gemm_efficiency = 1;
  double memory_bytes_per_s = 0;
  double attention_flops_per_s = 0;  // 0: as a GEMM of the same FLOPs at the peak
  // All the last-level cache of the cores a node's ranks run on, the least over the nodes (0:
  // unknown, or ranks on devices): when the node's ranks keep more than it holds, their GEMMs
  // read their operands from memory in part.
  double cache_bytes = 0;
  std::vector<GemmSample> gemms;  // measured shapes
  GemmFit gemm_fit;               // over them, when calibrated
  // Measured kernels: at their sizes (the nearest size of the same kernel, scaled by its
  // elements), else per element; others are priced by their bytes.
  std::vector<KernelSample> kernels;
  std::map<std::string, double> kernel_seconds_per_element;
  // Communication: measured fits by (collective, group size), else rings over these links.
  std::map<std::pair<CollectiveKind, int>, CollectiveFit> collectives;
  std::map<std::pair<CollectiveKind, int>, CollectiveFit> nonblocking_collectives;  // posted, then waited for
  CollectiveFit point_to_point;      // one message between pipeline neighbours (measured)
  double communication_seconds = 0;  // how long calibration timed those over, at least
  comm::NodeLinks links;
  double step_overhead_s = 0;  // fixed per step: the small agreements (loss, non-finite, norm)

  // ---- compute ----
  // A GEMM with `cold_share` of its operands read from memory (cold_share()), the rest cached.
  double gemm_seconds(const Gemm& g, double cold_share = 0) const {
    const double cached = cached_gemm_seconds(g);
    return cold_share > 0 ? cached * (1 + cold_share * (gemm_cold_ratio(g) - 1)) : cached;
  }
  // How much slower a measured shape ran with its operands out of the caches; 1 where not measured.
  double gemm_cold_ratio(const Gemm& g) const {
    const GemmSample* s = measured(g);
    return s && s->cold_seconds > 0 && s->seconds > 0 ? std::max(1.0, s->cold_seconds / s->seconds) : 1.0;
  }
  // The sample of g's exact shape and beta; null where it was not measured.
  const GemmSample* measured(const Gemm& g) const {
    const auto it = std::find_if(gemms.begin(), gemms.end(), [&](const GemmSample& s) { return s.same_shape(g); });
    return it == gemms.end() ? nullptr : &*it;
  }
  // The share of what `ranks` ranks of a node keep, `rank_bytes` each, that the node's cache
  // cannot hold: what a GEMM then reads from memory.
  double cold_share(double rank_bytes, int ranks) const {
    if (cache_bytes <= 0 || !(rank_bytes > 0) || ranks < 1) return 0;
    return std::clamp(1 - cache_bytes / (ranks * rank_bytes), 0.0, 1.0);
  }
  double cached_gemm_seconds(const Gemm& g) const {
    if (g.m <= 0 || g.n <= 0 || g.k <= 0) return 0;
    const GemmSample* exact = measured(g);
    if (gemm_fit.fitted())
      return exact ? gemm_fit.seconds(g, element_bytes(), exact->seconds) : gemm_fit.seconds(g, element_bytes());
    if (exact) return exact->seconds;
    const GemmSample* nearest = nullptr;
    double best = std::numeric_limits<double>::infinity();
    for (const GemmSample& s : gemms) {
      const double d = std::pow(std::log(double(s.m) / g.m), 2) + std::pow(std::log(double(s.n) / g.n), 2) +
                       std::pow(std::log(double(s.k) / g.k), 2);
      if (d < best) best = d, nearest = &s;
    }
    if (peak_flops > 0) return roofline_seconds(g);
    require_argument(nearest != nullptr, "trident::plan::Machine '", name,
                     "': no GEMM was measured and no peak FLOP/s given; calibrate or describe the cluster");
    const Gemm sample{nearest->m, nearest->n, nearest->k};
    return nearest->seconds * g.flops() / sample.flops();
  }
  double roofline_seconds(const Gemm& g) const {
    const double bytes = element_bytes() * g.operand_elements();
    const double compute = g.flops() / (peak_flops * gemm_efficiency);
    return memory_bytes_per_s > 0 ? std::max(compute, bytes / memory_bytes_per_s) : compute;
  }
  double attention_seconds(double flops) const {
    if (flops <= 0) return 0;
    if (attention_flops_per_s > 0) return flops / attention_flops_per_s;
    if (peak_flops > 0) return flops / (peak_flops * gemm_efficiency);
    // Neither measured nor described: at the rate of the fastest GEMM measured.
    double rate = 0;
    for (const GemmSample& s : gemms)
      if (s.seconds > 0) rate = std::max(rate, Gemm{s.m, s.n, s.k}.flops() / s.seconds);
    require_argument(rate > 0, "trident::plan::Machine '", name,
                     "': attention was not measured and neither a peak FLOP/s nor a GEMM is given; calibrate or "
                     "describe the cluster");
    return flops / rate;
  }
  double elementwise_seconds(double bytes) const { return memory_bytes_per_s > 0 ? bytes / memory_bytes_per_s : 0; }
  double kernel_seconds(const Kernel& kernel) const {
    const KernelSample* nearest = nullptr;
    double best = std::numeric_limits<double>::infinity();
    for (const KernelSample& s : kernels) {
      if (s.name != kernel.name || s.elements <= 0) continue;
      if (s.elements == kernel.elements && s.width == kernel.width) return s.seconds;
      const double d = std::fabs(std::log(s.elements / std::max(kernel.elements, 1.0))) +
                       (s.width > 0 && kernel.width > 0 ? 0.25 * std::fabs(std::log(s.width / kernel.width)) : 0.0);
      if (d < best) best = d, nearest = &s;
    }
    if (nearest) return nearest->seconds * kernel.elements / nearest->elements;
    const auto it = kernel_seconds_per_element.find(kernel.name);
    return it != kernel_seconds_per_element.end() ? it->second * kernel.elements : elementwise_seconds(kernel.bytes);
  }
  double kernels_seconds(const std::vector<Kernel>& kernels) const {
    double seconds = 0;
    for (const Kernel& k : kernels) seconds += kernel_seconds(k);
    return seconds;
  }
  double element_bytes() const { return runtime == Runtime::trident ? 4.0 : 2.0; }

  // ---- communication ----
  // A collective over `group` ranks that span `nodes` nodes (ranks spread evenly), while
  // `sharing` such groups use each node's outgoing link at once.
  double collective_seconds(CollectiveKind kind, int group, double bytes, int nodes = 1, int sharing = 1,
                            bool nonblocking = false) const {
    if (group <= 1 || bytes <= 0) return 0;
    const auto posted = nonblocking_collectives.find({kind, group});
    if (nonblocking && posted != nonblocking_collectives.end() && nodes <= 1) return posted->second.seconds(bytes);
    const auto it = collectives.find({kind, group});
    if (it != collectives.end() && nodes <= 1) return it->second.seconds(bytes);
    const int per_node = std::max(1, group / std::max(1, nodes));
    comm::NodeLinks shared = links;
    shared.inter.bytes_per_s /= std::max(1, sharing);
    const double all_reduce = comm::two_level_allreduce_seconds(shared, nodes, per_node, bytes);
    return kind == CollectiveKind::all_reduce ? all_reduce : 0.5 * all_reduce;  // one ring pass of the two
  }
  // One message between pipeline neighbours; across nodes every rank of a node sends at once.
  double point_to_point_seconds(double bytes, bool across_nodes) const {
    if (point_to_point.bytes_per_s > 0 && !across_nodes) return point_to_point.seconds(bytes);
    if (!across_nodes) return links.intra.seconds(bytes);
    return links.inter.latency_s + bytes * devices_per_node / links.inter.bytes_per_s;
  }
};

// A window to time the collectives over (Machine::communication_seconds): finite (a NaN or
// infinite one never closes) and >= 0.
inline void require_communication_window(double seconds, const char* op) {
  require_argument(std::isfinite(seconds) && seconds >= 0, op,
                   ": communication_seconds must be a finite number >= 0, got ", seconds);
}

// ---- JSON ----

inline nlohmann::json to_json(const Machine& m) {
  nlohmann::json j;
  j["name"] = m.name;
  j["runtime"] = runtime_name(m.runtime);
  j["devices_per_node"] = m.devices_per_node;
  j["cores"] = m.cores;
  if (m.waiting_rank_share) j["waiting_rank_share"] = *m.waiting_rank_share;
  if (m.reduction_overlap) j["reduction_overlap"] = *m.reduction_overlap;
  j["attention_slots"] = m.attention_slots;
  j["memory_bytes"] = m.memory_bytes;
  j["peak_flops"] = m.peak_flops;
  j["gemm_efficiency"] = m.gemm_efficiency;
  j["memory_bytes_per_s"] = m.memory_bytes_per_s;
  if (m.cache_bytes > 0) j["cache_bytes"] = m.cache_bytes;
  j["attention_flops_per_s"] = m.attention_flops_per_s;
  j["step_overhead_s"] = m.step_overhead_s;
  auto& gemms = j["gemms"] = nlohmann::json::array();
  for (const auto& g : m.gemms)
    gemms.push_back(
        {g.m, g.n, g.k, std::string{g.trans_a, g.trans_b}, g.seconds, g.accumulate ? 1 : 0, g.cold_seconds});
  if (m.gemm_fit.fitted())
    j["gemm_fit"] = {{"latency_s", m.gemm_fit.latency_s},
                     {"flops_per_s", m.gemm_fit.flops_per_s},
                     {"bytes_per_s", m.gemm_fit.bytes_per_s},
                     {"sample_weight", m.gemm_fit.sample_weight}};
  j["kernels"] = m.kernel_seconds_per_element;
  auto& samples = j["kernel_samples"] = nlohmann::json::array();
  for (const auto& k : m.kernels) samples.push_back({k.name, k.elements, k.width, k.seconds});
  const std::pair<const char*, const decltype(m.collectives)*> tables[] = {
      {"collectives", &m.collectives}, {"nonblocking_collectives", &m.nonblocking_collectives}};
  for (const auto& [name, table] : tables) {
    auto& coll = j[name] = nlohmann::json::array();
    for (const auto& [key, fit] : *table)
      coll.push_back({{"kind", collective_name(key.first)},
                      {"group", key.second},
                      {"latency_s", fit.latency_s},
                      {"bytes_per_s", fit.bytes_per_s}});
  }
  j["point_to_point"] = {{"latency_s", m.point_to_point.latency_s}, {"bytes_per_s", m.point_to_point.bytes_per_s}};
  if (m.communication_seconds > 0) j["communication_seconds"] = m.communication_seconds;
  j["intra_node"] = {{"latency_s", m.links.intra.latency_s}, {"bytes_per_s", m.links.intra.bytes_per_s}};
  j["inter_node"] = {{"latency_s", m.links.inter.latency_s}, {"bytes_per_s", m.links.inter.bytes_per_s}};
  return j;
}

namespace detail {
inline CollectiveKind collective_from_name(const std::string& name) {
  for (auto kind : {CollectiveKind::all_reduce, CollectiveKind::all_gather, CollectiveKind::reduce_scatter})
    if (name == collective_name(kind)) return kind;
  throw InvalidArgument("trident::plan: unknown collective '" + name +
                        "'; expected all_reduce, all_gather or reduce_scatter");
}
inline comm::LinkCost link_from(const nlohmann::json& j, const char* what) {
  require_argument(j.is_object() && j.contains("latency_s") && j.contains("bytes_per_s"), "trident::plan: '", what,
                   "' needs latency_s and bytes_per_s");
  return comm::LinkCost{j.at("latency_s").get<double>(), j.at("bytes_per_s").get<double>()};
}
}  // namespace detail

// Reads what to_json() writes, and cluster descriptions:
//   {"name": "Selene", "runtime": "megatron", "devices_per_node": 8, "memory_bytes": 80e9,
//    "peak_flops": 312e12, "gemm_efficiency": 0.8, "memory_bytes_per_s": 2.0e12,
//    "intra_node": {"latency_s": 5e-6, "bytes_per_s": 300e9},
//    "inter_node": {"latency_s": 10e-6, "bytes_per_s": 25e9}}
inline Machine machine_from_json(const nlohmann::json& j) {
  const char* op = "trident::plan::machine_from_json";
  require_argument(j.is_object(), op, ": a machine is a JSON object");
  Machine m;
  try {
    m.name = j.value("name", std::string("unnamed"));
    const std::string runtime = j.value("runtime", std::string("trident"));
    require_argument(runtime == "trident" || runtime == "megatron", op, ": runtime '", runtime,
                     "' is not trident or megatron");
    m.runtime = runtime == "trident" ? Runtime::trident : Runtime::megatron;
    m.devices_per_node = j.value("devices_per_node", 1);
    m.cores = j.value("cores", 0);
    if (j.contains("waiting_rank_share")) m.waiting_rank_share = j.at("waiting_rank_share").get<double>();
    if (j.contains("reduction_overlap")) {
      m.reduction_overlap = j.at("reduction_overlap").get<double>();
      require_argument(*m.reduction_overlap >= 0 && *m.reduction_overlap <= 1, op,
                       ": reduction_overlap is a share in [0, 1], got ", *m.reduction_overlap);
    }
    m.attention_slots = j.value("attention_slots", 1);
    m.memory_bytes = j.value("memory_bytes", 0.0);
    m.peak_flops = j.value("peak_flops", 0.0);
    m.gemm_efficiency = j.value("gemm_efficiency", 1.0);
    m.memory_bytes_per_s = j.value("memory_bytes_per_s", 0.0);
    m.cache_bytes = j.value("cache_bytes", 0.0);
    require_argument(m.cache_bytes >= 0, op, ": cache_bytes must be >= 0, got ", m.cache_bytes);
    m.attention_flops_per_s = j.value("attention_flops_per_s", 0.0);
    m.step_overhead_s = j.value("step_overhead_s", 0.0);
    if (j.contains("gemms"))
      for (const auto& g : j.at("gemms")) {
        const auto trans = g.at(3).get<std::string>();
        require_argument(trans.size() == 2, op, ": a GEMM's transposes are two letters, got '", trans, "'");
        // the beta it was timed with: 1 where a cache predates it
        const int beta = g.size() > 5 ? g.at(5).get<int>() : 1;
        require_argument(beta == 0 || beta == 1, op, ": a GEMM's beta is 0 or 1, got ", beta);
        m.gemms.push_back({g.at(0).get<std::int64_t>(), g.at(1).get<std::int64_t>(), g.at(2).get<std::int64_t>(),
                           trans[0], trans[1], g.at(4).get<double>(), beta == 1,
                           g.size() > 6 ? g.at(6).get<double>() : 0.0});
      }
    if (j.contains("gemm_fit")) {
      const auto& f = j.at("gemm_fit");
      m.gemm_fit = GemmFit{f.at("latency_s").get<double>(), f.at("flops_per_s").get<double>(),
                           f.at("bytes_per_s").get<double>(), f.value("sample_weight", 1.0)};
      require_argument(m.gemm_fit.flops_per_s > 0 && m.gemm_fit.latency_s >= 0 && m.gemm_fit.bytes_per_s >= 0 &&
                           m.gemm_fit.sample_weight >= 0 && m.gemm_fit.sample_weight <= 1,
                       op,
                       ": gemm_fit needs flops_per_s > 0, latency_s and bytes_per_s >= 0 and a sample_weight "
                       "in [0, 1]");
    }
    if (j.contains("kernels")) m.kernel_seconds_per_element = j.at("kernels").get<std::map<std::string, double>>();
    if (j.contains("kernel_samples"))
      for (const auto& k : j.at("kernel_samples"))
        m.kernels.push_back(
            {k.at(0).get<std::string>(), k.at(1).get<double>(), k.at(2).get<double>(), k.at(3).get<double>()});
    const std::pair<const char*, decltype(m.collectives)*> tables[] = {
        {"collectives", &m.collectives}, {"nonblocking_collectives", &m.nonblocking_collectives}};
    for (const auto& [name, table_pointer] : tables) {
      auto& table = *table_pointer;
      if (j.contains(name))
        for (const auto& c : j.at(name))
          table[{detail::collective_from_name(c.at("kind").get<std::string>()), c.at("group").get<int>()}] =
              CollectiveFit{c.at("latency_s").get<double>(), c.at("bytes_per_s").get<double>()};
    }
    m.communication_seconds = j.value("communication_seconds", 0.0);
    require_communication_window(m.communication_seconds, op);
    if (j.contains("point_to_point")) {
      const auto link = detail::link_from(j.at("point_to_point"), "point_to_point");
      m.point_to_point = CollectiveFit{link.latency_s, link.bytes_per_s};
    }
    require_argument(j.contains("intra_node") && j.contains("inter_node"), op, ": machine '", m.name,
                     "' needs intra_node and inter_node links");
    m.links.intra = detail::link_from(j.at("intra_node"), "intra_node");
    m.links.inter = detail::link_from(j.at("inter_node"), "inter_node");
  } catch (const nlohmann::json::exception& e) {
    throw InvalidArgument(trident::detail::concat(op, ": ", e.what()));
  }
  require_argument(m.devices_per_node >= 1, op, ": devices_per_node must be >= 1, got ", m.devices_per_node);
  require_argument(m.peak_flops > 0 || !m.gemms.empty(), op, ": machine '", m.name,
                   "' gives neither peak_flops nor measured GEMMs");
  const double share = m.waiting_rank_share.value_or(0.0);
  require_argument(share >= 0 && share <= 1, op, ": waiting_rank_share must be in [0, 1], got ", share);
  require_argument(m.gemm_efficiency > 0 && m.gemm_efficiency <= 1, op, ": gemm_efficiency must be in (0, 1], got ",
                   m.gemm_efficiency);
  require_argument(m.links.intra.bytes_per_s > 0 && m.links.inter.bytes_per_s > 0, op, ": link bandwidths must be > 0");
  return m;
}

inline Machine read_machine(const std::string& path) {
  std::ifstream in(path);
  require_argument(in.good(), "trident::plan::read_machine: cannot open '", path, "'");
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    throw InvalidArgument(trident::detail::concat("trident::plan::read_machine: '", path, "' is not JSON: ", e.what()));
  }
  return machine_from_json(j);
}

}  // namespace trident::plan
