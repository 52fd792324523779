// Trains GPT-2 with trident: on a synthetic language whose entropy floor is known, on any
// text file (bytes, V = 256), or on llm.c token files. Prints one progress line per step.
// On several ranks (mpiexec -n N ... --dp N) it trains data-parallel, optionally with ZeRO
// stage 1-3; rank 0 prints.

#include <trident/comm/agreement.hpp>
#include <trident/core/memory_accounting.hpp>
#include <trident/core/runtime_info.hpp>
#include <trident/data/synthetic.hpp>
#include <trident/data/text.hpp>
#include <trident/data/token_files.hpp>
#include <trident/io/token_file.hpp>
#include <trident/mesh/process_mesh.hpp>
#include <trident/model/gemm_peak.hpp>
#include <trident/model/gpt2_parallel_trainer.hpp>
#include <trident/model/gpt2_pipeline.hpp>
#include <trident/model/gpt2_trainer.hpp>
#include <trident/pipeline/trace.hpp>

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
  trident::model::Gpt2Config config;
  trident::model::TrainerSettings training;
  std::int64_t steps = 0;
  std::uint64_t seed = 0;
  std::string data, save, load, log_json;
  std::string checkpoint_dir;  // --save-every writes <dir>/checkpoint.safetensors
  std::int64_t save_every = 0;
  int successors = 0;
  double peak_gflops = 0;
  int dp = 1;
  int tp = 1;
  bool sequence_parallel = false;
  int pp = 1, virtual_stages = 1;
  std::string schedule, stage_layers, trace;
  bool recompute = false;
  trident::data_parallel::DataParallelSettings parallel;
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
  o.training.batch = flags.number<std::int64_t>("batch", 16, "global batch, sequences per step");
  o.training.micro_batch = flags.number<std::int64_t>("micro-batch", 16, "sequences per micro-batch");
  o.steps = flags.number<std::int64_t>("steps", 600, "total steps (a loaded run continues to this step)");
  o.training.schedule.max_lr = flags.number<double>("lr", 2e-3, "peak learning rate");
  o.training.schedule.warmup_steps = flags.number<std::int64_t>("warmup", 20, "linear warmup steps");
  o.training.adamw.weight_decay =
      flags.number<double>("weight-decay", 0.1, "AdamW weight decay (matrices, embeddings)");
  o.training.adamw.beta1 = flags.number<double>("beta1", 0.9, "AdamW beta1");
  o.training.adamw.beta2 = flags.number<double>("beta2", 0.95, "AdamW beta2");
  o.training.grad_clip = flags.number<double>("grad-clip", 1.0, "max global gradient norm (0: off)");
  o.training.on_nonfinite = trident::model::parse_nonfinite_policy(
      flags.text("on-nonfinite", "stop", "a step with a NaN/Inf loss or gradient: stop, or skip its update"));
  o.seed = flags.number<std::uint64_t>("seed", 1337, "seed of initialisation and synthetic data");
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
  o.dp = flags.number<int>("dp", 1, "data-parallel ranks (the number of ranks mpiexec starts)");
  o.tp = flags.number<int>("tp", 1, "tensor-parallel ranks (Megatron split of every layer)");
  o.sequence_parallel = flags.flag("sequence-parallel", "with --tp: shard LayerNorm/residual rows over the group");
  o.pp = flags.number<int>("pp", 1, "pipeline stages (ranks)");
  o.schedule = flags.text("schedule", "1f1b", "pipeline schedule: gpipe, 1f1b, interleaved, zb");
  o.virtual_stages = flags.number<int>("virtual-stages", 1, "model chunks per rank (interleaved schedule)");
  o.stage_layers = flags.text("stage-layers", "", "explicit blocks per stage, e.g. 3,5 (default: balanced by cost)");
  o.recompute = flags.flag("recompute", "recompute each block's activations in backward (pipeline)");
  o.trace = flags.text("trace", "", "write a Chrome trace of the pipeline's last step here");
  o.parallel.zero_stage =
      flags.number<int>("zero", 0, "ZeRO stage: 0 none, 1 optimizer state, 2 and gradients, 3 and parameters");
  o.parallel.bucket_mb = flags.number<double>("bucket-mb", 25.0, "gradient bucket size in MiB (data-parallel)");
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
  o.training.seq = o.config.seq;
  o.training.schedule.total_steps = o.steps;
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
    trident::data::SyntheticMarkovLanguage language(o.config.vocab, o.successors, o.seed);
    entropy_floor = language.entropy_rate();
    const std::int64_t length = std::max<std::int64_t>(1 << 20, o.training.batch * o.config.seq * 64 + 1);
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

