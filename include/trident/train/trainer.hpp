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

#include <trident/comm/agreement.hpp>
#include <trident/comm/allreduce.hpp>
#include <trident/comm/broadcast.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/comm/point_to_point.hpp>
#include <trident/core/compat.hpp>
#include <trident/core/error.hpp>
#include <trident/core/memory_accounting.hpp>
#include <trident/core/profiling.hpp>
#include <trident/data_parallel/data_parallel.hpp>
#include <trident/mesh/process_mesh.hpp>
#include <trident/nn/global_tensors.hpp>
#include <trident/nn/model.hpp>
#include <trident/optim/adamw.hpp>
#include <trident/optim/clip.hpp>
#include <trident/pipeline/executor.hpp>
#include <trident/pipeline/partition.hpp>
#include <trident/pipeline/schedules.hpp>
#include <trident/pipeline/tied_gradients.hpp>
#include <trident/train/checkpoint.hpp>
#include <trident/train/layout.hpp>
#include <trident/train/nonfinite.hpp>

#include <Kokkos_Core.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace trident::train {

struct TrainerSettings {
  optim::AdamWSettings adamw;
  double grad_clip = 1.0;  // largest global gradient norm; <= 0: no clipping
  NonFinitePolicy on_nonfinite = NonFinitePolicy::stop;
  std::uint64_t seed = 0;  // of the initialisation (defined on the global tensors)
};

struct StepReport {
  std::int64_t step = 0;  // this step's number, from 1
  double loss = 0;        // mean loss over the rows of the global batch
  double grad_norm = 0;   // before clipping
  double lr = 0;
  double seconds = 0;
  bool skipped = false;             // not finite, not applied (NonFinitePolicy::skip)
  std::int64_t skipped_so_far = 0;  // by this trainer
};

// A batch: inputs [rows, input features] and what the loss compares the output with (values
// [rows, outputs] or classes [rows]). Every rank passes the global batch and takes its replica's
// rows; with `replica_share` every rank passes its replica's rows only.
template <class Scalar, class ExecutionSpace>
struct Batch {
  typename nn::Model<Scalar, ExecutionSpace>::matrix inputs;
  nn::Targets<Scalar, ExecutionSpace> targets;
  bool replica_share = false;
};

// A copy of a view of any memory space (host data, say) in the memory of ExecutionSpace.
template <class ExecutionSpace, class View>
auto to_device(const View& view) {
  return Kokkos::create_mirror_view_and_copy(typename ExecutionSpace::memory_space(), view);
}

template <class Scalar, class ExecutionSpace = Kokkos::DefaultExecutionSpace>
class Trainer {
 public:
  using model_type = nn::Model<Scalar, ExecutionSpace>;
  using matrix = typename model_type::matrix;
  using targets_type = nn::Targets<Scalar, ExecutionSpace>;
  using batch_type = Batch<Scalar, ExecutionSpace>;
  using memory_space = typename ExecutionSpace::memory_space;
  using engine_type = data_parallel::DataParallel<Scalar, ExecutionSpace>;
  using executor_type = pipeline::Executor<Scalar, ExecutionSpace>;
  using Tensors = std::map<std::string, std::vector<double>>;

