#pragma once
// GPT-2 (GPT2LMHeadModel), or this rank's part of it: the spec of gpt2_spec.hpp run by
// nn::Model, with GPT-2's interface: token ids and targets in, summed token losses out,
// the hooks numbered by GPT-2's units (0 the embeddings, l + 1 block l, L + 1 the head)
// whatever stage runs. With a tensor-parallel group of one rank it is the one-rank model;
// otherwise Megatron-LM's split, optionally with sequence parallelism, and every rank of the
// group computes the same loss.
//
// Built for a pipeline stage (Gpt2Stage) it holds only that stage's tensors and runs micro-
// batch by micro-batch under a pipeline::Executor: stage_forward keeps the micro-batch's
// activations until its stage_backward (or stage_backward_input, then stage_backward_weight).

#include <trident/core/error.hpp>
#include <trident/core/parameter_store.hpp>
#include <trident/core/profiling.hpp>
#include <trident/core/unit_hooks.hpp>
#include <trident/gpt2/config.hpp>
#include <trident/gpt2/parameters.hpp>
#include <trident/gpt2/spec.hpp>
#include <trident/nn/model.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace trident::gpt2 {

// GPT-2's units (core/unit_hooks.hpp): 0 = embedding (wte, wpe), 1..L = blocks, L+1 = head
// (ln_f, and wte used as the output matrix). Backward visits head, blocks L..1, then
// embedding; wte's gradient is final only after the embedding unit.
using Gpt2Hooks = UnitHooks;

template <class Scalar, class ExecutionSpace>
class Gpt2 {
 public:
  using model_type = nn::Model<Scalar, ExecutionSpace>;
  using memory_space = typename ExecutionSpace::memory_space;
  using store_type = ParameterStore<Scalar, memory_space>;
  using activation_matrix = typename model_type::matrix;  // also what crosses a stage boundary
  using token_view = Kokkos::View<int*, memory_space>;
  using group_type = tensor_parallel::TensorParallelGroup;

  Gpt2(const ExecutionSpace& space, const Gpt2Config& config, group_type group = group_type::single())
      : Gpt2(space, config, whole_gpt2(config), std::move(group)) {}

  // The stage `stage` of a pipeline. With `recompute`, a micro-batch keeps only each unit's
  // input between its forward and its backward, which recomputes the unit's activations.
  Gpt2(const ExecutionSpace& space, const Gpt2Config& config, const Gpt2Stage& stage,
       group_type group = group_type::single(), bool recompute = false)
      : m_config(checked(config, group)),
        m_stage(stage),
        m_model(space, gpt2_spec(config), std::move(group), gpt2_layers_of(config, stage), recompute) {}

  const Gpt2Config& config() const { return m_config; }
  Gpt2Split split() const { return {m_model.tensor_parallel_group().size(), m_model.tensor_parallel_group().rank()}; }
  const Gpt2Stage& stage() const { return m_stage; }
  bool recomputes() const { return m_model.recomputes(); }
  const group_type& tensor_parallel_group() const { return m_model.tensor_parallel_group(); }
  store_type& parameters() { return m_model.parameters(); }
  const store_type& parameters() const { return m_model.parameters(); }
  const ExecutionSpace& space() const { return m_model.space(); }
  model_type& layers() { return m_model; }
  const model_type& layers() const { return m_model; }

  void initialize(std::uint64_t seed) { m_model.initialize(seed); }

  // Hooks by GPT-2's unit numbers; the stage's units are a range of them.
  void set_hooks(Gpt2Hooks hooks) {
    const int first = m_model.stage().first;
    const auto shifted = [first](std::function<void(int)> hook) {
      return hook ? std::function<void(int)>([first, hook](int unit) { hook(first + unit); }) : hook;
    };
    m_model.set_hooks({shifted(std::move(hooks.before_forward)), shifted(std::move(hooks.before_backward)),
                       shifted(std::move(hooks.after_backward))});
  }
  int unit_count() const { return m_config.layers + 2; }

