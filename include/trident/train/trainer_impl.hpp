#pragma once
// The definitions of train::Trainer (train/trainer.hpp), for a program that compiles the Trainer
// itself (the default) and for trident::train_float, which compiles the float one once.

#include <trident/comm/agreement.hpp>
#include <trident/comm/allreduce.hpp>
#include <trident/comm/broadcast.hpp>
#include <trident/comm/point_to_point.hpp>
#include <trident/core/compat.hpp>
#include <trident/core/error.hpp>
#include <trident/core/profiling.hpp>
#include <trident/data_parallel/data_parallel.hpp>
#include <trident/nn/global_tensors.hpp>
#include <trident/nn/model.hpp>
#include <trident/optim/clip.hpp>
#include <trident/pipeline/executor.hpp>
#include <trident/pipeline/partition.hpp>
#include <trident/pipeline/schedules.hpp>
#include <trident/pipeline/tied_gradients.hpp>
#include <trident/train/checkpoint.hpp>
#include <trident/train/choose_layout.hpp>
#include <trident/train/trainer.hpp>

#include <Kokkos_Core.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <iostream>
#include <type_traits>

namespace trident::train {

template <class Scalar, class ExecutionSpace>
Trainer<Scalar, ExecutionSpace>::Trainer(const ExecutionSpace& space, const comm::Communicator& world,
                                         nn::ModelSpec spec, Layout layout, TrainerSettings settings)
    : m_space(space),
      m_spec(std::move(spec)),
      m_layout(std::move(layout)),
      m_settings(settings),
      m_mesh(checked_mesh(world, m_spec, m_layout)),
      m_scaler(settings.loss_scaling                  ? *settings.loss_scaling
               : std::is_same<Scalar, float16>::value ? optim::LossScalerSettings{}
                                                      : optim::LossScalerSettings::none()) {
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

template <class Scalar, class ExecutionSpace>
Trainer<Scalar, ExecutionSpace>::Trainer(const ExecutionSpace& space, const comm::Communicator& world,
                                         nn::ModelSpec spec, const AutoLayout& automatic, TrainerSettings settings)
    : Trainer(space, world, spec, planned_layout(space, world, spec, automatic), settings) {}

template <class Scalar, class ExecutionSpace>
Layout Trainer<Scalar, ExecutionSpace>::planned_layout(const ExecutionSpace& space, const comm::Communicator& world,
                                                       const nn::ModelSpec& spec, const AutoLayout& automatic) {
  const LayoutChoice choice = choose_layout<Scalar>(space, world, spec, automatic);
  if (automatic.print && world.rank() == 0) std::printf("%s", choice.report.c_str());
  return choice.layout;
}

template <class Scalar, class ExecutionSpace>
Trainer<Scalar, ExecutionSpace>::~Trainer() = default;

template <class Scalar, class ExecutionSpace>
io::Metadata Trainer<Scalar, ExecutionSpace>::load(const std::string& path,
                                                   const std::function<void(const io::Metadata&)>& check) {
  ScopedRegion region("trident::train::Trainer::load");
  std::vector<StatePart<param_type, memory_space>> parts;
  for (const auto& part : owned_parts()) parts.push_back(with_fresh_buffers(part));
  std::int64_t step = 0, samples = 0, skipped = 0;
  std::uint64_t seed = 0;
  optim::LossScaler scaler(m_scaler.settings());
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
    require(step >= 0 && samples >= 0, "trident::train: checkpoint '", path, "' records step ", step, " and ", samples,
            " samples");
    // A run of another precision (a float one, say) saved no scale, or one this run has no use for.
    if (md.count("loss_scale") != 0 && m_scaler.settings().dynamic) scaler.load_state(md);
  });
  for (std::size_t c = 0; c < m_engines.size(); ++c)
    m_engines[c]->load_owned_state(parts[c].values, parts[c].exp_avg, parts[c].exp_avg_sq);
  compat::fence(m_space, "trident::train::Trainer::load");
  m_step = step;
  m_samples = samples;
  m_skipped = skipped;
  m_settings.seed = seed;
  m_scaler = scaler;
  return metadata;
}

