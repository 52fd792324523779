#pragma once
// A user's model from a spec, for one Scalar and execution space, on one tensor-parallel
// group and one pipeline stage:
//
//   Model<float, Space> model(space, spec);                   // one rank
//   Model<float, Space> model(space, spec, tp_group);         // tensor parallel
//   Model<float, Space> model(space, spec, tp_group, stage);  // layers [first, end) of a pipeline
//
// The whole model (one stage) trains with forward(input, targets) then backward(scale), like
// GPT-2: forward returns the SUM of the per-row losses; backward(scale) accumulates the
// gradient of scale * that sum. A pipeline stage offers the passes of pipeline::Executor.
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
#include <trident/ops/cross_entropy.hpp>
#include <trident/ops/mse.hpp>
#include <trident/ops/reduction.hpp>
#include <trident/tensor_parallel/group.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace trident::nn {

// The top-level layers [first, end) one pipeline stage holds; end = -1: to the last layer.
struct StageRange {
  int first = 0;
  int end = -1;
};

// `layers` top-level layers over `stages` stages, as evenly as possible (the first
// layers % stages stages get one more).
inline std::vector<StageRange> even_stages(int layers, int stages) {
  require_argument(stages >= 1 && stages <= layers, "trident::nn::even_stages: ", layers,
                   " top-level layers cannot fill ", stages, " pipeline stages");
  std::vector<StageRange> ranges;
  int first = 0;
  for (int s = 0; s < stages; ++s) {
    const int count = layers / stages + (s < layers % stages ? 1 : 0);
    ranges.push_back({first, first + count});
    first += count;
  }
  return ranges;
}

// What the loss compares the model's output with: `values` [rows, outputs] for the mean
// squared error, `classes` [rows] for cross-entropy.
template <class Scalar, class ExecutionSpace>
struct Targets {
  typename LayerTypes<Scalar, ExecutionSpace>::matrix values;
  Kokkos::View<int*, typename ExecutionSpace::memory_space> classes;
};

template <class Scalar, class ExecutionSpace>
class Model {
 public:
  using types = LayerTypes<Scalar, ExecutionSpace>;
  using memory_space = typename types::memory_space;
  using matrix = typename types::matrix;
  using store_type = typename types::store_type;
  using targets_type = Targets<Scalar, ExecutionSpace>;
  using group_type = tensor_parallel::TensorParallelGroup;

  Model(const ExecutionSpace& space, ModelSpec spec, group_type group = group_type::single(), StageRange stage = {})
      : m_space(space), m_spec(std::move(spec)), m_group(std::move(group)), m_stage(stage) {
    const int layer_count = static_cast<int>(m_spec.layers.size());
    if (m_stage.end < 0) m_stage.end = layer_count;
    require_argument(m_stage.first >= 0 && m_stage.first < m_stage.end && m_stage.end <= layer_count,
                     "trident::nn::Model: the stage of layers [", m_stage.first, ", ", m_stage.end,
                     ") is not a non-empty range of the model's ", layer_count, " top-level layers");
    m_group.sequence_parallel = false;  // rows stay whole: the layers here split features only
    const int tp = m_group.size();
    m_flows = model_flows(m_spec.layers, tp);
    for (int i = m_stage.first; i < m_stage.end; ++i) {
      declare_tensors(m_params, layer_tensors(m_spec, static_cast<std::size_t>(i)), tp, m_group.rank());
      m_layers.push_back(
          make_layer<Scalar, ExecutionSpace>(m_spec.layers[static_cast<std::size_t>(i)], std::to_string(i) + ".", tp));
    }
    m_params.allocate("trident::nn");
  }

  const ModelSpec& spec() const { return m_spec; }
  const StageRange& stage() const { return m_stage; }
  bool is_first_stage() const { return m_stage.first == 0; }
  bool is_last_stage() const { return m_stage.end == static_cast<int>(m_spec.layers.size()); }
  const group_type& tensor_parallel_group() const { return m_group; }
  store_type& parameters() { return m_params; }
  const store_type& parameters() const { return m_params; }
  const ExecutionSpace& space() const { return m_space; }

