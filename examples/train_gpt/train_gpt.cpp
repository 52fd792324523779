// Trains GPT-2 with trident: on a synthetic language whose entropy floor is known, on any
// text file (bytes, V = 256), or on llm.c token files. Prints one progress line per step.
// On several ranks it trains in any dp x tp x pp layout (ZeRO 0-3, any pipeline schedule,
// sequence parallelism, recomputation) through the one training driver, train::Trainer, as any
// other model would; rank 0 prints.
//
// Before the first step every rank has checked, and all agree: the flags (one line naming the
// flag, exit status 2), the data files, the memory the model and layout need against what the
// node has, and every output (--save, --checkpoint-dir, --log-json, --trace). --save-every K
// keeps the last --keep checkpoints in --checkpoint-dir (checkpoint_directory.hpp); --resume DIR
// continues from the newest that verifies, with the checkpoint's seed. --dtype bf16|fp16 trains
// in mixed precision: 16-bit activations, float parameters, gradients, AdamW state and
// checkpoints (which load into runs of any --dtype), fp16 under a dynamic loss scale. In a CUDA
// build with NCCL, --comm-backend nccl (or TRIDENT_COMM_BACKEND=nccl) carries the data- and
// tensor-parallel collectives on the device.

#include <trident/comm/agreement.hpp>
#include <trident/comm/allreduce.hpp>
#include <trident/comm/backend.hpp>
#include <trident/comm/hierarchical_allreduce.hpp>
#include <trident/core/memory_accounting.hpp>
#include <trident/core/runtime_info.hpp>
#include <trident/data/batches.hpp>
#include <trident/gpt2/batch.hpp>
#include <trident/gpt2/checkpoint.hpp>
#include <trident/gpt2/parameters.hpp>
#include <trident/gpt2/spec.hpp>
#include <trident/io/safetensors_reader.hpp>
#include <trident/mesh/process_mesh.hpp>
#include <trident/ops/gemm_peak.hpp>
#include <trident/optim/lr_schedule.hpp>
#include <trident/pipeline/executor.hpp>
#include <trident/pipeline/partition.hpp>
#include <trident/pipeline/trace.hpp>
#include <trident/train.hpp>
#include <trident/train/checkpoint.hpp>
#include <trident/train/choose_layout.hpp>

#include "checkpoint_directory.hpp"
#include "cli.hpp"
#include "data_source.hpp"
#include "memory_estimate.hpp"
#include "outputs.hpp"

#include <mpi.h>

#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <new>
#include <numeric>
#include <optional>
#include <utility>

namespace {

using Space = Kokkos::DefaultExecutionSpace;
using trident_examples::Range;
using trident_examples::UsageError;

struct Options {
  trident::gpt2::Gpt2Config config;
  trident::train::Layout layout;
  trident::train::TrainerSettings training;
  trident::optim::CosineSchedule schedule;
  std::int64_t batch = 16;  // sequences per step
  std::int64_t steps = 600;
  std::string data = "synthetic", data_format = "auto";
  std::string save, load, resume, log_json;
  std::string checkpoint_dir;  // --save-every keeps <dir>/step-<n>.safetensors and <dir>/latest
  std::int64_t save_every = 0;
  int keep = 2;
  int successors = 4;
  double peak_gflops = 0;
  std::string stage_blocks, trace;
  bool seed_given = false, reseed = false, skip_memory_check = false;
  bool auto_layout = false;                            // --layout auto: the planner chooses dp x tp x pp and the rest
  std::string plan_cache;                              // its calibration, kept between runs
  double plan_communication_seconds = 0;               // its collectives timed over at least this long
  std::string dtype = "fp32";                          // of the activations: fp32, bf16 or fp16 (mixed precision)
  std::optional<trident::comm::Backend> comm_backend;  // --comm-backend; else TRIDENT_COMM_BACKEND's
  trident::nn::AttentionKernel attention = trident::nn::AttentionKernel::blocked;

  // GPT-2 as a spec, its attention running the kernel asked for.
  trident::nn::ModelSpec spec() const {
    return trident::nn::with_attention_kernel(trident::gpt2::gpt2_spec(config), attention);
  }