template <class Scalar, class ExecutionSpace>
auto Trainer<Scalar, ExecutionSpace>::step(const batch_type& batch, double lr) -> StepReport {
  ScopedRegion region("trident::train::Trainer::step");
  const auto start = std::chrono::steady_clock::now();
  const Split split = split_of(batch, "step");
  const double mean = 1.0 / static_cast<double>(split.global_rows);
  const double loss_scale = m_scaler.scale();
  const double scale = mean * loss_scale;  // of the gradients, which are unscaled before the update
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
    set_micro_batches(batch, split, scale);
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
  report.loss_scale = loss_scale;
  double loss_sum = 0, squares = 0;
  for (std::size_t c = 0; c < m_chunks.size(); ++c) {
    const model_type* model = m_chunks[c].get();
    const auto summary = m_engines[c]->finish_gradients(c == 0 ? local_loss : 0.0,
                                                        [model](const ParameterInfo& t) { return model->counts(t); });
    if (c == 0) loss_sum = summary.loss_sum;
    squares += summary.sum_of_squares;
  }
  squares = sum_over_model_groups(squares);
  report.loss = loss_sum * mean;
  report.grad_norm = std::sqrt(squares) / loss_scale;
  if (accept_step(report)) {
    // Clipping and unscaling in one pass: the gradients are loss_scale times the true ones.
    const double coefficient =
        (m_settings.grad_clip > 0 ? optim::clip_coefficient(report.grad_norm, m_settings.grad_clip) : 1.0) / loss_scale;
    report.lr = lr;
    for (auto& engine : m_engines) {
      if (coefficient != 1.0) engine->scale_gradients(coefficient);
      engine->step(report.step, lr);
    }
  }
  compat::fence(m_space, "trident::train::Trainer::step");
  m_step = report.step;
  m_samples += split.global_rows / split.rows_per_sample;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

template <class Scalar, class ExecutionSpace>
bool Trainer<Scalar, ExecutionSpace>::accept_step(StepReport& report) {
  bool apply = true;
  if (m_scaler.settings().dynamic && std::isfinite(report.loss)) {
    apply = m_scaler.update(!std::isfinite(report.grad_norm));  // an overflow: skipped, the scale shrinks
  } else {
    apply = finite_step(report.step, report.loss, report.grad_norm, m_settings.on_nonfinite,
                        m_chunks.front()->parameters());
    if (m_scaler.settings().dynamic) m_scaler.update(!apply);
  }
  if (!apply) {
    report.skipped = true;
    report.skipped_so_far = ++m_skipped;
  }
  return apply;
}

template <class Scalar, class ExecutionSpace>
auto Trainer<Scalar, ExecutionSpace>::evaluate(const batch_type& batch) -> double {
  ScopedRegion region("trident::train::Trainer::evaluate");
  const Split split = split_of(batch, "evaluate");
  const double scale = 1.0 / static_cast<double>(split.global_rows);
  double local_loss = 0;
  if (!pipelined()) {
    for (std::int64_t k = 0; k < split.micro_batches; ++k)
      local_loss += m_chunks.front()->forward(rows(batch.inputs, split, k), rows(batch.targets, split, k), scale);
  } else {
    set_micro_batches(batch, split, scale);
    local_loss = forward_through_pipeline(split.micro_batches, split.micro_rows, nullptr);
  }
  const double total = comm::allreduce_value(m_mesh.dp(), local_loss);
  return total * scale;
}

template <class Scalar, class ExecutionSpace>
auto Trainer<Scalar, ExecutionSpace>::predict(const input_matrix& inputs) -> matrix {
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

template <class Scalar, class ExecutionSpace>
auto Trainer<Scalar, ExecutionSpace>::global_parameters() -> Tensors {
  std::vector<const model_type*> chunks;
  std::vector<typename model_type::store_type::flat_view> values;
  for (std::size_t c = 0; c < m_chunks.size(); ++c) {
    chunks.push_back(m_chunks[c].get());
    values.push_back(m_engines[c]->stage() == 3 ? m_engines[c]->full_values() : m_chunks[c]->parameters().values());
  }
  return nn::global_tensors(chunks, values, m_mesh.world(), m_mesh.dp_rank() == 0);
}

template <class Scalar, class ExecutionSpace>
auto Trainer<Scalar, ExecutionSpace>::global_gradients() -> Tensors {
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

template <class Scalar, class ExecutionSpace>
auto Trainer<Scalar, ExecutionSpace>::save(const std::string& path) const -> void {
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
  if (m_scaler.settings().dynamic)
    for (const auto& [key, value] : m_scaler.state()) metadata[key] = value;
  save_state(path, global_tensor_list(), metadata, owned_parts(), m_mesh.world());
}

template <class Scalar, class ExecutionSpace>
auto Trainer<Scalar, ExecutionSpace>::checked_mesh(const comm::Communicator& world, const nn::ModelSpec& spec,
                                                   const Layout& layout) -> ProcessMesh {
  comm::agree_on_failure(world, "trident::train::Trainer: checking the layout",
                         [&] { layout.validate(world.size(), spec); });
  ProcessMesh mesh(world, layout.dp, layout.tp, layout.pp, layout.order, layout.placement);
  const std::string warning = mesh.placement_warning();
  if (!warning.empty() && world.rank() == 0) std::cerr << "warning: " << warning << "\n";
  return mesh;
}

template <class Scalar, class ExecutionSpace>
auto Trainer<Scalar, ExecutionSpace>::stage_of_layer(int layer) const -> int {
  for (std::size_t s = 0; s < m_stages.size(); ++s)
    if (layer >= m_stages[s].first && layer < m_stages[s].end) return static_cast<int>(s);
  throw Error(trident::detail::concat("trident::train::Trainer: no stage holds layer ", layer, " (internal error)"));
}

template <class Scalar, class ExecutionSpace>
auto Trainer<Scalar, ExecutionSpace>::plan_stages() const -> std::vector<nn::StageRange> {
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
  for (const auto& stage : pipeline::partition_layers(costs, stages).stages) ranges.push_back({stage.first, stage.end});
  return ranges;
}

template <class Scalar, class ExecutionSpace>
auto Trainer<Scalar, ExecutionSpace>::split_of(const batch_type& batch, const char* operation) const -> Split {
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
    // Only the first stage reads token ids and only the last the classes: every rank checks
    // them, so that a bad one stops the step everywhere instead of one stage.
    if (const std::int64_t vocab = nn::input_vocabulary(m_spec); vocab > 0 && batch.inputs.extent(1) == 1) {
      const auto ids = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), batch.inputs);
      for (std::int64_t r = 0; r < rows; ++r) {
        const double id = static_cast<double>(ids(r, 0));
        require_argument(id >= 0 && id < static_cast<double>(vocab) && id == std::floor(id), what, "the input of row ",
                         r, " is ", id, ", not a token id in [0, ", vocab, ")");
      }
    }
    if (m_spec.loss == nn::Loss::cross_entropy && batch.targets.classes.extent(0) != 0) {
      const std::int64_t classes = m_chunks.front()->features_at(static_cast<int>(m_spec.layers.size()));
      const auto targets = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), batch.targets.classes);
      for (std::int64_t r = 0; r < rows; ++r)
        require_argument(targets(r) >= 0 && targets(r) < classes, what, "the target of row ", r, " is class ",
                         targets(r), ", outside [0, ", classes, ")");
    }
  });
  split.global_rows = batch.replica_share ? rows * m_layout.dp : rows;
  split.first_row = batch.replica_share ? 0 : m_mesh.dp_rank() * replica_rows;
  split.micro_rows = micro_samples * split.rows_per_sample;
  split.micro_batches = replica_samples / micro_samples;
  return split;
}

