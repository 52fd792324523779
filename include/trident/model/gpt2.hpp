#pragma once
// GPT-2 (GPT2LMHeadModel): pre-LayerNorm blocks, learned positions, the input embedding tied
// to the output head, LayerNorm eps 1e-5, biases everywhere, no dropout. Forward and backward
// read like the math, layer by layer; every kernel is in ops/, every communication in
// tensor_parallel/mappings.hpp.

#include <trident/core/parameter_store.hpp>
#include <trident/core/profiling.hpp>
#include <trident/core/unit_hooks.hpp>
#include <trident/model/gpt2_config.hpp>
#include <trident/model/gpt2_parameters.hpp>
#include <trident/ops/ops.hpp>
#include <trident/pipeline/activation_pool.hpp>
#include <trident/tensor_parallel/mappings.hpp>
#include <trident/tensor_parallel/vocab_parallel_cross_entropy.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace trident::model {

// What one micro-batch of B sequences of T tokens leaves behind for the backward pass.
// N = B*T rows enter the tensor-parallel regions; the residual stream holds Nl rows: N/tp
// with sequence parallelism, else N. Without sequence parallelism the *_full views are the
// local ones themselves. Cl = C/tp, Fl = 4C/tp, Vl = this rank's vocabulary rows.
template <class Scalar, class MemorySpace>
struct Gpt2Activations {
  using matrix = Kokkos::View<Scalar**, Kokkos::LayoutRight, MemorySpace>;
  using vector = Kokkos::View<Scalar*, Kokkos::LayoutRight, MemorySpace>;

  struct Block {
    matrix ln_1;                  // (Nl, C)
    vector ln_1_mean, ln_1_rstd;  // (Nl)
    matrix ln_1_full;             // (N, C)
    matrix qkv;                   // (N, 3Cl)
    ops::AttentionBuffers<Scalar, MemorySpace> attention;
    matrix attn_out;       // (N, Cl) this rank's heads, before c_proj
    matrix residual_attn;  // (Nl, C) x + attention branch
    matrix ln_2;           // (Nl, C)
    vector ln_2_mean, ln_2_rstd;
    matrix ln_2_full;     // (N, C)
    matrix fc;            // (N, Fl) before GELU
    matrix fc_gelu;       // (N, Fl)
    matrix residual_mlp;  // (Nl, C) block output
  };

  int batch = 0, seq = 0;
  Kokkos::View<int*, MemorySpace> tokens, targets;  // (N), every rank of the group
  matrix embedded;                                  // (Nl, C)
  std::vector<Block> blocks;
  matrix ln_f;  // (Nl, C)
  vector ln_f_mean, ln_f_rstd;
  matrix ln_f_full;  // (N, C)
  matrix logits;     // (N, Vl); holds d(logits) once the loss gradient is taken
  vector losses;     // (N)
  matrix partial;    // (N, C) row-parallel partial sums (sequence parallel)

  // Gradient scratch, reused by every block.
  matrix d_residual, d_ln;   // (Nl, C)
  matrix d_full, d_ln_full;  // (N, C)
  matrix d_attn_out, d_qkv, d_fc, d_fc_gelu;
  tensor_parallel::VocabParallelScratch<Scalar, MemorySpace> vocab_parallel;

  // Calls f(view) for every view, aliases and shared scratch included (callers count each
  // allocation once by its data pointer).
  template <class F>
  void for_each_view(F&& f) const {
    f(tokens);
    f(targets);
    for (const auto* m : {&embedded, &ln_f, &ln_f_full, &logits, &partial}) f(*m);
    for (const auto* v : {&ln_f_mean, &ln_f_rstd, &losses}) f(*v);
    for (const auto& b : blocks) {
      for (const auto* m : {&b.ln_1, &b.ln_1_full, &b.qkv, &b.attn_out, &b.residual_attn, &b.ln_2, &b.ln_2_full, &b.fc,
                            &b.fc_gelu, &b.residual_mlp})
        f(*m);
      for (const auto* v : {&b.ln_1_mean, &b.ln_1_rstd, &b.ln_2_mean, &b.ln_2_rstd}) f(*v);
      f(b.attention.probs);
    }
    for_each_scratch_view(f);
  }

  // The views every micro-batch of a pipeline stage may share: the gradient scratch and the
  // attention scratch (not the probabilities).
  template <class F>
  void for_each_scratch_view(F&& f) const {
    for (const auto* m : {&partial, &d_residual, &d_ln, &d_full, &d_ln_full, &d_attn_out, &d_qkv, &d_fc, &d_fc_gelu})
      f(*m);
    if (blocks.empty()) return;
    const auto& s = blocks[0].attention;
    f(s.dscores);
    for (const auto* h : {&s.q, &s.k, &s.v, &s.y, &s.dq, &s.dk, &s.dv}) f(*h);
  }

  // Bytes held, each allocation counted once (aliases and the attention scratch shared between
  // blocks included once).
  std::size_t bytes() const {
    std::set<const void*> seen;
    std::size_t total = 0;
    for_each_view([&](const auto& view) {
      using value_type = typename std::decay_t<decltype(view)>::value_type;
      if (view.data() != nullptr && seen.insert(view.data()).second) total += view.span() * sizeof(value_type);
    });
    return total;
  }

  Gpt2Activations() = default;
  Gpt2Activations(const Gpt2Config& config, const Gpt2Split& split, bool sequence_parallel, int batch_size, int seq_len)
      : Gpt2Activations(config, split, sequence_parallel, batch_size, seq_len, config.layers, true) {}