  train_gpt::DataSettings data_settings() const {
    train_gpt::DataSettings s;
    s.data = data;
    s.format = data_format;
    s.vocab = config.vocab;
    s.successors = successors;
    s.seq = config.seq;
    s.batch = batch;
    s.seed = training.seed;
    return s;
  }
};

// Returns false for --help (the usage printed by rank 0). Throws UsageError.
bool parse(int argc, char** argv, Options& o, int rank) {
  trident_examples::CommandLine cli("train_gpt", "Trains GPT-2 in any dp x tp x pp layout.");
  o.config.layers = 2;
  o.config.heads = 4;
  o.config.hidden = 128;
  o.config.seq = 64;
  o.config.vocab = 256;
  o.layout.micro_batch = 16;
  o.schedule.max_lr = 2e-3;
  o.schedule.warmup_steps = 20;
  o.training.adamw = trident::optim::AdamWSettings::gpt2();
  o.training.grad_clip = 1.0;
  o.training.seed = 1337;
  std::string on_nonfinite = "stop";
  const Range positive = Range::at_least(1), non_negative = Range::at_least(0);
  cli.number("--layers", o.config.layers, "transformer blocks L", positive);
  cli.number("--heads", o.config.heads, "attention heads H", positive);
  cli.number("--hidden", o.config.hidden, "width C, a multiple of --heads", positive);
  cli.number("--seq", o.config.seq, "context T (sequence length)", positive);
  cli.number("--vocab", o.config.vocab, "vocabulary size V (>= 256 for text files)", positive);
  cli.number("--batch", o.batch, "global batch, sequences per step", positive);
  cli.number("--micro-batch", o.layout.micro_batch, "sequences per micro-batch", positive);
  cli.number("--steps", o.steps, "total steps (a resumed run continues to this step)", non_negative);
  cli.number("--lr", o.schedule.max_lr, "peak learning rate", Range::above(0));
  cli.number("--warmup", o.schedule.warmup_steps, "linear warmup steps", non_negative);
  cli.number("--weight-decay", o.training.adamw.weight_decay, "AdamW weight decay (matrices, embeddings)",
             non_negative);
  cli.number("--beta1", o.training.adamw.beta1, "AdamW beta1", Range::fraction());
  cli.number("--beta2", o.training.adamw.beta2, "AdamW beta2", Range::fraction());
  cli.number("--grad-clip", o.training.grad_clip, "max global gradient norm (0: off)", non_negative);
  cli.choice("--on-nonfinite", on_nonfinite, {"stop", "skip"},
             "a step with a NaN/Inf loss or gradient: stop, or skip its update");
  cli.number("--seed", o.training.seed, "seed of initialisation and synthetic data (a resumed run: the checkpoint's)");
  cli.flag("--reseed", o.reseed, "with --resume/--load: continue with --seed instead of the checkpoint's seed");
  cli.text("--data", o.data, "synthetic, a text file, or llm.c .bin token file(s) joined by ','");
  cli.choice("--data-format", o.data_format, {"auto", "text", "tokens"},
             "how --data files are read: auto (by llm.c's magic number 20240520), text (bytes) or tokens");
  cli.number("--successors", o.successors, "successors per token of the synthetic language", Range::at_least(2));
  cli.text("--save", o.save, "write a checkpoint here at the end");
  cli.text("--load", o.load, "start from this checkpoint (saved in any layout)");
  cli.number("--save-every", o.save_every, "every K steps, a checkpoint in --checkpoint-dir (0: never)", non_negative);
  cli.text("--checkpoint-dir", o.checkpoint_dir, "where --save-every keeps step-<n>.safetensors and 'latest'");
  cli.number("--keep", o.keep, "how many of the newest checkpoints --save-every keeps", positive);
  cli.text("--resume", o.resume, "continue from the newest verified checkpoint in this directory");
  cli.text("--log-json", o.log_json, "also append one JSON line per step here");
  cli.number("--peak-gflops", o.peak_gflops, "peak GFLOP/s of one rank for MFU (0: each rank measures SGEMM at start)",
             non_negative);
  cli.number("--dp", o.layout.dp, "data-parallel replicas", positive);
  cli.number("--tp", o.layout.tp, "tensor-parallel ranks (Megatron split of every layer)", positive);
  cli.flag("--sequence-parallel", o.layout.sequence_parallel,
           "with --tp: shard LayerNorm/residual rows over the group");
  cli.number("--pp", o.layout.pp, "pipeline stages (ranks)", positive);
  cli.choice("--schedule", o.layout.schedule, {"gpipe", "1f1b", "interleaved", "zb"}, "pipeline schedule");
  cli.number("--virtual-stages", o.layout.virtual_stages, "model chunks per rank (interleaved schedule)", positive);
  cli.text("--stage-layers", o.stage_blocks, "explicit blocks per stage, e.g. 3,5 (default: balanced by cost)");
  cli.flag("--recompute", o.layout.recompute, "recompute each block's activations in backward");
  std::string attention = trident::ops::attention_kernel_name(o.attention);
  cli.choice("--attention", attention, {"blocked", "flash"},
             "attention kernel: blocked keeps the probabilities (H T^2 / 2 per sequence and block), flash only a "
             "log-sum-exp per row and recomputes them in backward");
  cli.text("--trace", o.trace, "write a Chrome trace of the pipeline's last step here");
  cli.number("--zero", o.layout.zero_stage, "ZeRO stage: 0 none, 1 optimizer state, 2 and gradients, 3 and parameters",
             Range::between(0, 3));
  cli.flag("--skip-memory-check", o.skip_memory_check,
           "start even when the memory estimate exceeds the memory available (MemAvailable)");
  cli.number("--bucket-mb", o.layout.bucket_mb, "gradient bucket size in MiB (data-parallel)", Range::above(0));
  std::string mesh_order = trident::to_string(o.layout.order), placement = "node", reduction = "auto";
  cli.text("--mesh-order", mesh_order, "which groups are neighbours, fastest first (tp,pp,dp keeps tp inside a node)");
  cli.choice("--placement", placement, {"node", "rank"},
             "fill the mesh node by node (whatever order the launcher gave the ranks) or in rank order");
  cli.choice("--dp-reduction", reduction, {"auto", "flat", "hierarchical"},
             "ZeRO-0 gradient all-reduce: in two levels across nodes (auto: when replicas span nodes) or flat");
  std::string grad_precision = "full";
  cli.choice("--grad-precision", grad_precision, {"full", "bf16", "fp16"},
             "the type data-parallel gradients travel in: bf16 or fp16 send half the bytes, summed in float");
  cli.choice("--dtype", o.dtype, {"fp32", "bf16", "fp16"},
             "the activations' type: bf16 or fp16 train in mixed precision (float parameters, gradients, AdamW state "
             "and checkpoints; fp16 under a dynamic loss scale)");
  std::string comm_backend = "mpi";
  cli.choice("--comm-backend", comm_backend, {"mpi", "nccl"},
             "what carries the collectives on device memory: nccl in a CUDA build with NCCL (default: "
             "TRIDENT_COMM_BACKEND, else mpi)");
  std::string layout_choice = "manual";
  cli.choice("--layout", layout_choice, {"manual", "auto"},
             "auto: calibrate this machine, rank every layout of the ranks and run the fastest that fits");
  cli.text("--plan-cache", o.plan_cache, "with --layout auto: keep the machine's calibration in this JSON file");
  cli.number("--plan-communication-seconds", o.plan_communication_seconds,
             "with --layout auto: time the collectives over at least this long (a minute where the host's "
             "communication changes pace)",
             Range::at_least(0));
  if (!cli.parse(argc, argv)) {
    if (rank == 0) std::cout << cli.usage();
    return false;
  }
  o.training.on_nonfinite = trident::train::parse_nonfinite_policy(on_nonfinite);
  o.attention = trident::ops::parse_attention_kernel(attention);
  try {
    o.layout.order = trident::mesh_order_from_string(mesh_order);
  } catch (const trident::InvalidArgument& error) {
    throw UsageError(std::string("--mesh-order: ") + error.what());
  }
  o.layout.placement = trident::mesh_placement_from_name(placement);
  o.layout.reduction = trident::data_parallel::reduction_from_name(reduction);
  o.layout.gradient_precision = trident::data_parallel::gradient_precision_from_name(grad_precision);
  o.seed_given = cli.given("--seed");
  o.auto_layout = layout_choice == "auto";
  for (const char* chosen : {"--dp", "--tp", "--pp", "--schedule", "--virtual-stages", "--micro-batch", "--zero",
                             "--recompute", "--sequence-parallel", "--stage-layers"})
    if (o.auto_layout && cli.given(chosen))
      throw UsageError(std::string(chosen) + " and --layout auto both choose the layout; give one");
  if (!o.auto_layout && cli.given("--plan-cache")) throw UsageError("--plan-cache needs --layout auto");
  if (cli.given("--comm-backend")) {
    o.comm_backend = comm_backend == "nccl" ? trident::comm::Backend::nccl : trident::comm::Backend::mpi;
    if (!trident::comm::backend_available(*o.comm_backend))
      throw UsageError("--comm-backend nccl: this build has no NCCL (it needs Kokkos with CUDA and NCCL)");
  }
  const auto require = [](bool ok, auto&&... message) {
    if (!ok) throw UsageError(trident::detail::concat(message...));
  };
  require(o.resume.empty() || o.load.empty(), "--resume and --load both name a checkpoint; give one");
  if (!o.resume.empty() && o.checkpoint_dir.empty()) o.checkpoint_dir = o.resume;
  require(o.save_every == 0 || !o.checkpoint_dir.empty(),
          "--save-every needs --checkpoint-dir (or --resume) to say where");
  require(!o.reseed || !(o.resume.empty() && o.load.empty()), "--reseed only applies to a run that resumes (--resume ",
          "or --load)");
  require(!o.reseed || o.seed_given, "--reseed needs --seed, the seed to continue with");
  o.schedule.total_steps = o.steps;
  return true;
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
    counts.push_back(stage.layers());
  counts.front() += 1;  // the embeddings
  counts.back() += 1;   // the head
  return counts;
}

// The layout, from rank 0: the sizes, what every rank holds, and what the run executes on.
template <class Trainer>
void print_layout(const Trainer& trainer, const Options& o) {
  const auto& mesh = trainer.mesh();
  if (mesh.world().rank() != 0) return;
  std::printf("layout: %d rank(s) = dp %d x tp %d x pp %d on %s; %s; %s; BLAS: %s\n", mesh.world().size(),
              mesh.dp_size(), mesh.tp_size(), mesh.pp_size(), mesh.describe_nodes().c_str(),
              trident::backend_description<Space>().c_str(), trident::mpi_description<Space>().c_str(),
              trident::blas_description().c_str());
  const std::string advice = trident::threading_advice<Space>();
  if (!advice.empty()) std::printf("warning: %s\n", advice.c_str());
  const auto* groups = trainer.gradient_node_groups();
  if (groups != nullptr)
    std::printf("gradient all-reduce across nodes (%s): %s\n", groups->describe().c_str(),
                groups->ranks_per_node() > 1 ? "reduce-scatter in the node, a ring between nodes, all-gather"
                                             : "a ring between nodes");
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
    std::printf("  rank %d on %s: dp %d, tp %d, pp %d: %s\n", r, mesh.topology().node_name_of(r).c_str(), c.dp, c.tp,
                c.pp, held.c_str());
  }
}

