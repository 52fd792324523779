#pragma once
// The one training driver, for any model spec in any layout:
//
//   train::Layout layout;                       // dp x tp x pp, schedule, ZeRO, ...
//   layout.dp = 2;
//   train::Trainer<float> trainer(world, spec, layout);
//   for (step ...) auto report = trainer.step(batch, lr);  // loss, gradient norm, skipped
//   trainer.save("run.safetensors");                       // loadable in any other layout
//
// It builds the process mesh, this rank's model chunk(s) of the spec (tensor-parallel shards of
// its pipeline stages), the data-parallel engine of every chunk (dp = 1 is a group of one; any
// ZeRO stage), the pipeline executor when pp > 1, and the sums of tied tables whose embedding and
// head sit on different stages. A step is the one-rank step on the global batch, up to the order
// of floating-point sums: each replica takes its rows, in micro-batches; the gradients are
// reduced; the norm counts each global element once (nn::Model::counts); a non-finite step stops
// or is skipped on every rank together; then clipping and AdamW.
//
// This header declares it; train/trainer_impl.hpp defines it and is included at the end, unless
// the program links trident::train_float (TRIDENT_TRAINER_FLOAT_INSTANTIATED), which holds the
// Trainers of float parameters (float, bfloat16 and float16 activations) on the default
// execution space compiled once: then only the declarations are compiled here (include
// trainer_impl.hpp for another Scalar or space).

#include <trident/comm/communicator.hpp>
#include <trident/core/memory_accounting.hpp>
#include <trident/io/tensor_info.hpp>
#include <trident/mesh/process_mesh.hpp>
#include <trident/nn/spec.hpp>
#include <trident/nn/types.hpp>
#include <trident/optim/adamw.hpp>
#include <trident/optim/loss_scaler.hpp>
#include <trident/train/auto_layout.hpp>
#include <trident/train/layout.hpp>
#include <trident/train/nonfinite.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace trident {
namespace comm {
class NodeGroups;
}
namespace nn {
template <class Scalar, class ExecutionSpace>
class Model;
}
namespace data_parallel {
template <class Scalar, class ExecutionSpace>
class DataParallel;
}
namespace pipeline {
template <class Scalar, class ExecutionSpace>
class Executor;
class TiedGradients;
struct BoundaryShape;
}  // namespace pipeline
namespace train {
template <class Scalar, class MemorySpace>
struct StatePart;
struct GlobalTensor;
}  // namespace train
}  // namespace trident

namespace trident::train {

struct TrainerSettings {
  optim::AdamWSettings adamw;
  double grad_clip = 1.0;  // largest global gradient norm; <= 0: no clipping
  NonFinitePolicy on_nonfinite = NonFinitePolicy::stop;
  std::uint64_t seed = 0;  // of the initialisation (defined on the global tensors)
  // The loss scale of the backward (optim/loss_scaler.hpp); unset: dynamic for float16
  // activations, whose gradients underflow below 2^-24, none (1) otherwise. Under a dynamic
  // scale a step whose gradients overflowed is skipped and the scale shrinks, whatever
  // on_nonfinite says; a non-finite loss still follows on_nonfinite.
  std::optional<optim::LossScalerSettings> loss_scaling;
};

struct StepReport {
  std::int64_t step = 0;  // this step's number, from 1
  double loss = 0;        // mean loss over the rows of the global batch
  double grad_norm = 0;   // before clipping
  double lr = 0;
  double seconds = 0;
  double loss_scale = 1;  // what the backward multiplied the loss by
  bool skipped = false;   // not finite, not applied (NonFinitePolicy::skip, or an overflow under a dynamic loss scale)
  std::int64_t skipped_so_far = 0;  // by this trainer
};

// A batch: inputs [rows, input features] and what the loss compares the output with (values
// [rows, outputs] or classes [rows]). Every rank passes the global batch and takes its replica's
// rows; with `replica_share` every rank passes its replica's rows only. A Trainer of 16-bit
// activations takes the batches of its parameters' type (Batch<float>), as a float one does.
template <class Scalar, class ExecutionSpace>
struct Batch {
  typename nn::LayerTypes<Scalar, ExecutionSpace>::matrix inputs;
  nn::Targets<Scalar, ExecutionSpace> targets;
  bool replica_share = false;
};

// A copy of a view of any memory space (host data, say) in the memory of ExecutionSpace.
template <class ExecutionSpace, class View>
auto to_device(const View& view) {
  return Kokkos::create_mirror_view_and_copy(typename ExecutionSpace::memory_space(), view);
}

// Scalar is the type of the activations: float (or double), or bfloat16 / float16 for mixed
// precision (nn/types.hpp), whose parameters, gradients, optimizer state, reductions and
// checkpoints stay float: a checkpoint of one loads into the other.
template <class Scalar, class ExecutionSpace = Kokkos::DefaultExecutionSpace>
class Trainer {
 public:
  using model_type = nn::Model<Scalar, ExecutionSpace>;
  using param_type = typename nn::LayerTypes<Scalar, ExecutionSpace>::param_type;
  using matrix = typename nn::LayerTypes<Scalar, ExecutionSpace>::matrix;
  using input_matrix = typename nn::LayerTypes<Scalar, ExecutionSpace>::input_matrix;
  using targets_type = nn::Targets<param_type, ExecutionSpace>;
  using batch_type = Batch<param_type, ExecutionSpace>;
  using memory_space = typename ExecutionSpace::memory_space;
  using engine_type = data_parallel::DataParallel<param_type, ExecutionSpace>;
  using executor_type = pipeline::Executor<Scalar, ExecutionSpace>;
  using Tensors = std::map<std::string, std::vector<double>>;