  // The activations of `block_count` blocks and, with `head`, the final norm and the loss (a
  // pipeline stage's share). With `shared`, the gradient and attention scratch are shared's;
  // with `recompute` too, every view of a block but its output is shared's first block, which
  // each block overwrites (a backward that recomputes them needs only each block's input).
  Gpt2Activations(const Gpt2Config& config, const Gpt2Split& split, bool sequence_parallel, int batch_size, int seq_len,
                  int block_count, bool head, const Gpt2Activations* shared = nullptr, bool recompute = false)
      : batch(batch_size), seq(seq_len) {
    const int tp = split.tp_size;
    const auto n = static_cast<std::size_t>(batch_size) * static_cast<std::size_t>(seq_len);
    require_argument(!sequence_parallel || n % static_cast<std::size_t>(tp) == 0,
                     "trident::model::Gpt2: sequence parallelism splits the ", n, " rows of a micro-batch over ", tp,
                     " ranks, which does not divide them");
    require_argument(shared == nullptr || !shared->blocks.empty(),
                     "trident::model::Gpt2Activations: the activations to share scratch with hold no block");
    require_argument(!recompute || shared != nullptr,
                     "trident::model::Gpt2Activations: recomputed blocks need the activations they share");
    const std::size_t nl = sequence_parallel ? n / static_cast<std::size_t>(tp) : n;
    const auto c = static_cast<std::size_t>(config.hidden);
    const auto cl = c / static_cast<std::size_t>(tp), fl = 4 * c / static_cast<std::size_t>(tp);
    const auto vl = static_cast<std::size_t>(gpt2_vocab_range(config, split).count);
    const int local_heads = config.heads / tp;
    auto full_or_alias = [&](const matrix& local, const std::string& label) {
      return sequence_parallel ? matrix(label, n, c) : local;
    };
    tokens = Kokkos::View<int*, MemorySpace>("trident::gpt2::tokens", n);
    targets = Kokkos::View<int*, MemorySpace>("trident::gpt2::targets", n);
    embedded = matrix("trident::gpt2::embedded", nl, c);
    for (int l = 0; l < block_count; ++l) {
      if (recompute) {  // only the block's output is its own: the next block's input
        Block b = shared->blocks[0];
        b.residual_mlp = matrix("trident::gpt2::residual_mlp", nl, c);
        blocks.push_back(b);
        continue;
      }
      Block b;
      b.ln_1 = matrix("trident::gpt2::ln_1", nl, c);
      b.ln_1_mean = vector("trident::gpt2::ln_1_mean", nl);
      b.ln_1_rstd = vector("trident::gpt2::ln_1_rstd", nl);
      b.ln_1_full = full_or_alias(b.ln_1, "trident::gpt2::ln_1_full");
      b.qkv = matrix("trident::gpt2::qkv", n, 3 * cl);
      // Attention scratch is shared by all blocks; each keeps only its own probabilities.
      if (shared != nullptr) {
        b.attention = ops::AttentionBuffers<Scalar, MemorySpace>::sharing_scratch_with(shared->blocks[0].attention);
      } else {
        b.attention =
            l == 0 ? ops::AttentionBuffers<Scalar, MemorySpace>(batch_size, seq_len, local_heads, config.head_dim())
                   : ops::AttentionBuffers<Scalar, MemorySpace>::sharing_scratch_with(blocks[0].attention);
      }
      b.attn_out = matrix("trident::gpt2::attn_out", n, cl);
      b.residual_attn = matrix("trident::gpt2::residual_attn", nl, c);
      b.ln_2 = matrix("trident::gpt2::ln_2", nl, c);
      b.ln_2_mean = vector("trident::gpt2::ln_2_mean", nl);
      b.ln_2_rstd = vector("trident::gpt2::ln_2_rstd", nl);
      b.ln_2_full = full_or_alias(b.ln_2, "trident::gpt2::ln_2_full");
      b.fc = matrix("trident::gpt2::fc", n, fl);
      b.fc_gelu = matrix("trident::gpt2::fc_gelu", n, fl);
      b.residual_mlp = matrix("trident::gpt2::residual_mlp", nl, c);
      blocks.push_back(b);
    }
    if (head) {
      ln_f = matrix("trident::gpt2::ln_f", nl, c);
      ln_f_mean = vector("trident::gpt2::ln_f_mean", nl);
      ln_f_rstd = vector("trident::gpt2::ln_f_rstd", nl);
      ln_f_full = full_or_alias(ln_f, "trident::gpt2::ln_f_full");
      logits = matrix("trident::gpt2::logits", n, vl);
      losses = vector("trident::gpt2::losses", n);
    }
    if (shared != nullptr) {
      partial = shared->partial;
      d_residual = shared->d_residual;
      d_ln = shared->d_ln;
      d_full = shared->d_full;
      d_ln_full = shared->d_ln_full;
      d_attn_out = shared->d_attn_out;
      d_qkv = shared->d_qkv;
      d_fc = shared->d_fc;
      d_fc_gelu = shared->d_fc_gelu;
      return;
    }
    if (sequence_parallel) partial = matrix("trident::gpt2::partial", n, c);
    d_residual = matrix("trident::gpt2::d_residual", nl, c);
    d_ln = matrix("trident::gpt2::d_ln", nl, c);
    d_full = full_or_alias(d_residual, "trident::gpt2::d_full");
    d_ln_full = full_or_alias(d_ln, "trident::gpt2::d_ln_full");
    d_attn_out = matrix("trident::gpt2::d_attn_out", n, cl);
    d_qkv = matrix("trident::gpt2::d_qkv", n, 3 * cl);
    d_fc = matrix("trident::gpt2::d_fc", n, fl);
    d_fc_gelu = matrix("trident::gpt2::d_fc_gelu", n, fl);
  }
};

// GPT-2's units (core/unit_hooks.hpp): 0 = embedding (wte, wpe), 1..L = blocks, L+1 = head
// (ln_f, and wte used as the output matrix). Backward visits head, blocks L..1, then
// embedding; wte's gradient is final only after the embedding unit.
using Gpt2Hooks = UnitHooks;