// Setting up (the data, the model, a checkpoint to resume, the outputs) fails on every rank
// together: a data file or checkpoint that cannot be read, an output that cannot be written, is
// one error that every rank holds, and main() reports it once.
template <class SetUp>
void set_up_together(const trident::comm::Communicator& world, const std::string& what, SetUp&& set_up) {
  trident::comm::agree_on_failure(world, what, std::forward<SetUp>(set_up));
}

// A mistake every rank finds alike in the flags before any rank communicates (the layout
// against the world size, a model that does not split): rank 0 reports it, once.
void check_layout(Options& o, int size) {
  const auto& l = o.layout;
  if (o.auto_layout) {  // the model and the data flags now; the layout once it is planned
    o.config.validate();
    trident::require_argument(o.data != "synthetic" || o.successors <= o.config.vocab, "--successors ", o.successors,
                              " must be at most --vocab ", o.config.vocab);
    return;
  }
  trident::require_argument(l.dp * l.tp * l.pp == size, "started on ", size, " rank(s) but --dp ", l.dp, " x --tp ",
                            l.tp, l.pp > 1 ? " x --pp " + std::to_string(l.pp) : std::string(), " = ",
                            l.dp * l.tp * l.pp);
  trident::require_argument(!l.sequence_parallel || l.tp > 1, "--sequence-parallel needs --tp > 1");
  trident::require_argument(o.config.hidden % o.config.heads == 0, "--hidden ", o.config.hidden,
                            " is not a multiple of --heads ", o.config.heads, " (hidden size ", o.config.hidden,
                            " is not divisible by the number of heads ", o.config.heads, ")");
  o.config.validate();
  trident::gpt2::validate_gpt2_split(o.config, {l.tp, 0});
  trident::require_argument(o.batch % (l.micro_batch * l.dp) == 0, "the --batch of ", o.batch,
                            " sequences is not a whole number of micro-batches of ", l.micro_batch,
                            " (--micro-batch) on each of ", l.dp,
                            " data-parallel rank(s) (--dp; it must be a multiple of ", l.micro_batch * l.dp, ")");
  trident::require_argument(o.trace.empty() || l.stages() > 1, "--trace records the pipeline; it needs ",
                            "--pp > 1 or --virtual-stages > 1");
  trident::require_argument(l.virtual_stages == 1 || l.schedule == "interleaved", "--virtual-stages ", l.virtual_stages,
                            " needs --schedule interleaved, not ", l.schedule);
  trident::require_argument(o.data != "synthetic" || o.successors <= o.config.vocab, "--successors ", o.successors,
                            " must be at most --vocab ", o.config.vocab);
  o.layout.stage_layers = gpt2_stage_layers(o.stage_blocks, o.config.layers, l.stages());
  o.layout.validate(size, o.spec());
}