// Elements of the global tensors (a shard's store holds fewer).
template <class Store>
long long global_parameter_count(const Store& store) {
  long long total = 0;
  for (const auto& t : store.tensors()) {
    long long n = 1;
    for (auto e : t.global_shape) n *= e;
    total += n;
  }
  return total;
}

// The layout, from rank 0: the sizes, what every rank holds, and what the run executes on.
// `holds(pp_rank)` says which part of the model a pipeline rank holds.
template <class Holds>
void print_layout(const trident::ProcessMesh& mesh, Holds&& holds) {
  if (mesh.world().rank() != 0) return;
  std::printf("layout: %d rank(s) = dp %d x tp %d x pp %d; %s; %s; BLAS: %s\n", mesh.world().size(), mesh.dp_size(),
              mesh.tp_size(), mesh.pp_size(), trident::backend_description<Space>().c_str(),
              trident::mpi_description<Space>().c_str(), trident::blas_description().c_str());
  for (int r = 0; r < mesh.world().size(); ++r) {
    const auto c = mesh.layout().coords_of(r);
    std::printf("  rank %d: dp %d, tp %d, pp %d: %s\n", r, c.dp, c.tp, c.pp, holds(c.pp).c_str());
  }
}

// What both training loops do after a step: the periodic checkpoint (collective), and for a
// step that was skipped as not finite, its line. Returns whether the step was skipped.
template <class Trainer>
bool finish_step(Trainer& trainer, const trident::model::StepReport& r, const Options& o, int rank) {
  if (o.save_every > 0 && r.step % o.save_every == 0) {
    trainer.save(checkpoint_path(o.checkpoint_dir));
    if (rank == 0)
      std::printf("saved %s at step %lld\n", checkpoint_path(o.checkpoint_dir).c_str(), static_cast<long long>(r.step));
  }
  if (r.skipped && rank == 0)
    std::printf("step %5lld/%lld | loss %.6f | norm %.4f | skipped: not finite (%lld so far)\n",
                static_cast<long long>(r.step), static_cast<long long>(o.steps), r.loss, r.grad_norm,
                static_cast<long long>(r.skipped_so_far));
  return r.skipped;
}

// Setting up (the data, the model, a checkpoint to resume) fails on every rank together: a
// data file or checkpoint that cannot be read, or one of another model, is one error that
// every rank holds, and main() reports it once.
template <class SetUp>
void set_up_together(const trident::comm::Communicator& world, SetUp&& set_up) {
  trident::comm::agree_on_failure(world, "train_gpt: setting up", std::forward<SetUp>(set_up));
}