  // Collective over `world`, whose ranks the layout arranges; every rank passes the same
  // arguments (checked: a mistake on any rank is one error on every rank).
  Trainer(const ExecutionSpace& space, const comm::Communicator& world, nn::ModelSpec spec, Layout layout,
          TrainerSettings settings = {})
      : m_space(space),
        m_spec(std::move(spec)),
        m_layout(std::move(layout)),
        m_settings(settings),
        m_mesh(checked_mesh(world, m_spec, m_layout)) {
    ScopedRegion region("trident::train::Trainer");
    comm::agree_on_failure(m_mesh.world(), "trident::train::Trainer: building the model", [&] {
      m_stages = plan_stages();
      for (int c = 0; c < m_layout.virtual_stages; ++c)
        m_chunks.push_back(std::make_unique<model_type>(
            m_space, m_spec, tensor_parallel::TensorParallelGroup{m_mesh.tp(), m_layout.sequence_parallel},
            m_stages[static_cast<std::size_t>(stage_of_chunk(c))], m_layout.recompute));
    });
    for (auto& chunk : m_chunks) chunk->initialize(m_settings.seed);
    const std::string context = "layout: " + m_layout.describe() + "; model: " + nn::describe(m_spec);
    for (auto& chunk : m_chunks)
      m_engines.push_back(std::make_unique<engine_type>(m_space, m_mesh.dp(), chunk->parameters(), chunk->unit_plan(),
                                                        m_settings.adamw, m_layout.data_parallel_settings(), context));
    if (!pipelined()) {  // the reduction overlaps backward, unit by unit
      engine_type* engine = m_engines.front().get();
      m_chunks.front()->set_hooks({[engine](int unit) { engine->before_forward(unit); },
                                   [engine](int unit) { engine->before_backward(unit); },
                                   [engine](int unit) { engine->after_backward(unit); }});
    }
    for (const auto& table : nn::tied_tables(m_spec)) {
      const int embedding = stage_of_layer(table.embedding_layer), head = stage_of_layer(table.head_layer);
      if (embedding == head) continue;  // one stage holds the table once
      m_tied.push_back(
          {table.name, embedding, head,
           std::make_unique<pipeline::TiedGradients>(m_mesh.pp(), embedding % m_layout.pp, head % m_layout.pp)});
    }
    if (pipelined()) m_forward_comm = m_mesh.pp().duplicate("pp-forward");
  }

  Trainer(const comm::Communicator& world, nn::ModelSpec spec, Layout layout, TrainerSettings settings = {})
      : Trainer(ExecutionSpace(), world, std::move(spec), std::move(layout), settings) {}

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
  model_type& chunk(int c) { return *m_chunks.at(static_cast<std::size_t>(c)); }
  const model_type& chunk(int c) const { return *m_chunks.at(static_cast<std::size_t>(c)); }
  // The memory of chunk 0's parameters, gradients, optimizer state and activations.
  const MemoryLedger& memory() const { return m_engines.front()->memory(); }
  // The pipeline's executor of the last step (nullptr without a pipeline, or before a step).
  const executor_type* executor() const { return m_last_executor; }

  // One line per rank: its mesh coordinates and the layers it holds.
  std::string describe_ranks() const {
    std::string text;
    for (int r = 0; r < m_mesh.world().size(); ++r) {
      const auto c = m_mesh.coords_of(r);
      text += "  rank " + std::to_string(r) + ": dp " + std::to_string(c.dp) + ", tp " + std::to_string(c.tp) +
              ", pp " + std::to_string(c.pp) + ":";
      for (int s = c.pp; s < m_layout.stages(); s += m_layout.pp) {
        const auto& stage = m_stages[static_cast<std::size_t>(s)];
        text += " stage " + std::to_string(s) + " layers [" + std::to_string(stage.first) + ", " +
                std::to_string(stage.end) + ")";
      }
      text += "\n";
    }
    return text;
  }

