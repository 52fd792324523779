// Pipeline-parallel GPT-2 trained by train::Trainer (pp = the world size, one micro-batch of
// --batch sequences per schedule slot, m of them per step), one JSON line per schedule:
//   {"bench":"pipeline_executor","schedule":"1f1b","p":4,"m":8,"v":1,"step_ms":...,
//    "bubble_measured":[per rank],"bubble_measured_mean":...,"bubble_analytic":...,
//    "bubble_simulated":...,"pass_ms":{"forward":...},"peak_micro_batches":[per rank],
//    "peak_activation_bytes":[per rank],"peak_activation_bytes_recompute":[per rank], ...}
// step_ms is the whole training step (the pipeline, the gradient norm and AdamW);
// bubble_measured is idle / step time per rank from the executor's trace of the last step
// (measured_bubble.hpp); bubble_analytic the paper's formula for equal stages and free
// transfers; bubble_simulated the simulator fed with the measured mean time of each rank's
// passes, which accounts for unequal stages (the head on the last). With more ranks than cores
// ("oversubscribed":true) ranks also wait for a core, which inflates the passes and the idle
// time alike. peak_activation_bytes is the most the rank's activation pools kept for micro-
// batches in flight at once (all its chunks together), the shared scratch not counted.
//
//   mpiexec -n 4 bench_executor [--layers 8 --hidden 128 --heads 4 --seq 64 --vocab 512
//                                --batch 2 --m 8 --steps 3 --trace /tmp/1f1b.json]
// --trace writes the 1F1B step's trace (all ranks) for bench/pipeline/plot_timeline.py.

#include <trident/data/batches.hpp>
#include <trident/gpt2/batch.hpp>
#include <trident/gpt2/spec.hpp>
#include <trident/nn/model.hpp>
#include <trident/pipeline/pipeline.hpp>
#include <trident/train.hpp>

#include <mpi.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace {

using Space = Kokkos::DefaultExecutionSpace;
using Trainer = trident::train::Trainer<float, Space>;
namespace pp = trident::pipeline;

std::string option(int argc, char** argv, const char* name, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  return fallback;
}

int number(int argc, char** argv, const char* name, int fallback) {
  return std::atoi(option(argc, argv, name, std::to_string(fallback)).c_str());
}

// The step's m micro-batches of batch x seq tokens, one after the other.
Trainer::batch_type data_for(int step, int m, int batch, int seq, int vocab) {
  trident::data::Batch d;
  d.rows = static_cast<std::int64_t>(m) * batch;
  d.sequence_length = seq;
  for (int i = 0; i < m; ++i) {
    for (int k = 0; k < batch * seq; ++k) {
      d.inputs.push_back((31 * k + 7 * step + 13 * i) % vocab);
      d.targets.push_back((17 * k + 3 * step + i + 1) % vocab);
    }
  }
  return trident::gpt2::gpt2_token_batch<float, Space>(d, false);
}

double analytic_bubble(const pp::Schedule& s, const std::map<std::string, double>& pass_ms) {
  if (s.name == "interleaved") return pp::interleaved_bubble_fraction(s.ranks, s.micro_batches, s.chunks);
  if (s.name == "zb")
    return pp::zero_bubble_h1_bubble_fraction(s.ranks, s.micro_batches, pass_ms.at("forward"),
                                              pass_ms.at("backward_input"), pass_ms.at("backward_weight"));
  return pp::gpipe_bubble_fraction(s.ranks, s.micro_batches);
}

// Per rank and pass type, the mean time of the traced passes (milliseconds).
std::map<std::pair<int, std::string>, double> mean_pass_ms(const std::vector<pp::TraceEvent>& events) {
  std::map<std::pair<int, std::string>, std::pair<double, int>> sums;
  for (const auto& e : events) {
    if (!pp::is_compute_category(e.category)) continue;
    auto& entry = sums[{e.rank, e.category}];
    entry.first += (e.end_us - e.start_us) / 1000.0;
    entry.second += 1;
  }
  std::map<std::pair<int, std::string>, double> means;
  for (const auto& [key, sum] : sums) means[key] = sum.first / sum.second;
  return means;
}

// One number per rank, gathered to every rank.
std::vector<long long> gather(long long value) {
  const trident::comm::Communicator world(MPI_COMM_WORLD, "world");
  Kokkos::View<long long*, Kokkos::HostSpace> mine("bench::mine", 1), all("bench::all", world.size());
  mine(0) = value;
  trident::comm::allgather(Kokkos::DefaultHostExecutionSpace(), world, mine, all);
  return std::vector<long long>(all.data(), all.data() + all.size());
}

struct Run {
  std::vector<pp::TraceEvent> trace;
  pp::Schedule schedule;
  std::vector<trident::nn::StageRange> stages;
  double step_ms = 0;
  long long peak_bytes = 0, peak_micro_batches = 0;
};

// The layout of a pipeline over every rank: `schedule` with v chunks per rank, micro-batches of
// `batch` sequences.
trident::train::Layout layout_for(const std::string& schedule, int ranks, int v, int batch, bool recompute) {
  trident::train::Layout layout;
  layout.pp = ranks;
  layout.schedule = schedule;
  layout.virtual_stages = v;
  layout.micro_batch = batch;
  layout.recompute = recompute;
  return layout;
}