// The GPT-2 a checkpoint holds must be the one asked for.
void require_same_config(const trident::io::Metadata& metadata, const std::string& path,
                         const trident::gpt2::Gpt2Config& config) {
  const auto saved = trident::gpt2::checkpoint_config(metadata, path);
  trident::require_argument(saved == config, "checkpoint '", path, "' holds a model with ", saved.describe(),
                            " but the model asked for has ", config.describe());
}

// The seed a checkpoint's run used: train_gpt's own entry (a run may have been reseeded), or the
// Trainer's.
std::uint64_t checkpoint_seed(const trident::io::Metadata& metadata, const std::string& path) {
  const auto found = metadata.find("train_gpt.seed");
  const std::string& text =
      found != metadata.end() ? found->second : trident::train::metadata_entry(metadata, "seed", path);
  try {
    return std::stoull(text);
  } catch (const std::logic_error&) {
    throw trident::Error("checkpoint '" + path + "' has a malformed seed '" + text + "'");
  }
}

// How many ranks share this rank's node (and its memory).
int ranks_on_this_node() {
  MPI_Comm node = MPI_COMM_NULL;
  int rank = 0, count = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node) != MPI_SUCCESS) return 1;
  MPI_Comm_size(node, &count);
  MPI_Comm_free(&node);
  return count;
}