  // Step steps_done() + 1 on `batch` with learning rate `lr`. Collective over the world.
  StepReport step(const batch_type& batch, double lr) {
    ScopedRegion region("trident::train::Trainer::step");
    const auto start = std::chrono::steady_clock::now();
    const Split split = split_of(batch, "step");
    const double scale = 1.0 / static_cast<double>(split.global_rows);
    for (auto& engine : m_engines) {
      engine->begin_step();
      if (pipelined() && engine->stage() == 3) engine->gather_for_step();
    }
    double local_loss = 0;
    if (!pipelined()) {
      model_type& model = *m_chunks.front();
      for (std::int64_t k = 0; k < split.micro_batches; ++k) {
        m_engines.front()->begin_micro_batch(k + 1 == split.micro_batches);
        local_loss += model.forward(rows(batch.inputs, split, k), rows(batch.targets, split, k), scale);
        model.backward(scale);
      }
      m_engines.front()->memory().set(MemoryCategory::activations, static_cast<std::int64_t>(model.activation_bytes()));
    } else {
      for (auto& engine : m_engines) engine->begin_micro_batch(false);  // reduced once the pipeline is done
      std::vector<matrix> inputs;
      std::vector<targets_type> targets;
      for (std::int64_t k = 0; k < split.micro_batches; ++k) {
        inputs.push_back(rows(batch.inputs, split, k));
        targets.push_back(rows(batch.targets, split, k));
      }
      for (auto& chunk : m_chunks) chunk->set_micro_batches(inputs, targets, scale);
      std::vector<model_type*> chunks;
      for (auto& chunk : m_chunks) chunks.push_back(chunk.get());
      executor_type& executor = executor_for(split);
      m_last_executor = &executor;
      local_loss = executor.run(chunks);
      sum_tied_gradients();
    }
    StepReport report;
    report.step = m_step + 1;
    report.skipped_so_far = m_skipped;
    double loss_sum = 0, squares = 0;
    for (std::size_t c = 0; c < m_chunks.size(); ++c) {
      const model_type* model = m_chunks[c].get();
      const auto summary = m_engines[c]->finish_gradients(c == 0 ? local_loss : 0.0,
                                                          [model](const ParameterInfo& t) { return model->counts(t); });
      if (c == 0) loss_sum = summary.loss_sum;
      squares += summary.sum_of_squares;
    }
    squares = sum_over_model_groups(squares);
    report.loss = loss_sum * scale;
    report.grad_norm = std::sqrt(squares);
    if (!finite_step(report.step, report.loss, report.grad_norm, m_settings.on_nonfinite,
                     m_chunks.front()->parameters())) {
      report.skipped = true;
      report.skipped_so_far = ++m_skipped;
    } else {
      const double coefficient =
          m_settings.grad_clip > 0 ? optim::clip_coefficient(report.grad_norm, m_settings.grad_clip) : 1.0;
      report.lr = lr;
      for (auto& engine : m_engines) {
        if (coefficient < 1.0) engine->scale_gradients(coefficient);
        engine->step(report.step, lr);
      }
    }
    compat::fence(m_space, "trident::train::Trainer::step");
    m_step = report.step;
    m_samples += split.global_rows / split.rows_per_sample;
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return report;
  }

  // The mean loss over the rows of `batch`, forward only (no gradient, no update). Collective.
  double evaluate(const batch_type& batch) {
    ScopedRegion region("trident::train::Trainer::evaluate");
    const Split split = split_of(batch, "evaluate");
    const double scale = 1.0 / static_cast<double>(split.global_rows);
    double local_loss = 0;
    if (!pipelined()) {
      for (std::int64_t k = 0; k < split.micro_batches; ++k)
        local_loss += m_chunks.front()->forward(rows(batch.inputs, split, k), rows(batch.targets, split, k), scale);
    } else {
      std::vector<matrix> inputs;
      std::vector<targets_type> targets;
      for (std::int64_t k = 0; k < split.micro_batches; ++k) {
        inputs.push_back(rows(batch.inputs, split, k));
        targets.push_back(rows(batch.targets, split, k));
      }
      for (auto& chunk : m_chunks) chunk->set_micro_batches(inputs, targets, scale);
      local_loss = forward_through_pipeline(split.micro_batches, split.micro_rows, nullptr);
    }
    Kokkos::View<double*, Kokkos::HostSpace> total("trident::train::evaluate", 1);
    total(0) = local_loss;
    comm::allreduce(Kokkos::DefaultHostExecutionSpace(), m_mesh.dp(), total);
    return total(0) * scale;
  }

  // The model's output [rows, output features] for `inputs` (this rank's columns of a
  // vocabulary-parallel head's), on every rank; every rank passes the same inputs. Valid until
  // the next call. Collective.
  matrix predict(const matrix& inputs) {
    ScopedRegion region("trident::train::Trainer::predict");
    if (!pipelined()) return m_chunks.front()->predict(inputs);
    const int layers = static_cast<int>(m_spec.layers.size());
    const auto rows = static_cast<std::int64_t>(inputs.extent(0));
    matrix output("trident::train::predict", static_cast<std::size_t>(rows),
                  static_cast<std::size_t>(m_chunks.front()->columns_at(layers)));
    for (auto& chunk : m_chunks) chunk->set_inference_micro_batches({inputs});
    forward_through_pipeline(1, rows, [&](int, const matrix& out) { Kokkos::deep_copy(m_space, output, out); });
    comm::broadcast(m_space, m_mesh.pp(), output, (m_layout.stages() - 1) % m_layout.pp);
    return output;
  }