// `steps` training steps (at least 2) of m micro-batches; the last is measured, the first warms
// up and builds the executor.
Run run(const trident::gpt2::Gpt2Config& config, const trident::train::Layout& layout, int m, int steps) {
  trident::train::TrainerSettings settings;
  settings.seed = 1;
  Trainer trainer(trident::comm::Communicator(MPI_COMM_WORLD, "world"), trident::gpt2::gpt2_spec(config), layout,
                  settings);
  Run result;
  for (int step = 0; step < std::max(steps, 2); ++step) {
    result.peak_bytes = result.peak_micro_batches = 0;
    const auto report =
        trainer.step(data_for(step, m, static_cast<int>(layout.micro_batch), config.seq, config.vocab), 1e-4);
    result.step_ms = report.seconds * 1e3;
    if (step > 0) continue;
    // The rank's chunks together, after every action of the later steps: with interleaving the
    // sum of the chunks' own peaks would overstate the rank's.
    auto* executor = trainer.executor();
    executor->set_after_action([&](const pp::Action&) {
      long long bytes = 0, held = 0;
      for (int c = 0; c < trainer.chunk_count(); ++c) {
        bytes += static_cast<long long>(trainer.chunk(c).activation_statistics().bytes_in_use);
        held += trainer.chunk(c).activation_statistics().in_use;
      }
      result.peak_bytes = std::max(result.peak_bytes, bytes);
      result.peak_micro_batches = std::max(result.peak_micro_batches, held);
    });
  }
  result.trace = trainer.executor()->gather_trace();
  result.schedule = trainer.executor()->schedule();
  result.stages = trainer.stages();
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  Kokkos::initialize(argc, argv);
  int status = 0;
  {
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    try {
      trident::gpt2::Gpt2Config config{number(argc, argv, "--layers", 8), number(argc, argv, "--heads", 4),
                                       number(argc, argv, "--hidden", 128), number(argc, argv, "--seq", 64),
                                       number(argc, argv, "--vocab", 512)};
      const int batch = number(argc, argv, "--batch", 2), m = number(argc, argv, "--m", 8);
      const int steps = number(argc, argv, "--steps", 3);
      const std::string trace_path = option(argc, argv, "--trace", "");
      const unsigned cores = std::thread::hardware_concurrency();
      for (const std::string name : {"gpipe", "1f1b", "interleaved", "zb"}) {
        const int v = name == "interleaved" ? 2 : 1;
        nlohmann::json line = {{"bench", "pipeline_executor"},
                               {"schedule", name},
                               {"p", size},
                               {"m", m},
                               {"v", v},
                               {"model", config.describe()},
                               {"micro_batch", batch},
                               {"cores", cores},
                               {"oversubscribed", cores > 0 && static_cast<unsigned>(size) > cores}};
        const auto spec = trident::gpt2::gpt2_spec(config);
        try {  // what the Trainer would refuse, on every rank alike: checked before building it
          pp::make_schedule(name, size, m, v);
          layout_for(name, size, v, batch, false).validate(size, spec);
        } catch (const trident::InvalidArgument& e) {
          line["valid"] = false;
          line["reason"] = e.what();
          if (rank == 0) std::cout << line.dump() << std::endl;
          continue;
        }
        const Run kept = run(config, layout_for(name, size, v, batch, false), m, steps);
        const Run recomputed = run(config, layout_for(name, size, v, batch, true), m, 2);
        std::vector<int> blocks;  // GPT-2's blocks per stage: its top-level layers but the embedding and head
        for (const auto& stage : kept.stages)
          blocks.push_back(std::min(stage.end, config.layers + 1) - std::max(stage.first, 1));
        const auto bubble = pp::measure_bubble(kept.trace, size);
        const auto per_rank = mean_pass_ms(kept.trace);
        std::map<std::string, double> pass_ms;  // over all ranks
        std::map<std::string, int> counts;
        for (const auto& [key, ms] : per_rank) {
          pass_ms[key.second] += ms;
          counts[key.second] += 1;
        }
        for (auto& [type, ms] : pass_ms) ms /= counts[type];
        const pp::PassCost cost = [&](int r, const pp::Action& a) { return per_rank.at({r, pp::to_string(a.type)}); };
        const auto simulated = pp::simulate(kept.schedule, cost);
        line["valid"] = true;
        line["stage_blocks"] = blocks;
        line["step_ms"] = kept.step_ms;
        line["bubble_measured"] = bubble.bubble;
        line["bubble_measured_mean"] = bubble.mean();
        line["bubble_analytic"] = analytic_bubble(kept.schedule, pass_ms);
        line["bubble_simulated"] = simulated.bubble_fraction();
        line["pass_ms"] = pass_ms;
        line["peak_micro_batches"] = gather(kept.peak_micro_batches);
        line["peak_micro_batches_predicted"] =
            pp::peak_activations(kept.schedule, name == "zb" ? pp::ActivationsFreedBy::backward_weight
                                                             : pp::ActivationsFreedBy::backward_input);
        line["peak_activation_bytes"] = gather(kept.peak_bytes);
        line["peak_activation_bytes_recompute"] = gather(recomputed.peak_bytes);
        if (rank == 0) std::cout << line.dump() << std::endl;
        if (name == "1f1b" && !trace_path.empty() && rank == 0) {
          pp::write_chrome_trace(trace_path, kept.trace);
          std::cout
              << nlohmann::json{{"bench", "trace"}, {"path", trace_path}, {"schedule", name}, {"p", size}, {"m", m}}
                     .dump()
              << std::endl;
        }
      }
    } catch (const std::exception& e) {
      std::cerr << "rank " << rank << ": " << e.what() << "\n";
      status = 1;
    }
  }
  Kokkos::finalize();
  MPI_Finalize();
  return status;
}