// The JSON line of one step.
std::string json_line(const trident::train::StepReport& r, double tokens_per_second, double mfu) {
  char line[256];
  std::snprintf(line, sizeof line,
                "{\"step\":%lld,\"loss\":%.17g,\"lr\":%.9g,\"grad_norm\":%.9g,\"ms\":%.4f,\"tokens_per_s\":%.1f,"
                "\"mfu\":%.5f}\n",
                static_cast<long long>(r.step), r.loss, r.lr, r.grad_norm, r.seconds * 1e3, tokens_per_second, mfu);
  return line;
}

// Calls f with a value of the activations' type that --dtype names.
template <class F>
void with_activation_type(const std::string& dtype, F&& f) {
  if (dtype == "bf16") {
    f(trident::bfloat16());
  } else if (dtype == "fp16") {
    f(trident::float16());
  } else {
    f(float());
  }
}

// --layout auto: the machine calibrated (or read from --plan-cache), every layout of the world
// ranked, the fastest that fits half of this node's free memory per rank taken; the placement,
// reduction and buckets stay the flags', and the mesh order and gradients' precision are the
// flags' and planned with.
void plan_layout(Options& o, const trident::comm::Communicator& world, int size) {
  trident::train::AutoLayout automatic;
  automatic.global_batch = o.batch;
  automatic.calibration_cache = o.plan_cache;
  automatic.communication_seconds = o.plan_communication_seconds;
  automatic.gradient_precision = o.layout.gradient_precision;
  automatic.space.mesh_order = o.layout.order;  // which ranks share cores depends on it
  if (Kokkos::SpaceAccessibility<Kokkos::HostSpace, Space::memory_space>::accessible)
    automatic.memory_bytes = 0.5 * train_gpt::available_memory() / std::max(1, ranks_on_this_node());
  trident::train::LayoutChoice choice;
  set_up_together(world, "planning the layout", [&] {
    // planned for the activations' type: 16-bit ones keep half the bytes
    const auto plan = [&](auto activation) {
      choice = trident::train::choose_layout<decltype(activation)>(Space(), world, o.spec(), automatic);
    };
    with_activation_type(o.dtype, plan);
  });
  if (world.rank() == 0) std::printf("layout auto: %s", choice.report.c_str());
  trident::train::Layout& l = choice.layout;
  l.placement = o.layout.placement;
  l.reduction = l.zero_stage == 0 ? o.layout.reduction : trident::data_parallel::Reduction::automatic;
  l.bucket_mb = o.layout.bucket_mb;
  o.layout = l;
  o.auto_layout = false;
  check_layout(o, size);
}