  // Every global tensor's values, on every rank (the one-rank model's, whatever the layout).
  // Collective over the world.
  Tensors global_parameters() {
    std::vector<const model_type*> chunks;
    std::vector<typename model_type::store_type::flat_view> values;
    for (std::size_t c = 0; c < m_chunks.size(); ++c) {
      chunks.push_back(m_chunks[c].get());
      values.push_back(m_engines[c]->stage() == 3 ? m_engines[c]->full_values() : m_chunks[c]->parameters().values());
    }
    return nn::global_tensors(chunks, values, m_mesh.world(), m_mesh.dp_rank() == 0);
  }

  // The last step's reduced gradients as global tensors (after clipping), on every rank. Only
  // without ZeRO, which leaves each rank a shard of them. Collective over the world.
  Tensors global_gradients() {
    comm::agree_on_failure(m_mesh.world(), "trident::train::Trainer::global_gradients", [&] {
      require_argument(m_layout.zero_stage == 0, "trident::train::Trainer::global_gradients: under ZeRO-",
                       m_layout.zero_stage, " each rank holds only a shard of the reduced gradients");
    });
    std::vector<const model_type*> chunks;
    std::vector<typename model_type::store_type::flat_view> grads;
    for (const auto& chunk : m_chunks) {
      chunks.push_back(chunk.get());
      grads.push_back(chunk->parameters().grads());
    }
    return nn::global_tensors(chunks, grads, m_mesh.world(), m_mesh.dp_rank() == 0);
  }

  // Entries saved with the next checkpoint beside the trainer's own (the data position, a
  // model's config); load() returns what a checkpoint holds.
  void set_metadata(const std::string& key, const std::string& value) { m_metadata[key] = value; }

  // The one-rank checkpoint: parameters, AdamW moments, step, samples seen, seed and the model's
  // description, each rank writing its own part, atomically. The bytes do not depend on the
  // layout. Collective over the world.
  void save(const std::string& path) const {
    ScopedRegion region("trident::train::Trainer::save");
    io::Metadata metadata = m_metadata;
    const nlohmann::json optimizer = {{"name", "AdamW"},
                                      {"beta1", m_settings.adamw.beta1},
                                      {"beta2", m_settings.adamw.beta2},
                                      {"eps", m_settings.adamw.eps},
                                      {"weight_decay", m_settings.adamw.weight_decay}};
    metadata["format"] = "trident.train";
    metadata["model"] = nn::describe(m_spec);
    metadata["step"] = std::to_string(m_step);
    metadata["samples"] = std::to_string(m_samples);
    metadata["skipped"] = std::to_string(m_skipped);
    metadata["seed"] = std::to_string(m_settings.seed);
    metadata["optimizer"] = optimizer.dump();
    save_state(path, global_tensor_list(), metadata, owned_parts(), m_mesh.world());
  }

