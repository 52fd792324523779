// Trains GPT-2 with trident: on a synthetic language whose entropy floor is known, on any
// text file (bytes, V = 256), or on llm.c token files. Prints one progress line per step.
// On several ranks it trains in any dp x tp x pp layout (ZeRO 0-3, any pipeline schedule,
// sequence parallelism, recomputation) through the one training driver, train::Trainer, as any
// other model would; rank 0 prints.

#include <trident/comm/agreement.hpp>
#include <trident/core/memory_accounting.hpp>
#include <trident/core/runtime_info.hpp>
#include <trident/data/synthetic.hpp>
#include <trident/data/text.hpp>
#include <trident/data/token_files.hpp>
#include <trident/io/token_file.hpp>
#include <trident/mesh/process_mesh.hpp>
#include <trident/ops/gemm_peak.hpp>
#include <trident/gpt2/batch.hpp>
#include <trident/gpt2/checkpoint.hpp>
#include <trident/gpt2/parameters.hpp>
#include <trident/gpt2/spec.hpp>
#include <trident/optim/lr_schedule.hpp>
#include <trident/pipeline/executor.hpp>
#include <trident/pipeline/trace.hpp>
#include <trident/train.hpp>

#include "flags.hpp"

#include <mpi.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <numeric>
#include <utility>