int run(int argc, char** argv, int rank, int size) {
  Options parsed;
  try {
    if (!parse(argc, argv, parsed, rank)) return 0;
    check_layout(parsed, size);
  } catch (const UsageError&) {
    throw;
  } catch (const std::exception& e) {
    throw UsageError(e.what());
  }
  Options& o = parsed;
  trident::comm::Communicator world(MPI_COMM_WORLD, "world");
  if (o.comm_backend) world.set_backend(*o.comm_backend);  // the groups split from it inherit it
  if (o.auto_layout) plan_layout(o, world, size);

  // The data files and the memory the run needs, before anything large is allocated.
  train_gpt::MemoryInputs needs;
  needs.config = o.config;
  needs.layout = o.layout;
  needs.attention = o.attention;
  needs.batch = o.batch;
  needs.activation_bytes = o.dtype == "fp32" ? 4 : 2;
  needs.measures_peak = o.peak_gflops <= 0;
  needs.loads_checkpoint = !o.load.empty() || !o.resume.empty();
  train_gpt::MemoryEstimate estimate;
  const double available = train_gpt::available_memory();
  const int ranks_here = ranks_on_this_node();
  set_up_together(world, "checking the data and the memory", [&] {
    const auto settings = o.data_settings();
    std::vector<train_gpt::DataFile> files;
    bool tokens = true;
    if (o.data != "synthetic") {  // every data error here, before anything is read
      files = train_gpt::inspect_data(settings);
      tokens = train_gpt::reads_tokens(settings, files);
    }
    needs.data_tokens = static_cast<double>(train_gpt::data_tokens(settings, files, tokens));
    estimate = train_gpt::estimate_memory(needs);
    if (!Kokkos::SpaceAccessibility<Kokkos::HostSpace, Space::memory_space>::accessible)
      estimate.parameters = estimate.gradients = estimate.moments = estimate.activations = 0;  // on the device
    const std::string refusal = train_gpt::memory_refusal(estimate, needs, ranks_here, available);
    trident::require_argument(refusal.empty() || o.skip_memory_check, refusal, " (--skip-memory-check starts anyway)");
  });

  // Every output, on every rank: directories created, what cannot be written refused.
  std::unique_ptr<std::ofstream> json;
  set_up_together(world, "checking the outputs", [&] {
    trident_examples::prepare_output_file("--save", o.save, rank);
    if (o.save_every > 0) trident_examples::prepare_output_directory("--checkpoint-dir", o.checkpoint_dir, rank);
    trident_examples::prepare_output_file("--log-json", o.log_json, rank, true);
    trident_examples::prepare_output_file("--trace", o.trace, rank);
    if (!o.log_json.empty() && rank == 0) {
      json = std::make_unique<std::ofstream>(o.log_json, std::ios::app);
      trident::require_argument(json->good(), "--log-json '", o.log_json, "': cannot open it: ", std::strerror(errno));
    }
  });
  // Temporaries that killed runs left in a checkpoint directory go before anything is written.
  std::vector<std::string> directories;
  if (o.save_every > 0) directories.push_back(o.checkpoint_dir);
  if (!o.resume.empty() && (directories.empty() || directories[0] != o.resume)) directories.push_back(o.resume);
  for (const auto& directory : directories) {
    const std::size_t removed = trident_examples::CheckpointDirectory(world, directory).remove_stale_temporaries();
    if (rank == 0 && removed > 0)
      std::printf("removed %zu stale temporary file(s) of killed runs from %s\n", removed, directory.c_str());
  }
  std::unique_ptr<trident_examples::CheckpointDirectory> checkpoints;
  if (o.save_every > 0)
    checkpoints = std::make_unique<trident_examples::CheckpointDirectory>(world, o.checkpoint_dir, o.keep);
  if (!o.save.empty() && rank == 0) trident::io::remove_stale_temporaries(o.save);

  // The checkpoint to start from (the newest that verifies, with --resume), and its seed.
  std::uint64_t seed = o.training.seed;
  set_up_together(world, "choosing the checkpoint to resume", [&] {
    if (!o.resume.empty()) {
      trident::require_argument(!std::filesystem::is_regular_file(o.resume), "--resume '", o.resume,
                                "' is a file; --resume takes a --checkpoint-dir directory (give a file to --load)");
      o.load = trident_examples::CheckpointDirectory(world, o.resume).pick_for_resume([&](const std::string& note) {
        if (rank == 0) std::fprintf(stderr, "train_gpt: --resume %s: %s\n", o.resume.c_str(), note.c_str());
      });
    }
    if (o.load.empty()) return;
    const trident::io::SafetensorsFile file(o.load);
    require_same_config(file.metadata(), o.load, o.config);
    const std::uint64_t saved = checkpoint_seed(file.metadata(), o.load);
    trident::require_argument(!o.seed_given || o.training.seed == saved || o.reseed, "--seed ", o.training.seed,
                              " differs from the seed ", saved, " of checkpoint '", o.load, "'; a resumed run keeps ",
                              "its checkpoint's seed: leave --seed out, or add --reseed to continue with ",
                              o.training.seed);
    seed = o.reseed ? o.training.seed : saved;
  });
  o.training.seed = seed;

  double floor = NAN;
  std::unique_ptr<trident::data::BatchLoader> loader;
  set_up_together(world, "reading the data", [&] {
    loader = std::make_unique<trident::data::BatchLoader>(train_gpt::read_data(o.data_settings(), floor), o.batch,
                                                          o.config.seq);
  });
  const auto train = [&](auto activation) {
    using Trainer = trident::train::Trainer<decltype(activation), Space>;
    auto trainer_owner = std::make_unique<Trainer>(world, o.spec(), o.layout, o.training);
    Trainer& trainer = *trainer_owner;
    trainer.set_metadata("config", trident::gpt2::config_to_json(o.config).dump());
    trainer.set_metadata("train_gpt.seed", std::to_string(seed));
    if (!o.load.empty())
      trainer.load(o.load,
                   [&](const trident::io::Metadata& metadata) { require_same_config(metadata, o.load, o.config); });
    const trident::data::BatchLoader& data = *loader;
    const auto& mesh = trainer.mesh();
    const double tokens_per_step = static_cast<double>(o.batch) * o.config.seq;
    const double flops_per_token = o.config.training_flops_per_token();
    // MFU is the job's model FLOP/s over the peak of all its ranks: the given peak of one, or each
    // rank's own SGEMM rate, measured at once (so ranks that share cores measure them shared).
    Kokkos::View<double*, Kokkos::HostSpace> peaks("train_gpt::peak", 1);
    peaks(0) = o.peak_gflops > 0
                   ? o.peak_gflops
                   : trident::ops::measure_gemm_gflops<float>(Space(), o.layout.micro_batch * o.config.seq,
                                                              4 * o.config.hidden, o.config.hidden);
    trident::comm::allreduce(Kokkos::DefaultHostExecutionSpace(), world, peaks);
    const double peak = peaks(0);
    if (rank == 0) {
      std::printf("train_gpt: GPT-2 %s, %lld parameters, backend %s, %s%s\n", o.config.describe().c_str(),
                  static_cast<long long>(trident::nn::parameter_count(trainer.spec())), Space::name(),
                  o.layout.describe().c_str(),
                  o.dtype == "fp32" ? "" : (", " + o.dtype + " activations, float parameters").c_str());
      std::printf("data: %s, %lld tokens; batch %lld x %d tokens in micro-batches of %lld\n", o.data.c_str(),
                  static_cast<long long>(data.stream_length()), static_cast<long long>(o.batch), o.config.seq,
                  static_cast<long long>(o.layout.micro_batch));
      std::printf("memory: about %s per rank (estimate), %s available on this node\n",
                  train_gpt::bytes_text(estimate.total()).c_str(),
                  available > 0 ? train_gpt::bytes_text(available).c_str() : "unknown");
      if (!std::isnan(floor))
        std::printf("loss at start ~ ln V = %.4f; the synthetic language's entropy floor is %.4f nats/token\n",
                    std::log(static_cast<double>(o.config.vocab)), floor);
      std::printf("peak for MFU: %.1f GFLOP/s over %d rank(s) (%s); model FLOPs per token: %.3g\n", peak, world.size(),
                  o.peak_gflops > 0 ? "given per rank" : "SGEMM measured now on each", flops_per_token);
      if (!o.load.empty())
        std::printf("resumed from %s at step %lld (seed %llu%s)\n", o.load.c_str(),
                    static_cast<long long>(trainer.steps_done()), static_cast<unsigned long long>(seed),
                    o.reseed ? ", --reseed" : ", the checkpoint's");
    }
    print_layout(trainer, o);
    const std::int64_t replica_rows = o.batch / o.layout.dp;
    std::vector<double> recent;
    while (trainer.steps_done() < o.steps) {
      const std::int64_t step = trainer.steps_done() + 1;
      const auto tokens = data.batch(step - 1, mesh.dp_rank() * replica_rows, replica_rows);
      const auto r = trainer.step(trident::gpt2::gpt2_token_batch<float, Space>(tokens, true), o.schedule(step));
      if (checkpoints && r.step % o.save_every == 0) {
        const std::string saved = checkpoints->save(trainer, r.step);
        if (rank == 0) std::printf("saved %s at step %lld\n", saved.c_str(), static_cast<long long>(r.step));
      }
      if (r.skipped) {
        if (rank == 0)
          std::printf("step %5lld/%lld | loss %.6f | norm %.4f | skipped: not finite%s (%lld so far)\n",
                      static_cast<long long>(r.step), static_cast<long long>(o.steps), r.loss, r.grad_norm,
                      trainer.loss_scaler().settings().dynamic
                          ? (", loss scale " + std::to_string(r.loss_scale) + " overflowed").c_str()
                          : "",
                      static_cast<long long>(r.skipped_so_far));
        continue;
      }
      recent.push_back(r.loss);
      const double tokens_per_second = tokens_per_step / r.seconds;
      const double mfu = tokens_per_second * flops_per_token / (peak * 1e9);
      if (rank == 0) {
        std::printf("step %5lld/%lld | loss %.6f | lr %.3e | norm %.4f | %7.1f ms | %8.0f tok/s | MFU %5.1f%%\n",
                    static_cast<long long>(r.step), static_cast<long long>(o.steps), r.loss, r.lr, r.grad_norm,
                    r.seconds * 1e3, tokens_per_second, 100 * mfu);
        std::fflush(stdout);
      }
      if (!o.log_json.empty()) {  // rank 0 writes; a failure (a full disk) stops every rank together
        set_up_together(world, "writing --log-json", [&] {
          if (!json) return;
          *json << json_line(r, tokens_per_second, mfu) << std::flush;
          trident::require(json->good(), "--log-json '", o.log_json, "': writing step ", r.step,
                           " failed: ", std::strerror(errno));
        });
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
      if (rank == 0)
        std::printf("saved %s at step %lld\n", o.save.c_str(), static_cast<long long>(trainer.steps_done()));
    }
    if (!o.trace.empty() && trainer.executor() != nullptr) {
      const auto events = trainer.executor()->gather_trace();
      set_up_together(world, "writing --trace", [&] {
        if (rank == 0) trident::pipeline::write_chrome_trace(o.trace, events);
      });
    }
  };
  with_activation_type(o.dtype, train);
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
    // Every rank found it alike in the command line: rank 0 reports it, once.
    if (rank == 0) std::fprintf(stderr, "train_gpt: error: %s\n", e.what());
    status = 2;
  } catch (const std::exception& e) {
    // An error every rank holds alike is reported once. Any other (one rank out of memory, say)
    // by the rank that has it; its peers may wait for it in a collective, so the job is aborted.
    const auto* agreed = dynamic_cast<const trident::comm::AgreedFailure*>(&e);
    const bool everywhere = agreed != nullptr && agreed->group_size() == size;
    std::string text;  // on one line (Kokkos' messages take several)
    for (const char* c = e.what(); *c != '\0'; ++c) {
      const bool space = std::isspace(static_cast<unsigned char>(*c)) != 0;
      if (!space || (!text.empty() && text.back() != ' ')) text += space ? ' ' : *c;
    }
    while (!text.empty() && text.back() == ' ') text.pop_back();
    const bool memory = dynamic_cast<const std::bad_alloc*>(&e) != nullptr ||
                        text.find("bad_alloc") != std::string::npos || text.find("allocate") != std::string::npos;
    const std::string what = memory ? "out of memory (" + text +
                                          "): the model and layout need more than this rank could allocate; see the "
                                          "memory estimate and lower --hidden, --layers, --vocab, --micro-batch or "
                                          "--seq, or spread the model wider (--zero, --tp, --pp)"
                                    : text;
    if (everywhere || size == 1) {
      if (rank == 0) std::fprintf(stderr, "train_gpt: error: %s\n", what.c_str());
    } else {
      std::fprintf(stderr, "train_gpt: error (rank %d): %s\n", rank, what.c_str());
      std::fflush(stderr);
      MPI_Abort(MPI_COMM_WORLD, 2);
    }
    status = 2;
  }
  Kokkos::finalize();
  MPI_Finalize();
  return status;
}