  void zero_grad() { m_model.zero_grad(); }

  // Runs B sequences of T tokens (host vectors of B*T tokens each; the same on every rank of
  // the tensor-parallel group) and returns the SUM of the per-token cross-entropy losses
  // (divide by the global token count for the mean). A non-zero `loss_scale` also takes the
  // loss gradient for backward(loss_scale) in the same pass over the logits (training); zero
  // keeps the logits for inspection (one-rank model only).
  double forward(const std::vector<int>& tokens, const std::vector<int>& targets, int batch, int seq,
                 double loss_scale = 0.0) {
    ScopedRegion region("trident::gpt2::Gpt2::forward");
    check_tokens("trident::gpt2::Gpt2::forward", tokens, targets, batch, seq);
    m_model.set_sequence_length(seq);
    Micro& micro = micro_batch(0, tokens.size());
    copy_tokens(micro, tokens, targets, true, true);
    space().fence();  // the host copies are rewritten by the next call
    return m_model.forward(micro.ids, {activation_matrix(), micro.targets}, loss_scale);
  }

  // Backward of the last forward, for loss = loss_scale * (sum of its token losses); gradients
  // ACCUMULATE into parameters().grads(), so micro-batches add up to the full batch.
  void backward(double loss_scale) {
    ScopedRegion region("trident::gpt2::Gpt2::backward");
    m_model.backward(loss_scale);
  }

  // After a forward: the logits [B*T, this rank's vocabulary] (their gradient after a forward
  // that took it), and the residual stream after block l (this rank's rows of it).
  activation_matrix logits() const { return m_model.output(); }
  activation_matrix residual_after_block(int l) const { return m_model.activation_at(l + 2 - m_model.stage().first); }
  std::size_t activation_bytes() const { return m_model.activation_bytes(); }

  // ---- Pipeline stage passes (the interface of pipeline::Executor) ----