namespace {

using Space = Kokkos::DefaultExecutionSpace;

struct Options {
  trident::gpt2::Gpt2Config config;
  trident::train::Layout layout;
  trident::train::TrainerSettings training;
  trident::optim::CosineSchedule schedule;
  std::int64_t batch = 16;  // sequences per step
  std::int64_t steps = 0;
  std::string data, save, load, log_json;
  std::string checkpoint_dir;  // --save-every writes <dir>/checkpoint.safetensors
  std::int64_t save_every = 0;
  int successors = 0;
  double peak_gflops = 0;
  std::string stage_blocks, trace;
};

// The one file --save-every keeps up to date: replaced atomically, so a run killed at any
// moment leaves the previous complete checkpoint.
std::string checkpoint_path(const std::string& directory) {
  return directory + "/checkpoint.safetensors";
}

Options parse(int argc, char** argv, bool& help) {
  trident_examples::Flags flags(argc, argv, "train_gpt");
  Options o;
  o.config.layers = flags.number<int>("layers", 2, "transformer blocks L");
  o.config.heads = flags.number<int>("heads", 4, "attention heads H");
  o.config.hidden = flags.number<int>("hidden", 128, "width C");
  o.config.seq = flags.number<int>("seq", 64, "context T (sequence length)");
  o.config.vocab = flags.number<int>("vocab", 256, "vocabulary size V (256 for text files)");
  o.batch = flags.number<std::int64_t>("batch", 16, "global batch, sequences per step");
  o.layout.micro_batch = flags.number<std::int64_t>("micro-batch", 16, "sequences per micro-batch");
  o.steps = flags.number<std::int64_t>("steps", 600, "total steps (a loaded run continues to this step)");
  o.schedule.max_lr = flags.number<double>("lr", 2e-3, "peak learning rate");
  o.schedule.warmup_steps = flags.number<std::int64_t>("warmup", 20, "linear warmup steps");
  const auto gpt2 = trident::optim::AdamWSettings::gpt2();
  o.training.adamw.weight_decay =
      flags.number<double>("weight-decay", gpt2.weight_decay, "AdamW weight decay (matrices, embeddings)");
  o.training.adamw.beta1 = flags.number<double>("beta1", gpt2.beta1, "AdamW beta1");
  o.training.adamw.beta2 = flags.number<double>("beta2", gpt2.beta2, "AdamW beta2");
  o.training.grad_clip = flags.number<double>("grad-clip", 1.0, "max global gradient norm (0: off)");
  o.training.on_nonfinite = trident::train::parse_nonfinite_policy(
      flags.text("on-nonfinite", "stop", "a step with a NaN/Inf loss or gradient: stop, or skip its update"));
  o.training.seed = flags.number<std::uint64_t>("seed", 1337, "seed of initialisation and synthetic data");
  o.data = flags.text("data", "synthetic", "synthetic, a text file, or llm.c .bin token file(s) joined by ','");
  o.successors = flags.number<int>("successors", 4, "successors per token of the synthetic language");
  o.save = flags.text("save", "", "write a checkpoint here at the end");
  o.load = flags.text("load", "", "resume from this checkpoint");
  o.save_every =
      flags.number<std::int64_t>("save-every", 0, "every K steps, replace the checkpoint in --checkpoint-dir");
  o.checkpoint_dir = flags.text("checkpoint-dir", "", "where --save-every keeps the latest complete checkpoint");
  const std::string resume =
      flags.text("resume", "", "continue from the checkpoint --save-every left in this directory");
  o.log_json = flags.text("log-json", "", "also write one JSON line per step here");
  o.peak_gflops = flags.number<double>("peak-gflops", 0, "peak GFLOP/s for MFU (0: measure SGEMM at start)");
  o.layout.dp = flags.number<int>("dp", 1, "data-parallel replicas");
  o.layout.tp = flags.number<int>("tp", 1, "tensor-parallel ranks (Megatron split of every layer)");
  o.layout.sequence_parallel =
      flags.flag("sequence-parallel", "with --tp: shard LayerNorm/residual rows over the group");
  o.layout.pp = flags.number<int>("pp", 1, "pipeline stages (ranks)");
  o.layout.schedule = flags.text("schedule", "1f1b", "pipeline schedule: gpipe, 1f1b, interleaved, zb");
  o.layout.virtual_stages = flags.number<int>("virtual-stages", 1, "model chunks per rank (interleaved schedule)");
  o.stage_blocks = flags.text("stage-layers", "", "explicit blocks per stage, e.g. 3,5 (default: balanced by cost)");
  o.layout.recompute = flags.flag("recompute", "recompute each block's activations in backward");
  o.trace = flags.text("trace", "", "write a Chrome trace of the pipeline's last step here");
  o.layout.zero_stage =
      flags.number<int>("zero", 0, "ZeRO stage: 0 none, 1 optimizer state, 2 and gradients, 3 and parameters");
  o.layout.bucket_mb = flags.number<double>("bucket-mb", 25.0, "gradient bucket size in MiB (data-parallel)");
  help = flags.help_requested();
  if (help) {
    std::cout << flags.usage();
    return o;
  }
  flags.finish();
  if (!resume.empty()) {
    trident::require_argument(o.load.empty(), "train_gpt: --resume and --load both name a checkpoint; give one");
    o.load = checkpoint_path(resume);
    trident::require_argument(std::ifstream(o.load).good(), "train_gpt: --resume ", resume, ": no checkpoint there (",
                              o.load, " does not exist)");
    if (o.checkpoint_dir.empty()) o.checkpoint_dir = resume;
  }
  trident::require_argument(o.save_every >= 0, "train_gpt: --save-every must be >= 0, got ", o.save_every);
  trident::require_argument(o.save_every == 0 || !o.checkpoint_dir.empty(),
                            "train_gpt: --save-every needs --checkpoint-dir (or --resume) to say where");
  if (o.save_every > 0) {
    std::error_code ignored;  // every rank tries; one creates it
    std::filesystem::create_directories(o.checkpoint_dir, ignored);
    trident::require_argument(std::filesystem::is_directory(o.checkpoint_dir), "train_gpt: --checkpoint-dir ",
                              o.checkpoint_dir, " is not a directory and cannot be created");
  }
  o.schedule.total_steps = o.steps;
  return o;
}

bool is_token_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::int32_t magic = 0;
  in.read(reinterpret_cast<char*>(&magic), sizeof magic);
  return in && magic == 20240520;
}