// GPT-2, or this rank's tensor-parallel shard of it. With a group of one rank it is the
// one-rank model; otherwise every layer is the one-rank layer between the conjugate
// mappings of tensor_parallel/mappings.hpp (Megatron-LM's scheme, optionally with sequence
// parallelism), and every rank of the group computes the same loss.
//
// Built for a pipeline stage (Gpt2Stage) it holds only that stage's tensors and runs micro-
// batch by micro-batch under a pipeline::Executor: stage_forward keeps the micro-batch's
// activations in a pool slot until its stage_backward (or stage_backward_input, then
// stage_backward_weight) gives the slot back.
template <class Scalar, class ExecutionSpace>
class Gpt2 {
 public:
  using memory_space = typename ExecutionSpace::memory_space;
  using store_type = ParameterStore<Scalar, memory_space>;
  using activations_type = Gpt2Activations<Scalar, memory_space>;
  using activation_matrix = typename activations_type::matrix;  // also what crosses a stage boundary
  using token_view = Kokkos::View<int*, memory_space>;
  using group_type = tensor_parallel::TensorParallelGroup;

  Gpt2(const ExecutionSpace& space, const Gpt2Config& config, group_type group = group_type::single())
      : Gpt2(space, config, whole_gpt2(config), std::move(group)) {}

  // The stage `stage` of a pipeline. With `recompute`, a micro-batch keeps only each block's
  // input between its forward and its backward, which recomputes the block's activations.
  Gpt2(const ExecutionSpace& space, const Gpt2Config& config, const Gpt2Stage& stage,
       group_type group = group_type::single(), bool recompute = false)
      : m_space(space), m_config(config), m_group(std::move(group)), m_stage(stage), m_recompute(recompute) {
    config.validate();
    if (!m_group.active()) m_group.sequence_parallel = false;  // one rank: nothing to shard
    m_split = Gpt2Split{m_group.size(), m_group.rank()};
    declare_gpt2_parameters(m_params, config, m_split, m_stage);
    m_params.allocate("trident::gpt2");
    m_vocab = gpt2_vocab_range(config, m_split);
  }

  const Gpt2Config& config() const { return m_config; }
  const Gpt2Split& split() const { return m_split; }
  const Gpt2Stage& stage() const { return m_stage; }
  bool recomputes() const { return m_recompute; }
  const group_type& tensor_parallel_group() const { return m_group; }
  store_type& parameters() { return m_params; }
  const store_type& parameters() const { return m_params; }
  const ExecutionSpace& space() const { return m_space; }

  void initialize(std::uint64_t seed) { initialize_gpt2_parameters(m_space, m_params, m_config, seed); }

  void set_hooks(Gpt2Hooks hooks) { m_hooks = std::move(hooks); }
  int unit_count() const { return m_config.layers + 2; }

  void zero_grad() { Kokkos::deep_copy(m_space, m_params.grads(), Scalar(0)); }

  // Runs B sequences of T tokens (host vectors of B*T tokens each; the same on every rank of
  // the tensor-parallel group) and returns the SUM of the per-token cross-entropy losses
  // (divide by the global token count for the mean). A non-zero `loss_scale` also takes the
  // loss gradient for backward(loss_scale) in the same pass over the logits (training); zero
  // keeps the logits for inspection (one-rank model only).
  double forward(const std::vector<int>& tokens, const std::vector<int>& targets, int batch, int seq,
                 double loss_scale = 0.0) {
    ScopedRegion region("trident::model::Gpt2::forward");
    require_whole_model("forward");
    check_tokens("trident::model::Gpt2::forward", tokens, targets, batch, seq);
    if (m_acts.batch != batch || m_acts.seq != seq)
      m_acts = activations_type(m_config, m_split, m_group.sequence_parallel, batch, seq);
    copy_tokens(m_acts.tokens, tokens);
    copy_tokens(m_acts.targets, targets);
    return forward_device(batch, seq, loss_scale);
  }

  // The same with tokens already in device memory.
  double forward_device(int batch, int seq, double loss_scale = 0.0) {
    require_whole_model("forward_device");
    auto& a = m_acts;
    require_argument(a.batch == batch && a.seq == seq, "trident::model::Gpt2::forward_device: the activations hold ",
                     a.batch, "x", a.seq, " tokens, not ", batch, "x", seq);
    call(m_hooks.before_forward, 0);
    embedding_forward(a);
    auto residual = a.embedded;
    for (int k = 0; k < block_count(); ++k) {
      block_forward(a, k, residual, true);
      residual = a.blocks[static_cast<std::size_t>(k)].residual_mlp;
    }
    call(m_hooks.before_forward, m_config.layers + 1);
    m_loss_scale_taken = loss_scale;
    return head_forward(a, residual, loss_scale);
  }

  // Backward of the last forward, for loss = loss_scale * (sum of its token losses); gradients
  // ACCUMULATE into parameters().grads(), so micro-batches add up to the full batch.
  void backward(double loss_scale) {
    ScopedRegion region("trident::model::Gpt2::backward");
    require_whole_model("backward");
    auto& a = m_acts;
    const int head = m_config.layers + 1;
    call(m_hooks.before_backward, head);
    if (m_loss_scale_taken == 0.0) {
      ops::cross_entropy_backward(m_space, a.logits, a.logits, a.targets, static_cast<Scalar>(loss_scale));
    } else {
      require_argument(m_loss_scale_taken == loss_scale, "trident::model::Gpt2::backward: forward took the loss ",
                       "gradient for scale ", m_loss_scale_taken, " but backward asks for ", loss_scale);
    }
    m_loss_scale_taken = 0.0;
    head_backward(a, false);
    call(m_hooks.after_backward, head);
    // d_residual now holds d(loss)/d(block output); each block adds its branches' gradients.
    for (int k = block_count() - 1; k >= 0; --k) block_backward(a, k, block_input(a, k), nullptr);
    call(m_hooks.before_backward, 0);
    embedding_backward(a);
    call(m_hooks.after_backward, 0);
  }

  const activations_type& activations() const { return m_acts; }

  // ---- Pipeline stage passes (the interface of pipeline::Executor) ----

