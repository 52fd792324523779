#pragma once
// A user's model from a spec, for one Scalar and execution space, on one tensor-parallel
// group and one pipeline stage:
//
//   Model<float, Space> model(space, spec);                   // one rank
//   Model<float, Space> model(space, spec, tp_group);         // tensor parallel (sequence
//                                                             // parallel if the group says so)
//   Model<float, Space> model(space, spec, tp_group, stage);  // layers [first, end) of a pipeline
//
// The whole model (one stage) trains with forward(input, targets) then backward(scale):
// forward returns the SUM of the per-row losses; backward(scale) accumulates the gradient of
// scale * that sum. A pipeline stage offers the passes of pipeline::Executor, including the
// zero-bubble split of backward (the weight GEMMs wait for stage_backward_weight). With
// `recompute`, a micro-batch keeps only the top-level layers' inputs between its forward and
// its backward, which runs each layer's forward again first.
// A 16-bit Scalar trains in mixed precision (nn/types.hpp): 16-bit activations, float
// parameters, gradients, input, targets and losses.
// Each top-level layer is one unit of the hooks data parallelism uses (unit_plan()), so
// data_parallel::DataParallel and ZeRO wrap any model.

#include <trident/core/error.hpp>
#include <trident/core/parameter_store.hpp>
#include <trident/core/profiling.hpp>
#include <trident/core/unit_hooks.hpp>
#include <trident/data_parallel/unit_plan.hpp>
#include <trident/nn/build.hpp>
#include <trident/nn/parameters.hpp>
#include <trident/nn/spec.hpp>
#include <trident/nn/types.hpp>
#include <trident/ops/convert.hpp>
#include <trident/ops/cross_entropy.hpp>
#include <trident/ops/mse.hpp>
#include <trident/ops/reduction.hpp>
#include <trident/pipeline/activation_pool.hpp>
#include <trident/tensor_parallel/group.hpp>
#include <trident/tensor_parallel/vocab_parallel_cross_entropy.hpp>

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace trident::nn {

template <class Scalar, class ExecutionSpace>
class Model {
 public:
  using types = LayerTypes<Scalar, ExecutionSpace>;
  using memory_space = typename types::memory_space;
  using matrix = typename types::matrix;
  using param_type = typename types::param_type;
  using input_matrix = typename types::input_matrix;
  using store_type = typename types::store_type;
  using targets_type = Targets<param_type, ExecutionSpace>;
  using group_type = tensor_parallel::TensorParallelGroup;

  Model(const ExecutionSpace& space, ModelSpec spec, group_type group = group_type::single(), StageRange stage = {},
        bool recompute = false)
      : m_space(space), m_spec(std::move(spec)), m_group(std::move(group)), m_stage(stage), m_recompute(recompute) {
    const int layer_count = static_cast<int>(m_spec.layers.size());
    if (m_stage.end < 0) m_stage.end = layer_count;
    require_argument(m_stage.first >= 0 && m_stage.first < m_stage.end && m_stage.end <= layer_count,
                     "trident::nn::Model: the stage of layers [", m_stage.first, ", ", m_stage.end,
                     ") is not a non-empty range of the model's ", layer_count, " top-level layers");
    if (!m_group.active()) m_group.sequence_parallel = false;  // one rank: nothing to split
    const int tp = m_group.size();
    m_flows = model_flows(m_spec, tp, m_group.sequence_parallel);
    model_tensors(m_spec);  // rejects clashing names
    for (int i = m_stage.first; i < m_stage.end; ++i) {
      const auto index = static_cast<std::size_t>(i);
      const auto& layer = m_spec.layers[index];
      const auto plans = layer_tensors(m_spec, index);
      for (const auto& plan : plans) {
        const auto owner = m_unit_of.emplace(plan.name, i - m_stage.first);
        if (!owner.second) m_extra_reads.push_back({i - m_stage.first, plan.name});  // a tied head's table
        if (owner.second && plan.tied) m_tied_copies.push_back(plan.name);
      }
      declare_tensors(m_params, plans, tp, m_group.rank());
      m_layers.push_back(make_layer<Scalar, ExecutionSpace>(layer, child_prefix("", layer, index), m_flows[index], tp,
                                                            m_group.rank(), m_group.sequence_parallel));
    }
    m_params.allocate("trident::nn");
    if (is_last_stage() && m_flows.back().vocab)
      m_vocab_offset = tensor_parallel::even_split(m_flows.back().features, tp, m_group.rank()).offset;
  }

  const ModelSpec& spec() const { return m_spec; }
  const StageRange& stage() const { return m_stage; }
  bool is_first_stage() const { return m_stage.first == 0; }
  bool is_last_stage() const { return m_stage.end == static_cast<int>(m_spec.layers.size()); }
  bool recomputes() const { return m_recompute; }
  const group_type& tensor_parallel_group() const { return m_group; }
  store_type& parameters() { return m_params; }
  const store_type& parameters() const { return m_params; }
  const ExecutionSpace& space() const { return m_space; }

  // The tensors this stage holds only as a copy of a table another stage's embedding holds (a
  // tied head's): their gradients must be summed with the embedding's, and they count once.
  const std::vector<std::string>& tied_copies() const { return m_tied_copies; }

  // The one rule for counting each element of the global model once (norms, checkpoints,
  // global_tensors): a tensor every rank of the tensor-parallel group holds whole counts on the
  // group's rank 0, a tied head's copy of a table on the embedding's stage. Data-parallel
  // replicas are the caller's to count once.
  bool counts(const ParameterInfo& t) const {
    if (t.replicated && m_group.rank() != 0) return false;
    return std::find(m_tied_copies.begin(), m_tied_copies.end(), t.name) == m_tied_copies.end();
  }

  // Global features at top-level boundary i (0: the model's input), and this rank's columns
  // there (features / tp where a column-parallel linear left them split, its vocabulary rows
  // after a tied head).
  std::int64_t features_at(int boundary) const { return m_flows.at(static_cast<std::size_t>(boundary)).features; }
  std::int64_t columns_at(int boundary) const {
    return m_flows.at(static_cast<std::size_t>(boundary)).columns(m_group.size(), m_group.rank());
  }
  // This rank's rows at boundary i of a micro-batch of `rows` rows (rows / tp where sequence
  // parallelism splits them).
  std::int64_t rows_at(int boundary, std::int64_t rows) const {
    return m_flows.at(static_cast<std::size_t>(boundary)).rows_split ? rows / m_group.size() : rows;
  }
  std::int64_t input_columns() const { return columns_at(m_stage.first); }
  std::int64_t output_columns() const { return columns_at(m_stage.end); }

  // Rows per sequence of the coming micro-batches (attention, positions), at most the spec's;
  // 0: the spec's own.
  void set_sequence_length(std::int64_t seq) {
    require_argument(seq >= 0, "trident::nn::Model::set_sequence_length: ", seq, " rows");
    m_seq = seq;
  }

  // Every tensor from its global initialisation, whatever the layout.
  void initialize(std::uint64_t seed) {
    for (int i = m_stage.first; i < m_stage.end; ++i)
      initialize_tensors(m_space, m_params, layer_tensors(m_spec, static_cast<std::size_t>(i)), seed);
  }

  void zero_grad() {
    if (m_params.grads().size() != 0) Kokkos::deep_copy(m_space, m_params.grads(), param_type(0));
  }

  // Units are this stage's top-level layers, in order; each owns the tensors it declares first
  // and reads a tied table another unit owns.
  int unit_count() const { return static_cast<int>(m_layers.size()); }
  void set_hooks(UnitHooks hooks) { m_hooks = std::move(hooks); }
  data_parallel::UnitPlan unit_plan() const {
    return data_parallel::UnitPlan(
        m_params, unit_count(), [this](const std::string& name) { return m_unit_of.at(name); }, m_extra_reads);
  }

  // ---- the whole model ----

  // Runs `input` [rows, input features] and returns the sum over rows of the loss against
  // `targets`. A non-zero loss_scale also takes the loss gradient for backward(loss_scale)
  // (with a vocabulary-parallel head it must: the cross-entropy takes both at once).
  double forward(const input_matrix& input, const targets_type& targets, double loss_scale = 0.0) {
    ScopedRegion region("trident::nn::Model::forward");
    require_whole("forward");
    Slot& slot = start_whole(input);
    m_targets = targets;
    m_loss_scale_taken = loss_scale;
    const double sum = loss(slot, targets, loss_scale);
    m_backward_pending = true;
    return sum;
  }

  // Gradients of loss_scale * (the last forward's loss sum) ACCUMULATE into the store.
  void backward(double loss_scale) {
    ScopedRegion region("trident::nn::Model::backward");
    require_whole("backward");
    require_argument(m_backward_pending, "trident::nn::Model::backward: no forward to take the backward of");
    m_backward_pending = false;
    Slot& slot = m_pool.at(0);
    if (m_loss_scale_taken == 0.0) {
      loss_gradient(slot, m_targets, loss_scale);
    } else {
      require_argument(m_loss_scale_taken == loss_scale, "trident::nn::Model::backward: forward took the loss ",
                       "gradient for scale ", m_loss_scale_taken, " but backward asks for ", loss_scale);
    }
    m_loss_scale_taken = 0.0;
    run_backward(slot, top_gradient(slot), matrix(), false);
  }

  // The model's output [rows, output features] for `input` (inference); valid until the next
  // call of forward or predict.
  matrix predict(const input_matrix& input) {
    ScopedRegion region("trident::nn::Model::predict");
    require_whole("predict");
    return whole_output(start_whole(input));
  }

  // The output of the last forward or predict: this rank's columns of all rows (after a
  // forward that took the loss gradient of a cross-entropy, the gradient in their place).
  matrix output() const {
    require_argument(m_pool.holds(0), "trident::nn::Model::output: no forward ran");
    return whole_output(m_pool.at(0));
  }

  // This rank's part of top-level boundary b of the last whole forward: b = 0 its input
  // (empty where a 16-bit model's embedding reads the ids as they came), b = L its output
  // (rows split where sequence parallelism splits them).
  matrix activation_at(int boundary) const {
    require_argument(m_pool.holds(0) && boundary >= 0 && boundary <= unit_count(),
                     "trident::nn::Model::", "activation_at: boundary ", boundary, " of ", unit_count(),
                     " layers, after a forward");
    return m_pool.at(0).x[static_cast<std::size_t>(boundary)];
  }

  // Bytes of activations the last whole forward holds, each allocation once.
  std::size_t activation_bytes() const {
    return m_pool.holds(0) ? m_pool.at(0).own_bytes + shared_activation_bytes() : 0;
  }

  // ---- pipeline stage passes (the interface of pipeline::Executor) ----

  // The step's micro-batches: inputs [rows, input features] (read by the first stage),
  // targets (read by the last), and the non-zero scale of the step's backward.
  void set_micro_batches(std::vector<input_matrix> inputs, std::vector<targets_type> targets, double loss_scale) {
    const char* op = "trident::nn::Model::set_micro_batches";
    require_argument(!inputs.empty() && inputs.size() == targets.size(), op, ": ", inputs.size(),
                     " micro-batches of inputs and ", targets.size(), " of targets");
    require_argument(loss_scale != 0.0, op, ": the last stage takes the loss gradient in its forward; pass the ",
                     "non-zero loss scale of the step's backward");
    require_argument(m_pool.statistics().in_use == 0, op, ": ", m_pool.statistics().in_use,
                     " micro-batches of the previous step still hold activations (a backward, or the weight pass ",
                     "of a split backward, did not run)");
    m_micro_inputs = std::move(inputs);
    m_micro_targets = std::move(targets);
    m_micro_scale = loss_scale;
  }

  // Micro-batches for inference: a forward pass over the stages without loss or backward; the
  // last stage keeps each micro-batch's output (stage_output) until discard_micro_batches().
  void set_inference_micro_batches(std::vector<input_matrix> inputs) {
    const char* op = "trident::nn::Model::set_inference_micro_batches";
    require_argument(!inputs.empty(), op, ": no micro-batch");
    require_argument(m_pool.statistics().in_use == 0, op, ": ", m_pool.statistics().in_use,
                     " micro-batches still hold activations");
    m_micro_inputs = std::move(inputs);
    m_micro_targets.clear();
    m_micro_scale = 0.0;
  }

  // The last stage's output of an inference micro-batch: this rank's columns of all its rows.
  matrix stage_output(int micro_batch) const {
    require_argument(is_last_stage() && m_pool.holds(micro_batch), "trident::nn::Model::stage_output: micro-batch ",
                     micro_batch, " has no output on this stage");
    return whole_output(m_pool.at(micro_batch));
  }

  // Frees every micro-batch's activations without a backward (after evaluation or inference).
  void discard_micro_batches() {
    for (int mb = 0; mb < static_cast<int>(m_micro_inputs.size()); ++mb) release(mb);
  }

  double stage_forward(int micro_batch, const matrix& input, const matrix& output) {
    ScopedRegion region("trident::nn::Model::stage_forward");
    require_micro_batch("stage_forward", micro_batch);
    const auto mb = static_cast<std::size_t>(micro_batch);
    const std::int64_t rows = micro_batch_rows(mb, input);
    Slot& slot = acquire(micro_batch, rows);
    if (is_first_stage()) {
      take_input(slot, checked_input("stage_forward", m_micro_inputs[mb]));
    } else {
      require_shape("stage_forward", "input", input, rows_at(m_stage.first, rows), input_columns());
      Kokkos::deep_copy(m_space, slot.x[0], input);  // the executor reuses its buffers
    }
    run_forward(slot);
    if (is_last_stage()) return m_micro_targets.empty() ? 0.0 : loss(slot, m_micro_targets[mb], m_micro_scale);
    require_shape("stage_forward", "output", output, rows_at(m_stage.end, rows), output_columns());
    Kokkos::deep_copy(m_space, output, slot.x.back());
    return 0.0;
  }

  void stage_backward(int micro_batch, const matrix& output_gradient, const matrix& input_gradient) {
    ScopedRegion region("trident::nn::Model::stage_backward");
    backward_pass(micro_batch, output_gradient, input_gradient, false);
    release(micro_batch);
  }

  // The zero-bubble split: the input pass computes the input gradient and the cheap parameter
  // gradients (biases, LayerNorms, embeddings), keeping the output gradients of the weight
  // GEMMs; the weight pass then computes those and frees the micro-batch's activations.
  void stage_backward_input(int micro_batch, const matrix& output_gradient, const matrix& input_gradient) {
    ScopedRegion region("trident::nn::Model::stage_backward_input");
    backward_pass(micro_batch, output_gradient, input_gradient, true);
  }

  void stage_backward_weight(int micro_batch) {
    ScopedRegion region("trident::nn::Model::stage_backward_weight");
    require_micro_batch("stage_backward_weight", micro_batch);
    require_argument(m_pool.holds(micro_batch) && m_pool.at(micro_batch).weight_pending,
                     "trident::nn::Model::", "stage_backward_weight: micro-batch ", micro_batch,
                     " has no backward_input to complete");
    Slot& slot = m_pool.at(micro_batch);
    const auto c = context();
    for (std::size_t k = m_layers.size(); k-- > 0;) {
      m_layers[k]->backward_weights(c, slot.x[k], slot.states[k]);
      UnitHooks::call(m_hooks.after_backward, static_cast<int>(k));
    }
    slot.weight_pending = false;
    release(micro_batch);
  }

  // Micro-batches held, and the bytes they keep (each slot's own activations, plus what a split
  // backward keeps for its weight pass), now and at the peak.
  const pipeline::PoolStatistics& activation_statistics() const { return m_pool.statistics(); }
  void reset_activation_peaks() { m_pool.reset_peaks(); }
  // Bytes every micro-batch shares: the scratch, and with recomputation the layers' workspace.
  std::size_t shared_activation_bytes() const {
    std::size_t total = 0;
    std::set<const void*> seen;
    for_each_shared_view([&](const auto& view) { total += bytes_once(view, seen); });
    for (const auto& g : m_grads) total += bytes_once(g, seen);
    return total;
  }

 private:
  using state_type = LayerState<Scalar, ExecutionSpace>;
  using context_type = LayerContext<Scalar, ExecutionSpace>;
  using vector = typename types::param_vector;
  static constexpr bool mixed_precision = !std::is_same<Scalar, param_type>::value;

  // One micro-batch's activations: x[0] its input, x[k + 1] the output of local layer k.
  struct Slot {
    std::int64_t rows = 0;  // of the model's input (rows / tp at a boundary sequence parallelism splits)
    input_matrix input;     // first stage: the model's input, which x[0] holds rounded (or, read as ids, not)
    std::vector<matrix> x;
    std::vector<state_type> states;
    vector losses;    // last stage
    matrix gathered;  // last stage, output split by rows: all rows of the output
    matrix d_output;  // last stage: the loss gradient with respect to all rows of the output
    bool weight_pending = false;
    // What the slot keeps for its micro-batch, measured once (shapes are fixed for its life):
    // its own activations, and what a split backward adds for the weight pass.
    std::size_t own_bytes = 0, deferred_bytes = 0;
  };

  void require_whole(const char* operation) const {
    require_argument(is_first_stage() && is_last_stage(), "trident::nn::Model::", operation,
                     ": this model is the pipeline stage of layers [", m_stage.first, ", ", m_stage.end,
                     "); run it with the stage passes");
  }

  void require_micro_batch(const char* operation, int micro_batch) const {
    require_argument(micro_batch >= 0 && micro_batch < static_cast<int>(m_micro_inputs.size()),
                     "trident::nn::Model::", operation, ": micro-batch ", micro_batch, " is not one of the ",
                     m_micro_inputs.size(), " given to set_micro_batches");
  }

  template <class View>
  static void require_shape(const char* operation, const char* role, const View& view, std::int64_t rows,
                            std::int64_t columns) {
    require_argument(
        static_cast<std::int64_t>(view.extent(0)) == rows && static_cast<std::int64_t>(view.extent(1)) == columns,
        "trident::nn::Model::", operation, ": the ", role, " is ", view.extent(0), " x ", view.extent(1),
        " but must be ", rows, " x ", columns);
  }

  const input_matrix& checked_input(const char* operation, const input_matrix& input) const {
    require_argument(static_cast<std::int64_t>(input.extent(1)) == input_columns(), "trident::nn::Model::", operation,
                     ": the input has ", input.extent(1), " features but the model takes ", input_columns());
    return input;
  }

  // The rows of micro-batch `mb`: its input's on the first stage, else those the incoming
  // boundary implies.
  std::int64_t micro_batch_rows(std::size_t mb, const matrix& input) const {
    if (is_first_stage()) return static_cast<std::int64_t>(m_micro_inputs[mb].extent(0));
    const auto rows = static_cast<std::int64_t>(input.extent(0));
    return m_flows[static_cast<std::size_t>(m_stage.first)].rows_split ? rows * m_group.size() : rows;
  }

  Slot& start_whole(const input_matrix& input) {
    checked_input("forward", input);
    if (m_pool.holds(0)) release(0);
    m_backward_pending = false;
    Slot& slot = acquire(0, static_cast<std::int64_t>(input.extent(0)));
    take_input(slot, input);
    run_forward(slot);
    return slot;
  }

  // A 16-bit model reads its float input rounded to 16 bits (x[0]), except by a first layer
  // that reads token ids, which takes them as they are.
  bool rounds_input() const { return mixed_precision && is_first_stage() && !m_layers.front()->reads_ids(); }
  bool reads_ids_input() const { return mixed_precision && is_first_stage() && m_layers.front()->reads_ids(); }

  void take_input(Slot& slot, const input_matrix& input) {
    slot.input = input;
    if constexpr (!mixed_precision) {
      slot.x[0] = input;
    } else if (rounds_input()) {
      ops::convert(m_space, slot.x[0], input);
    }
  }

  void forward_layer(const context_type& c, std::size_t k, Slot& slot) const {
    if (k == 0 && reads_ids_input()) {
      m_layers[0]->forward_ids(c, slot.input, slot.x[1], slot.states[0]);
    } else {
      m_layers[k]->forward(c, slot.x[k], slot.x[k + 1], slot.states[k]);
    }
  }

  matrix whole_output(const Slot& slot) const { return slot.gathered.size() != 0 ? slot.gathered : slot.x.back(); }

  // ---- the micro-batches' activations ----

  bool recomputed(std::size_t k) const { return m_recompute && !(is_last_stage() && k + 1 == m_layers.size()); }

  Slot& acquire(int micro_batch, std::int64_t rows) {
    require_argument(!m_group.sequence_parallel || rows % m_group.size() == 0, "trident::nn::Model: sequence ",
                     "parallelism splits the ", rows, " rows of a micro-batch over ", m_group.size(),
                     " ranks, which does not divide them");
    if (rows != m_shape_rows || m_seq != m_shape_seq) {  // new shapes: drop the old slots
      require_argument(m_pool.statistics().in_use == 0, "trident::nn::Model: a micro-batch of ", rows,
                       " rows in sequences of ", m_seq, " while ", m_pool.statistics().in_use, " micro-batches of ",
                       m_shape_rows, " rows in sequences of ", m_shape_seq, " hold activations");
      m_pool.clear();
      m_shared.clear();
      m_grads.clear();
      m_shape_rows = rows;
      m_shape_seq = m_seq;
    }
    Slot& slot = m_pool.acquire(micro_batch, [&] { return make_slot(rows); });
    if (slot.own_bytes == 0) slot.own_bytes = kept_bytes(slot);
    m_pool.set_bytes(micro_batch, slot.own_bytes);
    return slot;
  }

  void release(int micro_batch) {
    if (m_pool.holds(micro_batch)) m_pool.release(micro_batch);
  }

  // Layers of the same structure on the same input (GPT-2's blocks) share scratch, and with
  // recomputation one workspace: each uses it only while it runs.
  std::string shared_key(std::size_t k, std::int64_t rows) const {
    const int b = m_stage.first + static_cast<int>(k);
    const Flow& in = m_flows[static_cast<std::size_t>(b)];
    return std::string(recomputed(k) ? "workspace " : "scratch ") +
           describe(m_spec.layers[static_cast<std::size_t>(b)]) + " on " + std::to_string(rows_at(b, rows)) + " x " +
           std::to_string(columns_at(b)) + (in.split ? " split" : "") + (in.rows_split ? " rows split" : "") +
           (in.gathered ? " gathered" : "");
  }

  // A slot's layer states: a recomputed layer's are the shared workspace's (but for the
  // deferred views, which stay each slot's own); another's are its own, with the scratch of
  // the first state of the same structure.
  Slot make_slot(std::int64_t rows) {
    Slot slot;
    slot.rows = rows;
    const std::size_t n = m_layers.size();
    const int first = m_stage.first;
    slot.x.push_back(is_first_stage() && !rounds_input()
                         ? matrix()
                         : matrix("trident::nn::stage_input", rows_at(first, rows), input_columns()));
    for (std::size_t k = 0; k < n; ++k) {
      const int b = first + static_cast<int>(k);
      const std::string key = shared_key(k, rows);
      auto owner = m_shared.find(key);
      if (recomputed(k)) {
        if (owner == m_shared.end())
          owner =
              m_shared.emplace(key, SharedState{m_layers[k]->make_state(rows_at(b, rows), columns_at(b), m_seq), true})
                  .first;
        slot.states.push_back(owner->second.state);
      } else {
        slot.states.push_back(m_layers[k]->make_state(rows_at(b, rows), columns_at(b), m_seq));
        if (owner == m_shared.end()) {
          m_shared.emplace(key, SharedState{slot.states.back(), false});
        } else {
          slot.states.back().share_scratch_of(owner->second.state);
        }
      }
      slot.x.push_back(matrix("trident::nn::output", rows_at(b + 1, rows), columns_at(b + 1)));
    }
    if (is_last_stage()) {
      slot.losses = vector("trident::nn::losses", rows);
      if (m_flows.back().rows_split) slot.gathered = matrix("trident::nn::gathered_output", rows, output_columns());
      const matrix& out = whole_output(slot);
      // The cross-entropy writes its gradient over the logits: they are not read again.
      slot.d_output =
          m_spec.loss == Loss::cross_entropy ? out : matrix("trident::nn::d_output", out.extent(0), out.extent(1));
    }
    return slot;
  }

  // Calls f on every view all slots share.
  template <class F>
  void for_each_shared_view(F&& f) const {
    for (const auto& [key, shared] : m_shared) {
      if (shared.workspace) {
        shared.state.for_each_view(f);
      } else {
        shared.state.for_each_scratch_view(f);
      }
    }
  }

  template <class View>
  static std::size_t bytes_once(const View& view, std::set<const void*>& seen) {
    using value_type = typename View::value_type;
    if (view.data() == nullptr || !seen.insert(view.data()).second) return 0;
    return view.span() * sizeof(value_type);
  }

  // The bytes `slot` holds beyond what `seen` holds.
  std::size_t bytes_of(const Slot& slot, std::set<const void*>& seen) const {
    std::size_t total = 0;
    const auto add = [&](const auto& view) { total += bytes_once(view, seen); };
    for (std::size_t k = 1; k < slot.x.size(); ++k) add(slot.x[k]);  // x[0]: the caller's input, or a copy
    if (!is_first_stage() || rounds_input()) add(slot.x[0]);
    for (const auto& state : slot.states) {
      state.for_each_view(add);
      if (slot.weight_pending) state.for_each_deferred_view(add);  // allocated once, kept only until the weight pass
    }
    add(slot.losses);
    add(slot.gathered);
    add(slot.d_output);
    return total;
  }

  // The bytes a slot keeps for its own micro-batch.
  std::size_t kept_bytes(const Slot& slot) const {
    std::set<const void*> seen;
    for_each_shared_view([&](const auto& view) {
      if (view.data() != nullptr) seen.insert(view.data());
    });
    return bytes_of(slot, seen);
  }

  // The gradients at the boundaries inside the stage, shared by every micro-batch.
  // Boundary k's gradient is written by layer k's backward and read by layer k - 1's, so
  // boundaries of one shape take turns on two buffers.
  void size_gradients(const Slot& slot) {
    const std::size_t n = m_layers.size();
    if (m_grads.size() == n + 1) return;
    m_grads.assign(n + 1, matrix());
    std::map<std::pair<std::int64_t, std::int64_t>, std::array<matrix, 2>> by_shape;
    for (std::size_t k = 1; k < n; ++k) {
      const int b = m_stage.first + static_cast<int>(k);
      auto& pair = by_shape[{rows_at(b, slot.rows), columns_at(b)}];
      matrix& buffer = pair[k % 2];
      if (buffer.size() == 0) buffer = matrix("trident::nn::gradient", rows_at(b, slot.rows), columns_at(b));
      m_grads[k] = buffer;
    }
  }

  context_type context() {
    context_type c{m_space, &m_params, &m_group};
    c.seq = m_shape_seq;
    return c;
  }

  void run_forward(Slot& slot) {
    const auto c = context();
    for (std::size_t k = 0; k < m_layers.size(); ++k) {
      UnitHooks::call(m_hooks.before_forward, static_cast<int>(k));
      forward_layer(c, k, slot);
    }
    if (slot.gathered.size() != 0)
      tensor_parallel::GatherFromSequence::forward(m_space, m_group, slot.x.back(), slot.gathered);
  }

  // The gradient with respect to the last stage's output: its rows of the loss gradient.
  matrix top_gradient(const Slot& slot) const {
    if (slot.gathered.size() == 0) return slot.d_output;
    const auto local = static_cast<std::int64_t>(slot.x.back().extent(0));
    const std::int64_t begin = local * m_group.rank();
    return Kokkos::subview(slot.d_output, Kokkos::make_pair(begin, begin + local), Kokkos::ALL);
  }

  // The backward of the stage's layers; `split` defers the weight GEMMs to the weight pass.
  void run_backward(Slot& slot, const matrix& d_top, const matrix& d_bottom, bool split) {
    size_gradients(slot);
    const std::size_t n = m_layers.size();
    for (std::size_t k = n; k-- > 0;) {
      UnitHooks::call(m_hooks.before_backward, static_cast<int>(k));
      auto c = context();
      if (recomputed(k)) forward_layer(c, k, slot);  // the same values
      c.defer_weights = split;
      c.copy_deferred_inputs = split && recomputed(k);
      c.output_gradient_kept = is_last_stage() && k + 1 == n;  // the slot's own d_output
      m_layers[k]->backward(c, slot.x[k], slot.x[k + 1], slot.states[k], k + 1 == n ? d_top : m_grads[k + 1],
                            k == 0 ? d_bottom : m_grads[k]);
      if (!split) UnitHooks::call(m_hooks.after_backward, static_cast<int>(k));
    }
  }

  void backward_pass(int micro_batch, const matrix& output_gradient, const matrix& input_gradient, bool split) {
    const char* op = split ? "stage_backward_input" : "stage_backward";
    require_micro_batch(op, micro_batch);
    require_argument(m_pool.holds(micro_batch), "trident::nn::Model::", op, ": micro-batch ", micro_batch,
                     " has no forward");
    Slot& slot = m_pool.at(micro_batch);
    require_argument(!slot.weight_pending, "trident::nn::Model::", op, ": micro-batch ", micro_batch,
                     " already ran its backward_input and awaits stage_backward_weight");
    if (!is_last_stage())
      require_shape(op, "output gradient", output_gradient, rows_at(m_stage.end, slot.rows), output_columns());
    if (!is_first_stage())
      require_shape(op, "input gradient", input_gradient, rows_at(m_stage.first, slot.rows), input_columns());
    run_backward(slot, is_last_stage() ? top_gradient(slot) : output_gradient,
                 is_first_stage() ? matrix() : input_gradient, split);
    if (!split) return;
    slot.weight_pending = true;
    if (slot.deferred_bytes == 0) slot.deferred_bytes = kept_bytes(slot) - slot.own_bytes;
    m_pool.set_bytes(micro_batch, slot.own_bytes + slot.deferred_bytes);  // with what it keeps for the weight pass
  }

  // ---- the loss ----

  double loss(Slot& slot, const targets_type& targets, double loss_scale) {
    const matrix output = whole_output(slot);
    if (m_spec.loss == Loss::mean_squared_error) {
      require_shape("forward", "target", targets.values, slot.rows, output_columns());
      ops::mse_forward(m_space, slot.losses, output, targets.values);
      if (loss_scale != 0.0) loss_gradient(slot, targets, loss_scale);
      return ops::sum(m_space, slot.losses);
    }
    require_argument(static_cast<std::int64_t>(targets.classes.extent(0)) == slot.rows,
                     "trident::nn::Model::forward: ", targets.classes.extent(0), " target classes for ", slot.rows,
                     " rows");
    if (m_flows.back().vocab) {
      require_argument(loss_scale != 0.0, "trident::nn::Model::forward: the vocabulary-parallel cross-entropy takes ",
                       "the loss gradient in the forward pass; pass the loss scale of the coming backward");
      if (static_cast<std::int64_t>(m_vocab_scratch.max.extent(0)) != slot.rows)
        m_vocab_scratch = tensor_parallel::VocabParallelScratch<param_type, memory_space>(slot.rows);
      tensor_parallel::vocab_parallel_cross_entropy_forward_backward(m_space, m_group, slot.losses, output,
                                                                     targets.classes, m_vocab_offset, m_vocab_scratch,
                                                                     static_cast<param_type>(loss_scale));
    } else if (loss_scale != 0.0) {
      ops::cross_entropy_forward_backward(m_space, slot.losses, slot.d_output, output, targets.classes,
                                          static_cast<param_type>(loss_scale));
    } else {
      ops::cross_entropy_forward(m_space, slot.losses, output, targets.classes);
    }
    return ops::sum(m_space, slot.losses);
  }

  void loss_gradient(Slot& slot, const targets_type& targets, double loss_scale) {
    const matrix output = whole_output(slot);
    if (m_spec.loss == Loss::mean_squared_error) {
      ops::mse_backward(m_space, slot.d_output, output, targets.values, static_cast<param_type>(loss_scale));
    } else {
      ops::cross_entropy_backward(m_space, slot.d_output, output, targets.classes, static_cast<param_type>(loss_scale));
    }
  }

  ExecutionSpace m_space;
  ModelSpec m_spec;
  group_type m_group;
  StageRange m_stage;
  bool m_recompute = false;
  std::vector<Flow> m_flows;
  std::vector<std::unique_ptr<Layer<Scalar, ExecutionSpace>>> m_layers;
  store_type m_params;
  std::map<std::string, int> m_unit_of;                    // tensor -> the unit that declares it
  std::vector<std::pair<int, std::string>> m_extra_reads;  // (unit, tensor): a tied head's table
  std::vector<std::string> m_tied_copies;
  std::int64_t m_vocab_offset = 0;
  tensor_parallel::VocabParallelScratch<param_type, memory_space> m_vocab_scratch;
  UnitHooks m_hooks;
  std::int64_t m_seq = 0;

  pipeline::ActivationPool<Slot> m_pool;  // micro-batches between forward and backward
  struct SharedState {
    state_type state;
    bool workspace = false;  // all of it is shared (recomputation), not only its scratch
  };
  std::map<std::string, SharedState> m_shared;  // by shared_key
  std::int64_t m_shape_rows = -1, m_shape_seq = -1;
  std::vector<matrix> m_grads;  // m_grads[k]: gradient with respect to local boundary k (1 <= k < n)
  targets_type m_targets;
  double m_loss_scale_taken = 0.0;
  bool m_backward_pending = false;  // a forward (not a predict) awaits its backward

  std::vector<input_matrix> m_micro_inputs;
  std::vector<targets_type> m_micro_targets;
  double m_micro_scale = 0.0;
};

}  // namespace trident::nn