  // Collective over `world`, whose ranks the layout arranges; every rank passes the same
  // arguments (checked: a mistake on any rank is one error on every rank).
  Trainer(const ExecutionSpace& space, const comm::Communicator& world, nn::ModelSpec spec, Layout layout,
          TrainerSettings settings = {});

  Trainer(const comm::Communicator& world, nn::ModelSpec spec, Layout layout, TrainerSettings settings = {})
      : Trainer(ExecutionSpace(), world, std::move(spec), std::move(layout), settings) {}

  // layout = auto: the layout the planner predicts fastest on this machine, the same on every
  // rank (choose_layout.hpp); rank 0 prints the ranking unless automatic.print is false.
  Trainer(const ExecutionSpace& space, const comm::Communicator& world, nn::ModelSpec spec, const AutoLayout& automatic,
          TrainerSettings settings = {});

  Trainer(const comm::Communicator& world, nn::ModelSpec spec, const AutoLayout& automatic,
          TrainerSettings settings = {})
      : Trainer(ExecutionSpace(), world, std::move(spec), automatic, settings) {}

  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  const nn::ModelSpec& spec() const { return m_spec; }
  const Layout& layout() const { return m_layout; }
  const TrainerSettings& settings() const { return m_settings; }
  const ProcessMesh& mesh() const { return m_mesh; }
  const ExecutionSpace& space() const { return m_space; }
  std::int64_t steps_done() const { return m_step; }
  std::int64_t samples_seen() const { return m_samples; }
  // Every pipeline stage's top-level layers; stage s runs on pipeline rank s mod pp.
  const std::vector<nn::StageRange>& stages() const { return m_stages; }
  int chunk_count() const { return static_cast<int>(m_chunks.size()); }
  model_type& chunk(int c);
  const model_type& chunk(int c) const;
  // The memory of chunk 0's parameters, gradients, optimizer state and activations.
  const MemoryLedger& memory() const;
  // Chunk c's data-parallel engine: its buckets, shard layout, events and blocked times.
  const engine_type& data_parallel(int c) const;
  // The nodes ZeRO-0's gradient all-reduce goes through in two levels; nullptr when it is flat
  // (comm/hierarchical_allreduce.hpp).
  const comm::NodeGroups* gradient_node_groups() const;
  // The pipeline's executor of the last step (nullptr without a pipeline, or before a step).
  const executor_type* executor() const { return m_last_executor; }
  executor_type* executor() { return m_last_executor; }  // e.g. to follow each action (set_after_action)

  // Step steps_done() + 1 on `batch` with learning rate `lr`. Collective over the world.
  StepReport step(const batch_type& batch, double lr);

  // The mean loss over the rows of `batch`, forward only (no gradient, no update). Collective.
  double evaluate(const batch_type& batch);

  // The model's output [rows, output features] for `inputs` (this rank's columns of a
  // vocabulary-parallel head's), on every rank; every rank passes the same inputs. Valid until
  // the next call. Collective.
  matrix predict(const input_matrix& inputs);

  // Every global tensor's values, on every rank (the one-rank model's, whatever the layout).
  // Collective over the world.
  Tensors global_parameters();

  // The last step's reduced gradients as global tensors (after clipping), on every rank. Only
  // without ZeRO, which leaves each rank a shard of them. Collective over the world.
  Tensors global_gradients();

  // Entries saved with the next checkpoint beside the trainer's own (the data position, a
  // model's config); load() returns what a checkpoint holds.
  void set_metadata(const std::string& key, const std::string& value) { m_metadata[key] = value; }

  // The loss scaler of the backward (TrainerSettings::loss_scaling).
  const optim::LossScaler& loss_scaler() const { return m_scaler; }

  // The one-rank checkpoint: parameters, AdamW moments, step, samples seen, seed, the loss
  // scaler's state and the model's description, each rank writing its own part, atomically.
  // The bytes do not depend on the layout, nor on the activations' type. Collective over the world.
  void save(const std::string& path) const;