  // Global features at top-level boundary i (0: the model's input), and this rank's columns
  // there (features / tp where a column-parallel linear left them split).
  std::int64_t features_at(int boundary) const { return m_flows.at(static_cast<std::size_t>(boundary)).features; }
  std::int64_t columns_at(int boundary) const {
    const Flow& f = m_flows.at(static_cast<std::size_t>(boundary));
    return f.split ? f.features / m_group.size() : f.features;
  }
  std::int64_t input_columns() const { return columns_at(m_stage.first); }
  std::int64_t output_columns() const { return columns_at(m_stage.end); }

  // Every tensor from its global initialisation, whatever the layout.
  void initialize(std::uint64_t seed) {
    for (int i = m_stage.first; i < m_stage.end; ++i)
      initialize_tensors(m_space, m_params, layer_tensors(m_spec, static_cast<std::size_t>(i)), seed);
  }

  void zero_grad() {
    if (m_params.grads().size() != 0) Kokkos::deep_copy(m_space, m_params.grads(), Scalar(0));
  }

  // Units are this stage's top-level layers, in order; each owns its tensors.
  int unit_count() const { return static_cast<int>(m_layers.size()); }
  void set_hooks(UnitHooks hooks) { m_hooks = std::move(hooks); }
  data_parallel::UnitPlan unit_plan() const {
    return data_parallel::UnitPlan(m_params, unit_count(), [this](const std::string& name) {
      return std::stoi(name.substr(0, name.find('.'))) - m_stage.first;
    });
  }

  // ---- the whole model ----

  // Runs `input` [rows, input features] and returns the sum over rows of the loss against
  // `targets`. A non-zero loss_scale also takes the loss gradient for backward(loss_scale).
  double forward(const matrix& input, const targets_type& targets, double loss_scale = 0.0) {
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
    Slot& slot = m_slots.at(0);
    if (m_loss_scale_taken == 0.0) {
      loss_gradient(slot, m_targets, loss_scale);
    } else {
      require_argument(m_loss_scale_taken == loss_scale, "trident::nn::Model::backward: forward took the loss ",
                       "gradient for scale ", m_loss_scale_taken, " but backward asks for ", loss_scale);
    }
    m_loss_scale_taken = 0.0;
    run_backward(slot, slot.d_output, matrix());
  }

  // The model's output [rows, output features] for `input` (inference); valid until the next
  // call of forward or predict.
  matrix predict(const matrix& input) {
    ScopedRegion region("trident::nn::Model::predict");
    require_whole("predict");
    return start_whole(input).x.back();
  }

  // ---- pipeline stage passes (the interface of pipeline::Executor) ----

  // The step's micro-batches: inputs [rows, input features] (read by the first stage),
  // targets (read by the last), and the non-zero scale of the step's backward.
  void set_micro_batches(std::vector<matrix> inputs, std::vector<targets_type> targets, double loss_scale) {
    const char* op = "trident::nn::Model::set_micro_batches";
    require_argument(!inputs.empty() && inputs.size() == targets.size(), op, ": ", inputs.size(),
                     " micro-batches of inputs and ", targets.size(), " of targets");
    require_argument(loss_scale != 0.0, op, ": the last stage takes the loss gradient in its forward; pass the ",
                     "non-zero loss scale of the step's backward");
    require_argument(m_slots.empty(), op, ": ", m_slots.size(),
                     " micro-batches of the previous step still hold activations (its backward did not run)");
    m_micro_inputs = std::move(inputs);
    m_micro_targets = std::move(targets);
    m_micro_scale = loss_scale;
  }

  double stage_forward(int micro_batch, const matrix& input, const matrix& output) {
    ScopedRegion region("trident::nn::Model::stage_forward");
    require_micro_batch("stage_forward", micro_batch);
    const auto mb = static_cast<std::size_t>(micro_batch);
    const auto rows = static_cast<std::int64_t>(is_first_stage() ? m_micro_inputs[mb].extent(0) : input.extent(0));
    Slot& slot = acquire(micro_batch, rows);
    if (is_first_stage()) {
      slot.x[0] = checked_input("stage_forward", m_micro_inputs[mb]);
    } else {
      require_shape("stage_forward", "input", input, rows, input_columns());
      Kokkos::deep_copy(m_space, slot.x[0], input);  // the executor reuses its buffers
    }
    run_forward(slot);
    if (is_last_stage()) return loss(slot, m_micro_targets[mb], m_micro_scale);
    require_shape("stage_forward", "output", output, rows, output_columns());
    Kokkos::deep_copy(m_space, output, slot.x.back());
    return 0.0;
  }

