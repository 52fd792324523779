// Data-parallel GPT-2 training steps at each ZeRO stage against plain data parallelism, with
// and without overlapping communication and compute, in the same run (variants interleaved
// step by step, so drifting machine load hits them alike). Prints JSON lines.
//
// Each variant runs the step train::Trainer runs without a pipeline (nn::Model of the GPT-2
// spec, its data-parallel engine called from the model's unit hooks), on the engine directly:
// the Trainer always overlaps, and the blocked time is the engine's.
//
// What overlap hides: "exposed" communication is the time ranks sit blocked waiting for
// gradient reductions and ZeRO-3 parameter gathers. Without overlap every such collective is
// waited for right away, so its exposed time is the whole communication time; the hidden
// fraction is 1 - exposed(overlap) / exposed(no overlap). Times are the slowest rank's.
//
// Each variant also runs with its gradients reduced in bf16 (half the bytes on the wire, and
// a rounding pass either side): "data_parallel_precision" lines compare the two.
//   mpiexec -n 2 bench_data_parallel [--layers 4 --hidden 128 --heads 4 --seq 64 --vocab 512
//                                     --batch 8 --micro-batch 2 --bucket-mb 1 --steps 10]

#include <trident/comm/communicator.hpp>
#include <trident/core/compat.hpp>
#include <trident/core/memory_accounting.hpp>
#include <trident/data/synthetic.hpp>
#include <trident/data_parallel/data_parallel.hpp>
#include <trident/gpt2/batch.hpp>
#include <trident/gpt2/spec.hpp>
#include <trident/nn/model.hpp>
#include <trident/optim/clip.hpp>
#include <trident/optim/lr_schedule.hpp>

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

using Space = Kokkos::DefaultExecutionSpace;
using Model = trident::nn::Model<float, Space>;
using Engine = trident::data_parallel::DataParallel<float, Space>;

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

Model& initialized(Model& model) {
  model.initialize(1);
  return model;
}

// One replica of GPT-2 and its data-parallel engine, stepped as train::Trainer steps it.
class Replica {
 public:
  Replica(const trident::gpt2::Gpt2Config& config, const trident::comm::Communicator& dp,
          const trident::data_parallel::DataParallelSettings& parallel)
      : m_model(Space(), trident::gpt2::gpt2_spec(config)),
        m_engine(Space(), dp, initialized(m_model).parameters(), m_model.unit_plan(),
                 trident::optim::AdamWSettings::gpt2(), parallel) {
    Engine* engine = &m_engine;
    m_model.set_hooks({[engine](int unit) { engine->before_forward(unit); },
                       [engine](int unit) { engine->before_backward(unit); },
                       [engine](int unit) { engine->after_backward(unit); }});
  }

  const Model& model() const { return m_model; }
  const Engine& engine() const { return m_engine; }

  // Step `step` on this rank's rows of the loader's batch, in micro-batches of `micro_batch`
  // sequences; clipping at 1 and the learning rate of `schedule`. Returns its seconds.
  double step(const trident::data::BatchLoader& data, std::int64_t micro_batch,
              const trident::optim::CosineSchedule& schedule) {
    const auto start = std::chrono::steady_clock::now();
    const auto& dp = m_engine.communicator();
    const std::int64_t step = ++m_step, seq = data.sequence_length();
    const std::int64_t rows = data.batch_size() / dp.size();
    const auto batch =
        trident::gpt2::gpt2_token_batch<float, Space>(data.batch(step - 1, dp.rank() * rows, rows), true);
    const double scale = 1.0 / static_cast<double>(data.tokens_per_step());
    const std::int64_t micro_rows = micro_batch * seq, micro_batches = rows / micro_batch;
    m_engine.begin_step();
    double loss = 0;
    for (std::int64_t k = 0; k < micro_batches; ++k) {
      const auto range = std::make_pair(k * micro_rows, (k + 1) * micro_rows);
      m_engine.begin_micro_batch(k + 1 == micro_batches);
      loss += m_model.forward(Kokkos::subview(batch.inputs, range, Kokkos::ALL),
                              {{}, Kokkos::subview(batch.targets.classes, range)}, scale);
      m_model.backward(scale);
    }
    m_engine.memory().set(trident::MemoryCategory::activations, static_cast<std::int64_t>(m_model.activation_bytes()));
    const auto summary = m_engine.finish_gradients(loss);
    const double coefficient = trident::optim::clip_coefficient(std::sqrt(summary.sum_of_squares), 1.0);
    if (coefficient < 1.0) m_engine.scale_gradients(coefficient);
    m_engine.step(step, schedule(step));
    trident::compat::fence(Space(), "bench_data_parallel::step");
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

 private:
  Model m_model;
  Engine m_engine;
  std::int64_t m_step = 0;
};

struct Variant {
  int stage = 0;
  bool overlap = true;
  trident::data_parallel::GradientPrecision precision = trident::data_parallel::GradientPrecision::full;
  std::unique_ptr<Replica> replica;
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
    const auto batch = static_cast<std::int64_t>(argument(argc, argv, "--batch", 8));
    const auto micro_batch = static_cast<std::int64_t>(argument(argc, argv, "--micro-batch", 2));
    const trident::optim::CosineSchedule schedule{1e-3, 0, steps + 4, 0.1};
    const double bucket_mb = argument(argc, argv, "--bucket-mb", 1.0);
    if (micro_batch < 1 || batch % (micro_batch * ranks) != 0) {
      if (rank == 0)
        std::fprintf(stderr,
                     "bench_data_parallel: the batch of %lld sequences is not whole micro-batches of %lld on "
                     "each of %d ranks\n",
                     static_cast<long long>(batch), static_cast<long long>(micro_batch), ranks);
      MPI_Abort(MPI_COMM_WORLD, 2);
    }