template <class Scalar, class ExecutionSpace>
void Trainer<Scalar, ExecutionSpace>::set_micro_batches(const batch_type& batch, const Split& split, double scale) {
  std::vector<input_matrix> inputs;
  std::vector<targets_type> targets;
  for (std::int64_t k = 0; k < split.micro_batches; ++k) {
    inputs.push_back(rows(batch.inputs, split, k));
    targets.push_back(rows(batch.targets, split, k));
  }
  for (auto& chunk : m_chunks) chunk->set_micro_batches(inputs, targets, scale);
}

template <class Scalar, class ExecutionSpace>
auto Trainer<Scalar, ExecutionSpace>::rows(const input_matrix& m, const Split& split, std::int64_t k) const
    -> input_matrix {
  return Kokkos::subview(m, row_range(split, k), Kokkos::ALL);
}

template <class Scalar, class ExecutionSpace>
auto Trainer<Scalar, ExecutionSpace>::rows(const targets_type& t, const Split& split, std::int64_t k) const
    -> targets_type {
  targets_type part;
  if (t.values.extent(0) != 0) part.values = Kokkos::subview(t.values, row_range(split, k), Kokkos::ALL);
  if (t.classes.extent(0) != 0) part.classes = Kokkos::subview(t.classes, row_range(split, k));
  return part;
}