  void stage_backward(int micro_batch, const matrix& output_gradient, const matrix& input_gradient) {
    ScopedRegion region("trident::nn::Model::stage_backward");
    stage_backward_input(micro_batch, output_gradient, input_gradient);
    stage_backward_weight(micro_batch);
  }

  // Zero-bubble schedules split backward in two; here the input pass computes all gradients
  // and the weight pass only frees the micro-batch's activations.
  void stage_backward_input(int micro_batch, const matrix& output_gradient, const matrix& input_gradient) {
    require_micro_batch("stage_backward_input", micro_batch);
    require_argument(m_slots.count(micro_batch) != 0, "trident::nn::Model::stage_backward: micro-batch ", micro_batch,
                     " has no forward");
    Slot& slot = m_slots.at(micro_batch);
    if (!is_last_stage())
      require_shape("stage_backward", "output gradient", output_gradient, slot.rows, output_columns());
    if (!is_first_stage())
      require_shape("stage_backward", "input gradient", input_gradient, slot.rows, input_columns());
    run_backward(slot, is_last_stage() ? slot.d_output : output_gradient, is_first_stage() ? matrix() : input_gradient);
  }

  void stage_backward_weight(int micro_batch) { release(micro_batch); }

 private:
  using state_type = LayerState<Scalar, ExecutionSpace>;
  using context_type = LayerContext<Scalar, ExecutionSpace>;
  using vector = typename types::vector;

  // One micro-batch's activations: x[0] its input, x[k + 1] the output of local layer k.
  struct Slot {
    std::int64_t rows = 0;
    std::vector<matrix> x;
    std::vector<state_type> states;
    vector losses;    // last stage
    matrix d_output;  // last stage: the loss gradient with respect to the output
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

  const matrix& checked_input(const char* operation, const matrix& input) const {
    require_argument(static_cast<std::int64_t>(input.extent(1)) == input_columns(), "trident::nn::Model::", operation,
                     ": the input has ", input.extent(1), " features but the model takes ", input_columns());
    return input;
  }

  Slot& start_whole(const matrix& input) {
    checked_input("forward", input);
    release_all();
    m_backward_pending = false;
    Slot& slot = acquire(0, static_cast<std::int64_t>(input.extent(0)));
    slot.x[0] = input;
    run_forward(slot);
    return slot;
  }

  Slot& acquire(int micro_batch, std::int64_t rows) {
    require_argument(m_slots.count(micro_batch) == 0, "trident::nn::Model: micro-batch ", micro_batch,
                     " already holds activations");
    for (auto it = m_free.begin(); it != m_free.end(); ++it) {
      if (it->rows != rows) continue;
      Slot& slot = m_slots[micro_batch] = std::move(*it);
      m_free.erase(it);
      return slot;
    }
    return m_slots[micro_batch] = make_slot(rows);
  }

  void release(int micro_batch) {
    const auto found = m_slots.find(micro_batch);
    if (found == m_slots.end()) return;
    m_free.push_back(std::move(found->second));
    m_slots.erase(found);
  }

  void release_all() {
    while (!m_slots.empty()) release(m_slots.begin()->first);
  }

  Slot make_slot(std::int64_t rows) {
    Slot slot;
    slot.rows = rows;
    const std::size_t n = m_layers.size();
    slot.x.push_back(is_first_stage() ? matrix() : matrix("trident::nn::stage_input", rows, input_columns()));
    for (std::size_t k = 0; k < n; ++k) {
      const std::int64_t in_columns = columns_at(m_stage.first + static_cast<int>(k));
      slot.states.push_back(m_layers[k]->make_state(rows, in_columns));
      slot.x.push_back(matrix("trident::nn::output", rows, columns_at(m_stage.first + static_cast<int>(k) + 1)));
    }
    if (is_last_stage()) {
      slot.losses = vector("trident::nn::losses", rows);
      slot.d_output = matrix("trident::nn::d_output", rows, output_columns());
    }
    return slot;
  }