  // Reads a checkpoint saved in any layout (its parameters and AdamW moments, step, samples
  // and seed); `check(metadata)` may refuse it first (throwing). A file that fails on any rank
  // changes nothing on every rank. Collective over the world. Returns the checkpoint's metadata.
  io::Metadata load(const std::string& path, const std::function<void(const io::Metadata&)>& check = {});

 private:
  // How a batch divides: this replica's rows from `first_row`, in `micro_batches` of
  // `micro_rows` rows.
  struct Split {
    std::int64_t global_rows = 0, first_row = 0, micro_rows = 0, micro_batches = 0, rows_per_sample = 1;
  };

  static Layout planned_layout(const ExecutionSpace& space, const comm::Communicator& world, const nn::ModelSpec& spec,
                               const AutoLayout& automatic);

  static ProcessMesh checked_mesh(const comm::Communicator& world, const nn::ModelSpec& spec, const Layout& layout);

  bool pipelined() const { return m_layout.stages() > 1; }

  int stage_of_chunk(int c) const { return c * m_layout.pp + m_mesh.pp_rank(); }

  int stage_of_layer(int layer) const;

  // The layout's stage cuts, or those that balance the layers' forward cost.
  std::vector<nn::StageRange> plan_stages() const;

  Split split_of(const batch_type& batch, const char* operation) const;

  static std::pair<std::int64_t, std::int64_t> row_range(const Split& split, std::int64_t k) {
    const std::int64_t begin = split.first_row + k * split.micro_rows;
    return {begin, begin + split.micro_rows};
  }

  input_matrix rows(const input_matrix& m, const Split& split, std::int64_t k) const;

  targets_type rows(const targets_type& t, const Split& split, std::int64_t k) const;

  // Hands every chunk this replica's micro-batches of `batch` (a pipelined step or evaluation).
  void set_micro_batches(const batch_type& batch, const Split& split, double scale);

  // The executor of a step of this many micro-batches of these rows (the cuts' shapes follow).
  executor_type& executor_for(const Split& split);

  std::vector<pipeline::BoundaryShape> cut_shapes(std::int64_t micro_rows) const;

  // A table read on two stages: both copies' gradients summed, so they stay equal.
  void sum_tied_gradients();

  // A sum over the ranks that hold different parts of one replica (tp shards, pp stages).
  double sum_over_model_groups(double value) const;

  // A forward pass of the micro-batches set on the chunks through the stages in order, without
  // a schedule (evaluation and inference); `on_output` sees the last stage's outputs. Returns
  // the summed loss on every pipeline rank. ZeRO-3 gathers the parameters for it.
  template <class OnOutput>
  double forward_through_pipeline(std::int64_t micro_batches, std::int64_t micro_rows, OnOutput&& on_output);

  std::vector<GlobalTensor> global_tensor_list() const;

  // What this rank saves and loads of each chunk: its ZeRO range (the range ZeRO would give it
  // under ZeRO-0), the tensors it counts.
  std::vector<StatePart<param_type, memory_space>> owned_parts() const;

  // Whether step `step`'s update applies: the loss scaler's verdict under a dynamic scale, the
  // non-finite policy's otherwise. Counts a skipped step.
  bool accept_step(StepReport& report);

  struct TiedTable {
    std::string name;
    int embedding_stage = 0, head_stage = 0;
    std::unique_ptr<pipeline::TiedGradients> sum;
  };

  ExecutionSpace m_space;
  nn::ModelSpec m_spec;
  Layout m_layout;
  TrainerSettings m_settings;
  ProcessMesh m_mesh;
  std::vector<nn::StageRange> m_stages;
  std::vector<std::unique_ptr<model_type>> m_chunks;    // chunk c: stage c * pp + pp rank
  std::vector<std::unique_ptr<engine_type>> m_engines;  // one per chunk
  std::vector<TiedTable> m_tied;
  std::map<std::pair<std::int64_t, std::int64_t>, std::unique_ptr<executor_type>> m_executors;
  executor_type* m_last_executor = nullptr;
  comm::Communicator m_forward_comm;  // the forward-only passes' messages
  io::Metadata m_metadata;
  optim::LossScaler m_scaler;
  std::int64_t m_step = 0, m_samples = 0, m_skipped = 0;
};

}  // namespace trident::train

#if defined(TRIDENT_TRAINER_FLOAT_INSTANTIATED)
extern template class trident::train::Trainer<float, Kokkos::DefaultExecutionSpace>;
extern template class trident::train::Trainer<trident::bfloat16, Kokkos::DefaultExecutionSpace>;
extern template class trident::train::Trainer<trident::float16, Kokkos::DefaultExecutionSpace>;
#else
#include <trident/train/trainer_impl.hpp>
#endif
