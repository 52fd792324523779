// The planner against real runs on these ranks:
//  - its predicted peak memory per rank against what the Trainer allocates (Kokkos's own
//    allocation events), within 10%, for a GPT-2 (with either attention kernel) and an MLP in
//    the layouts of the world, with float and with bfloat16 activations;
//  - a Trainer with layout = auto: every rank plans the same layout, and it trains with the
//    one-rank losses (1e-4 relative; 1e-2 with bfloat16 activations, whose 8 significant bits
//    round every sum a layout reorders at 2^-8 ~ 4e-3).

#include "trident_test.hpp"

#include <trident/core/allocation_peak.hpp>
#include <trident/data/batches.hpp>
#include <trident/data/synthetic.hpp>
#include <trident/gpt2/batch.hpp>
#include <trident/gpt2/spec.hpp>
#include <trident/plan/calibrate.hpp>
#include <trident/plan/estimate.hpp>
#include <trident/plan/read_cache_size.hpp>
#include <trident/plan/read_core_binding.hpp>
#include <trident/train.hpp>
#include <trident/train/choose_layout.hpp>

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

using namespace trident;

namespace {

using Space = Kokkos::DefaultExecutionSpace;

gpt2::Gpt2Config small_gpt() {
  gpt2::Gpt2Config c;
  c.layers = 4, c.heads = 4, c.hidden = 32, c.seq = 16, c.vocab = 64;
  return c;
}

nn::ModelSpec small_mlp() {
  return nn::megatron_pairs(
      nn::sequential({nn::linear(6, 64), nn::gelu(), nn::linear(64, 64), nn::gelu(), nn::linear(64, 2)},
                     nn::Loss::mean_squared_error));
}

struct Case {
  nn::ModelSpec spec;
  std::int64_t samples = 8;
  bool tokens = true;
};

train::Batch<float, Space> batch_of(const Case& c) {
  const std::int64_t rows = c.samples * nn::rows_per_sample(c.spec);
  if (c.tokens) {
    data::SyntheticMarkovLanguage language(small_gpt().vocab, 4, 1);
    data::BatchLoader loader(language.generate(rows * 2 + 1), c.samples, small_gpt().seq);
    return gpt2::gpt2_token_batch<float, Space>(loader.batch(0), false);
  }
  Kokkos::View<float**, Kokkos::LayoutRight, Kokkos::HostSpace> x("x", rows, 6), y("y", rows, 2);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (int j = 0; j < 6; ++j) x(r, j) = static_cast<float>(std::sin(0.3 * r + j));
    for (int j = 0; j < 2; ++j) y(r, j) = static_cast<float>(std::cos(0.2 * r - j));
  }
  train::Batch<float, Space> b;
  b.inputs = train::to_device<Space>(x);
  b.targets.values = train::to_device<Space>(y);
  return b;
}