  // The gradients inside the stage, shared by every micro-batch of `rows` rows.
  void size_gradients(std::int64_t rows) {
    const std::size_t n = m_layers.size();
    if (m_grads.size() == n + 1 && (n < 2 || static_cast<std::int64_t>(m_grads[1].extent(0)) == rows)) return;
    m_grads.assign(n + 1, matrix());
    for (std::size_t k = 1; k < n; ++k)
      m_grads[k] = matrix("trident::nn::gradient", rows, columns_at(m_stage.first + static_cast<int>(k)));
  }

  context_type context() { return context_type{m_space, &m_params, &m_group}; }

  void run_forward(Slot& slot) {
    const auto c = context();
    for (std::size_t k = 0; k < m_layers.size(); ++k) {
      UnitHooks::call(m_hooks.before_forward, static_cast<int>(k));
      m_layers[k]->forward(c, slot.x[k], slot.x[k + 1], slot.states[k]);
    }
  }

  void run_backward(Slot& slot, const matrix& d_top, const matrix& d_bottom) {
    size_gradients(slot.rows);
    const auto c = context();
    const std::size_t n = m_layers.size();
    for (std::size_t k = n; k-- > 0;) {
      UnitHooks::call(m_hooks.before_backward, static_cast<int>(k));
      m_layers[k]->backward(c, slot.x[k], slot.x[k + 1], slot.states[k], k + 1 == n ? d_top : m_grads[k + 1],
                            k == 0 ? d_bottom : m_grads[k]);
      UnitHooks::call(m_hooks.after_backward, static_cast<int>(k));
    }
  }

  double loss(Slot& slot, const targets_type& targets, double loss_scale) {
    const matrix& output = slot.x.back();
    if (m_spec.loss == Loss::mean_squared_error) {
      require_shape("forward", "target", targets.values, slot.rows, output_columns());
      ops::mse_forward(m_space, slot.losses, output, targets.values);
      if (loss_scale != 0.0) loss_gradient(slot, targets, loss_scale);
    } else {
      require_argument(static_cast<std::int64_t>(targets.classes.extent(0)) == slot.rows,
                       "trident::nn::Model::forward: ", targets.classes.extent(0), " target classes for ", slot.rows,
                       " rows");
      if (loss_scale != 0.0) {
        ops::cross_entropy_forward_backward(m_space, slot.losses, slot.d_output, output, targets.classes,
                                            static_cast<Scalar>(loss_scale));
      } else {
        ops::cross_entropy_forward(m_space, slot.losses, output, targets.classes);
      }
    }
    return ops::sum(m_space, slot.losses);
  }

  void loss_gradient(Slot& slot, const targets_type& targets, double loss_scale) {
    const matrix& output = slot.x.back();
    if (m_spec.loss == Loss::mean_squared_error) {
      ops::mse_backward(m_space, slot.d_output, output, targets.values, static_cast<Scalar>(loss_scale));
    } else {
      ops::cross_entropy_backward(m_space, slot.d_output, output, targets.classes, static_cast<Scalar>(loss_scale));
    }
  }

  ExecutionSpace m_space;
  ModelSpec m_spec;
  group_type m_group;
  StageRange m_stage;
  std::vector<Flow> m_flows;
  std::vector<std::unique_ptr<Layer<Scalar, ExecutionSpace>>> m_layers;
  store_type m_params;
  UnitHooks m_hooks;

  std::map<int, Slot> m_slots;  // micro-batches between forward and backward
  std::vector<Slot> m_free;     // their activations, kept for the next step
  std::vector<matrix> m_grads;  // m_grads[k]: gradient with respect to local boundary k (1 <= k < n)
  targets_type m_targets;
  double m_loss_scale_taken = 0.0;
  bool m_backward_pending = false;  // a forward (not a predict) awaits its backward

  std::vector<matrix> m_micro_inputs;
  std::vector<targets_type> m_micro_targets;
  double m_micro_scale = 0.0;
};

}  // namespace trident::nn
