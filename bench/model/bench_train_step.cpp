// The one-rank GPT-2 training step as a fraction of the machine's SGEMM rate, measured in the
// same run at the model's own GEMM shapes, with the time per operator (self time of each
// profiling region). Prints JSON lines. Run with OPENBLAS_NUM_THREADS=1 for one thread.
//   bench_train_step [--layers 4 --hidden 256 --heads 4 --seq 256 --vocab 4096 --batch 8 --steps 6]

#include <trident/data/synthetic.hpp>
#include <trident/model/gemm_peak.hpp>
#include <trident/model/gpt2_trainer.hpp>

#include "region_timer.hpp"

#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Space = Kokkos::DefaultExecutionSpace;

int argument(int argc, char** argv, const char* name, int fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::atoi(argv[i + 1]);
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  Kokkos::initialize(argc, argv);
  {
    trident::model::Gpt2Config config;
    config.layers = argument(argc, argv, "--layers", 4);
    config.hidden = argument(argc, argv, "--hidden", 256);
    config.heads = argument(argc, argv, "--heads", 4);
    config.seq = argument(argc, argv, "--seq", 256);
    config.vocab = argument(argc, argv, "--vocab", 4096);
    const int batch = argument(argc, argv, "--batch", 8);
    const int steps = argument(argc, argv, "--steps", 6);

    trident::model::TrainerSettings settings;
    settings.batch = settings.micro_batch = batch;
    settings.seq = config.seq;
    settings.schedule = {1e-3, 0, steps + 2, 0.1};
    trident::data::SyntheticMarkovLanguage language(config.vocab, 4, 1);
    trident::data::BatchLoader data(language.generate(static_cast<std::int64_t>(batch) * config.seq * 4 + 1), batch,
                                    config.seq);
    Space space;
    trident::model::Gpt2Trainer<float, Space> trainer(space, config, settings, 1);
    trainer.train_step(data);  // warm-up: first-touch of every buffer

    std::vector<double> seconds;
    trident_bench::RegionTimer timer;
    for (int s = 0; s < steps; ++s) seconds.push_back(trainer.train_step(data).seconds);
    std::sort(seconds.begin(), seconds.end());
    const double step_seconds = seconds[seconds.size() / 2];

    // SGEMM at the shapes of one step's forward GEMMs (N = B*T rows), FLOP-weighted.
    const std::int64_t n = static_cast<std::int64_t>(batch) * config.seq, c = config.hidden;
    struct Shape { std::int64_t m, n, k; double count; };
    const std::vector<Shape> shapes = {{n, 3 * c, c, 1.0 * config.layers}, {n, c, c, 1.0 * config.layers},
                                       {n, 4 * c, c, 1.0 * config.layers}, {n, c, 4 * c, 1.0 * config.layers},
                                       {n, config.vocab, c, 1.0}};
    double gemm_flops = 0, gemm_seconds = 0;
    for (const auto& s : shapes) {
      const double rate = trident::model::measure_gemm_gflops<float>(space, s.m, s.n, s.k, 0.2) * 1e9;
      const double flops = 2.0 * s.m * s.n * s.k * s.count;
      gemm_flops += flops;
      gemm_seconds += flops / rate;
      std::printf("{\"bench\":\"sgemm\",\"m\":%lld,\"n\":%lld,\"k\":%lld,\"gflops\":%.2f}\n",
                  static_cast<long long>(s.m), static_cast<long long>(s.n), static_cast<long long>(s.k), rate * 1e-9);
    }
    const double sgemm_rate = gemm_flops / gemm_seconds;
    const double tokens = static_cast<double>(n);
    const double model_flops = tokens * config.training_flops_per_token();
    const double achieved = model_flops / step_seconds;
    std::printf("{\"bench\":\"train_step\",\"backend\":\"%s\",\"layers\":%d,\"hidden\":%d,\"heads\":%d,\"seq\":%d,"
                "\"vocab\":%d,\"batch\":%d,\"step_ms\":%.2f,\"tokens_per_s\":%.0f,\"model_gflops\":%.2f,"
                "\"sgemm_gflops\":%.2f,\"fraction_of_sgemm\":%.4f}\n",
                Space::name(), config.layers, config.hidden, config.heads, config.seq, config.vocab, batch,
                step_seconds * 1e3, tokens / step_seconds, achieved * 1e-9, sgemm_rate * 1e-9, achieved / sgemm_rate);

    // Self time per region over the timed steps, largest first.
    std::vector<std::pair<std::string, trident_bench::RegionTimer::Totals>> regions(timer.totals().begin(),
                                                                                    timer.totals().end());
    std::sort(regions.begin(), regions.end(),
              [](const auto& a, const auto& b) { return a.second.self_seconds > b.second.self_seconds; });
    const double total = step_seconds * steps;
    for (const auto& [name, t] : regions) {
      std::printf("{\"bench\":\"train_step_region\",\"region\":\"%s\",\"calls_per_step\":%.1f,\"self_ms_per_step\":%.3f,"
                  "\"fraction_of_step\":%.4f}\n",
                  name.c_str(), static_cast<double>(t.calls) / steps, t.self_seconds * 1e3 / steps,
                  t.self_seconds / total);
    }
  }
  Kokkos::finalize();
  MPI_Finalize();
  return 0;
}