  // Reads a checkpoint saved in any layout (its parameters and AdamW moments, step, samples
  // and seed); `check(metadata)` may refuse it first (throwing). A file that fails on any rank
  // changes nothing on every rank. Collective over the world. Returns the checkpoint's metadata.
  io::Metadata load(const std::string& path, const std::function<void(const io::Metadata&)>& check = {}) {
    ScopedRegion region("trident::train::Trainer::load");
    std::vector<StatePart<Scalar, memory_space>> parts;
    for (const auto& part : owned_parts()) parts.push_back(with_fresh_buffers(part));
    std::int64_t step = 0, samples = 0, skipped = 0;
    std::uint64_t seed = 0;
    const auto metadata = load_state(path, global_tensor_list(), parts, m_mesh.world(), [&](const io::Metadata& md) {
      if (check) check(md);
      try {
        step = std::stoll(metadata_entry(md, "step", path));
        samples = std::stoll(metadata_entry(md, "samples", path));
        skipped = md.count("skipped") != 0 ? std::stoll(md.at("skipped")) : 0;
        seed = std::stoull(metadata_entry(md, "seed", path));
      } catch (const std::logic_error&) {
        throw Error("trident::train: checkpoint '" + path + "' has a malformed step, sample count or seed");
      }
      require(step >= 0 && samples >= 0, "trident::train: checkpoint '", path, "' records step ", step, " and ",
              samples, " samples");
    });
    for (std::size_t c = 0; c < m_engines.size(); ++c)
      m_engines[c]->load_owned_state(parts[c].values, parts[c].exp_avg, parts[c].exp_avg_sq);
    compat::fence(m_space, "trident::train::Trainer::load");
    m_step = step;
    m_samples = samples;
    m_skipped = skipped;
    m_settings.seed = seed;
    return metadata;
  }

 private:
  // How a batch divides: this replica's rows from `first_row`, in `micro_batches` of
  // `micro_rows` rows.
  struct Split {
    std::int64_t global_rows = 0, first_row = 0, micro_rows = 0, micro_batches = 0, rows_per_sample = 1;
  };

  static ProcessMesh checked_mesh(const comm::Communicator& world, const nn::ModelSpec& spec, const Layout& layout) {
    comm::agree_on_failure(world, "trident::train::Trainer: checking the layout",
                           [&] { layout.validate(world.size(), spec); });
    return ProcessMesh(world, layout.dp, layout.tp, layout.pp);
  }

  bool pipelined() const { return m_layout.stages() > 1; }

  int stage_of_chunk(int c) const { return c * m_layout.pp + m_mesh.pp_rank(); }

  int stage_of_layer(int layer) const {
    for (std::size_t s = 0; s < m_stages.size(); ++s)
      if (layer >= m_stages[s].first && layer < m_stages[s].end) return static_cast<int>(s);
    throw Error(trident::detail::concat("trident::train::Trainer: no stage holds layer ", layer, " (internal error)"));
  }

  // The layout's stage cuts, or those that balance the layers' forward cost.
  std::vector<nn::StageRange> plan_stages() const {
    const int stages = m_layout.stages();
    std::vector<nn::StageRange> ranges;
    if (!m_layout.stage_layers.empty()) {
      int first = 0;
      for (int count : m_layout.stage_layers) {
        ranges.push_back({first, first + count});
        first += count;
      }
      return ranges;
    }
    std::vector<double> costs;
    for (const auto& layer : m_spec.layers) costs.push_back(nn::forward_cost_per_row(layer));
    for (const auto& stage : pipeline::partition_stages(costs, stages).stages)
      ranges.push_back({stage.first_block, stage.end_block});
    return ranges;
  }

  Split split_of(const batch_type& batch, const char* operation) const {
    Split split;
    split.rows_per_sample = nn::rows_per_sample(m_spec);
    const auto rows = static_cast<std::int64_t>(batch.inputs.extent(0));
    const std::int64_t replica_rows = batch.replica_share ? rows : rows / m_layout.dp;
    const std::int64_t replica_samples = replica_rows / split.rows_per_sample;
    std::int64_t micro_samples = m_layout.micro_batch;
    if (micro_samples == 0) micro_samples = !pipelined() ? replica_samples : replica_samples / m_layout.pp;
    comm::agree_on_failure(m_mesh.world(), std::string("trident::train::Trainer::") + operation, [&] {
      const std::string what = std::string("trident::train::Trainer::") + operation + ": ";
      require_argument(rows >= 1 && rows % split.rows_per_sample == 0, what, "the batch has ", rows,
                       " rows, not a whole number of samples of ", split.rows_per_sample, " rows");
      require_argument(batch.replica_share || (rows / split.rows_per_sample) % m_layout.dp == 0, what, "the batch of ",
                       rows / split.rows_per_sample, " samples does not split over ", m_layout.dp,
                       " data-parallel replicas");
      require_argument(micro_samples >= 1 && replica_samples % micro_samples == 0, what, "each replica's ",
                       replica_samples, " samples do not make whole micro-batches",
                       m_layout.micro_batch > 0 ? " of " + std::to_string(m_layout.micro_batch) + " samples"
                                                : " for " + std::to_string(m_layout.pp) + " pipeline stages",
                       " (set Layout::micro_batch to a divisor)");
      require_argument(static_cast<std::int64_t>(batch.targets.values.extent(0)) == rows ||
                           static_cast<std::int64_t>(batch.targets.classes.extent(0)) == rows,
                       what, "the targets do not have the batch's ", rows, " rows");
    });
    split.global_rows = batch.replica_share ? rows * m_layout.dp : rows;
    split.first_row = batch.replica_share ? 0 : m_mesh.dp_rank() * replica_rows;
    split.micro_rows = micro_samples * split.rows_per_sample;
    split.micro_batches = replica_samples / micro_samples;
    return split;
  }