double max_over_world(double value) {
  double result = value;
  MPI_Allreduce(&value, &result, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return result;
}

// Whether every rank holds the same `value` (its least is its most).
bool same_on_every_rank(double value) {
  return -max_over_world(-value) == max_over_world(value);
}

// Every layout of the world worth telling apart for memory: each factorisation, and on it ZeRO,
// recomputation, sequence parallelism and the schedules.
std::vector<plan::Candidate> layouts(int world, const nn::ModelSpec& spec, std::int64_t samples) {
  std::vector<plan::Candidate> result;
  for (int tp = 1; tp <= world; ++tp)
    for (int pp = 1; tp * pp <= world; ++pp) {
      if (world % (tp * pp) || !plan::tensor_parallel_fits(spec, tp)) continue;
      plan::Candidate c;
      c.tp = tp, c.pp = pp, c.dp = world / (tp * pp);
      c.micro_batch = samples / c.dp / (pp > 1 ? 2 * pp : 1);
      result.push_back(c);
      plan::Candidate v = c;
      v.recompute = true;
      result.push_back(v);
      if (c.dp > 1) {
        v = c, v.zero_stage = 1, result.push_back(v);
        v = c, v.zero_stage = 3, result.push_back(v);
      }
      if (tp > 1 && (c.micro_batch * nn::rows_per_sample(spec)) % tp == 0)
        v = c, v.sequence_parallel = true, result.push_back(v);
      if (pp > 1) {
        v = c, v.schedule = "zb", result.push_back(v);
        v = c, v.schedule = "gpipe", result.push_back(v);
      }
    }
  return result;
}

// Predicted against allocated for every layout of `cases`, training with Activation values
// (bfloat16: mixed precision, half the bytes of every activation, float everything else).
template <class Activation>
void check_memory(const comm::Communicator& world, const std::vector<Case>& cases) {
  plan::Machine machine;  // memory does not depend on speeds
  machine.peak_flops = 1e12;
  machine.memory_bytes_per_s = 1e11;
  machine.links.intra = machine.links.inter = comm::LinkCost{1e-6, 1e10};
  for (const Case& c : cases) {
    const plan::Workload work{c.spec, c.samples, c.tokens ? 8.0 : 4.0 * (6 + 2), 0,
                              static_cast<double>(sizeof(Activation))};
    for (const plan::Candidate& layout : layouts(world.size(), c.spec, c.samples)) {
      const plan::Estimate predicted = plan::estimate(work, layout, machine, false);
      AllocationPeak::install();
      const std::int64_t before = AllocationPeak::live();
      AllocationPeak::reset_peak();
      {
        plan::Candidate cut = layout;
        cut.stage_layers = predicted.stage_layers;
        train::Trainer<Activation, Space> trainer(world, c.spec, train::to_layout(cut));
        trainer.step(batch_of(c), 1e-3);
      }
      const double measured = max_over_world(static_cast<double>(AllocationPeak::peak() - before));
      AllocationPeak::uninstall();
      INFO((c.tokens ? "GPT-2 " : "MLP ") << sizeof(Activation) * 8 << "-bit activations, " << layout.describe()
                                          << ": predicted " << predicted.peak_bytes << " bytes, measured " << measured);
      CHECK(std::abs(predicted.peak_bytes / measured - 1) <= 0.10);
    }
  }
}

}  // namespace

TEST_CASE("plan: predicted peak memory per rank is within 10% of what the run allocates", "[plan][mpi]") {
  const comm::Communicator world(MPI_COMM_WORLD, "world");
  const auto flash_gpt = nn::with_attention_kernel(gpt2::gpt2_spec(small_gpt()), nn::AttentionKernel::flash);
  check_memory<float>(
      world, {Case{gpt2::gpt2_spec(small_gpt()), 8, true}, Case{flash_gpt, 8, true}, Case{small_mlp(), 32, false}});
}

TEST_CASE("plan: in mixed precision predicted peak memory per rank is within 10% of what the run allocates",
          "[plan][mpi]") {
  const comm::Communicator world(MPI_COMM_WORLD, "world");
  const auto flash_gpt = nn::with_attention_kernel(gpt2::gpt2_spec(small_gpt()), nn::AttentionKernel::flash);
  check_memory<bfloat16>(
      world, {Case{gpt2::gpt2_spec(small_gpt()), 8, true}, Case{flash_gpt, 8, true}, Case{small_mlp(), 32, false}});
}