  // The step's micro-batches, before the executor runs it: host vectors of batch*seq tokens and
  // targets each (the first stage reads the tokens, the last the targets), and the non-zero
  // loss scale of the backward (the last stage's forward takes the loss gradient).
  void set_micro_batches(std::vector<std::vector<int>> tokens, std::vector<std::vector<int>> targets, int batch,
                         int seq, double loss_scale) {
    const char* op = "trident::model::Gpt2::set_micro_batches";
    require_argument(!tokens.empty() && tokens.size() == targets.size(), op, ": ", tokens.size(),
                     " micro-batches of tokens and ", targets.size(), " of targets");
    require_argument(loss_scale != 0.0, op, ": a pipeline stage takes the loss gradient in its forward; pass the ",
                     "non-zero loss scale of the step's backward");
    for (std::size_t i = 0; i < tokens.size(); ++i) check_tokens(op, tokens[i], targets[i], batch, seq);
    require_argument(m_pool.statistics().in_use == 0, op, ": ", m_pool.statistics().in_use,
                     " micro-batches of the previous step still hold activations (its backward did not run)");
    if (batch != m_micro.batch || seq != m_micro.seq) {
      m_pool.clear();
      m_workspace = m_recompute ? activations_type(m_config, m_split, m_group.sequence_parallel, batch, seq, 1, false)
                                : activations_type();
    }
    m_micro = MicroBatches{std::move(tokens), std::move(targets), batch, seq, loss_scale};
  }

  // Rows of what crosses a stage boundary: this rank's rows of the residual stream (B*T, or
  // B*T/tp with sequence parallelism); its columns are the hidden size C.
  std::size_t boundary_rows(int batch, int seq) const {
    const auto n = static_cast<std::size_t>(batch) * static_cast<std::size_t>(seq);
    return m_group.sequence_parallel ? n / static_cast<std::size_t>(m_group.size()) : n;
  }

  // Embeds (first stage) or takes `input` [rows, C], runs the stage's blocks, and returns the
  // micro-batch's summed token losses (last stage) or writes the output [rows, C].
  double stage_forward(int micro_batch, const activation_matrix& input, const activation_matrix& output) {
    ScopedRegion region("trident::model::Gpt2::stage_forward");
    require_micro_batch("stage_forward", micro_batch);
    StageSlot& slot = m_pool.acquire(micro_batch, [&] { return make_slot(); });
    m_pool.set_bytes(micro_batch, slot.kept_bytes);
    auto& a = slot.acts;
    if (m_stage.holds_embedding) {
      copy_tokens(a.tokens, m_micro.tokens[static_cast<std::size_t>(micro_batch)]);
      call(m_hooks.before_forward, 0);
      embedding_forward(a);
    } else {
      require_boundary("stage_forward", "input", input, a.embedded);
      Kokkos::deep_copy(m_space, a.embedded, input);  // an N x C copy, small beside a block
    }
    auto residual = a.embedded;
    for (int k = 0; k < block_count(); ++k) {
      block_forward(a, k, residual, true);
      residual = a.blocks[static_cast<std::size_t>(k)].residual_mlp;
    }
    if (!m_stage.holds_head) {
      require_boundary("stage_forward", "output", output, residual);
      Kokkos::deep_copy(m_space, output, residual);
      return 0.0;
    }
    copy_tokens(a.targets, m_micro.targets[static_cast<std::size_t>(micro_batch)]);
    call(m_hooks.before_forward, m_config.layers + 1);
    return head_forward(a, residual, m_micro.loss_scale);
  }

  // The whole backward of a micro-batch: the gradient of its output [rows, C] (empty on the
  // last stage) in, the gradient of its input out (empty on the first stage). Parameter
  // gradients accumulate.
  void stage_backward(int micro_batch, const activation_matrix& output_gradient,
                      const activation_matrix& input_gradient) {
    ScopedRegion region("trident::model::Gpt2::stage_backward");
    backward_pass(micro_batch, output_gradient, input_gradient, false);
    m_pool.release(micro_batch);
  }

  // The zero-bubble split: backward_input computes the input gradient and the cheap parameter
  // gradients (biases, LayerNorms), keeping the output gradients of the linear layers;
  // backward_weight then takes their weight gradients (and the embedding's) and frees the slot.
  void stage_backward_input(int micro_batch, const activation_matrix& output_gradient,
                            const activation_matrix& input_gradient) {
    ScopedRegion region("trident::model::Gpt2::stage_backward_input");
    backward_pass(micro_batch, output_gradient, input_gradient, true);
  }

  void stage_backward_weight(int micro_batch) {
    ScopedRegion region("trident::model::Gpt2::stage_backward_weight");
    require_micro_batch("stage_backward_weight", micro_batch);
    StageSlot& slot = m_pool.at(micro_batch);
    require_argument(slot.weight_pending, "trident::model::Gpt2::stage_backward_weight: micro-batch ", micro_batch,
                     " has no backward_input to complete");
    auto& a = slot.acts;
    if (m_stage.holds_head) {
      ops::linear_transposed_backward(m_space, activation_matrix(), m_params.grad_matrix("wte.weight"), a.logits,
                                      a.ln_f_full, m_params.matrix("wte.weight"));
      call(m_hooks.after_backward, m_config.layers + 1);
    }
    for (int k = block_count() - 1; k >= 0; --k) {
      block_weight_gradients(a, k, slot.deferred[static_cast<std::size_t>(k)]);
      call(m_hooks.after_backward, m_stage.first_block + k + 1);
    }
    if (m_stage.holds_embedding) {
      Kokkos::deep_copy(m_space, a.d_residual, slot.d_embedded);
      embedding_backward(a);
      call(m_hooks.after_backward, 0);
    }
    slot.weight_pending = false;
    m_pool.release(micro_batch);
  }

  // Micro-batches held, and the bytes they keep (each slot's own activations, plus what a split
  // backward keeps for its weight pass), now and at the peak.
  const pipeline::PoolStatistics& activation_statistics() const { return m_pool.statistics(); }
  void reset_activation_peaks() { m_pool.reset_peaks(); }
  // Bytes every micro-batch shares: gradient and attention scratch, the recomputation workspace.
  std::size_t shared_activation_bytes() const {
    std::size_t total = 0;
    auto unseen = shared_allocations();
    m_workspace.for_each_view([&](const auto& view) {
      using value_type = typename std::decay_t<decltype(view)>::value_type;
      if (unseen.erase(view.data()) != 0) total += view.span() * sizeof(value_type);
    });
    return total;
  }

