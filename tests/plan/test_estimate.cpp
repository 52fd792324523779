// The planner's estimates against the formulas they must reproduce (the pipeline bubble, ZeRO's
// memory per stage), its search (sorted, pruned by memory, cuts that add up), and the machine
// description's JSON and its errors.

#include "trident_test.hpp"

#include <trident/gpt2/spec.hpp>
#include <trident/pipeline/bubble.hpp>
#include <trident/plan/calibrate.hpp>
#include <trident/plan/read_cache_size.hpp>
#include <trident/plan/search.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include <unistd.h>

using namespace trident;

namespace {

// A machine where only GEMMs take time: the pipeline alone decides the shape of the step.
plan::Machine gemms_only() {
  plan::Machine m;
  m.name = "gemms only";
  m.peak_flops = 1e12;
  m.memory_bytes_per_s = 1e30;
  m.links.intra = m.links.inter = comm::LinkCost{0, 1e30};
  m.devices_per_node = 64;
  return m;
}

// Eight equal layers: equal pipeline stages for p = 2, 4, 8.
nn::ModelSpec equal_layers() {
  std::vector<nn::LayerSpec> layers;
  for (int i = 0; i < 8; ++i) layers.push_back(nn::linear(64, 64, nn::Parallel::none, false));
  return nn::sequential(layers, nn::Loss::mean_squared_error);
}

gpt2::Gpt2Config small_gpt() {
  gpt2::Gpt2Config c;
  c.layers = 4, c.heads = 4, c.hidden = 64, c.seq = 32, c.vocab = 128;
  return c;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("plan: a replayed 1F1B and GPipe step has the published bubble", "[plan]") {
  const plan::Workload work{equal_layers(), 64, 0};
  for (int p : {2, 4, 8})
    for (const char* schedule : {"1f1b", "gpipe"}) {
      plan::Candidate c;
      c.pp = p;
      c.schedule = schedule;
      c.micro_batch = 8;  // m = 8
      const auto e = plan::estimate(work, c, gemms_only(), true);
      INFO(schedule << " p = " << p);
      const double makespan = e.step_seconds - e.optimizer_seconds - e.overhead_seconds;
      CHECK(e.bubble_seconds / makespan == Approx(pipeline::one_f_one_b_bubble_fraction(p, 8)).epsilon(1e-9));
      CHECK(e.stage_layers == std::vector<int>(static_cast<std::size_t>(p), 8 / p));
    }
  // Interleaving: (p - 1) / (v m + p - 1).
  plan::Candidate c;
  c.pp = 2, c.schedule = "interleaved", c.virtual_stages = 2, c.micro_batch = 8;
  const auto e = plan::estimate(work, c, gemms_only(), true);
  CHECK(e.bubble_seconds / (e.step_seconds - e.optimizer_seconds - e.overhead_seconds) ==
        Approx(pipeline::interleaved_bubble_fraction(2, 8, 2)).epsilon(1e-9));
}

TEST_CASE("plan: memory per rank follows ZeRO's formulas", "[plan]") {
  const auto spec = gpt2::gpt2_spec(small_gpt());
  const plan::Workload work{spec, 8, 0};
  plan::CostShape shape;
  shape.samples = 2;
  shape.seq = 32;
  double p = 0, largest = 0;
  for (const auto& c : plan::layer_costs(spec, shape)) {
    p += c.parameters;
    largest = std::max(largest, c.parameters);
  }
  const double e = 4, d = 4;
  plan::Candidate c;
  c.dp = 4, c.micro_batch = 2;
  c.zero_stage = 0;
  auto est = plan::estimate(work, c, gemms_only(), false);
  CHECK(est.parameter_bytes == p * e);
  CHECK(est.gradient_bytes == p * e);
  CHECK(est.optimizer_bytes == 2 * p * e);
  c.zero_stage = 1;
  est = plan::estimate(work, c, gemms_only(), false);
  CHECK(est.optimizer_bytes == 2 * p * e / d);
  CHECK(est.gradient_bytes == p * e + p * e / d);  // the reduced shard beside the full gradients
  c.zero_stage = 3;
  est = plan::estimate(work, c, gemms_only(), false);
  CHECK(est.optimizer_bytes == 2 * p * e / d);
  CHECK(est.parameter_bytes == p * e / d + 2 * largest * e);  // the shard, a block gathered and the next
  // the shard, a block's gradients written while the one after it is reduced, and this rank's part of that
  CHECK(est.gradient_bytes == p * e / d + 2 * largest * e + largest * e / d);
  // Recomputation keeps less; a pipeline splits the parameters.
  plan::Candidate r;
  r.micro_batch = 8;
  const double kept = plan::estimate(work, r, gemms_only(), false).activation_bytes;
  r.recompute = true;
  CHECK(plan::estimate(work, r, gemms_only(), false).activation_bytes < kept / 2);
  plan::Candidate pp;
  pp.pp = 2, pp.micro_batch = 4;
  CHECK(plan::estimate(work, pp, gemms_only(), false).parameter_bytes < 0.8 * p * e);
}

TEST_CASE("plan: gradients reduced in 16 bits cost the collectives half the bytes", "[plan]") {
  plan::Machine machine = gemms_only();
  // Bandwidth alone, and slow: time is bytes, and backward hides none of it worth counting.
  machine.links.intra = machine.links.inter = comm::LinkCost{0, 1e3};
  plan::Workload work{gpt2::gpt2_spec(small_gpt()), 16, 0};
  plan::Workload halved = work;
  halved.reduced_gradient_bytes = 2;
  for (int zero = 0; zero <= 2; ++zero) {
    INFO("ZeRO-" << zero);
    plan::Candidate c;
    c.dp = 4, c.micro_batch = 4, c.zero_stage = zero;
    const double full = plan::estimate(work, c, machine, false).data_parallel_seconds;
    const double half = plan::estimate(halved, c, machine, false).data_parallel_seconds;
    REQUIRE(full > 0);
    // The parameters' all-gather after ZeRO-1/2's step still moves 4 bytes an element.
    CHECK(std::abs(half - (zero == 0 ? 0.5 : 0.75) * full) <= 1e-4 * full);
  }
}

TEST_CASE("plan: the search ranks fitting layouts fastest first and prunes by memory", "[plan]") {
  const plan::Workload work{gpt2::gpt2_spec(small_gpt()), 16, 0};
  plan::Machine machine = gemms_only();
  machine.devices_per_node = 4;
  auto plans = plan::search(work, 4, machine);
  REQUIRE(!plans.ranked.empty());
  CHECK(plans.too_large == 0);
  CHECK(plans.considered == static_cast<std::int64_t>(plans.ranked.size()));
  for (std::size_t i = 1; i < plans.ranked.size(); ++i)
    CHECK(plans.ranked[i - 1].estimate.step_seconds <= plans.ranked[i].estimate.step_seconds);
  for (const auto& p : plans.ranked) {
    CHECK(p.layout.dp * p.layout.tp * p.layout.pp == 4);
    int layers = 0;
    for (int count : p.layout.stage_layers) {
      layers += count;
      CHECK(count >= 1);
    }
    CHECK(layers == small_gpt().layers + 2);
    CHECK(static_cast<int>(p.layout.stage_layers.size()) == p.layout.stages());
  }
  // A cap between the smallest and the largest need: only what fits, and some pruned.
  double least = 1e300, most = 0;
  for (const auto& p : plans.ranked) {
    least = std::min(least, p.estimate.peak_bytes);
    most = std::max(most, p.estimate.peak_bytes);
  }
  machine.memory_bytes = 0.5 * (least + most);
  plans = plan::search(work, 4, machine);
  REQUIRE(!plans.ranked.empty());
  CHECK(plans.too_large > 0);
  for (const auto& p : plans.ranked) CHECK(p.estimate.peak_bytes <= machine.memory_bytes);
  machine.memory_bytes = 0.5 * least;
  CHECK(plan::search(work, 4, machine).ranked.empty());
}

TEST_CASE("plan: a machine reads back what it writes; a bad description names its fault", "[plan]") {
  plan::Machine m = gemms_only();
  m.gemms.push_back({8, 16, 32, 'N', 'T', 1.5e-6});
  m.kernel_seconds_per_element["gelu_forward"] = 2e-9;
  m.collectives[{plan::CollectiveKind::all_gather, 2}] = {1e-5, 2e9};
  m.cores = 2;
  m.communication_seconds = 60;
  const plan::Machine back = plan::machine_from_json(plan::to_json(m));
  CHECK(back.name == m.name);
  CHECK(back.cores == 2);
  CHECK(back.communication_seconds == 60);
  REQUIRE(back.gemms.size() == 1);
  CHECK(back.gemm_seconds({8, 16, 32, false, 'N', 'T'}) == 1.5e-6);
  CHECK(back.kernel_seconds({"gelu_forward", 100, 0}) == Approx(2e-7));
  CHECK(back.collective_seconds(plan::CollectiveKind::all_gather, 2, 2e9) == Approx(1 + 1e-5));
  auto j = plan::to_json(m);
  j.erase("intra_node");
  CHECK(message_of([&] { plan::machine_from_json(j); }).find("intra_node") != std::string::npos);
  j = plan::to_json(m);
  j["runtime"] = "pytorch";
  CHECK(message_of([&] { plan::machine_from_json(j); }).find("runtime 'pytorch'") != std::string::npos);
  j = plan::to_json(m);
  j["gemm_efficiency"] = 1.5;
  CHECK(message_of([&] { plan::machine_from_json(j); }).find("gemm_efficiency") != std::string::npos);
  j = plan::to_json(m);
  j["communication_seconds"] = -2;
  CHECK(message_of([&] {
          plan::machine_from_json(j);
        }).find("communication_seconds must be a finite number >= 0, got -2") != std::string::npos);
  CHECK(message_of([] { plan::read_machine("/nonexistent/machine.json"); }).find("cannot open") != std::string::npos);
}

TEST_CASE("plan: a calibration whose times do not grow with the bytes fits a latency alone", "[plan]") {
  const plan::CollectiveFit noisy = plan::detail::fitted({64e3, 1e6}, {3e-3, 1e-3});
  CHECK(noisy.latency_s == Approx(2e-3));
  CHECK(noisy.seconds(1e9) == Approx(2e-3));
  const plan::CollectiveFit line = plan::detail::fitted({1e3, 1e6}, {1e-5 + 1e3 / 1e9, 1e-5 + 1e6 / 1e9});
  CHECK(line.latency_s == Approx(1e-5));
  CHECK(line.bytes_per_s == Approx(1e9));
}

TEST_CASE("plan: communication is priced by each size's median over the passes, however many", "[plan]") {
  // An all-reduce of 1 us + bytes / 1 GB/s, and passes at three times that (a slow pace of the host).
  const std::vector<double> bytes = {16e3, 256e3, 2e6};
  const auto pass = [&](double slowdown) {
    std::vector<double> seconds;
    for (double b : bytes) seconds.push_back(slowdown * (1e-6 + b / 1e9));
    return seconds;
  };
  const auto priced = [&](const std::vector<double>& slowdowns) {
    plan::CommunicationTimes times;
    auto& reduce = times.collectives[{plan::CollectiveKind::all_reduce, 4, false}];
    auto& posted = times.collectives[{plan::CollectiveKind::reduce_scatter, 2, true}];
    reduce.bytes = posted.bytes = times.point_to_point.bytes = bytes;
    for (double slowdown : slowdowns) {
      reduce.passes.push_back(pass(slowdown));
      posted.passes.push_back(pass(2 * slowdown));
      times.point_to_point.passes.push_back(pass(slowdown / 2));
    }
    plan::Machine m;
    plan::fit_communication(times, m);
    return m;
  };
  // One slow pass of three is left out; of five, the pace of most passes is priced.
  for (const auto& slowdowns : std::vector<std::vector<double>>{{1, 3, 1}, {3, 1, 1, 1, 3}, {3, 1, 3, 1, 3}}) {
    const double pace =
        std::count(slowdowns.begin(), slowdowns.end(), 3.0) * 2 > static_cast<std::ptrdiff_t>(slowdowns.size()) ? 3 : 1;
    const plan::Machine m = priced(slowdowns);
    const plan::CollectiveFit reduce = m.collectives.at({plan::CollectiveKind::all_reduce, 4});
    CHECK(reduce.latency_s == Approx(pace * 1e-6));
    CHECK(reduce.bytes_per_s == Approx(1e9 / pace));
    // posted collectives are priced apart from blocking ones
    CHECK(m.collectives.count({plan::CollectiveKind::reduce_scatter, 2}) == 0);
    CHECK(m.nonblocking_collectives.at({plan::CollectiveKind::reduce_scatter, 2}).bytes_per_s == Approx(0.5e9 / pace));
    CHECK(m.point_to_point.bytes_per_s == Approx(2e9 / pace));
    // a node's links are the widest all-reduce
    CHECK(m.links.intra.bytes_per_s == Approx(1e9 / pace));
    CHECK(m.links.inter.latency_s == Approx(pace * 1e-6));
  }
}

namespace {

// GEMM shapes of a small transformer's passes, and their time on a machine of a known latency,
// rate and bandwidth; `deviation(i)` multiplies the i-th.
std::vector<plan::GemmTiming> gemm_timings(const std::function<double(std::size_t)>& deviation) {
  const plan::GemmFit truth{5e-6, 50e9, 4e9, 1};
  std::vector<plan::GemmTiming> timings;
  for (std::int64_t m : {64, 256, 1024})
    for (std::int64_t n : {32, 128, 512})
      for (std::int64_t k : {64, 384}) {
        const plan::Gemm g{m, n, k, false, 'N', 'T'};
        timings.push_back({g, truth.seconds(g, 4) * deviation(timings.size())});
      }
  return timings;
}

// A deterministic spread of factors between 1 - width and 1 + width.
double spread(std::size_t i, double width, unsigned seed) {
  const unsigned h = (static_cast<unsigned>(i) + 1) * 2654435761u ^ seed * 40503u;
  return 1 + width * (2.0 * static_cast<double>(h % 1000) / 999.0 - 1);
}

}  // namespace

TEST_CASE("plan: a GEMM fit recovers latency, rate and bandwidth, and never goes negative", "[plan]") {
  const auto exact = gemm_timings([](std::size_t) { return 1.0; });
  const plan::GemmFit fit = plan::fit_gemms(exact, 4);
  REQUIRE(fit.fitted());
  CHECK(fit.latency_s == Approx(5e-6).epsilon(1e-6));
  CHECK(fit.flops_per_s == Approx(50e9).epsilon(1e-6));
  CHECK(fit.bytes_per_s == Approx(4e9).epsilon(1e-6));
  // Times of the FLOPs alone: the other terms stay zero instead of fitting noise below it.
  std::vector<plan::GemmTiming> compute_bound = exact;
  for (auto& t : compute_bound) t.seconds = t.shape.flops() / 80e9;
  const plan::GemmFit rate = plan::fit_gemms(compute_bound, 4);
  CHECK(rate.flops_per_s == Approx(80e9).epsilon(1e-6));
  CHECK(rate.latency_s >= 0);
  CHECK(rate.bytes_per_s >= 0);
  CHECK_FALSE(plan::fit_gemms({exact.front()}, 4).fitted());
}

TEST_CASE("plan: a measured shape moves its price off the fit as far as its two timings agree", "[plan]") {
  // Noise that does not repeat between the two passes: the samples carry nothing the fit lacks.
  const auto first = gemm_timings([](std::size_t i) { return spread(i, 0.3, 1); });
  const auto second = gemm_timings([](std::size_t i) { return spread(i, 0.3, 2); });
  std::vector<plan::GemmTiming> mean = first;
  for (std::size_t i = 0; i < mean.size(); ++i) mean[i].seconds = std::sqrt(first[i].seconds * second[i].seconds);
  plan::GemmFit fit = plan::fit_gemms(mean, 4);
  const double noise_weight = plan::gemm_sample_weight(first, second, fit, 4);
  CHECK(noise_weight < 0.3);
  // Shape effects both passes see, with little noise on top: the samples are kept.
  const auto shaped_a = gemm_timings([](std::size_t i) { return spread(i, 0.3, 7) * spread(i, 0.01, 1); });
  const auto shaped_b = gemm_timings([](std::size_t i) { return spread(i, 0.3, 7) * spread(i, 0.01, 2); });
  const double shape_weight = plan::gemm_sample_weight(shaped_a, shaped_b, plan::fit_gemms(shaped_a, 4), 4);
  CHECK(shape_weight > 0.95);

  // More passes: the same rule over all of them, two passes agreeing with the pairwise form; a
  // pass slower as a whole (a spell of the machine) is not noise between the shapes.
  CHECK(plan::gemm_sample_weight({first, second}, fit, 4) == Approx(noise_weight).margin(1e-12));
  auto slow_pass = shaped_b;
  for (auto& t : slow_pass) t.seconds *= 1.4;
  CHECK(plan::gemm_sample_weight(shaped_a, slow_pass, plan::fit_gemms(shaped_a, 4), 4) ==
        Approx(shape_weight).margin(1e-12));
  const auto third = gemm_timings([](std::size_t i) { return spread(i, 0.3, 3); });
  std::vector<plan::GemmTiming> mean3 = first;
  for (std::size_t i = 0; i < mean3.size(); ++i)
    mean3[i].seconds = std::cbrt(first[i].seconds * second[i].seconds * third[i].seconds);
  const plan::GemmFit fit3 = plan::fit_gemms(mean3, 4);
  CHECK(plan::gemm_sample_weight({first, second, third}, fit3, 4) < 0.5);  // 18 shapes: variances to ~35%
  const auto shaped_c = gemm_timings([](std::size_t i) { return spread(i, 0.3, 7) * spread(i, 0.01, 3); });
  CHECK(plan::gemm_sample_weight({shaped_a, shaped_b, shaped_c}, plan::fit_gemms(shaped_a, 4), 4) > 0.95);
  // A sample is the passes' geometric mean, shape by shape.
  const std::vector<double> columns =
      plan::detail::geometric_means({{1.0, 8.0, 2.0}, {4.0, 1.0, 2.0}, {2.0, 1.0, 2.0}});
  CHECK(columns[0] == Approx(2.0));
  CHECK(columns[1] == Approx(2.0));
  CHECK(columns[2] == Approx(2.0));

  // The machine prices a measured shape between the fit and its sample, by the weight.
  plan::Machine m = gemms_only();
  const plan::Gemm g = first[5].shape;
  m.gemms.push_back({g.m, g.n, g.k, g.trans_a, g.trans_b, 2e-3});
  fit.sample_weight = 0.25;
  m.gemm_fit = fit;
  const double smooth = fit.seconds(g, 4);
  CHECK(m.gemm_seconds(g) == Approx(smooth * std::pow(2e-3 / smooth, 0.25)));
  const plan::Gemm unmeasured{100, 200, 300, false, 'N', 'N'};
  CHECK(m.gemm_seconds(unmeasured) == Approx(fit.seconds(unmeasured, 4)));
  // It survives JSON, and a weight outside [0, 1] is refused, naming the field.
  const plan::Machine back = plan::machine_from_json(plan::to_json(m));
  CHECK(back.gemm_seconds(g) == Approx(m.gemm_seconds(g)));
  CHECK(back.gemm_fit.sample_weight == 0.25);
  auto j = plan::to_json(m);
  j["gemm_fit"]["sample_weight"] = 1.5;
  CHECK(message_of([&] { plan::machine_from_json(j); }).find("gemm_fit") != std::string::npos);
}

TEST_CASE("plan: calibration times as many ranks of a node at once as it has cores", "[plan]") {
  comm::Topology topology;
  topology.node_of_rank = {0, 0, 0, 0, 1, 1, 1};
  topology.node_names = {"a", "b"};
  const std::vector<int> expected_two_cores = {0, 0, 1, 1, 0, 0, 1};
  for (int r = 0; r < 7; ++r) {
    topology.rank = r;
    const auto two = plan::detail::compute_turns(topology, 2);
    CHECK(two.turn == expected_two_cores[static_cast<std::size_t>(r)]);
    CHECK(two.turns == 2);
    const auto one = plan::detail::compute_turns(topology, 1);  // one core: a rank at a time
    CHECK(one.turn == (r < 4 ? r : r - 4));
    CHECK(one.turns == 4);
    CHECK(plan::detail::compute_turns(topology, 8).turns == 1);  // every rank a core of its own
  }
}

TEST_CASE("plan: ranks sharing cores replay the pipeline on them, waiting ranks by their measured share", "[plan]") {
  const plan::Workload work{equal_layers(), 64, 0};
  plan::Candidate c;
  c.dp = 2, c.pp = 2, c.micro_batch = 8;  // 4 ranks, m = 4
  plan::Machine own = gemms_only();
  own.devices_per_node = 4;
  plan::Machine polling = own;  // 2 cores, and a waiting rank takes as much of one as a computing rank
  polling.cores = 2;
  polling.waiting_rank_share = 1;
  const auto alone = plan::estimate(work, c, own, true), shared = plan::estimate(work, c, polling, true);
  // Every rank at half speed all the time: the replayed pipeline and the optimizer take twice as
  // long; the reduction and the fixed agreements do not change.
  CHECK(shared.step_seconds ==
        Approx(2 * alone.step_seconds - alone.data_parallel_seconds - alone.overhead_seconds).epsilon(1e-9));
  CHECK(shared.optimizer_seconds == Approx(2 * alone.optimizer_seconds).epsilon(1e-12));
  // Waiting ranks that give their cores back: the bubbles go to the other pipeline's ranks, so
  // the step is shorter than with polling, and no shorter than the node's work over its cores.
  plan::Machine lending = polling;
  lending.waiting_rank_share = 0;
  const auto lent = plan::estimate(work, c, lending, true);
  CHECK(lent.step_seconds < shared.step_seconds);
  const double node_work = 4 * alone.compute_seconds / 2;
  CHECK(lent.step_seconds - lent.data_parallel_seconds - lent.overhead_seconds - lent.optimizer_seconds >=
        node_work * (1 - 1e-12));
  // The machine keeps its share, and one never measured stays unset (calibration measures it);
  // one outside [0, 1] is refused, naming it.
  CHECK(plan::machine_from_json(plan::to_json(polling)).waiting_rank_share == 1.0);
  CHECK(plan::machine_from_json(plan::to_json(lending)).waiting_rank_share == 0.0);
  CHECK(!plan::machine_from_json(plan::to_json(own)).waiting_rank_share.has_value());
  auto j = plan::to_json(polling);
  j["waiting_rank_share"] = 1.5;
  CHECK(message_of([&] { plan::machine_from_json(j); }).find("waiting_rank_share must be in [0, 1], got 1.5") !=
        std::string::npos);
}

TEST_CASE("plan: ranks bound to cores share only their own", "[plan]") {
  // dp 2 x pp 2 on 2 cores: the mesh makes ranks 0 and 2 the first stage, 1 and 3 the second.
  const plan::Workload work{equal_layers(), 64, 0};
  plan::Candidate c;
  c.dp = 2, c.pp = 2, c.micro_batch = 8;
  plan::Machine balanced = gemms_only();
  balanced.devices_per_node = 4;
  balanced.cores = 2;
  balanced.waiting_rank_share = 0;
  // bound round-robin (mpiexec --map-by core): each stage's copies on one core
  plan::Machine crowded = balanced;
  crowded.binding = plan::binding_from_cpus({{0}, {1}, {0}, {1}}, 1);
  // bound in pairs: each core runs one copy of each stage
  plan::Machine spread = balanced;
  spread.binding = plan::binding_from_cpus({{0}, {0}, {1}, {1}}, 1);
  const auto b = plan::estimate(work, c, balanced, true), x = plan::estimate(work, c, crowded, true),
             y = plan::estimate(work, c, spread, true);
  // With each stage's copies on one core, no stage ever runs faster than half speed: its bubbles
  // cannot be lent, so the pipeline takes twice its time on cores of its own.
  plan::Machine own = gemms_only();
  own.devices_per_node = 4;
  const auto alone = plan::estimate(work, c, own, true);
  const double pipeline_alone =
      alone.step_seconds - alone.data_parallel_seconds - alone.overhead_seconds - alone.optimizer_seconds;
  CHECK(x.step_seconds - x.data_parallel_seconds - x.overhead_seconds - x.optimizer_seconds ==
        Approx(2 * pipeline_alone).epsilon(1e-9));
  CHECK(x.optimizer_seconds == Approx(2 * alone.optimizer_seconds).epsilon(1e-12));
  // One copy of each stage per core lends the bubbles as the host's balance does.
  CHECK(y.step_seconds == Approx(b.step_seconds).epsilon(1e-9));
  CHECK(x.step_seconds > 1.05 * y.step_seconds);
  // Megatron's mesh order makes ranks 0 and 1 the first stage: on the round-robin binding, one
  // copy of each stage per core.
  plan::Candidate megatron = c;
  megatron.order = megatron_order;
  CHECK(plan::estimate(work, megatron, crowded, true).step_seconds == Approx(y.step_seconds).epsilon(1e-9));
  // A core for every rank, bound: as unbound; a binding of another world size is not used.
  plan::Machine one_each = own;
  one_each.cores = 4;
  const auto unbound_one_each = plan::estimate(work, c, one_each, true);
  one_each.binding = plan::binding_from_cpus({{0}, {1}, {2}, {3}}, 1);
  CHECK(plan::estimate(work, c, one_each, true).step_seconds == Approx(unbound_one_each.step_seconds).epsilon(1e-12));
  plan::Machine other_world = balanced;
  other_world.binding = plan::binding_from_cpus({{0}, {0}, {1}, {1}, {0}, {1}}, 1);
  CHECK(plan::estimate(work, c, other_world, true).step_seconds == Approx(b.step_seconds).epsilon(1e-12));
  // The binding belongs to the launch: the machine's JSON does not keep it.
  CHECK(!plan::machine_from_json(plan::to_json(crowded)).binding.bound());
  // A binding naming a group it does not have is refused.
  plan::Machine broken = crowded;
  broken.binding.group_of_rank[3] = 5;
  CHECK(message_of([&] { plan::estimate(work, c, broken, true); }).find("names group 5 of 2") != std::string::npos);
  // Without a pipeline the busiest core's ranks set the step: two ranks on one core, one on the
  // other, is as slow as two on every core.
  plan::Candidate flat;
  flat.dp = 3, flat.micro_batch = 8;
  plan::Machine three = balanced;
  three.devices_per_node = 3;
  const auto unbound = plan::estimate(plan::Workload{equal_layers(), 48, 0}, flat, three, true);
  three.binding = plan::binding_from_cpus({{0}, {0}, {1}}, 1);
  const auto lopsided = plan::estimate(plan::Workload{equal_layers(), 48, 0}, flat, three, true);
  CHECK(lopsided.compute_seconds == Approx(unbound.compute_seconds * 2 / 1.5).epsilon(1e-9));
}

namespace {

// Four replicas of equal_layers() on a node of four ranks linked at 10 us and 1 GB/s, computing
// at `peak_flops`.
plan::Candidate four_replicas() {
  plan::Candidate c;
  c.dp = 4, c.micro_batch = 16;
  return c;
}
plan::Machine four_linked_ranks(double peak_flops) {
  plan::Machine m = gemms_only();
  m.devices_per_node = 4;
  m.links.intra = m.links.inter = comm::LinkCost{1e-5, 1e9};
  m.peak_flops = peak_flops;
  return m;
}

}  // namespace

TEST_CASE("plan: on crowded cores the data-parallel reduction is not hidden behind backward", "[plan]") {
  plan::Workload work{equal_layers(), 64, 0};
  work.bucket_bytes = 64 * 64 * 4;  // a layer's weights per bucket
  const plan::Candidate c = four_replicas();
  const plan::Machine own = four_linked_ranks(1e9);  // a layer's backward longer than its bucket's reduction
  plan::Machine crowded = own;
  crowded.cores = 2;
  const auto hidden = plan::estimate(work, c, own, true), exposed = plan::estimate(work, c, crowded, true);
  // With a core each, all but the last bucket (the first layer's, posted as backward ends)
  // hides; with two ranks on every core, the whole reduction shows.
  const double bucket = own.collective_seconds(plan::CollectiveKind::all_reduce, 4, 64 * 64 * 4, 1, 1, true);
  const double whole = own.collective_seconds(plan::CollectiveKind::all_reduce, 4, 8 * 64 * 64 * 4, 1, 1, true);
  CHECK(bucket > 1e-5);
  CHECK(hidden.data_parallel_seconds == Approx(bucket).epsilon(1e-9));
  CHECK(exposed.data_parallel_seconds == Approx(whole).epsilon(1e-9));
}

TEST_CASE("plan: the measured share of the reduction that overlaps backward hides, the rest shows", "[plan]") {
  plan::Workload work{equal_layers(), 64, 0};
  plan::Candidate c = four_replicas();
  plan::Machine m = four_linked_ranks(2e10);  // a layer's backward shorter than its bucket's reduction
  const auto at = [&](std::optional<double> overlap) {
    m.reduction_overlap = overlap;
    return plan::estimate(work, c, m, true);
  };
  // One bucket (the model is far below the 25 MiB cap) is posted as backward ends: nothing hides.
  const double whole = m.collective_seconds(plan::CollectiveKind::all_reduce, 4, 8 * 64 * 64 * 4, 1, 1, true);
  CHECK(at(std::nullopt).data_parallel_seconds == Approx(whole).epsilon(1e-9));
  CHECK(at(0.0).data_parallel_seconds == Approx(whole).epsilon(1e-9));
  // A bucket per layer: each waits for the one before, so the backward of every layer after the
  // first bucket's (seven of eight) runs beside reductions; the machine's share of it hides.
  work.bucket_bytes = 64 * 64 * 4;
  const double bucket = m.collective_seconds(plan::CollectiveKind::all_reduce, 4, 64 * 64 * 4, 1, 1, true);
  const double layer_backward = 2 * 2.0 * 16 * 64 * 64 / m.peak_flops;
  const auto none = at(0.0), half = at(0.5), unmeasured = at(std::nullopt);
  CHECK(none.data_parallel_seconds == Approx(8 * bucket).epsilon(1e-9));
  CHECK(unmeasured.data_parallel_seconds == Approx(8 * bucket - 7 * layer_backward).epsilon(1e-9));
  CHECK(at(1.0).data_parallel_seconds == Approx(unmeasured.data_parallel_seconds).epsilon(1e-12));
  CHECK(half.data_parallel_seconds == Approx(8 * bucket - 3.5 * layer_backward).epsilon(1e-9));
  CHECK(half.step_seconds - none.step_seconds == Approx(-3.5 * layer_backward).epsilon(1e-6));
  // ZeRO-1 reduce-scatters the same buckets, then all-gathers the parameters after the step.
  c.zero_stage = 1;
  const double scatter = m.collective_seconds(plan::CollectiveKind::reduce_scatter, 4, 64 * 64 * 4, 1, 1, true);
  const double gather = m.collective_seconds(plan::CollectiveKind::all_gather, 4, 8 * 64 * 64 * 4, 1, 1, false);
  CHECK(at(0.0).data_parallel_seconds == Approx(8 * scatter + gather).epsilon(1e-9));
  // It survives JSON; a share outside [0, 1] is refused, naming the field.
  m.reduction_overlap = 0.25;
  CHECK(plan::machine_from_json(plan::to_json(m)).reduction_overlap == 0.25);
  CHECK(!plan::machine_from_json(plan::to_json(gemms_only())).reduction_overlap);
  auto j = plan::to_json(m);
  j["reduction_overlap"] = 1.5;
  CHECK(message_of([&] { plan::machine_from_json(j); }).find("reduction_overlap") != std::string::npos);
}

TEST_CASE("plan: a zero-bubble pipeline pays for copying its output gradients to the weight pass", "[plan]") {
  const plan::Workload work{equal_layers(), 64, 0};
  plan::Candidate c;
  c.pp = 2, c.micro_batch = 8;
  const plan::Machine free_copies = gemms_only();
  plan::Machine priced = free_copies;
  priced.kernel_seconds_per_element["deferred_copy"] = 1e-6;
  c.schedule = "zb";
  const double extra = plan::estimate(work, c, priced, true).compute_seconds -
                       plan::estimate(work, c, free_copies, true).compute_seconds;
  // The first stage's four linears copy their 8 x 64 output gradients in each of 8 micro-batches
  // (the last stage's loss gradient stays the slot's own, so it copies three).
  CHECK(extra == Approx(8 * 4 * 8 * 64 * 1e-6).epsilon(1e-9));
  c.schedule = "1f1b";  // which keeps none
  CHECK(plan::estimate(work, c, priced, true).step_seconds ==
        Approx(plan::estimate(work, c, free_copies, true).step_seconds).epsilon(1e-12));
}

TEST_CASE("plan: the share two jobs run together saved of the shorter one", "[plan]") {
  CHECK(plan::detail::overlap_share(2.0, 1.0, 3.0) == 0.0);  // one after the other
  CHECK(plan::detail::overlap_share(2.0, 1.0, 2.0) == 1.0);  // the reduction wholly hidden
  CHECK(plan::detail::overlap_share(2.0, 1.0, 2.25) == Approx(0.75));
  CHECK(plan::detail::overlap_share(0.5, 1.0, 1.25) == Approx(0.5));  // the compute the shorter
  CHECK(plan::detail::overlap_share(2.0, 1.0, 3.5) == 0.0);           // slower together: nothing hid
  CHECK(plan::detail::overlap_share(2.0, 1.0, 1.5) == 1.0);           // faster than either: all of it
  CHECK(plan::detail::overlap_share(0.0, 1.0, 1.0) == 0.0);
}

TEST_CASE("plan: a GEMM is priced at the beta it is called with", "[plan]") {
  plan::Machine m = gemms_only();
  const plan::Gemm added{64, 32, 16, false, 'N', 'T', true}, written{64, 32, 16, false, 'N', 'T', false};
  m.gemms.push_back({64, 32, 16, 'N', 'T', 1e-5, true});
  m.gemms.push_back({64, 32, 16, 'N', 'T', 3e-5, false});
  CHECK(m.gemm_seconds(added) == 1e-5);
  CHECK(m.gemm_seconds(written) == 3e-5);
  const plan::Machine back = plan::machine_from_json(plan::to_json(m));
  CHECK(back.gemm_seconds(added) == 1e-5);
  CHECK(back.gemm_seconds(written) == 3e-5);
  // A cache that predates the beta (and the cold timing) timed every shape with beta 1.
  auto j = plan::to_json(m);
  for (auto& g : j["gemms"]) g.erase(6), g.erase(5);
  const plan::Machine old = plan::machine_from_json(j);
  REQUIRE(old.gemms.size() == 2);
  CHECK(old.gemms[0].accumulate);
  CHECK(old.gemms[1].accumulate);
  // One that predates the cold timing keeps its beta and has no cold time.
  j = plan::to_json(m);
  for (auto& g : j["gemms"]) g.erase(6);
  const plan::Machine warm_only = plan::machine_from_json(j);
  REQUIRE(warm_only.gemms.size() == 2);
  CHECK(!warm_only.gemms[1].accumulate);
  CHECK(warm_only.gemms[1].cold_seconds == 0);
  j = plan::to_json(m);
  j["gemms"][1][5] = 2;
  CHECK(message_of([&] { plan::machine_from_json(j); }).find("beta is 0 or 1, got 2") != std::string::npos);
}

TEST_CASE("plan: a binding is groups of equal CPU sets, and none where they overlap", "[plan]") {
  const plan::CoreBinding round_robin = plan::binding_from_cpus({{0}, {1}, {0}, {1}}, 1);
  CHECK(round_robin.group_of_rank == std::vector<int>{0, 1, 0, 1});
  CHECK(round_robin.group_cores == std::vector<double>{1, 1});
  CHECK(round_robin.crowding() == 2);
  // Two CPUs per group for ranks of one thread: two cores each; for ranks of 4 threads, at least one.
  CHECK(plan::binding_from_cpus({{3, 2}, {0, 1}, {2, 3}}, 1).group_cores == std::vector<double>{2, 2});
  CHECK(plan::binding_from_cpus({{3, 2}, {0, 1}, {2, 3}}, 1).group_of_rank == std::vector<int>{0, 1, 0});
  CHECK(plan::binding_from_cpus({{0, 1}, {2, 3}}, 4).group_cores == std::vector<double>{1, 1});
  CHECK(plan::binding_from_cpus({{0, 1}, {2, 3}}, 1).crowding() == 0.5);
  // Not a binding: every rank anywhere (the host balances), overlapping sets, an unknown set.
  CHECK(!plan::binding_from_cpus({{0, 1}, {0, 1}, {1, 0}}, 1).bound());
  CHECK(!plan::binding_from_cpus({{0, 1}, {1, 2}}, 1).bound());
  CHECK(!plan::binding_from_cpus({{0}, {}}, 1).bound());
  // The planner's report names the groups, or asks for a binding when ranks share cores unbound.
  CHECK(plan::core_sharing_note(4, 2, round_robin) ==
        "  ranks bound to cores, the group of each: 0,1,0,1 (priced where they are)\n");
  CHECK(plan::core_sharing_note(2, 2, plan::binding_from_cpus({{0}, {1}}, 1)).empty());
  CHECK(plan::core_sharing_note(4, 2, {}).find("4 ranks share 2 cores unbound") != std::string::npos);
  CHECK(plan::core_sharing_note(2, 2, {}).empty());
  CHECK(plan::core_sharing_note(4, 2, {}, 2).find("a binding is read on one node only") != std::string::npos);
  // This process's own CPUs are known on Linux.
#ifdef __linux__
  CHECK(!plan::allowed_cpus().empty());
#endif
}

TEST_CASE("plan: bound ranks take their calibration turns within their cores", "[plan]") {
  comm::Topology topology;
  topology.node_of_rank = {0, 0, 0, 0};
  topology.node_names = {"a"};
  // Bound in pairs: ranks 0 and 1 share core 0, so they cannot time together.
  const plan::CoreBinding pairs = plan::binding_from_cpus({{0}, {0}, {1}, {1}}, 1);
  const std::vector<int> expected = {0, 1, 0, 1};
  for (int r = 0; r < 4; ++r) {
    topology.rank = r;
    const auto t = plan::detail::compute_turns(topology, 2, pairs);
    CHECK(t.turn == expected[static_cast<std::size_t>(r)]);
    CHECK(t.turns == 2);
    CHECK(t.first == 2);                                            // one rank of each core
    CHECK(plan::detail::compute_turns(topology, 2).turn == r / 2);  // unbound: by place on the node
  }
}

TEST_CASE("plan: a waiting rank's share of a core from how much it slowed the computing ones", "[plan]") {
  CHECK(plan::detail::waiting_share_from(1.0, 2, 2) == 0);
  CHECK(plan::detail::waiting_share_from(0.97, 2, 2) == 0);  // faster beside them: noise
  CHECK(plan::detail::waiting_share_from(2.0, 2, 2) == 1);   // (2 + 2) / 2
  CHECK(plan::detail::waiting_share_from(1.5, 2, 2) == Approx(0.5));
  CHECK(plan::detail::waiting_share_from(1.25, 2, 6) == Approx(1.0 / 12));
  CHECK(plan::detail::waiting_share_from(5.0, 2, 2) == 1);  // at most a whole share
  CHECK(plan::detail::waiting_share_from(2.0, 2, 0) == 0);  // no rank waits
}

TEST_CASE("plan: a GEMM is priced cold for the share of the node's memory its cache cannot hold", "[plan]") {
  plan::Machine m = gemms_only();
  const plan::Gemm slow{64, 32, 16, false, 'N', 'T', true}, fast{32, 32, 16, false, 'N', 'T', true},
      never{16, 32, 16, false, 'N', 'T', true};
  m.gemms.push_back({64, 32, 16, 'N', 'T', 1e-5, true, 3e-5});    // 3x slower from memory
  m.gemms.push_back({32, 32, 16, 'N', 'T', 1e-5, true, 0.9e-5});  // timing noise: never faster
  m.gemms.push_back({16, 32, 16, 'N', 'T', 1e-5, true, 0});       // not timed cold
  CHECK(m.gemm_cold_ratio(slow) == 3);
  CHECK(m.gemm_cold_ratio(fast) == 1);
  CHECK(m.gemm_cold_ratio(never) == 1);
  CHECK(m.gemm_seconds(slow) == 1e-5);
  CHECK(m.gemm_seconds(slow, 0.5) == Approx(2e-5).epsilon(1e-12));
  CHECK(m.gemm_seconds(slow, 1) == Approx(3e-5).epsilon(1e-12));
  CHECK(m.gemm_seconds(fast, 1) == 1e-5);
  // The share: what 4 ranks keep beyond the cache, of what they keep; none without a cache.
  m.cache_bytes = 32 << 20;
  CHECK(m.cold_share(16 << 20, 4) == Approx(0.5).epsilon(1e-12));
  CHECK(m.cold_share(8 << 20, 4) == 0);
  CHECK(m.cold_share(4 << 20, 4) == 0);
  CHECK(m.cold_share(64 << 20, 1) == Approx(0.5).epsilon(1e-12));
  m.cache_bytes = 0;
  CHECK(m.cold_share(1e12, 4) == 0);
  // The machine keeps its cache and cold times; a negative cache is refused, naming it.
  m.cache_bytes = 32 << 20;
  const plan::Machine back = plan::machine_from_json(plan::to_json(m));
  CHECK(back.cache_bytes == m.cache_bytes);
  CHECK(back.gemm_seconds(slow, 0.5) == m.gemm_seconds(slow, 0.5));
  auto j = plan::to_json(m);
  j["cache_bytes"] = -1;
  CHECK(message_of([&] { plan::machine_from_json(j); }).find("cache_bytes must be >= 0, got -1") != std::string::npos);
}

TEST_CASE("plan: a layout's GEMMs slow down by the share of its ranks' memory the cache cannot hold", "[plan]") {
  // Linear layers only, every shape measured at 1 GFLOP/s cached and half that from memory: the
  // step is its GEMMs, priced (1 + share) times their cached price.
  const plan::Workload work{equal_layers(), 64, 0};
  plan::Machine m = gemms_only();
  m.devices_per_node = 1;
  for (const plan::Gemm& g : plan::calibration_request(work.spec, {16, 64}, {1}).gemms)
    m.gemms.push_back({g.m, g.n, g.k, g.trans_a, g.trans_b, g.flops() / 1e9, g.accumulate, 2 * g.flops() / 1e9});
  plan::Candidate whole;
  whole.micro_batch = 64;
  const plan::Estimate cached = plan::estimate(work, whole, m);
  CHECK(cached.cold_share == 0);
  CHECK(cached.mean_rank_bytes == cached.peak_bytes);  // one rank
  m.cache_bytes = cached.peak_bytes / 4;
  const plan::Estimate cold = plan::estimate(work, whole, m);
  CHECK(cold.cold_share == Approx(0.75).epsilon(1e-12));
  CHECK(cold.step_seconds == Approx(1.75 * cached.step_seconds).epsilon(1e-9));
  CHECK(cold.peak_bytes == cached.peak_bytes);
  // Smaller micro-batches keep less: less of it is cold. A cache that holds it all changes nothing.
  plan::Candidate smaller = whole;
  smaller.micro_batch = 16;
  const plan::Estimate less = plan::estimate(work, smaller, m);
  CHECK(less.cold_share > 0);
  CHECK(less.cold_share < cold.cold_share);
  m.cache_bytes = cached.peak_bytes;
  CHECK(plan::estimate(work, whole, m).step_seconds == cached.step_seconds);
  // Two pipeline ranks on a node keep unequal memory (1F1B's first stage holds more micro-batches):
  // the share is of their mean, over both.
  m.devices_per_node = 2;
  m.cache_bytes = cached.peak_bytes / 4;
  plan::Candidate pipeline = whole;
  pipeline.pp = 2, pipeline.micro_batch = 16;
  const plan::Estimate staged = plan::estimate(work, pipeline, m);
  CHECK(staged.mean_rank_bytes < staged.peak_bytes);
  CHECK(staged.cold_share > 0);
  CHECK(staged.cold_share == Approx(1 - m.cache_bytes / (2 * staged.mean_rank_bytes)).epsilon(1e-12));
}

TEST_CASE("plan: the last-level cache is every cache of the highest level once, as sysfs lists them", "[plan]") {
  CHECK(plan::cache_size_bytes("32768K") == 32 << 20);
  CHECK(plan::cache_size_bytes("1M") == 1 << 20);
  CHECK(plan::cache_size_bytes("512") == 512);
  CHECK(plan::cache_size_bytes("K") == 0);
  CHECK(plan::cache_size_bytes("") == 0);
  // Four CPUs: private L1 and L2, an L3 shared by each pair.
  const auto root = std::filesystem::temp_directory_path() / ("trident_sysfs_" + std::to_string(::getpid()));
  const auto write = [](const std::filesystem::path& dir, const std::string& type, int level, const std::string& size,
                        const std::string& cpus) {
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "type") << type << "\n";
    std::ofstream(dir / "level") << level << "\n";
    std::ofstream(dir / "size") << size << "\n";
    std::ofstream(dir / "shared_cpu_list") << cpus << "\n";
  };
  for (int cpu = 0; cpu < 4; ++cpu) {
    const auto cache = root / ("cpu" + std::to_string(cpu)) / "cache";
    write(cache / "index0", "Data", 1, "48K", std::to_string(cpu));
    write(cache / "index1", "Instruction", 1, "32K", std::to_string(cpu));
    write(cache / "index2", "Unified", 2, "1024K", std::to_string(cpu));
    write(cache / "index3", "Unified", 3, "32768K", cpu < 2 ? "0-1" : "2-3");
  }
  CHECK(plan::last_level_cache_bytes(root.string()) == 64 << 20);
  // Ranks bound to some CPUs meet only their caches: one pair's, or both.
  CHECK(plan::last_level_cache_bytes(root.string(), {0, 1}) == 32 << 20);
  CHECK(plan::last_level_cache_bytes(root.string(), {1}) == 32 << 20);
  CHECK(plan::last_level_cache_bytes(root.string(), {1, 2}) == 64 << 20);
  CHECK(plan::last_level_cache_bytes(root.string(), {7}) == 0);
  std::filesystem::remove_all(root / "cpu2" / "cache");   // offline: its partner still lists the cache
  std::filesystem::create_directories(root / "cpufreq");  // not a CPU
  CHECK(plan::last_level_cache_bytes(root.string()) == 64 << 20);
  std::filesystem::remove_all(root / "cpu3");
  CHECK(plan::last_level_cache_bytes(root.string()) == 32 << 20);
  std::filesystem::remove_all(root);
  CHECK(plan::last_level_cache_bytes(root.string()) == 0);
}