namespace {

// Plans with layout = auto on every rank, checks that every rank chose the same layout, and
// trains three steps beside one rank, the losses equal within `tolerance` (relative).
template <class Activation>
void check_auto_layout(const comm::Communicator& world, const Case& c, double tolerance) {
  train::TrainerSettings settings;
  settings.seed = 7;
  train::AutoLayout automatic;
  automatic.global_batch = c.samples;
  automatic.print = false;
  automatic.bucket_mb = 0.5;
  train::Trainer<Activation, Space> planned(world, c.spec, automatic, settings);
  const train::Layout& l = planned.layout();
  CHECK(l.world_size() == world.size());
  CHECK(l.bucket_mb == 0.5);  // the buckets the plans priced
  std::vector<int> mine = {l.dp,
                           l.tp,
                           l.pp,
                           l.zero_stage,
                           static_cast<int>(l.micro_batch),
                           l.virtual_stages,
                           l.recompute ? 1 : 0,
                           l.sequence_parallel ? 1 : 0};
  std::vector<int> lowest(mine.size()), highest(mine.size());
  MPI_Allreduce(mine.data(), lowest.data(), static_cast<int>(mine.size()), MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(mine.data(), highest.data(), static_cast<int>(mine.size()), MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  CHECK(lowest == highest);
  train::Layout one;
  one.micro_batch = c.samples;
  train::Trainer<Activation, Space> reference(comm::Communicator(MPI_COMM_SELF, "self"), c.spec, one, settings);
  const auto batch = batch_of(c);
  for (int step = 1; step <= 3; ++step) {
    const double expected = reference.step(batch, 1e-3).loss;
    const double got = planned.step(batch, 1e-3).loss;
    INFO(sizeof(Activation) * 8 << "-bit activations, " << l.describe() << ", step " << step);
    CHECK(std::abs(got - expected) <= tolerance * std::abs(expected));
  }
}

}  // namespace

TEST_CASE("plan: a Trainer with layout = auto plans alike on every rank and trains as one rank", "[plan][mpi]") {
  const comm::Communicator world(MPI_COMM_WORLD, "world");
  for (const Case& c : {Case{gpt2::gpt2_spec(small_gpt()), 8, true}, Case{small_mlp(), 32, false}})
    check_auto_layout<float>(world, c, 1e-4);
  check_auto_layout<bfloat16>(world, Case{gpt2::gpt2_spec(small_gpt()), 8, true}, 1e-2);
  train::AutoLayout no_buckets;
  no_buckets.global_batch = 8;
  no_buckets.bucket_mb = 0;
  CHECK_THROWS_WITH((train::Trainer<float, Space>(world, small_mlp(), no_buckets, train::TrainerSettings{})),
                    Catch::Contains("AutoLayout::bucket_mb must be a positive size in MiB, got 0"));
}

TEST_CASE("plan: each pass times every collective of every group size and the message, alike on every rank",
          "[plan][mpi]") {
  const comm::Communicator world(MPI_COMM_WORLD, "world");
  plan::CommunicationTimes times;
  plan::time_communication<float>(Space(), world, 3, times);
  plan::time_communication<float>(Space(), world, 3, times);
  if (world.size() == 1) {
    CHECK(times.collectives.empty());  // nothing to time
    CHECK(times.passes() == 0);
    return;
  }
  CHECK(times.passes() == 2);
  std::size_t groups = 0;
  for (int g = 2; g <= world.size(); ++g) groups += world.size() % g == 0 ? 1 : 0;
  CHECK(times.collectives.size() == 5 * groups);  // three blocking kinds, two posted
  for (int g = 2; g <= world.size(); ++g) {
    if (world.size() % g) continue;
    for (auto kind :
         {plan::CollectiveKind::all_reduce, plan::CollectiveKind::all_gather, plan::CollectiveKind::reduce_scatter})
      CHECK(times.collectives.count({kind, g, false}) == 1);
    CHECK(times.collectives.count({plan::CollectiveKind::all_reduce, g, true}) == 1);
    CHECK(times.collectives.count({plan::CollectiveKind::reduce_scatter, g, true}) == 1);
  }
  for (const auto& [key, series] : times.collectives) {
    REQUIRE(series.passes.size() == 2);
    REQUIRE(series.bytes.size() == 3);
    CHECK(static_cast<std::int64_t>(series.bytes[2]) % (4 * std::get<1>(key)) == 0);  // whole parts per rank
    for (const auto& pass : series.passes)
      for (double seconds : pass) {
        CHECK(seconds > 0);
        CHECK(same_on_every_rank(seconds));
      }
  }
  plan::Machine m;
  plan::fit_communication(times, m);
  CHECK(m.collectives.size() == 3 * groups);
  CHECK(m.nonblocking_collectives.size() == 2 * groups);
  CHECK(m.point_to_point.bytes_per_s > 0);
  CHECK(m.links.intra.bytes_per_s == m.collectives.at({plan::CollectiveKind::all_reduce, world.size()}).bytes_per_s);
}

TEST_CASE("plan: the collectives are timed in passes over a window, each rank stopping after the same pass",
          "[plan][mpi]") {
  const comm::Communicator world(MPI_COMM_WORLD, "world");
  // A window that never closes is refused on every rank, before anything is timed.
  plan::Machine m;
  plan::CalibrationRequest request;
  for (double bad : {-1.0, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
    request.communication_seconds = bad;
    CHECK_THROWS_WITH(plan::calibrate<float>(Space(), world, request, m),
                      Catch::Contains("communication_seconds must be a finite number >= 0"));
    CHECK_THROWS_WITH(plan::time_communication_for<float>(Space(), world, 1, 2, bad),
                      Catch::Contains("communication_seconds must be a finite number >= 0"));
  }
  // No window: exactly the passes asked for.
  const plan::CommunicationTimes least = plan::time_communication_for<float>(Space(), world, 1, 2, 0);
  CHECK(least.passes() == (world.size() == 1 ? 0 : 2));
  if (world.size() == 1) return;
  // A window: passes go on until it has gone by, as many on every rank.
  const auto start = std::chrono::steady_clock::now();
  const plan::CommunicationTimes window = plan::time_communication_for<float>(Space(), world, 1, 2, 0.3);
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(max_over_world(elapsed) >= 0.3);  // the rank that began first saw the window close
  CHECK(window.passes() >= 2);
  CHECK(same_on_every_rank(window.passes()));
  for (const auto& [key, series] : window.collectives) CHECK(static_cast<int>(series.passes.size()) == window.passes());
}

TEST_CASE("plan: calibration times each GEMM at its beta, cached and cold, and measures the overlap once",
          "[plan][mpi]") {
  const comm::Communicator world(MPI_COMM_WORLD, "world");
  int id = static_cast<int>(::getpid());
  MPI_Bcast(&id, 1, MPI_INT, 0, MPI_COMM_WORLD);
  const std::string path =
      (std::filesystem::temp_directory_path() / ("trident_calibration_" + std::to_string(id) + ".json")).string();
  const auto request = plan::calibration_request(small_mlp(), {8}, {1});
  const plan::Machine machine = plan::calibrate_cached<float>(Space(), world, request, path);
  // Every shape the layers ask for, once, at its beta: the GELUs add their linears' biases, so
  // those products write their outputs, as every input gradient does; the last adds onto its bias.
  for (const plan::Gemm& g : request.gemms)
    CHECK(std::count_if(machine.gemms.begin(), machine.gemms.end(),
                        [&](const plan::GemmSample& s) { return s.same_shape(g); }) == 1);
  const auto written = std::count_if(machine.gemms.begin(), machine.gemms.end(),
                                     [](const plan::GemmSample& s) { return !s.accumulate; });
  CHECK(written >= 3);
  CHECK(written < static_cast<std::ptrdiff_t>(machine.gemms.size()));
  // Where the host says how large its last-level cache is (that of the CPUs the ranks may run
  // on), each shape is timed cold as well, its operands pushed out of that cache first, alike on
  // every rank.
  const bool host = std::is_same<Space::memory_space, Kokkos::HostSpace>::value;
  std::vector<int> cpus;
  for (const auto& of_rank : plan::allowed_cpus_of_ranks(world))
    cpus.insert(cpus.end(), of_rank.begin(), of_rank.end());
  CHECK(machine.cache_bytes == (host ? plan::last_level_cache_bytes("/sys/devices/system/cpu", cpus) : 0.0));
  CHECK(same_on_every_rank(machine.cache_bytes));
  for (const plan::GemmSample& s : machine.gemms) {
    CHECK((machine.cache_bytes > 0 ? s.cold_seconds > 0 : s.cold_seconds == 0));
    CHECK(same_on_every_rank(s.cold_seconds));
  }
  if (world.size() == 1) {
    CHECK(!machine.reduction_overlap);  // nothing to reduce
  } else {
    REQUIRE(machine.reduction_overlap);
    const double overlap = *machine.reduction_overlap;
    CHECK(overlap >= 0);
    CHECK(overlap <= 1);
    CHECK(same_on_every_rank(overlap));
  }
  // The cache holds it all: calibrating again measures nothing anew.
  const plan::Machine again = plan::calibrate_cached<float>(Space(), world, request, path);
  CHECK(again.reduction_overlap == machine.reduction_overlap);
  CHECK(again.collectives.size() == machine.collectives.size());
  for (const auto& [key, fit] : machine.collectives) {
    CHECK(again.collectives.at(key).latency_s == fit.latency_s);
    CHECK(again.collectives.at(key).bytes_per_s == fit.bytes_per_s);
  }
  CHECK(again.point_to_point.bytes_per_s == machine.point_to_point.bytes_per_s);
  REQUIRE(again.gemms.size() == machine.gemms.size());
  for (std::size_t i = 0; i < again.gemms.size(); ++i) {
    CHECK(again.gemms[i].seconds == machine.gemms[i].seconds);
    CHECK(again.gemms[i].cold_seconds == machine.gemms[i].cold_seconds);
    CHECK(again.gemms[i].accumulate == machine.gemms[i].accumulate);
  }
  // A cache that predates the cold timing gets it, keeping the rest as it was.
  if (world.rank() == 0) {
    nlohmann::json j;
    std::ifstream(path) >> j;
    for (auto& g : j["gemms"]) g.erase(6);
    std::ofstream(path) << j.dump(1);
  }
  world.barrier();
  const plan::Machine completed = plan::calibrate_cached<float>(Space(), world, request, path);
  REQUIRE(completed.gemms.size() == machine.gemms.size());
  for (std::size_t i = 0; i < completed.gemms.size(); ++i) {
    CHECK(completed.gemms[i].seconds == machine.gemms[i].seconds);
    CHECK((machine.cache_bytes > 0 ? completed.gemms[i].cold_seconds > 0 : completed.gemms[i].cold_seconds == 0));
  }
  // A file timed past another cache (its ranks bound elsewhere) times its GEMMs cold again and
  // keeps this cache.
  if (machine.cache_bytes > 0) {
    if (world.rank() == 0) {
      nlohmann::json j;
      std::ifstream(path) >> j;
      j["cache_bytes"] = machine.cache_bytes / 2;
      for (auto& g : j["gemms"]) g[6] = 1.0;  // far from any time this GEMM takes
      std::ofstream(path) << j.dump(1);
    }
    world.barrier();
    const plan::Machine rebound = plan::calibrate_cached<float>(Space(), world, request, path);
    CHECK(rebound.cache_bytes == machine.cache_bytes);
    for (const plan::GemmSample& s : rebound.gemms) {
      CHECK(s.cold_seconds > 0);
      CHECK(s.cold_seconds < 1.0);
    }
    world.barrier();  // rank 0 has written the file
    CHECK(plan::read_machine(path).cache_bytes == machine.cache_bytes);
  }
  // A longer window for the collectives than the file's times them again and keeps the window;
  // a shorter one takes the file's.
  plan::CalibrationRequest longer = request;
  longer.communication_seconds = 0.2;
  const plan::Machine widened = plan::calibrate_cached<float>(Space(), world, longer, path);
  const double kept = world.size() >= 2 ? 0.2 : 0.0;  // one rank has nothing to time
  CHECK(widened.communication_seconds == kept);
  longer.communication_seconds = 0.1;
  const plan::Machine reread = plan::calibrate_cached<float>(Space(), world, longer, path);
  CHECK(reread.communication_seconds == kept);
  REQUIRE(reread.collectives.size() == widened.collectives.size());
  for (const auto& [key, fit] : widened.collectives) CHECK(reread.collectives.at(key).bytes_per_s == fit.bytes_per_s);
  CHECK(reread.point_to_point.bytes_per_s == widened.point_to_point.bytes_per_s);
  world.barrier();
  if (world.rank() == 0) std::filesystem::remove(path);
}