  static std::pair<std::int64_t, std::int64_t> row_range(const Split& split, std::int64_t k) {
    const std::int64_t begin = split.first_row + k * split.micro_rows;
    return {begin, begin + split.micro_rows};
  }

  matrix rows(const matrix& m, const Split& split, std::int64_t k) const {
    return Kokkos::subview(m, row_range(split, k), Kokkos::ALL);
  }

  targets_type rows(const targets_type& t, const Split& split, std::int64_t k) const {
    targets_type part;
    if (t.values.extent(0) != 0) part.values = Kokkos::subview(t.values, row_range(split, k), Kokkos::ALL);
    if (t.classes.extent(0) != 0) part.classes = Kokkos::subview(t.classes, row_range(split, k));
    return part;
  }

  // The executor of a step of this many micro-batches of these rows (the cuts' shapes follow).
  executor_type& executor_for(const Split& split) {
    auto& executor = m_executors[{split.micro_batches, split.micro_rows}];
    if (!executor) {
      const auto schedule = pipeline::make_schedule(m_layout.schedule, m_layout.pp,
                                                    static_cast<int>(split.micro_batches), m_layout.virtual_stages);
      executor = std::make_unique<executor_type>(m_space, m_mesh.pp(), schedule, cut_shapes(split.micro_rows));
    }
    return *executor;
  }

  std::vector<pipeline::BoundaryShape> cut_shapes(std::int64_t micro_rows) const {
    std::vector<pipeline::BoundaryShape> cuts;
    const model_type& model = *m_chunks.front();  // every chunk knows the whole spec's boundaries
    for (std::size_t s = 0; s + 1 < m_stages.size(); ++s) {
      const int boundary = m_stages[s].end;
      cuts.push_back({static_cast<std::size_t>(model.rows_at(boundary, micro_rows)),
                      static_cast<std::size_t>(model.columns_at(boundary))});
    }
    return cuts;
  }

  // A table read on two stages: both copies' gradients summed, so they stay equal.
  void sum_tied_gradients() {
    for (const auto& tied : m_tied) {
      std::vector<typename model_type::store_type::vector_view> copies;
      for (int c = 0; c < chunk_count(); ++c) {
        const int stage = stage_of_chunk(c);
        if (stage == tied.embedding_stage || stage == tied.head_stage)
          copies.push_back(m_chunks[static_cast<std::size_t>(c)]->parameters().grad_vector(tied.name));
      }
      if (!copies.empty()) tied.sum->sum(m_space, copies);
    }
  }

  // A sum over the ranks that hold different parts of one replica (tp shards, pp stages).
  double sum_over_model_groups(double value) const {
    Kokkos::View<double*, Kokkos::HostSpace> total("trident::train::sum", 1);
    total(0) = value;
    if (m_layout.tp > 1) comm::allreduce(Kokkos::DefaultHostExecutionSpace(), m_mesh.tp(), total);
    if (m_layout.pp > 1) comm::allreduce(Kokkos::DefaultHostExecutionSpace(), m_mesh.pp(), total);
    return total(0);
  }