template <class Scalar, class ExecutionSpace>
auto Trainer<Scalar, ExecutionSpace>::executor_for(const Split& split) -> executor_type& {
  auto& executor = m_executors[{split.micro_batches, split.micro_rows}];
  if (!executor) {
    const auto schedule = pipeline::make_schedule(m_layout.schedule, m_layout.pp, static_cast<int>(split.micro_batches),
                                                  m_layout.virtual_stages);
    executor = std::make_unique<executor_type>(m_space, m_mesh.pp(), schedule, cut_shapes(split.micro_rows));
  }
  return *executor;
}

template <class Scalar, class ExecutionSpace>
auto Trainer<Scalar, ExecutionSpace>::cut_shapes(std::int64_t micro_rows) const
    -> std::vector<pipeline::BoundaryShape> {
  std::vector<pipeline::BoundaryShape> cuts;
  const model_type& model = *m_chunks.front();  // every chunk knows the whole spec's boundaries
  for (std::size_t s = 0; s + 1 < m_stages.size(); ++s) {
    const int boundary = m_stages[s].end;
    cuts.push_back({static_cast<std::size_t>(model.rows_at(boundary, micro_rows)),
                    static_cast<std::size_t>(model.columns_at(boundary))});
  }
  return cuts;
}

template <class Scalar, class ExecutionSpace>
auto Trainer<Scalar, ExecutionSpace>::sum_tied_gradients() -> void {
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

template <class Scalar, class ExecutionSpace>
auto Trainer<Scalar, ExecutionSpace>::sum_over_model_groups(double value) const -> double {
  double total = value;
  if (m_layout.tp > 1) total = comm::allreduce_value(m_mesh.tp(), total);
  if (m_layout.pp > 1) total = comm::allreduce_value(m_mesh.pp(), total);
  return total;
}

template <class Scalar, class ExecutionSpace>
auto Trainer<Scalar, ExecutionSpace>::global_tensor_list() const -> std::vector<GlobalTensor> {
  std::vector<GlobalTensor> tensors;
  for (const auto& plan : nn::model_tensors(m_spec)) tensors.push_back({plan.name, plan.shape});
  return tensors;
}

template <class Scalar, class ExecutionSpace>
auto Trainer<Scalar, ExecutionSpace>::owned_parts() const -> std::vector<StatePart<param_type, memory_space>> {
  std::vector<StatePart<param_type, memory_space>> parts;
  for (std::size_t c = 0; c < m_chunks.size(); ++c) {
    const auto owned = m_engines[c]->owned_state();
    const model_type* model = m_chunks[c].get();
    parts.push_back({&model->parameters(), owned.begin, owned.end, owned.values, owned.exp_avg, owned.exp_avg_sq,
                     [model](const ParameterInfo& t) { return model->counts(t); }});
  }
  return parts;
}

template <class Scalar, class ExecutionSpace>
auto Trainer<Scalar, ExecutionSpace>::chunk(int c) -> model_type& {
  return *m_chunks.at(static_cast<std::size_t>(c));
}

template <class Scalar, class ExecutionSpace>
auto Trainer<Scalar, ExecutionSpace>::chunk(int c) const -> const model_type& {
  return *m_chunks.at(static_cast<std::size_t>(c));
}

template <class Scalar, class ExecutionSpace>
const MemoryLedger& Trainer<Scalar, ExecutionSpace>::memory() const {
  return m_engines.front()->memory();
}

template <class Scalar, class ExecutionSpace>
auto Trainer<Scalar, ExecutionSpace>::data_parallel(int c) const -> const engine_type& {
  return *m_engines.at(static_cast<std::size_t>(c));
}

template <class Scalar, class ExecutionSpace>
const comm::NodeGroups* Trainer<Scalar, ExecutionSpace>::gradient_node_groups() const {
  return m_engines.front()->node_groups();
}

template <class Scalar, class ExecutionSpace>
template <class OnOutput>
double Trainer<Scalar, ExecutionSpace>::forward_through_pipeline(std::int64_t micro_batches, std::int64_t micro_rows,
                                                                 OnOutput&& on_output) {
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

}  // namespace trident::train