 private:
  using matrix_view = typename store_type::matrix_view;
  using vector_view = typename store_type::vector_view;

  // What a split backward keeps for the weight pass, per block: the output gradients of the
  // four linear layers, and with recomputation their inputs (the workspace is overwritten).
  struct DeferredBlock {
    activation_matrix d_mlp_proj, d_fc, d_attn_proj, d_qkv;
    activation_matrix ln_1_full, attn_out, ln_2_full, fc_gelu;
  };

  struct StageSlot {
    activations_type acts;
    std::size_t kept_bytes = 0;
    std::vector<DeferredBlock> deferred;  // allocated by the first split backward
    activation_matrix d_embedded;         // first stage: the embedding's output gradient
    bool weight_pending = false;
  };

  struct MicroBatches {
    std::vector<std::vector<int>> tokens, targets;
    int batch = 0, seq = 0;
    double loss_scale = 0.0;
  };

  matrix_view mat(int l, const char* suffix) const { return m_params.matrix(layer_name(l, suffix)); }
  vector_view vec(int l, const char* suffix) const { return m_params.vector(layer_name(l, suffix)); }
  matrix_view gmat(int l, const char* suffix) const { return m_params.grad_matrix(layer_name(l, suffix)); }
  vector_view gvec(int l, const char* suffix) const { return m_params.grad_vector(layer_name(l, suffix)); }
  int local_heads() const { return m_config.heads / m_split.tp_size; }
  int block_count() const { return m_stage.end_block - m_stage.first_block; }

  static activation_matrix block_input(const activations_type& a, int k) {
    return k == 0 ? a.embedded : a.blocks[static_cast<std::size_t>(k - 1)].residual_mlp;
  }