std::vector<std::string> split_paths(const std::string& list) {
  std::vector<std::string> paths;
  std::size_t start = 0;
  while (start <= list.size()) {
    const auto comma = list.find(',', start);
    paths.push_back(list.substr(start, comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return paths;
}

// The token stream, and the loss floor when it is known.
trident::data::TokenStream load_data(const Options& o, double& entropy_floor) {
  entropy_floor = NAN;
  if (o.data == "synthetic") {
    trident::data::SyntheticMarkovLanguage language(o.config.vocab, o.successors, o.training.seed);
    entropy_floor = language.entropy_rate();
    const std::int64_t length = std::max<std::int64_t>(1 << 20, o.batch * o.config.seq * 64 + 1);
    return language.generate(length);
  }
  const auto paths = split_paths(o.data);
  if (is_token_file(paths.front())) return trident::data::read_token_files(paths, o.config.vocab);
  trident::require_argument(paths.size() == 1, "train_gpt: several --data files must all be llm.c token files");
  trident::require_argument(o.config.vocab >= 256,
                            "train_gpt: a text file is read as bytes, so --vocab must be >= 256 (got ", o.config.vocab,
                            ")");
  auto text = trident::data::read_text_bytes(paths.front());
  text.vocab_size = o.config.vocab;
  return text;
}

// The layers of a pipeline stage in GPT-2's words: blocks [a, b), +embedding, +head.
std::string gpt2_stage_text(const trident::nn::StageRange& stage, int layers) {
  const int first_block = std::max(stage.first, 1) - 1, end_block = std::min(stage.end, layers + 1) - 1;
  return "blocks [" + std::to_string(first_block) + ", " + std::to_string(end_block) + ")" +
         (stage.first == 0 ? " +embedding" : "") + (stage.end == layers + 2 ? " +head" : "");
}

// GPT-2's top-level layers per stage from its blocks per stage ("3,2,2"): the embeddings go with
// the first stage, the head with the last.
std::vector<int> gpt2_stage_layers(const std::string& blocks, int layers, int stages) {
  std::vector<int> counts;
  if (blocks.empty()) return counts;
  for (const auto& stage : trident::pipeline::parse_stage_layers(blocks, layers, stages))
    counts.push_back(stage.blocks() + (stage.holds_embedding ? 1 : 0) + (stage.holds_head ? 1 : 0));
  return counts;
}

// The layout, from rank 0: the sizes, what every rank holds, and what the run executes on.
void print_layout(const trident::train::Trainer<float, Space>& trainer, const Options& o) {
  const auto& mesh = trainer.mesh();
  if (mesh.world().rank() != 0) return;
  std::printf("layout: %d rank(s) = dp %d x tp %d x pp %d; %s; %s; BLAS: %s\n", mesh.world().size(), mesh.dp_size(),
              mesh.tp_size(), mesh.pp_size(), trident::backend_description<Space>().c_str(),
              trident::mpi_description<Space>().c_str(), trident::blas_description().c_str());
  const auto& stages = trainer.stages();
  const bool pipelined = stages.size() > 1;
  for (int r = 0; r < mesh.world().size(); ++r) {
    const auto c = mesh.coords_of(r);
    std::string held;
    for (std::size_t s = static_cast<std::size_t>(c.pp); s < stages.size(); s += static_cast<std::size_t>(o.layout.pp))
      held += (held.empty() ? "" : "; ") + (pipelined ? "stage " + std::to_string(s) + ": " : std::string()) +
              gpt2_stage_text(stages[s], o.config.layers);
    if (o.layout.zero_stage > 0) held += ", ZeRO-" + std::to_string(o.layout.zero_stage) + " shard";
    if (o.layout.tp > 1) held += ", its tensor-parallel shard";
    std::printf("  rank %d: dp %d, tp %d, pp %d: %s\n", r, c.dp, c.tp, c.pp, held.c_str());
  }
}

// Setting up (the data, the model, a checkpoint to resume) fails on every rank together: a
// data file or checkpoint that cannot be read, or one of another model, is one error that
// every rank holds, and main() reports it once.
template <class SetUp>
void set_up_together(const trident::comm::Communicator& world, SetUp&& set_up) {
  trident::comm::agree_on_failure(world, "train_gpt: setting up", std::forward<SetUp>(set_up));
}

// A mistake every rank finds alike before any rank communicates (a flag, the layout against
// the world size, a model that does not split): rank 0 reports it, once.
struct UsageError : trident::InvalidArgument {
  using trident::InvalidArgument::InvalidArgument;
};

void check_layout(Options& o, int size) {
  const auto& l = o.layout;
  trident::require_argument(l.dp >= 1 && l.tp >= 1 && l.pp >= 1 && l.dp * l.tp * l.pp == size, "train_gpt: started on ",
                            size, " rank(s) but --dp ", l.dp, " x --tp ", l.tp,
                            l.pp > 1 ? " x --pp " + std::to_string(l.pp) : std::string(), " = ", l.dp * l.tp * l.pp);
  trident::require_argument(!l.sequence_parallel || l.tp > 1, "train_gpt: --sequence-parallel needs --tp > 1");
  o.config.validate();
  trident::gpt2::validate_gpt2_split(o.config, {l.tp, 0});
  trident::require_argument(o.batch >= 1 && l.micro_batch >= 1, "train_gpt: --batch ", o.batch, " and --micro-batch ",
                            l.micro_batch, " must be >= 1");
  trident::require_argument(o.batch % (l.micro_batch * l.dp) == 0, "train_gpt: the batch of ", o.batch,
                            " sequences is not a whole number of micro-batches of ", l.micro_batch, " on each of ",
                            l.dp, " data-parallel rank(s) (it must be a multiple of ", l.micro_batch * l.dp, ")");
  trident::require_argument(o.trace.empty() || l.stages() > 1, "train_gpt: --trace records the pipeline; it needs ",
                            "--pp > 1 or --virtual-stages > 1");
  o.layout.stage_layers = gpt2_stage_layers(o.stage_blocks, o.config.layers, l.stages());
  o.layout.validate(size, trident::gpt2::gpt2_spec(o.config));
}

// The GPT-2 a checkpoint holds must be the one asked for.
void require_same_config(const trident::io::Metadata& metadata, const std::string& path,
                         const trident::gpt2::Gpt2Config& config) {
  const auto saved = trident::gpt2::checkpoint_config(metadata, path);
  trident::require_argument(saved == config, "train_gpt: checkpoint '", path, "' holds a model with ", saved.describe(),
                            " but the model asked for has ", config.describe());
}

int run(int argc, char** argv, int rank, int size) {
  bool help = false;
  Options parsed;
  try {
    parsed = parse(argc, argv, help);
    if (!help) check_layout(parsed, size);
  } catch (const std::exception& e) {
    throw UsageError(e.what());
  }
  const Options& o = parsed;
  if (help) return 0;
  using Trainer = trident::train::Trainer<float, Space>;
  const trident::comm::Communicator world(MPI_COMM_WORLD, "world");
  double floor = NAN;
  std::unique_ptr<trident::data::BatchLoader> loader;
  std::unique_ptr<Trainer> trainer_owner;
  set_up_together(world, [&] {
    loader = std::make_unique<trident::data::BatchLoader>(load_data(o, floor), o.batch, o.config.seq);
  });
  trainer_owner = std::make_unique<Trainer>(world, trident::gpt2::gpt2_spec(o.config), o.layout, o.training);
  Trainer& trainer = *trainer_owner;
  trainer.set_metadata("config", trident::gpt2::config_to_json(o.config).dump());
  if (!o.load.empty())
    trainer.load(o.load,
                 [&](const trident::io::Metadata& metadata) { require_same_config(metadata, o.load, o.config); });
  const trident::data::BatchLoader& data = *loader;
  const auto& mesh = trainer.mesh();
  const double tokens_per_step = static_cast<double>(o.batch) * o.config.seq;
  const double flops_per_token = o.config.training_flops_per_token();
  const double peak = o.peak_gflops > 0
                          ? o.peak_gflops
                          : trident::ops::measure_gemm_gflops<float>(Space(), o.layout.micro_batch * o.config.seq,
                                                                       4 * o.config.hidden, o.config.hidden);
  if (rank == 0) {
    std::printf("train_gpt: GPT-2 %s, %lld parameters, backend %s, %s\n", o.config.describe().c_str(),
                static_cast<long long>(trident::nn::parameter_count(trainer.spec())), Space::name(),
                o.layout.describe().c_str());
    std::printf("data: %s, %lld tokens; batch %lld x %d tokens in micro-batches of %lld\n", o.data.c_str(),
                static_cast<long long>(data.stream_length()), static_cast<long long>(o.batch), o.config.seq,
                static_cast<long long>(o.layout.micro_batch));
    if (!std::isnan(floor))
      std::printf("loss at start ~ ln V = %.4f; the synthetic language's entropy floor is %.4f nats/token\n",
                  std::log(static_cast<double>(o.config.vocab)), floor);
    std::printf("peak for MFU: %.1f GFLOP/s (%s); model FLOPs per token: %.3g\n", peak,
                o.peak_gflops > 0 ? "given" : "SGEMM measured now", flops_per_token);
    if (!o.load.empty())
      std::printf("resumed from %s at step %lld\n", o.load.c_str(), static_cast<long long>(trainer.steps_done()));
  }
  print_layout(trainer, o);
  std::unique_ptr<std::ofstream> json;
  if (!o.log_json.empty() && rank == 0) {
    json = std::make_unique<std::ofstream>(o.log_json, std::ios::app);
    trident::require(json->good(), "train_gpt: cannot open --log-json file '", o.log_json, "'");
  }
  const std::int64_t replica_rows = o.batch / o.layout.dp;
  std::vector<double> recent;
  while (trainer.steps_done() < o.steps) {
    const std::int64_t step = trainer.steps_done() + 1;
    const auto tokens = data.batch(step - 1, mesh.dp_rank() * replica_rows, replica_rows);
    const auto r = trainer.step(trident::gpt2::gpt2_token_batch<float, Space>(tokens, true), o.schedule(step));
    if (o.save_every > 0 && r.step % o.save_every == 0) {
      trainer.save(checkpoint_path(o.checkpoint_dir));
      if (rank == 0)
        std::printf("saved %s at step %lld\n", checkpoint_path(o.checkpoint_dir).c_str(),
                    static_cast<long long>(r.step));
    }
    if (r.skipped) {
      if (rank == 0)
        std::printf("step %5lld/%lld | loss %.6f | norm %.4f | skipped: not finite (%lld so far)\n",
                    static_cast<long long>(r.step), static_cast<long long>(o.steps), r.loss, r.grad_norm,
                    static_cast<long long>(r.skipped_so_far));
      continue;
    }
    recent.push_back(r.loss);
    if (rank != 0) continue;
    const double tokens_per_second = tokens_per_step / r.seconds;
    const double mfu = tokens_per_second * flops_per_token / (peak * 1e9);
    std::printf("step %5lld/%lld | loss %.6f | lr %.3e | norm %.4f | %7.1f ms | %8.0f tok/s | MFU %5.1f%%\n",
                static_cast<long long>(r.step), static_cast<long long>(o.steps), r.loss, r.lr, r.grad_norm,
                r.seconds * 1e3, tokens_per_second, 100 * mfu);
    std::fflush(stdout);
    if (json) {
      char line[256];
      std::snprintf(line, sizeof line,
                    "{\"step\":%lld,\"loss\":%.17g,\"lr\":%.9g,\"grad_norm\":%.9g,\"ms\":%.4f,\"tokens_per_s\":%.1f,"
                    "\"mfu\":%.5f}\n",
                    static_cast<long long>(r.step), r.loss, r.lr, r.grad_norm, r.seconds * 1e3, tokens_per_second, mfu);
      *json << line << std::flush;
    }
  }
  if (rank == 0 && !std::isnan(floor) && recent.size() >= 10) {
    const double last = std::accumulate(recent.end() - 10, recent.end(), 0.0) / 10;
    const double lnv = std::log(static_cast<double>(o.config.vocab));
    std::printf("mean loss of the last 10 steps %.4f: %.1f%% of the gap from ln V = %.4f to the floor %.4f closed\n",
                last, 100 * (lnv - last) / (lnv - floor), lnv, floor);
  }
  if (rank == 0 && (o.layout.dp > 1 || o.layout.zero_stage > 0))
    std::printf("%s", trident::memory_report(trainer.memory(), "memory of rank 0").c_str());
  if (!o.save.empty()) {
    trainer.save(o.save);
    if (rank == 0) std::printf("saved %s at step %lld\n", o.save.c_str(), static_cast<long long>(trainer.steps_done()));
  }
  if (!o.trace.empty() && trainer.executor() != nullptr) {
    const auto events = trainer.executor()->gather_trace();
    if (rank == 0) trident::pipeline::write_chrome_trace(o.trace, events);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  Kokkos::initialize(argc, argv);
  int status = 0;
  try {
    status = run(argc, argv, rank, size);
  } catch (const UsageError& e) {
    if (rank == 0) std::fprintf(stderr, "train_gpt: error: %s\n", e.what());
    status = 2;
  } catch (const std::exception& e) {
    // An error every rank holds alike is reported once; any other by each rank, under its rank.
    const auto* agreed = dynamic_cast<const trident::comm::AgreedFailure*>(&e);
    if (size == 1 || (agreed != nullptr && agreed->group_size() == size)) {
      if (rank == 0) std::fprintf(stderr, "train_gpt: error: %s\n", e.what());
    } else {
      std::fprintf(stderr, "train_gpt: error (rank %d): %s\n", rank, e.what());
    }
    status = 2;
  }
  Kokkos::finalize();
  MPI_Finalize();
  return status;
}