// Pipeline parallelism, with --tp inside each stage and --dp replicas of the whole pipeline
// (any factorisation of the world): every replica cuts its rows of the step's batch into
// m = batch / (dp * micro-batch) micro-batches that stream through the stages by the chosen
// schedule; the first stage uses the tokens and the last the targets.
int run_pipeline(const Options& o, int rank, int size) {
  trident::require_argument(o.pp >= 1 && o.tp >= 1 && o.dp >= 1 && o.dp * o.tp * o.pp == size, "train_gpt: started on ",
                            size, " rank(s) but --dp ", o.dp, " x --tp ", o.tp, " x --pp ", o.pp, " = ",
                            o.dp * o.tp * o.pp);
  trident::require_argument(!o.sequence_parallel || o.tp > 1, "train_gpt: --sequence-parallel needs --tp > 1");
  o.training.validate(o.config);
  o.training.validate_data_parallel(o.dp);
  const int micro_batches = static_cast<int>(o.training.batch / (o.dp * o.training.micro_batch));
  const trident::ProcessMesh mesh(trident::comm::Communicator(MPI_COMM_WORLD, "world"), o.dp, o.tp, o.pp);
  using Trainer = trident::model::Gpt2ParallelTrainer<float, Space>;
  trident::model::Gpt2PipelinePlan plan;
  double floor = NAN;
  std::unique_ptr<trident::data::BatchLoader> loader;
  std::unique_ptr<Trainer> trainer_owner;
  Space space;
  set_up_together(mesh.world(), [&] {
    plan = trident::model::plan_gpt2_pipeline(o.config, o.schedule, o.pp, micro_batches, o.virtual_stages,
                                              o.stage_layers, o.config.seq);
    loader = std::make_unique<trident::data::BatchLoader>(load_data(o, floor), o.training.batch, o.config.seq);
    trainer_owner = std::make_unique<Trainer>(space, o.config, o.training, o.seed, mesh, plan, o.sequence_parallel,
                                              o.recompute, o.parallel);
    if (!o.load.empty()) trainer_owner->load(o.load);
  });
  const trident::data::BatchLoader& data = *loader;
  Trainer& trainer = *trainer_owner;
  if (rank == 0) {
    std::printf(
        "train_gpt: GPT-2 %s, backend %s, %d data-parallel replica(s) (ZeRO-%d) of %d pipeline stage(s) x %d "
        "tensor-parallel rank(s), schedule %s, %d micro-batches per replica%s\n",
        o.config.describe().c_str(), Space::name(), o.dp, o.parallel.zero_stage, o.pp, o.tp, o.schedule.c_str(),
        micro_batches, o.recompute ? ", recomputation" : "");
  }
  print_layout(mesh, [&](int pp_rank) {
    std::string held;
    for (std::size_t s = static_cast<std::size_t>(pp_rank); s < plan.stages.size();
         s += static_cast<std::size_t>(o.pp)) {
      const auto& stage = plan.stages[s];
      held += (held.empty() ? "" : "; ") + std::string("stage ") + std::to_string(s) + ": blocks [" +
              std::to_string(stage.first_block) + ", " + std::to_string(stage.end_block) + ")" +
              (stage.holds_embedding ? " +embedding" : "") + (stage.holds_head ? " +head" : "");
    }
    return held;
  });
  if (rank == 0) {
    if (!o.load.empty())
      std::printf("resumed from %s at step %lld\n", o.load.c_str(), static_cast<long long>(trainer.progress().step));
    if (!std::isnan(floor))
      std::printf("loss at start ~ ln V = %.4f; the synthetic language's entropy floor is %.4f nats/token\n",
                  std::log(static_cast<double>(o.config.vocab)), floor);
  }
  std::unique_ptr<std::ofstream> json;
  if (!o.log_json.empty() && rank == 0) json = std::make_unique<std::ofstream>(o.log_json, std::ios::app);
  while (trainer.progress().step < o.steps) {
    const auto r = trainer.train_step(data);
    if (finish_step(trainer, r, o, rank) || rank != 0) continue;
    std::printf("step %5lld/%lld | loss %.6f | lr %.3e | norm %.4f | %7.1f ms\n", static_cast<long long>(r.step),
                static_cast<long long>(o.steps), r.loss, r.lr, r.grad_norm, r.seconds * 1e3);
    std::fflush(stdout);
    if (json)
      *json << "{\"step\":" << r.step << ",\"loss\":" << std::setprecision(17) << r.loss << ",\"lr\":" << r.lr
            << ",\"grad_norm\":" << r.grad_norm << ",\"ms\":" << r.seconds * 1e3 << "}" << std::endl;
  }
  if (!o.save.empty()) {
    trainer.save(o.save);
    if (rank == 0)
      std::printf("saved %s at step %lld\n", o.save.c_str(), static_cast<long long>(trainer.progress().step));
  }
  if (!o.trace.empty()) {
    const auto events = trainer.pipeline().executor().gather_trace();
    if (mesh.world().rank() == 0) trident::pipeline::write_chrome_trace(o.trace, events);
  }
  return 0;
}