  void require_whole_model(const char* operation) const {
    require_argument(is_whole_gpt2(m_config, m_stage), "trident::model::Gpt2::", operation,
                     ": this model is the pipeline stage of blocks [", m_stage.first_block, ", ", m_stage.end_block,
                     "); run it with the stage passes (stage_forward, stage_backward)");
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

  void require_micro_batch(const char* operation, int micro_batch) const {
    require_argument(micro_batch >= 0 && micro_batch < static_cast<int>(m_micro.tokens.size()),
                     "trident::model::Gpt2::", operation, ": micro-batch ", micro_batch, " is not one of the ",
                     m_micro.tokens.size(), " given to set_micro_batches");
  }

  template <class View>
  static void require_boundary(const char* operation, const char* role, const View& view,
                               const activation_matrix& expected) {
    require_argument(view.extent(0) == expected.extent(0) && view.extent(1) == expected.extent(1),
                     "trident::model::Gpt2::", operation, ": the ", role, " is ", view.extent(0), " x ", view.extent(1),
                     " but the stage boundary is ", expected.extent(0), " x ", expected.extent(1));
  }

  // ---- forward and backward of the model's parts, side by side ----

  // Token + position embedding into the residual stream. Split over the vocabulary, each rank
  // adds the rows of its tokens (zero for the others), one rank adds the positions, and the
  // partial sums are reduced: exactly one non-zero term per element, so the sum is exact.
  void embedding_forward(activations_type& a) {
    const int T = a.seq;
    if (!m_group.active()) {
      ops::embedding_forward(m_space, a.embedded, a.tokens, m_params.matrix("wte.weight"),
                             m_params.matrix("wpe.weight"), T);
      return;
    }
    const auto partial = m_group.sequence_parallel ? a.partial : a.embedded;
    ops::token_embedding_forward(m_space, partial, a.tokens, m_params.matrix("wte.weight"),
                                 static_cast<int>(m_vocab.offset));
    if (m_group.rank() == 0) ops::position_embedding_forward(m_space, partial, m_params.matrix("wpe.weight"), T, true);
    tensor_parallel::LeaveRegion::forward(m_space, m_group, partial, a.embedded);
  }

  void embedding_backward(activations_type& a) {
    const int T = a.seq;
    if (!m_group.active()) {
      ops::embedding_backward(m_space, m_params.grad_matrix("wte.weight"), m_params.grad_matrix("wpe.weight"),
                              a.d_residual, a.tokens, T);
      return;
    }
    // Every rank sees the gradient of all N rows, so wpe's gradient is whole on each.
    tensor_parallel::LeaveRegion::backward(m_space, m_group, a.d_residual, a.d_full);
    ops::token_embedding_backward(m_space, m_params.grad_matrix("wte.weight"), a.d_full, a.tokens,
                                  static_cast<int>(m_vocab.offset));
    ops::position_embedding_backward(m_space, m_params.grad_matrix("wpe.weight"), a.d_full, T);
  }

  // Block k of this stage (global block first_block + k) on `residual`.
  void block_forward(activations_type& a, int k, const activation_matrix& residual, bool hooks) {
    const int l = m_stage.first_block + k;
    auto& b = a.blocks[static_cast<std::size_t>(k)];
    if (hooks) call(m_hooks.before_forward, l + 1);
    ops::layernorm_forward(m_space, b.ln_1, b.ln_1_mean, b.ln_1_rstd, residual, vec(l, "ln_1.weight"),
                           vec(l, "ln_1.bias"));
    tensor_parallel::EnterRegion::forward(m_space, m_group, b.ln_1, b.ln_1_full);
    ops::linear_forward(m_space, b.qkv, b.ln_1_full, mat(l, "attn.c_attn.weight"), vec(l, "attn.c_attn.bias"));
    ops::attention_forward(m_space, b.attn_out, b.attention, b.qkv, a.batch, a.seq, local_heads());
    row_parallel_forward(a, b.residual_attn, b.attn_out, mat(l, "attn.c_proj.weight"), vec(l, "attn.c_proj.bias"),
                         residual);
    ops::layernorm_forward(m_space, b.ln_2, b.ln_2_mean, b.ln_2_rstd, b.residual_attn, vec(l, "ln_2.weight"),
                           vec(l, "ln_2.bias"));
    tensor_parallel::EnterRegion::forward(m_space, m_group, b.ln_2, b.ln_2_full);
    ops::linear_forward(m_space, b.fc, b.ln_2_full, mat(l, "mlp.c_fc.weight"), vec(l, "mlp.c_fc.bias"));
    ops::gelu_forward(m_space, b.fc_gelu, b.fc);
    row_parallel_forward(a, b.residual_mlp, b.fc_gelu, mat(l, "mlp.c_proj.weight"), vec(l, "mlp.c_proj.bias"),
                         b.residual_attn);
  }

  // d_residual holds the gradient of block k's output; afterwards, of its input. With `defer`
  // the four weight GEMMs wait for block_weight_gradients and their output gradients are kept.
  void block_backward(activations_type& a, int k, const activation_matrix& residual, DeferredBlock* defer) {
    const int l = m_stage.first_block + k;
    auto& b = a.blocks[static_cast<std::size_t>(k)];
    const bool now = defer == nullptr;
    const auto d_fc = now ? a.d_fc : defer->d_fc;
    const auto d_qkv = now ? a.d_qkv : defer->d_qkv;
    call(m_hooks.before_backward, l + 1);
    tensor_parallel::LeaveRegion::backward(m_space, m_group, a.d_residual, a.d_full);
    if (!now) Kokkos::deep_copy(m_space, defer->d_mlp_proj, a.d_full);
    ops::linear_backward(m_space, a.d_fc_gelu, now ? gmat(l, "mlp.c_proj.weight") : matrix_view(),
                         gvec(l, "mlp.c_proj.bias"), a.d_full, b.fc_gelu, mat(l, "mlp.c_proj.weight"));
    ops::gelu_backward(m_space, d_fc, b.fc, a.d_fc_gelu);
    ops::linear_backward(m_space, a.d_ln_full, now ? gmat(l, "mlp.c_fc.weight") : matrix_view(),
                         gvec(l, "mlp.c_fc.bias"), d_fc, b.ln_2_full, mat(l, "mlp.c_fc.weight"));
    tensor_parallel::EnterRegion::backward(m_space, m_group, a.d_ln_full, a.d_ln);
    hold_accumulated_grads(layer_name(l, "ln_2.weight"), layer_name(l, "ln_2.bias"), 1);
    ops::layernorm_backward(m_space, a.d_residual, gvec(l, "ln_2.weight"), gvec(l, "ln_2.bias"), a.d_ln,
                            b.residual_attn, vec(l, "ln_2.weight"), b.ln_2_mean, b.ln_2_rstd, true);
    tensor_parallel::LeaveRegion::backward(m_space, m_group, a.d_residual, a.d_full);
    if (!now) Kokkos::deep_copy(m_space, defer->d_attn_proj, a.d_full);
    ops::linear_backward(m_space, a.d_attn_out, now ? gmat(l, "attn.c_proj.weight") : matrix_view(),
                         gvec(l, "attn.c_proj.bias"), a.d_full, b.attn_out, mat(l, "attn.c_proj.weight"));
    ops::attention_backward(m_space, d_qkv, a.d_attn_out, b.attention, b.qkv, a.batch, a.seq, local_heads());
    ops::linear_backward(m_space, a.d_ln_full, now ? gmat(l, "attn.c_attn.weight") : matrix_view(),
                         gvec(l, "attn.c_attn.bias"), d_qkv, b.ln_1_full, mat(l, "attn.c_attn.weight"));
    tensor_parallel::EnterRegion::backward(m_space, m_group, a.d_ln_full, a.d_ln);
    hold_accumulated_grads(layer_name(l, "ln_1.weight"), layer_name(l, "ln_1.bias"), 0);
    ops::layernorm_backward(m_space, a.d_residual, gvec(l, "ln_1.weight"), gvec(l, "ln_1.bias"), a.d_ln, residual,
                            vec(l, "ln_1.weight"), b.ln_1_mean, b.ln_1_rstd, true);
    reduce_sequence_parallel_grads(layer_name(l, "ln_1.weight"), layer_name(l, "ln_1.bias"), 0);
    reduce_sequence_parallel_grads(layer_name(l, "ln_2.weight"), layer_name(l, "ln_2.bias"), 1);
    if (now) call(m_hooks.after_backward, l + 1);
  }

  // The weight GEMMs block_backward deferred: dW += input^T · d(output) for each linear layer.
  void block_weight_gradients(const activations_type& a, int k, const DeferredBlock& d) {
    const int l = m_stage.first_block + k;
    const auto& b = a.blocks[static_cast<std::size_t>(k)];
    const activation_matrix none;
    ops::linear_backward(m_space, none, gmat(l, "mlp.c_proj.weight"), vector_view(), d.d_mlp_proj,
                         m_recompute ? d.fc_gelu : b.fc_gelu, mat(l, "mlp.c_proj.weight"));
    ops::linear_backward(m_space, none, gmat(l, "mlp.c_fc.weight"), vector_view(), d.d_fc,
                         m_recompute ? d.ln_2_full : b.ln_2_full, mat(l, "mlp.c_fc.weight"));
    ops::linear_backward(m_space, none, gmat(l, "attn.c_proj.weight"), vector_view(), d.d_attn_proj,
                         m_recompute ? d.attn_out : b.attn_out, mat(l, "attn.c_proj.weight"));
    ops::linear_backward(m_space, none, gmat(l, "attn.c_attn.weight"), vector_view(), d.d_qkv,
                         m_recompute ? d.ln_1_full : b.ln_1_full, mat(l, "attn.c_attn.weight"));
  }

  // Final LayerNorm, the head tied to wte, and the loss (with its gradient when loss_scale != 0).
  double head_forward(activations_type& a, const activation_matrix& residual, double loss_scale) {
    ops::layernorm_forward(m_space, a.ln_f, a.ln_f_mean, a.ln_f_rstd, residual, m_params.vector("ln_f.weight"),
                           m_params.vector("ln_f.bias"));
    tensor_parallel::EnterRegion::forward(m_space, m_group, a.ln_f, a.ln_f_full);
    ops::linear_transposed_forward(m_space, a.logits, a.ln_f_full, m_params.matrix("wte.weight"));
    if (m_group.active()) {
      require_argument(loss_scale != 0.0, "trident::model::Gpt2::forward: with tensor parallelism the forward pass ",
                       "takes the loss gradient; pass the loss scale of the coming backward");
      tensor_parallel::vocab_parallel_cross_entropy_forward_backward(m_space, m_group, a.losses, a.logits, a.targets,
                                                                     m_vocab.offset, a.vocab_parallel,
                                                                     static_cast<Scalar>(loss_scale));
    } else if (loss_scale != 0.0) {
      ops::cross_entropy_forward_backward(m_space, a.losses, a.logits, a.logits, a.targets,
                                          static_cast<Scalar>(loss_scale));
    } else {
      ops::cross_entropy_forward(m_space, a.losses, a.logits, a.targets);
    }
    return ops::sum(m_space, a.losses);
  }

  // From d(logits) (in a.logits) to d_residual, the gradient of the last block's output; with
  // `defer` the tied head's weight gradient waits for the weight pass.
  void head_backward(activations_type& a, bool defer) {
    ops::linear_transposed_backward(m_space, a.d_ln_full, defer ? matrix_view() : m_params.grad_matrix("wte.weight"),
                                    a.logits, a.ln_f_full, m_params.matrix("wte.weight"));
    tensor_parallel::EnterRegion::backward(m_space, m_group, a.d_ln_full, a.d_ln);
    hold_accumulated_grads("ln_f.weight", "ln_f.bias", 0);
    ops::layernorm_backward(m_space, a.d_residual, m_params.grad_vector("ln_f.weight"),
                            m_params.grad_vector("ln_f.bias"), a.d_ln, a.blocks.back().residual_mlp,
                            m_params.vector("ln_f.weight"), a.ln_f_mean, a.ln_f_rstd);
    reduce_sequence_parallel_grads("ln_f.weight", "ln_f.bias", 0);
  }

  // out = residual + (inp @ weight + bias), with the weight split by rows over the group: the
  // partial products are reduced (allreduce, or reduce-scatter onto this rank's rows), then
  // the bias, held whole on every rank, is added once.
  void row_parallel_forward(const activations_type& a, const activation_matrix& out, const activation_matrix& inp,
                            const matrix_view& weight, const vector_view& bias, const activation_matrix& residual) {
    if (!m_group.active()) {
      ops::linear_forward(m_space, out, inp, weight, bias);
      ops::add_inplace(m_space, out, residual);
      return;
    }
    const auto partial = m_group.sequence_parallel ? a.partial : out;
    ops::linear_forward(m_space, partial, inp, weight, vector_view());
    tensor_parallel::LeaveRegion::forward(m_space, m_group, partial, out);
    ops::bias_residual_add(m_space, out, bias, residual);
  }

  // With sequence parallelism each rank's LayerNorm sees only its rows, so one pass's (weight,
  // bias) gradient is partial: it is summed over the group before it joins what earlier
  // micro-batches accumulated. hold_accumulated_grads() sets the accumulated pair aside (in
  // `slot` 0 or 1) and zeroes it; reduce_sequence_parallel_grads() sums the pass's partial
  // gradients and adds the accumulated ones back. A pair sits side by side in the flat buffer.
  // (Through the tensors' own gradient views: under ZeRO-3 they live in the unit's gathered
  // storage, not in the flat buffer.)
  vector_view layernorm_grad_pair(const std::string& weight, const std::string& bias) const {
    const auto w = m_params.grad_vector(weight);
    const auto b = m_params.grad_vector(bias);
    require(b.data() == w.data() + w.extent(0), "trident::model::Gpt2: the gradients of '", weight, "' and '", bias,
            "' are not adjacent");
    return vector_view(w.data(), w.extent(0) + b.extent(0));
  }

  void hold_accumulated_grads(const std::string& weight, const std::string& bias, int slot) {
    if (!m_group.active() || !m_group.sequence_parallel) return;
    const auto pair = layernorm_grad_pair(weight, bias);
    if (m_accumulated.extent(1) != pair.extent(0))
      m_accumulated =
          Kokkos::View<Scalar**, Kokkos::LayoutRight, memory_space>("trident::gpt2::accumulated", 2, pair.extent(0));
    Kokkos::deep_copy(m_space, Kokkos::subview(m_accumulated, slot, Kokkos::ALL), pair);
    Kokkos::deep_copy(m_space, pair, Scalar(0));
  }

  void reduce_sequence_parallel_grads(const std::string& weight, const std::string& bias, int slot) {
    if (!m_group.active() || !m_group.sequence_parallel) return;
    const auto pair = layernorm_grad_pair(weight, bias);
    comm::allreduce(m_space, m_group.comm, pair, comm::ReduceOp::sum);
    ops::add_inplace(m_space, pair, Kokkos::subview(m_accumulated, slot, Kokkos::ALL));
  }

  // ---- pipeline stage internals ----

  // The backward of a stage, whole or (split) up to the weight pass.
  void backward_pass(int micro_batch, const activation_matrix& output_gradient, const activation_matrix& input_gradient,
                     bool split) {
    require_micro_batch(split ? "stage_backward_input" : "stage_backward", micro_batch);
    StageSlot& slot = m_pool.at(micro_batch);
    auto& a = slot.acts;
    if (split) {
      keep_for_weight_pass(slot);
      m_pool.set_bytes(micro_batch, slot.kept_bytes + deferred_bytes(slot));
    }
    const int head = m_config.layers + 1;
    if (m_stage.holds_head) {
      call(m_hooks.before_backward, head);
      head_backward(a, split);
      if (!split) call(m_hooks.after_backward, head);
    } else {
      require_boundary("stage_backward", "output gradient", output_gradient, a.d_residual);
      Kokkos::deep_copy(m_space, a.d_residual, output_gradient);
    }
    for (int k = block_count() - 1; k >= 0; --k) {
      const auto residual = block_input(a, k);
      auto* defer = split ? &slot.deferred[static_cast<std::size_t>(k)] : nullptr;
      if (m_recompute) {
        block_forward(a, k, residual, false);  // the same kernels on the same input: the same values
        if (split) keep_linear_inputs(a.blocks[static_cast<std::size_t>(k)], *defer);
      }
      block_backward(a, k, residual, defer);
    }
    if (m_stage.holds_embedding) {
      call(m_hooks.before_backward, 0);
      if (split) {
        Kokkos::deep_copy(m_space, slot.d_embedded, a.d_residual);
      } else {
        embedding_backward(a);
        call(m_hooks.after_backward, 0);
      }
    } else {
      require_boundary("stage_backward", "input gradient", input_gradient, a.d_residual);
      Kokkos::deep_copy(m_space, input_gradient, a.d_residual);
    }
  }

  StageSlot make_slot() {
    StageSlot slot;
    const bool sp = m_group.sequence_parallel;
    const int B = m_micro.batch, T = m_micro.seq;
    if (m_recompute) {
      slot.acts = activations_type(m_config, m_split, sp, B, T, block_count(), m_stage.holds_head, &m_workspace, true);
    } else if (m_workspace.blocks.empty()) {  // the first slot owns the scratch all slots share
      slot.acts = activations_type(m_config, m_split, sp, B, T, block_count(), m_stage.holds_head);
      m_workspace = slot.acts;
    } else {
      slot.acts = activations_type(m_config, m_split, sp, B, T, block_count(), m_stage.holds_head, &m_workspace);
    }
    slot.kept_bytes = kept_bytes(slot.acts);
    return slot;
  }

  void keep_for_weight_pass(StageSlot& slot) {
    slot.weight_pending = true;
    if (!slot.deferred.empty() || block_count() == 0) return;
    const auto& a = slot.acts;
    const auto& first = a.blocks[0];
    const auto like = [](const activation_matrix& m, const char* label) {
      return activation_matrix(Kokkos::view_alloc(Kokkos::WithoutInitializing, std::string(label)), m.extent(0),
                               m.extent(1));
    };
    for (int k = 0; k < block_count(); ++k) {
      DeferredBlock d;
      d.d_mlp_proj = like(a.d_full, "trident::gpt2::deferred::d_mlp_proj");
      d.d_fc = like(a.d_fc, "trident::gpt2::deferred::d_fc");
      d.d_attn_proj = like(a.d_full, "trident::gpt2::deferred::d_attn_proj");
      d.d_qkv = like(a.d_qkv, "trident::gpt2::deferred::d_qkv");
      if (m_recompute) {
        d.ln_1_full = like(first.ln_1_full, "trident::gpt2::deferred::ln_1_full");
        d.attn_out = like(first.attn_out, "trident::gpt2::deferred::attn_out");
        d.ln_2_full = like(first.ln_2_full, "trident::gpt2::deferred::ln_2_full");
        d.fc_gelu = like(first.fc_gelu, "trident::gpt2::deferred::fc_gelu");
      }
      slot.deferred.push_back(d);
    }
    if (m_stage.holds_embedding) slot.d_embedded = like(a.d_residual, "trident::gpt2::deferred::d_embedded");
  }

  void keep_linear_inputs(const typename activations_type::Block& b, const DeferredBlock& d) const {
    Kokkos::deep_copy(m_space, d.ln_1_full, b.ln_1_full);
    Kokkos::deep_copy(m_space, d.attn_out, b.attn_out);
    Kokkos::deep_copy(m_space, d.ln_2_full, b.ln_2_full);
    Kokkos::deep_copy(m_space, d.fc_gelu, b.fc_gelu);
  }

  static std::size_t deferred_bytes(const StageSlot& slot) {
    std::size_t total = slot.d_embedded.span();
    for (const auto& d : slot.deferred)
      for (const auto* m :
           {&d.d_mlp_proj, &d.d_fc, &d.d_attn_proj, &d.d_qkv, &d.ln_1_full, &d.attn_out, &d.ln_2_full, &d.fc_gelu})
        total += m->span();
    return total * sizeof(Scalar);
  }

  // What all slots share: the scratch, and with recomputation the whole workspace.
  std::set<const void*> shared_allocations() const {
    std::set<const void*> shared;
    const auto add = [&](const auto& view) {
      if (view.data() != nullptr) shared.insert(view.data());
    };
    if (m_recompute) {
      m_workspace.for_each_view(add);
    } else {
      m_workspace.for_each_scratch_view(add);
    }
    return shared;
  }

  // The bytes a slot keeps for its own micro-batch.
  std::size_t kept_bytes(const activations_type& acts) const {
    std::set<const void*> seen = shared_allocations();
    std::size_t total = 0;
    acts.for_each_view([&](const auto& view) {
      using value_type = typename std::decay_t<decltype(view)>::value_type;
      if (view.data() != nullptr && seen.insert(view.data()).second) total += view.span() * sizeof(value_type);
    });
    return total;
  }

  static void call(const std::function<void(int)>& hook, int unit) {
    if (hook) hook(unit);
  }

  void copy_tokens(const token_view& device, const std::vector<int>& host) const {
    Kokkos::View<const int*, Kokkos::HostSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>> source(host.data(),
                                                                                                host.size());
    Kokkos::deep_copy(m_space, device, source);
  }

  ExecutionSpace m_space;
  Gpt2Config m_config;
  group_type m_group;
  Gpt2Stage m_stage;
  bool m_recompute = false;
  Gpt2Split m_split;
  tensor_parallel::Range m_vocab;
  store_type m_params;
  activations_type m_acts;
  Gpt2Hooks m_hooks;
  double m_loss_scale_taken = 0.0;  // non-zero: the logits already hold d(loss)/d(logits)
  Kokkos::View<Scalar**, Kokkos::LayoutRight, memory_space> m_accumulated;  // [2, 2C] LayerNorm gradients set aside

  // Pipeline stage state: the step's micro-batches, the slots of those in flight, and the
  // scratch they share (the first slot's, or the recomputation workspace).
  MicroBatches m_micro;
  pipeline::ActivationPool<StageSlot> m_pool;
  activations_type m_workspace;
};

}  // namespace trident::model