  // The step's micro-batches, before the executor runs it: host vectors of batch*seq tokens and
  // targets each (the first stage reads the tokens, the last the targets), and the non-zero
  // loss scale of the backward (the last stage's forward takes the loss gradient).
  void set_micro_batches(const std::vector<std::vector<int>>& tokens, const std::vector<std::vector<int>>& targets,
                         int batch, int seq, double loss_scale) {
    const char* op = "trident::gpt2::Gpt2::set_micro_batches";
    require_argument(!tokens.empty() && tokens.size() == targets.size(), op, ": ", tokens.size(),
                     " micro-batches of tokens and ", targets.size(), " of targets");
    for (std::size_t i = 0; i < tokens.size(); ++i) check_tokens(op, tokens[i], targets[i], batch, seq);
    // Only what this stage reads goes to the device: the first stage's tokens, the last's targets.
    std::vector<activation_matrix> ids;
    std::vector<typename model_type::targets_type> classes;
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      Micro& micro = micro_batch(i + 1, tokens[i].size());  // 0 is the whole model's forward
      copy_tokens(micro, tokens[i], targets[i], m_stage.holds_embedding, m_stage.holds_head);
      ids.push_back(micro.ids);
      classes.push_back({activation_matrix(), micro.targets});
    }
    space().fence();  // the host copies are rewritten by the next call
    m_model.set_sequence_length(seq);
    m_model.set_micro_batches(std::move(ids), std::move(classes), loss_scale);
  }

  // Rows of what crosses a stage boundary: this rank's rows of the residual stream (B*T, or
  // B*T/tp with sequence parallelism); its columns are the hidden size C.
  std::size_t boundary_rows(int batch, int seq) const {
    const auto n = static_cast<std::size_t>(batch) * static_cast<std::size_t>(seq);
    const auto& group = m_model.tensor_parallel_group();
    return group.sequence_parallel ? n / static_cast<std::size_t>(group.size()) : n;
  }

  double stage_forward(int micro_batch, const activation_matrix& input, const activation_matrix& output) {
    return m_model.stage_forward(micro_batch, input, output);
  }
  void stage_backward(int micro_batch, const activation_matrix& output_gradient,
                      const activation_matrix& input_gradient) {
    m_model.stage_backward(micro_batch, output_gradient, input_gradient);
  }
  void stage_backward_input(int micro_batch, const activation_matrix& output_gradient,
                            const activation_matrix& input_gradient) {
    m_model.stage_backward_input(micro_batch, output_gradient, input_gradient);
  }
  void stage_backward_weight(int micro_batch) { m_model.stage_backward_weight(micro_batch); }

  // Micro-batches held, and the bytes they keep, now and at the peak; the bytes they share.
  const pipeline::PoolStatistics& activation_statistics() const { return m_model.activation_statistics(); }
  void reset_activation_peaks() { m_model.reset_activation_peaks(); }
  std::size_t shared_activation_bytes() const { return m_model.shared_activation_bytes(); }

 private:
  // One micro-batch's tokens on the device: as ids [N, 1] (exact in Scalar below 2^24) and
  // as target classes [N], with their host copies.
  struct Micro {
    activation_matrix ids;
    token_view targets;
    typename activation_matrix::HostMirror host_ids;
    typename token_view::HostMirror host_targets;
  };

  static const Gpt2Config& checked(const Gpt2Config& config, const group_type& group) {
    config.validate();
    validate_gpt2_split(config, Gpt2Split{group.size(), group.rank()});
    return config;
  }

  void check_tokens(const char* op, const std::vector<int>& tokens, const std::vector<int>& targets, int batch,
                    int seq) const {
    require_argument(seq >= 1 && seq <= m_config.seq, op, ": sequence length ", seq, " is outside [1, ", m_config.seq,
                     "]");
    require_argument(batch >= 1 && tokens.size() == static_cast<std::size_t>(batch) * static_cast<std::size_t>(seq) &&
                         targets.size() == tokens.size(),
                     op, ": expected ", batch, "x", seq, " tokens and targets, got ", tokens.size(), " and ",
                     targets.size());
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      require_argument(tokens[i] >= 0 && tokens[i] < m_config.vocab && targets[i] >= 0 && targets[i] < m_config.vocab,
                       op, ": token ", tokens[i], " or target ", targets[i], " at position ", i,
                       " is outside the vocabulary [0, ", m_config.vocab, ")");
    }
  }

  Micro& micro_batch(std::size_t index, std::size_t rows) {
    if (m_micro.size() <= index) m_micro.resize(index + 1);
    Micro& micro = m_micro[index];
    if (micro.ids.extent(0) != rows) {
      micro.ids = activation_matrix("trident::gpt2::ids", rows, 1);
      micro.targets = token_view("trident::gpt2::targets", rows);
      micro.host_ids = Kokkos::create_mirror_view(micro.ids);
      micro.host_targets = Kokkos::create_mirror_view(micro.targets);
    }
    return micro;
  }

  // Starts the copies of the tokens (as ids) and of the targets the stage reads; the caller
  // fences before the host copies are written again.
  void copy_tokens(const Micro& micro, const std::vector<int>& tokens, const std::vector<int>& targets, bool read_ids,
                   bool read_targets) const {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (read_ids) micro.host_ids(i, 0) = static_cast<Scalar>(tokens[i]);
      if (read_targets) micro.host_targets(i) = targets[i];
    }
    if (read_ids) Kokkos::deep_copy(space(), micro.ids, micro.host_ids);
    if (read_targets) Kokkos::deep_copy(space(), micro.targets, micro.host_targets);
  }

  Gpt2Config m_config;
  Gpt2Stage m_stage;
  model_type m_model;
  std::vector<Micro> m_micro;  // 0: the whole model's forward; i + 1: the pipeline's micro-batch i
};

}  // namespace trident::gpt2
