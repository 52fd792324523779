#pragma once
// GPT-2 (GPT2LMHeadModel) on one rank, or one rank's tensor-parallel shard of it: the spec of
// gpt2/spec.hpp run by nn::Model, with GPT-2's interface: token ids and targets in, summed
// token losses out, the hooks numbered by GPT-2's units (0 the embeddings, l + 1 block l,
// L + 1 the head). With a tensor-parallel group of one rank it is the one-rank model;
// otherwise Megatron-LM's split, optionally with sequence parallelism, and every rank of the
// group computes the same loss. Training in any layout goes through train::Trainer with
// gpt2_spec(); this class is the reference it is checked against and a model to inspect.

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

  // With `recompute`, a forward keeps only each unit's input, and backward recomputes the rest.
  Gpt2(const ExecutionSpace& space, const Gpt2Config& config, group_type group = group_type::single(),
       bool recompute = false)
      : m_config(checked(config, group)), m_model(space, gpt2_spec(config), std::move(group), {}, recompute) {}

  const Gpt2Config& config() const { return m_config; }
  Gpt2Split split() const { return {m_model.tensor_parallel_group().size(), m_model.tensor_parallel_group().rank()}; }
  bool recomputes() const { return m_model.recomputes(); }
  const group_type& tensor_parallel_group() const { return m_model.tensor_parallel_group(); }
  store_type& parameters() { return m_model.parameters(); }
  const store_type& parameters() const { return m_model.parameters(); }
  const ExecutionSpace& space() const { return m_model.space(); }
  model_type& layers() { return m_model; }
  const model_type& layers() const { return m_model; }

  void initialize(std::uint64_t seed) { m_model.initialize(seed); }

  // Hooks by GPT-2's unit numbers: its top-level layers.
  void set_hooks(Gpt2Hooks hooks) { m_model.set_hooks(std::move(hooks)); }
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
    Micro& micro = micro_batch(tokens.size());
    copy_tokens(micro, tokens, targets);
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
  activation_matrix residual_after_block(int l) const { return m_model.activation_at(l + 2); }
  std::size_t activation_bytes() const { return m_model.activation_bytes(); }

  // The activation bytes every forward shares (scratch, and with recomputation the workspace).
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

  Micro& micro_batch(std::size_t rows) {
    Micro& micro = m_micro;
    if (micro.ids.extent(0) != rows) {
      micro.ids = activation_matrix("trident::gpt2::ids", rows, 1);
      micro.targets = token_view("trident::gpt2::targets", rows);
      micro.host_ids = Kokkos::create_mirror_view(micro.ids);
      micro.host_targets = Kokkos::create_mirror_view(micro.targets);
    }
    return micro;
  }

  // Starts the copies of the tokens (as ids) and of the targets; the caller fences before the
  // host copies are written again.
  void copy_tokens(const Micro& micro, const std::vector<int>& tokens, const std::vector<int>& targets) const {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      micro.host_ids(i, 0) = static_cast<Scalar>(tokens[i]);
      micro.host_targets(i) = targets[i];
    }
    Kokkos::deep_copy(space(), micro.ids, micro.host_ids);
    Kokkos::deep_copy(space(), micro.targets, micro.host_targets);
  }

  Gpt2Config m_config;
  model_type m_model;
  Micro m_micro;
};

}  // namespace trident::gpt2