    trident::data::SyntheticMarkovLanguage language(config.vocab, 4, 1);
    trident::data::BatchLoader data(language.generate(batch * config.seq * 4 + 1), batch, config.seq);
    const trident::comm::Communicator world(MPI_COMM_WORLD, "dp");
    std::vector<Variant> variants;
    using trident::data_parallel::GradientPrecision;
    for (auto precision : {GradientPrecision::full, GradientPrecision::bf16}) {
      for (int stage = 0; stage <= 3; ++stage) {
        for (bool overlap : {true, false}) {
          trident::data_parallel::DataParallelSettings parallel;
          parallel.zero_stage = stage;
          parallel.bucket_mb = bucket_mb;
          parallel.overlap = overlap;
          parallel.gradient_precision = precision;
          Variant v;
          v.stage = stage;
          v.overlap = overlap;
          v.precision = precision;
          v.replica = std::make_unique<Replica>(config, world, parallel);
          variants.push_back(std::move(v));
        }
      }
    }
    for (auto& v : variants)  // warm-up: first touch of every buffer
      for (int s = 0; s < 2; ++s) v.replica->step(data, micro_batch, schedule);
    for (int s = 0; s < steps; ++s) {
      for (auto& v : variants) {
        const auto before = world.stats().total_bytes();
        const double seconds = v.replica->step(data, micro_batch, schedule);
        v.bytes_per_step = world.stats().total_bytes() - before;
        const auto& times = v.replica->engine().times();
        v.step_ms.push_back(slowest(seconds) * 1e3);
        v.blocked_ms.push_back(slowest(times.blocked_seconds) * 1e3);
        v.collective_ms.push_back(slowest(times.collective_seconds) * 1e3);
      }
    }
    const std::int64_t psi = variants.front().replica->model().parameters().size();
    if (rank == 0) {
      for (const auto& v : variants) {
        const auto& memory = v.replica->engine().memory();
        using trident::MemoryCategory;
        const auto model_state = memory.held(MemoryCategory::parameters) + memory.held(MemoryCategory::gradients) +
                                 memory.held(MemoryCategory::optimizer_state);
        std::printf(
            "{\"bench\":\"data_parallel_step\",\"backend\":\"%s\",\"ranks\":%d,\"parameters\":%lld,"
            "\"zero\":%d,\"overlap\":%s,\"gradient_precision\":\"%s\",\"bucket_mb\":%g,\"step_ms\":%.3f,"
            "\"blocked_ms\":%.3f,"
            "\"collectives_ms\":%.3f,\"bytes_per_step\":%lld,\"model_state_bytes\":%lld,"
            "\"peak_bytes\":%lld}\n",
            Space::name(), ranks, static_cast<long long>(psi), v.stage, v.overlap ? "true" : "false",
            trident::data_parallel::gradient_precision_name(v.precision), bucket_mb, median(v.step_ms),
            median(v.blocked_ms), median(v.collective_ms), static_cast<long long>(v.bytes_per_step),
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
      // The same variants with bf16 gradients, after the full-precision ones.
      const std::size_t half = variants.size() / 2;
      for (int stage = 0; stage <= 3; ++stage) {
        const auto& full_on = variants[static_cast<std::size_t>(2 * stage)];
        const auto& full_off = variants[static_cast<std::size_t>(2 * stage + 1)];
        const auto& bf16_on = variants[half + static_cast<std::size_t>(2 * stage)];
        const auto& bf16_off = variants[half + static_cast<std::size_t>(2 * stage + 1)];
        std::printf(
            "{\"bench\":\"data_parallel_precision\",\"ranks\":%d,\"zero\":%d,\"step_ms_full\":%.3f,"
            "\"step_ms_bf16\":%.3f,\"bf16_vs_full\":%.3f,\"exposed_comm_ms_without_overlap_full\":%.3f,"
            "\"exposed_comm_ms_without_overlap_bf16\":%.3f,\"bytes_per_step_full\":%lld,\"bytes_per_step_bf16\":%lld}"
            "\n",
            ranks, stage, median(full_on.step_ms), median(bf16_on.step_ms),
            median(bf16_on.step_ms) / median(full_on.step_ms), median(full_off.blocked_ms), median(bf16_off.blocked_ms),
            static_cast<long long>(full_on.bytes_per_step), static_cast<long long>(bf16_on.bytes_per_step));
      }
    }
  }
  Kokkos::finalize();
  MPI_Finalize();
  return 0;
}