// A mistake every rank finds alike before any rank communicates (a flag, the layout against
// the world size, a model that does not split): rank 0 reports it, once.
struct UsageError : trident::InvalidArgument {
  using trident::InvalidArgument::InvalidArgument;
};

void check_layout(const Options& o, int size) {
  const bool pipeline = o.pp > 1 || o.schedule != "1f1b" || o.virtual_stages != 1 || o.recompute || !o.trace.empty();
  trident::require_argument(o.dp >= 1 && o.tp >= 1 && o.pp >= 1 && o.dp * o.tp * o.pp == size, "train_gpt: started on ",
                            size, " rank(s) but --dp ", o.dp, " x --tp ", o.tp,
                            pipeline ? " x --pp " + std::to_string(o.pp) : std::string(), " = ", o.dp * o.tp * o.pp);
  trident::require_argument(!o.sequence_parallel || o.tp > 1, "train_gpt: --sequence-parallel needs --tp > 1");
  o.config.validate();
  trident::model::validate_gpt2_split(o.config, {o.tp, 0});
  o.training.validate(o.config);
  o.training.validate_data_parallel(o.dp);
  o.parallel.validate();
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
  if (o.pp > 1 || o.schedule != "1f1b" || o.virtual_stages != 1 || o.recompute || !o.trace.empty())
    return run_pipeline(o, rank, size);  // also with --dp and --tp: the whole mesh
  trident::require_argument(o.dp >= 1 && o.tp >= 1 && o.dp * o.tp == size, "train_gpt: started on ", size,
                            " rank(s) but --dp ", o.dp, " x --tp ", o.tp, " = ", o.dp * o.tp);
  trident::require_argument(!o.sequence_parallel || o.tp > 1, "train_gpt: --sequence-parallel needs --tp > 1");
  o.parallel.validate();
  // One rank without ZeRO is the one-rank trainer itself; --dp trains data-parallel, --tp
  // tensor-parallel (every rank of the group runs the same micro-batches).
  const bool data_parallel = o.dp > 1 || o.parallel.zero_stage > 0;
  const bool tensor_parallel = o.tp > 1;
  double floor = NAN;
  Space space;
  using Trainer = trident::model::Gpt2Trainer<float, Space>;
  // Ranks of a tensor-parallel group hold one replica's shards; the data-parallel groups join
  // the ranks holding the same shard.
  const trident::ProcessMesh mesh(trident::comm::Communicator(MPI_COMM_WORLD, "world"), o.dp, o.tp, 1);
  const trident::tensor_parallel::TensorParallelGroup tp_group{mesh.tp(), o.sequence_parallel};
  std::unique_ptr<trident::data::BatchLoader> loader;
  std::unique_ptr<Trainer> trainer_owner;
  set_up_together(mesh.world(), [&] {
    loader = std::make_unique<trident::data::BatchLoader>(load_data(o, floor), o.training.batch, o.config.seq);
    if (data_parallel) {
      trainer_owner = std::make_unique<Trainer>(space, o.config, o.training, o.seed, mesh.dp(), o.parallel, tp_group);
    } else if (tensor_parallel) {
      trainer_owner = std::make_unique<Trainer>(space, o.config, o.training, o.seed, tp_group);
    } else {
      trainer_owner = std::make_unique<Trainer>(space, o.config, o.training, o.seed);
    }
    if (!o.load.empty()) trainer_owner->load(o.load);
  });
  const trident::data::BatchLoader& data = *loader;
  Trainer& trainer = *trainer_owner;
  print_layout(mesh, [&](int) {
    return "blocks [0, " + std::to_string(o.config.layers) + ") +embedding +head" +
           (data_parallel && o.parallel.zero_stage > 0 ? ", ZeRO-" + std::to_string(o.parallel.zero_stage) + " shard"
            : tensor_parallel                          ? ", its tensor-parallel shard"
                                                       : "");
  });

  const double tokens_per_step = static_cast<double>(o.training.batch) * o.config.seq;
  const double flops_per_token = o.config.training_flops_per_token();
  const double peak = o.peak_gflops > 0
                          ? o.peak_gflops
                          : trident::model::measure_gemm_gflops<float>(space, o.training.micro_batch * o.config.seq,
                                                                       4 * o.config.hidden, o.config.hidden);
  if (rank == 0) {
    std::printf("train_gpt: GPT-2 %s, %lld parameters, backend %s, ", o.config.describe().c_str(),
                static_cast<long long>(global_parameter_count(trainer.model().parameters())), Space::name());
    if (data_parallel) {
      std::printf("%d data-parallel rank(s)%s, ZeRO-%d, gradient buckets of %g MiB\n", o.dp,
                  tensor_parallel ? (" x " + std::to_string(o.tp) + " tensor-parallel rank(s)").c_str() : "",
                  o.parallel.zero_stage, o.parallel.bucket_mb);
    } else if (tensor_parallel) {
      std::printf("%d tensor-parallel rank(s)%s\n", size, o.sequence_parallel ? " with sequence parallelism" : "");
    } else {
      std::printf("1 rank\n");
    }
    std::printf("data: %s, %lld tokens; batch %lld x %d tokens in micro-batches of %lld\n", o.data.c_str(),
                static_cast<long long>(data.stream_length()), static_cast<long long>(o.training.batch), o.config.seq,
                static_cast<long long>(o.training.micro_batch));
    if (!std::isnan(floor))
      std::printf("loss at start ~ ln V = %.4f; the synthetic language's entropy floor is %.4f nats/token\n",
                  std::log(static_cast<double>(o.config.vocab)), floor);
    std::printf("peak for MFU: %.1f GFLOP/s (%s); model FLOPs per token: %.3g\n", peak,
                o.peak_gflops > 0 ? "given" : "SGEMM measured now", flops_per_token);
    if (!o.load.empty())
      std::printf("resumed from %s at step %lld\n", o.load.c_str(), static_cast<long long>(trainer.progress().step));
  }
  std::unique_ptr<std::ofstream> json;
  if (!o.log_json.empty() && rank == 0) {
    json = std::make_unique<std::ofstream>(o.log_json, std::ios::app);
    trident::require(json->good(), "train_gpt: cannot open --log-json file '", o.log_json, "'");
  }
  std::vector<double> recent;
  while (trainer.progress().step < o.steps) {
    const auto r = trainer.train_step(data);
    const double tokens_per_second = tokens_per_step / r.seconds;
    const double mfu = tokens_per_second * flops_per_token / (peak * 1e9);
    if (finish_step(trainer, r, o, rank)) continue;
    recent.push_back(r.loss);
    if (rank != 0) continue;
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
  if (rank == 0 && data_parallel)
    std::printf("%s", trident::memory_report(trainer.parallel()->memory(), "memory of rank 0").c_str());
  if (!o.save.empty()) {
    trainer.save(o.save);
    if (rank == 0)
      std::printf("saved %s at step %lld\n", o.save.c_str(), static_cast<long long>(trainer.progress().step));
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
