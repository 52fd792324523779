// The one-rank GPT-2 training step as a fraction of the machine's SGEMM rate, measured in the
// same run at the model's own GEMM shapes, with the time per operator (self time of each
// profiling region, over as many steps again), for each attention kernel (blocked, then flash: the step and the
// activations it keeps, side by side) with float activations, then with bfloat16 ones (mixed
// precision: float parameters, gradients and AdamW). Prints JSON lines ("dtype"). Run with
// OPENBLAS_NUM_THREADS=1 for one thread.
//   bench_train_step [--layers 4 --hidden 256 --heads 4 --seq 256 --vocab 4096 --batch 8 --steps 6]

#include <trident/data/synthetic.hpp>
#include <trident/gpt2/batch.hpp>
#include <trident/gpt2/spec.hpp>
#include <trident/ops/gemm_peak.hpp>
#include <trident/optim/lr_schedule.hpp>
#include <trident/train.hpp>

#include "gpt2_arguments.hpp"
#include "json_line.hpp"
#include "region_timer.hpp"

#include <mpi.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using Space = Kokkos::DefaultExecutionSpace;

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  Kokkos::initialize(argc, argv);
  {
    const trident::gpt2::Gpt2Config config = trident_bench::gpt2_config_from(argc, argv);
    const int batch = trident_bench::argument(argc, argv, "--batch", 8);
    const int steps = trident_bench::argument(argc, argv, "--steps", 6);

    const auto run = [&](trident::nn::AttentionKernel kernel, auto activation) {
      using Activation = decltype(activation);
      const char* dtype = std::is_same<Activation, float>::value ? "fp32" : "bf16";
      // One rank, the whole batch in one micro-batch, GPT-2's AdamW, clipping at 1.
      trident::train::TrainerSettings settings;
      settings.adamw = trident::optim::AdamWSettings::gpt2();
      settings.seed = 1;
      const trident::optim::CosineSchedule schedule{1e-3, 0, steps + 2, 0.1};
      trident::data::SyntheticMarkovLanguage language(config.vocab, 4, 1);
      trident::data::BatchLoader data(language.generate(static_cast<std::int64_t>(batch) * config.seq * 4 + 1), batch,
                                      config.seq);
      Space space;
      trident::train::Trainer<Activation, Space> trainer(
          space, trident::comm::Communicator(MPI_COMM_SELF, "self"),
          trident::nn::with_attention_kernel(trident::gpt2::gpt2_spec(config), kernel), trident::train::Layout{},
          settings);
      // A step from the loader's tokens: the batch's copy to the device is part of it.
      auto timed_step = [&]() {
        const auto start = std::chrono::steady_clock::now();
        const std::int64_t step = trainer.steps_done() + 1;
        trainer.step(trident::gpt2::gpt2_token_batch<float, Space>(data.batch(step - 1), false), schedule(step));
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      };
      timed_step();  // warm-up: first-touch of every buffer

      // SGEMM at the shapes of one step's forward GEMMs (N = B*T rows); each timed step is
      // paired with a run of these GEMMs right after it, so load from other processes on the
      // machine hits both alike, and the fraction is the median of the pairs' ratios.
      const std::int64_t n = static_cast<std::int64_t>(batch) * config.seq, c = config.hidden;
      struct Shape {
        std::int64_t m, n, k;
        int count;
      };
      const std::vector<Shape> shapes = {{n, 3 * c, c, config.layers},
                                         {n, c, c, config.layers},
                                         {n, 4 * c, c, config.layers},
                                         {n, c, 4 * c, config.layers},
                                         {n, config.vocab, c, 1}};
      using Matrix = Kokkos::View<float**, Kokkos::LayoutRight, Space::memory_space>;
      std::vector<std::array<Matrix, 3>> operands;
      for (const auto& s : shapes) {
        operands.push_back(
            std::array<Matrix, 3>{{Matrix("a", s.m, s.k), Matrix("b", s.k, s.n), Matrix("c", s.m, s.n)}});
        Kokkos::deep_copy(operands.back()[0], 0.5f);
        Kokkos::deep_copy(operands.back()[1], 0.25f);
      }
      auto gemm_rate = [&]() {
        double flops = 0;
        const auto start = std::chrono::steady_clock::now();
        for (std::size_t i = 0; i < shapes.size(); ++i)
          for (int r = 0; r < shapes[i].count; ++r) {
            trident::ops::matmul(space, 'N', 'N', 1.0f, operands[i][0], operands[i][1], 0.0f, operands[i][2]);
            flops += 2.0 * shapes[i].m * shapes[i].n * shapes[i].k;
          }
        trident::compat::fence(space, "bench_train_step");
        return flops / std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      };
      gemm_rate();  // warm-up

      const double tokens = static_cast<double>(n);
      const double model_flops = tokens * config.training_flops_per_token();
      std::vector<double> seconds, ratios, rates;
      for (int s = 0; s < steps; ++s) {
        seconds.push_back(timed_step());
        rates.push_back(gemm_rate());
        ratios.push_back(model_flops / seconds.back() / rates.back());
      }
      // Where the time goes, over as many steps again: region callbacks fence at every region
      // and run attention's heads one at a time, so they stay out of the timed steps.
      double profiled_seconds = 0;
      trident_bench::RegionTimer timer;
      for (int s = 0; s < steps; ++s) profiled_seconds += timed_step();
      auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
      };
      const double step_seconds = median(seconds);
      trident_bench::print_json<Space>(
          "{\"bench\":\"train_step\",\"dtype\":\"%s\",\"attention\":\"%s\",\"backend\":\"%s\",\"layers\":%d,\"hidden\":"
          "%d,\"heads\":%d,"
          "\"seq\":%d,"
          "\"vocab\":%d,\"batch\":%d,\"step_ms\":%.2f,\"tokens_per_s\":%.0f,\"model_gflops\":%.2f,"
          "\"sgemm_gflops\":%.2f,\"fraction_of_sgemm\":%.4f,\"fraction_min\":%.4f,\"fraction_max\":%.4f,"
          "\"activation_bytes\":%lld}\n",
          dtype, trident::ops::attention_kernel_name(kernel), Space::name(), config.layers, config.hidden, config.heads,
          config.seq, config.vocab, batch, step_seconds * 1e3, tokens / step_seconds, model_flops / step_seconds * 1e-9,
          median(rates) * 1e-9, median(ratios), *std::min_element(ratios.begin(), ratios.end()),
          *std::max_element(ratios.begin(), ratios.end()),
          static_cast<long long>(trainer.memory().peak(trident::MemoryCategory::activations)));

      // Self time per region over the profiled steps, largest first.
      std::vector<std::pair<std::string, trident_bench::RegionTimer::Totals>> regions(timer.totals().begin(),
                                                                                      timer.totals().end());
      std::sort(regions.begin(), regions.end(),
                [](const auto& a, const auto& b) { return a.second.self_seconds > b.second.self_seconds; });
      const double total = profiled_seconds;
      for (const auto& [name, t] : regions) {
        trident_bench::print_json<Space>(
            "{\"bench\":\"train_step_region\",\"dtype\":\"%s\",\"attention\":\"%s\",\"region\":\"%s\",\"calls_per_"
            "step\":%.1f,\"self_ms_"
            "per_step\":%.3f,"
            "\"fraction_of_step\":%.4f}\n",
            dtype, trident::ops::attention_kernel_name(kernel), name.c_str(), static_cast<double>(t.calls) / steps,
            t.self_seconds * 1e3 / steps, t.self_seconds / total);
      }
    };
    run(trident::nn::AttentionKernel::blocked, float());
    run(trident::nn::AttentionKernel::flash, float());
    run(trident::nn::AttentionKernel::blocked, trident::bfloat16());
    run(trident::nn::AttentionKernel::flash, trident::bfloat16());
  }
  Kokkos::finalize();
  MPI_Finalize();
  return 0;
}
