// Data-parallel GPT-2 training steps at each ZeRO stage against plain data parallelism, with
// and without overlapping communication and compute, in the same run (variants interleaved
// step by step, so drifting machine load hits them alike). Prints JSON lines.
//
// What overlap hides: "exposed" communication is the time ranks sit blocked waiting for
// gradient reductions and ZeRO-3 parameter gathers. Without overlap every such collective is
// waited for right away, so its exposed time is the whole communication time; the hidden
// fraction is 1 - exposed(overlap) / exposed(no overlap). Times are the slowest rank's.
//   mpiexec -n 2 bench_data_parallel [--layers 4 --hidden 128 --heads 4 --seq 64 --vocab 512
//                                     --batch 8 --micro-batch 2 --bucket-mb 1 --steps 10]

#include <trident/comm/communicator.hpp>
#include <trident/core/memory_accounting.hpp>
#include <trident/data/synthetic.hpp>
#include <trident/gpt2/trainer.hpp>

#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

using Space = Kokkos::DefaultExecutionSpace;
using Trainer = trident::gpt2::Gpt2Trainer<float, Space>;

double argument(int argc, char** argv, const char* name, double fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::atof(argv[i + 1]);
  return fallback;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

double slowest(double seconds) {
  double max = 0;
  MPI_Allreduce(&seconds, &max, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return max;
}

struct Variant {
  int stage = 0;
  bool overlap = true;
  std::unique_ptr<Trainer> trainer;
  std::vector<double> step_ms, blocked_ms, collective_ms;
  std::int64_t bytes_per_step = 0;
};

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  Kokkos::initialize(argc, argv);
  {
    int rank = 0, ranks = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    trident::gpt2::Gpt2Config config;
    config.layers = static_cast<int>(argument(argc, argv, "--layers", 4));
    config.hidden = static_cast<int>(argument(argc, argv, "--hidden", 128));
    config.heads = static_cast<int>(argument(argc, argv, "--heads", 4));
    config.seq = static_cast<int>(argument(argc, argv, "--seq", 64));
    config.vocab = static_cast<int>(argument(argc, argv, "--vocab", 512));
    const int steps = static_cast<int>(argument(argc, argv, "--steps", 10));
    trident::gpt2::TrainerSettings settings;
    settings.batch = static_cast<std::int64_t>(argument(argc, argv, "--batch", 8));
    settings.micro_batch = static_cast<std::int64_t>(argument(argc, argv, "--micro-batch", 2));
    settings.seq = config.seq;
    settings.schedule = {1e-3, 0, steps + 4, 0.1};
    const double bucket_mb = argument(argc, argv, "--bucket-mb", 1.0);

    trident::data::SyntheticMarkovLanguage language(config.vocab, 4, 1);
    trident::data::BatchLoader data(language.generate(settings.batch * config.seq * 4 + 1), settings.batch, config.seq);
    const trident::comm::Communicator world(MPI_COMM_WORLD, "dp");
    std::vector<Variant> variants;
    for (int stage = 0; stage <= 3; ++stage) {
      for (bool overlap : {true, false}) {
        trident::data_parallel::DataParallelSettings parallel;
        parallel.zero_stage = stage;
        parallel.bucket_mb = bucket_mb;
        parallel.overlap = overlap;
        Variant v;
        v.stage = stage;
        v.overlap = overlap;
        v.trainer = std::make_unique<Trainer>(Space(), config, settings, 1, world, parallel);
        variants.push_back(std::move(v));
      }
    }
    for (auto& v : variants)  // warm-up: first touch of every buffer
      for (int s = 0; s < 2; ++s) v.trainer->train_step(data);
    for (int s = 0; s < steps; ++s) {
      for (auto& v : variants) {
        const auto before = world.stats().total_bytes();
        const auto report = v.trainer->train_step(data);
        v.bytes_per_step = world.stats().total_bytes() - before;
        const auto& times = v.trainer->parallel()->times();
        v.step_ms.push_back(slowest(report.seconds) * 1e3);
        v.blocked_ms.push_back(slowest(times.blocked_seconds) * 1e3);
        v.collective_ms.push_back(slowest(times.collective_seconds) * 1e3);
      }
    }
    const std::int64_t psi = variants.front().trainer->model().parameters().size();
    if (rank == 0) {
      for (const auto& v : variants) {
        const auto& memory = v.trainer->parallel()->memory();
        using trident::MemoryCategory;
        const auto model_state = memory.held(MemoryCategory::parameters) + memory.held(MemoryCategory::gradients) +
                                 memory.held(MemoryCategory::optimizer_state);
        std::printf(
            "{\"bench\":\"data_parallel_step\",\"backend\":\"%s\",\"ranks\":%d,\"parameters\":%lld,"
            "\"zero\":%d,\"overlap\":%s,\"bucket_mb\":%g,\"step_ms\":%.3f,\"blocked_ms\":%.3f,"
            "\"collectives_ms\":%.3f,\"bytes_per_step\":%lld,\"model_state_bytes\":%lld,"
            "\"peak_bytes\":%lld}\n",
            Space::name(), ranks, static_cast<long long>(psi), v.stage, v.overlap ? "true" : "false", bucket_mb,
            median(v.step_ms), median(v.blocked_ms), median(v.collective_ms), static_cast<long long>(v.bytes_per_step),
            static_cast<long long>(model_state), static_cast<long long>(memory.peak_total()));
      }
      const double plain_ms = median(variants[0].step_ms);
      for (int stage = 0; stage <= 3; ++stage) {
        const auto& on = variants[static_cast<std::size_t>(2 * stage)];
        const auto& off = variants[static_cast<std::size_t>(2 * stage + 1)];
        const double exposed_on = median(on.blocked_ms), exposed_off = median(off.blocked_ms);
        std::printf(
            "{\"bench\":\"data_parallel_summary\",\"ranks\":%d,\"zero\":%d,\"step_ms\":%.3f,"
            "\"step_vs_plain_dp\":%.3f,\"step_ms_without_overlap\":%.3f,\"exposed_comm_ms\":%.3f,"
            "\"exposed_comm_ms_without_overlap\":%.3f,\"hidden_fraction\":%.3f}\n",
            ranks, stage, median(on.step_ms), median(on.step_ms) / plain_ms, median(off.step_ms), exposed_on,
            exposed_off, exposed_off > 0 ? 1.0 - exposed_on / exposed_off : 0.0);
      }
    }
  }
  Kokkos::finalize();
  MPI_Finalize();
  return 0;
}