  // A forward pass of the micro-batches set on the chunks through the stages in order, without
  // a schedule (evaluation and inference); `on_output` sees the last stage's outputs. Returns
  // the summed loss on every pipeline rank. ZeRO-3 gathers the parameters for it.
  template <class OnOutput>
  double forward_through_pipeline(std::int64_t micro_batches, std::int64_t micro_rows, OnOutput&& on_output) {
    const bool gather = m_engines.front()->stage() == 3;
    if (gather)
      for (auto& engine : m_engines) {
        engine->begin_step();
        engine->gather_for_step();
      }
    const int stages = m_layout.stages(), pp = m_layout.pp, me = m_mesh.pp_rank();
    require_argument(micro_batches * stages < 32767, "trident::train::Trainer: ", micro_batches,
                     " micro-batches through ", stages, " stages need more message tags than MPI guarantees");
    const auto cuts = cut_shapes(micro_rows);
    double loss = 0;
    for (std::int64_t mb = 0; mb < micro_batches; ++mb) {
      matrix carried;  // the output of the previous stage, when this rank ran it
      for (int s = 0; s < stages; ++s) {
        if (s % pp != me) continue;
        model_type& chunk = *m_chunks[static_cast<std::size_t>(s / pp)];
        const int tag = static_cast<int>(mb * stages + s);
        matrix input = carried;
        if (s > 0 && (s - 1) % pp != me) {
          const auto& cut = cuts[static_cast<std::size_t>(s - 1)];
          input = matrix("trident::train::forward_input", cut.rows, cut.cols);
          comm::recv(m_space, m_forward_comm, input, (s - 1) % pp, tag);
        }
        matrix output;
        if (s + 1 < stages) {
          const auto& cut = cuts[static_cast<std::size_t>(s)];
          output = matrix("trident::train::forward_output", cut.rows, cut.cols);
        }
        loss += chunk.stage_forward(static_cast<int>(mb), input, output);
        if (s + 1 == stages) {
          if constexpr (!std::is_same_v<std::decay_t<OnOutput>, std::nullptr_t>)
            on_output(static_cast<int>(mb), chunk.stage_output(static_cast<int>(mb)));
        } else if ((s + 1) % pp != me) {
          comm::send(m_space, m_forward_comm, output, (s + 1) % pp, tag + 1);
        }
        carried = output;
      }
    }
    for (auto& chunk : m_chunks) chunk->discard_micro_batches();
    if (gather)
      for (auto& engine : m_engines) engine->finish_gradients(0.0);  // returns to the shards
    Kokkos::View<double*, Kokkos::HostSpace> total("trident::train::forward_loss", 1);
    total(0) = loss;
    comm::broadcast(Kokkos::DefaultHostExecutionSpace(), m_mesh.pp(), total, (stages - 1) % pp);
    return total(0);
  }

  std::vector<GlobalTensor> global_tensor_list() const {
    std::vector<GlobalTensor> tensors;
    for (const auto& plan : nn::model_tensors(m_spec)) tensors.push_back({plan.name, plan.shape});
    return tensors;
  }

  // What this rank saves and loads of each chunk: its ZeRO range (the range ZeRO would give it
  // under ZeRO-0), the tensors it counts.
  std::vector<StatePart<Scalar, memory_space>> owned_parts() const {
    std::vector<StatePart<Scalar, memory_space>> parts;
    for (std::size_t c = 0; c < m_chunks.size(); ++c) {
      const auto owned = m_engines[c]->owned_state();
      const model_type* model = m_chunks[c].get();
      parts.push_back({&model->parameters(), owned.begin, owned.end, owned.values, owned.exp_avg, owned.exp_avg_sq,
                       [model](const ParameterInfo& t) { return model->counts(t); }});
    }
    return parts;
  }

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
  const executor_type* m_last_executor = nullptr;
  comm::Communicator m_forward_comm;  // the forward-only passes' messages
  io::Metadata m_metadata;
  std::int64_t m_step = 0, m_samples = 0, m_skipped = 0;
};

}  // namespace trident::train
