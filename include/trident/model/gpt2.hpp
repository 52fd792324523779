#pragma once
// GPT-2 (GPT2LMHeadModel): pre-LayerNorm blocks, learned positions, the input embedding tied
// to the output head, LayerNorm eps 1e-5, biases everywhere, no dropout. Forward and backward
// read like the math, layer by layer; every kernel is in ops/, every communication in
// tensor_parallel/mappings.hpp.

#include <trident/core/parameter_store.hpp>
#include <trident/core/profiling.hpp>
#include <trident/model/gpt2_config.hpp>
#include <trident/model/gpt2_parameters.hpp>
#include <trident/ops/ops.hpp>
#include <trident/tensor_parallel/mappings.hpp>
#include <trident/tensor_parallel/vocab_parallel_cross_entropy.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <functional>
#include <string>
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
    matrix attn_out;              // (N, Cl) this rank's heads, before c_proj
    matrix residual_attn;         // (Nl, C) x + attention branch
    matrix ln_2;                  // (Nl, C)
    vector ln_2_mean, ln_2_rstd;
    matrix ln_2_full;             // (N, C)
    matrix fc;                    // (N, Fl) before GELU
    matrix fc_gelu;               // (N, Fl)
    matrix residual_mlp;          // (Nl, C) block output
  };

  int batch = 0, seq = 0;
  Kokkos::View<int*, MemorySpace> tokens, targets;  // (N), every rank of the group
  matrix embedded;                                  // (Nl, C)
  std::vector<Block> blocks;
  matrix ln_f;                                      // (Nl, C)
  vector ln_f_mean, ln_f_rstd;
  matrix ln_f_full;                                 // (N, C)
  matrix logits;                                    // (N, Vl); holds d(logits) once the loss gradient is taken
  vector losses;                                    // (N)
  matrix partial;                                   // (N, C) row-parallel partial sums (sequence parallel)

  // Gradient scratch, reused by every block.
  matrix d_residual, d_ln;          // (Nl, C)
  matrix d_full, d_ln_full;         // (N, C)
  matrix d_attn_out, d_qkv, d_fc, d_fc_gelu;
  tensor_parallel::VocabParallelScratch<Scalar, MemorySpace> vocab_parallel;

  // Bytes held, attention scratch shared between blocks counted once.
  std::size_t bytes() const {
    std::size_t total = (tokens.span() + targets.span()) * sizeof(int);
    auto add = [&](const matrix& m, const matrix& unless_alias_of) {
      if (m.data() != unless_alias_of.data()) total += m.span() * sizeof(Scalar);
    };
    for (const auto* m : {&embedded, &ln_f, &logits, &d_residual, &d_ln, &d_attn_out, &d_qkv, &d_fc, &d_fc_gelu})
      total += m->span() * sizeof(Scalar);
    add(ln_f_full, ln_f);
    add(partial, matrix());
    add(d_full, d_residual);
    add(d_ln_full, d_ln);
    total += (ln_f_mean.span() + ln_f_rstd.span() + losses.span()) * sizeof(Scalar);
    for (std::size_t l = 0; l < blocks.size(); ++l) {
      const auto& b = blocks[l];
      for (const auto* m : {&b.ln_1, &b.qkv, &b.attn_out, &b.residual_attn, &b.ln_2, &b.fc, &b.fc_gelu, &b.residual_mlp})
        total += m->span() * sizeof(Scalar);
      add(b.ln_1_full, b.ln_1);
      add(b.ln_2_full, b.ln_2);
      total += (b.ln_1_mean.span() + b.ln_1_rstd.span() + b.ln_2_mean.span() + b.ln_2_rstd.span()) * sizeof(Scalar);
      total += l == 0 ? b.attention.bytes() : b.attention.probs.span() * sizeof(Scalar);
    }
    return total;
  }

  Gpt2Activations() = default;
  Gpt2Activations(const Gpt2Config& config, const Gpt2Split& split, bool sequence_parallel, int batch_size,
                  int seq_len)
      : batch(batch_size), seq(seq_len) {
    const int tp = split.tp_size;
    const auto n = static_cast<std::size_t>(batch_size) * static_cast<std::size_t>(seq_len);
    require_argument(!sequence_parallel || n % static_cast<std::size_t>(tp) == 0,
                     "trident::model::Gpt2: sequence parallelism splits the ", n, " rows of a micro-batch over ", tp,
                     " ranks, which does not divide them");
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
    for (int l = 0; l < config.layers; ++l) {
      Block b;
      b.ln_1 = matrix("trident::gpt2::ln_1", nl, c);
      b.ln_1_mean = vector("trident::gpt2::ln_1_mean", nl);
      b.ln_1_rstd = vector("trident::gpt2::ln_1_rstd", nl);
      b.ln_1_full = full_or_alias(b.ln_1, "trident::gpt2::ln_1_full");
      b.qkv = matrix("trident::gpt2::qkv", n, 3 * cl);
      // Attention scratch is shared by all blocks; each keeps only its own probabilities.
      b.attention = l == 0 ? ops::AttentionBuffers<Scalar, MemorySpace>(batch_size, seq_len, local_heads,
                                                                         config.head_dim())
                           : ops::AttentionBuffers<Scalar, MemorySpace>::sharing_scratch_with(blocks[0].attention);
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
    ln_f = matrix("trident::gpt2::ln_f", nl, c);
    ln_f_mean = vector("trident::gpt2::ln_f_mean", nl);
    ln_f_rstd = vector("trident::gpt2::ln_f_rstd", nl);
    ln_f_full = full_or_alias(ln_f, "trident::gpt2::ln_f_full");
    logits = matrix("trident::gpt2::logits", n, vl);
    losses = vector("trident::gpt2::losses", n);
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

// Callbacks around the model's units, so data parallelism can start reducing a unit's
// gradients as soon as they are final, and ZeRO-3 can gather a unit's parameters just before
// they are needed. Units: 0 = embedding (wte, wpe), 1..L = blocks, L+1 = head (ln_f, and wte
// used as the output matrix). Backward visits head, blocks L..1, then embedding; wte's
// gradient is final only after the embedding unit.
struct Gpt2Hooks {
  std::function<void(int unit)> before_forward;
  std::function<void(int unit)> before_backward;
  std::function<void(int unit)> after_backward;
};

// GPT-2, or this rank's tensor-parallel shard of it. With a group of one rank it is the
// one-rank model; otherwise every layer is the one-rank layer between the conjugate
// mappings of tensor_parallel/mappings.hpp (Megatron-LM's scheme, optionally with sequence
// parallelism), and every rank of the group computes the same loss.
template <class Scalar, class ExecutionSpace>
class Gpt2 {
 public:
  using memory_space = typename ExecutionSpace::memory_space;
  using store_type = ParameterStore<Scalar, memory_space>;
  using activations_type = Gpt2Activations<Scalar, memory_space>;
  using token_view = Kokkos::View<int*, memory_space>;
  using group_type = tensor_parallel::TensorParallelGroup;

  Gpt2(const ExecutionSpace& space, const Gpt2Config& config, group_type group = group_type::single())
      : m_space(space), m_config(config), m_group(std::move(group)) {
    config.validate();
    if (!m_group.active()) m_group.sequence_parallel = false;  // one rank: nothing to shard
    m_split = Gpt2Split{m_group.size(), m_group.rank()};
    declare_gpt2_parameters(m_params, config, m_split);
    m_params.allocate("trident::gpt2");
    m_vocab = gpt2_vocab_range(config, m_split);
  }

  const Gpt2Config& config() const { return m_config; }
  const Gpt2Split& split() const { return m_split; }
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
    require_argument(seq >= 1 && seq <= m_config.seq, "trident::model::Gpt2::forward: sequence length ", seq,
                     " is outside [1, ", m_config.seq, "]");
    require_argument(tokens.size() == static_cast<std::size_t>(batch) * static_cast<std::size_t>(seq) &&
                         targets.size() == tokens.size(),
                     "trident::model::Gpt2::forward: expected ", batch, "x", seq, " tokens and targets, got ",
                     tokens.size(), " and ", targets.size());
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      require_argument(tokens[i] >= 0 && tokens[i] < m_config.vocab && targets[i] >= 0 && targets[i] < m_config.vocab,
                       "trident::model::Gpt2::forward: token ", tokens[i], " or target ", targets[i], " at position ",
                       i, " is outside the vocabulary [0, ", m_config.vocab, ")");
    }
    if (m_acts.batch != batch || m_acts.seq != seq)
      m_acts = activations_type(m_config, m_split, m_group.sequence_parallel, batch, seq);
    copy_tokens(m_acts.tokens, tokens);
    copy_tokens(m_acts.targets, targets);
    return forward_device(batch, seq, loss_scale);
  }

  // The same with tokens already in device memory.
  double forward_device(int batch, int seq, double loss_scale = 0.0) {
    auto& a = m_acts;
    const int T = seq;
    call(m_hooks.before_forward, 0);
    embedding_forward(T);
    auto residual = a.embedded;
    for (int l = 0; l < m_config.layers; ++l) {
      auto& b = a.blocks[static_cast<std::size_t>(l)];
      call(m_hooks.before_forward, l + 1);
      ops::layernorm_forward(m_space, b.ln_1, b.ln_1_mean, b.ln_1_rstd, residual, vec(l, "ln_1.weight"),
                             vec(l, "ln_1.bias"));
      tensor_parallel::EnterRegion::forward(m_space, m_group, b.ln_1, b.ln_1_full);
      ops::linear_forward(m_space, b.qkv, b.ln_1_full, mat(l, "attn.c_attn.weight"), vec(l, "attn.c_attn.bias"));
      ops::attention_forward(m_space, b.attn_out, b.attention, b.qkv, batch, T, local_heads());
      row_parallel_forward(b.residual_attn, b.attn_out, mat(l, "attn.c_proj.weight"), vec(l, "attn.c_proj.bias"),
                           residual);
      ops::layernorm_forward(m_space, b.ln_2, b.ln_2_mean, b.ln_2_rstd, b.residual_attn, vec(l, "ln_2.weight"),
                             vec(l, "ln_2.bias"));
      tensor_parallel::EnterRegion::forward(m_space, m_group, b.ln_2, b.ln_2_full);
      ops::linear_forward(m_space, b.fc, b.ln_2_full, mat(l, "mlp.c_fc.weight"), vec(l, "mlp.c_fc.bias"));
      ops::gelu_forward(m_space, b.fc_gelu, b.fc);
      row_parallel_forward(b.residual_mlp, b.fc_gelu, mat(l, "mlp.c_proj.weight"), vec(l, "mlp.c_proj.bias"),
                           b.residual_attn);
      residual = b.residual_mlp;
    }
    call(m_hooks.before_forward, m_config.layers + 1);
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
    m_loss_scale_taken = loss_scale;
    return ops::sum(m_space, a.losses);
  }

  // Backward of the last forward, for loss = loss_scale * (sum of its token losses); gradients
  // ACCUMULATE into parameters().grads(), so micro-batches add up to the full batch.
  void backward(double loss_scale) {
    ScopedRegion region("trident::model::Gpt2::backward");
    auto& a = m_acts;
    const int T = a.seq;
    const int head = m_config.layers + 1;
    call(m_hooks.before_backward, head);
    if (m_loss_scale_taken == 0.0) {
      ops::cross_entropy_backward(m_space, a.logits, a.logits, a.targets, static_cast<Scalar>(loss_scale));
    } else {
      require_argument(m_loss_scale_taken == loss_scale, "trident::model::Gpt2::backward: forward took the loss ",
                       "gradient for scale ", m_loss_scale_taken, " but backward asks for ", loss_scale);
    }
    m_loss_scale_taken = 0.0;
    ops::linear_transposed_backward(m_space, a.d_ln_full, m_params.grad_matrix("wte.weight"), a.logits, a.ln_f_full,
                                    m_params.matrix("wte.weight"));
    tensor_parallel::EnterRegion::backward(m_space, m_group, a.d_ln_full, a.d_ln);
    auto last = m_config.layers > 0 ? a.blocks.back().residual_mlp : a.embedded;
    ops::layernorm_backward(m_space, a.d_residual, m_params.grad_vector("ln_f.weight"),
                            m_params.grad_vector("ln_f.bias"), a.d_ln, last, m_params.vector("ln_f.weight"),
                            a.ln_f_mean, a.ln_f_rstd);
    reduce_sequence_parallel_grads("ln_f.weight", "ln_f.bias");
    call(m_hooks.after_backward, head);
    // d_residual now holds d(loss)/d(block output); each block adds its branches' gradients.
    for (int l = m_config.layers - 1; l >= 0; --l) {
      auto& b = a.blocks[static_cast<std::size_t>(l)];
      auto residual = l == 0 ? a.embedded : a.blocks[static_cast<std::size_t>(l - 1)].residual_mlp;
      call(m_hooks.before_backward, l + 1);
      tensor_parallel::LeaveRegion::backward(m_space, m_group, a.d_residual, a.d_full);
      ops::linear_backward(m_space, a.d_fc_gelu, gmat(l, "mlp.c_proj.weight"), gvec(l, "mlp.c_proj.bias"), a.d_full,
                           b.fc_gelu, mat(l, "mlp.c_proj.weight"));
      ops::gelu_backward(m_space, a.d_fc, b.fc, a.d_fc_gelu);
      ops::linear_backward(m_space, a.d_ln_full, gmat(l, "mlp.c_fc.weight"), gvec(l, "mlp.c_fc.bias"), a.d_fc,
                           b.ln_2_full, mat(l, "mlp.c_fc.weight"));
      tensor_parallel::EnterRegion::backward(m_space, m_group, a.d_ln_full, a.d_ln);
      ops::layernorm_backward(m_space, a.d_residual, gvec(l, "ln_2.weight"), gvec(l, "ln_2.bias"), a.d_ln,
                              b.residual_attn, vec(l, "ln_2.weight"), b.ln_2_mean, b.ln_2_rstd, true);
      tensor_parallel::LeaveRegion::backward(m_space, m_group, a.d_residual, a.d_full);
      ops::linear_backward(m_space, a.d_attn_out, gmat(l, "attn.c_proj.weight"), gvec(l, "attn.c_proj.bias"),
                           a.d_full, b.attn_out, mat(l, "attn.c_proj.weight"));
      ops::attention_backward(m_space, a.d_qkv, a.d_attn_out, b.attention, b.qkv, a.batch, T, local_heads());
      ops::linear_backward(m_space, a.d_ln_full, gmat(l, "attn.c_attn.weight"), gvec(l, "attn.c_attn.bias"), a.d_qkv,
                           b.ln_1_full, mat(l, "attn.c_attn.weight"));
      tensor_parallel::EnterRegion::backward(m_space, m_group, a.d_ln_full, a.d_ln);
      ops::layernorm_backward(m_space, a.d_residual, gvec(l, "ln_1.weight"), gvec(l, "ln_1.bias"), a.d_ln, residual,
                              vec(l, "ln_1.weight"), b.ln_1_mean, b.ln_1_rstd, true);
      reduce_sequence_parallel_grads(layer_name(l, "ln_1.weight"), layer_name(l, "ln_1.bias"));
      reduce_sequence_parallel_grads(layer_name(l, "ln_2.weight"), layer_name(l, "ln_2.bias"));
      call(m_hooks.after_backward, l + 1);
    }
    call(m_hooks.before_backward, 0);
    embedding_backward(T);
    call(m_hooks.after_backward, 0);
  }

  const activations_type& activations() const { return m_acts; }

 private:
  using matrix_view = typename store_type::matrix_view;
  using vector_view = typename store_type::vector_view;
  using activation_matrix = typename activations_type::matrix;

  matrix_view mat(int l, const char* suffix) const { return m_params.matrix(layer_name(l, suffix)); }
  vector_view vec(int l, const char* suffix) const { return m_params.vector(layer_name(l, suffix)); }
  matrix_view gmat(int l, const char* suffix) const { return m_params.grad_matrix(layer_name(l, suffix)); }
  vector_view gvec(int l, const char* suffix) const { return m_params.grad_vector(layer_name(l, suffix)); }
  int local_heads() const { return m_config.heads / m_split.tp_size; }

  // Token + position embedding into the residual stream. Split over the vocabulary, each rank
  // adds the rows of its tokens (zero for the others), one rank adds the positions, and the
  // partial sums are reduced: exactly one non-zero term per element, so the sum is exact.
  void embedding_forward(int T) {
    auto& a = m_acts;
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

  void embedding_backward(int T) {
    auto& a = m_acts;
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

  // out = residual + (inp @ weight + bias), with the weight split by rows over the group: the
  // partial products are reduced (allreduce, or reduce-scatter onto this rank's rows), then
  // the bias, held whole on every rank, is added once.
  void row_parallel_forward(const activation_matrix& out, const activation_matrix& inp, const matrix_view& weight,
                            const vector_view& bias, const activation_matrix& residual) {
    if (!m_group.active()) {
      ops::linear_forward(m_space, out, inp, weight, bias);
      ops::add_inplace(m_space, out, residual);
      return;
    }
    const auto partial = m_group.sequence_parallel ? m_acts.partial : out;
    ops::linear_forward(m_space, partial, inp, weight, vector_view());
    tensor_parallel::LeaveRegion::forward(m_space, m_group, partial, out);
    ops::bias_residual_add(m_space, out, bias, residual);
  }

  // With sequence parallelism each rank's LayerNorm saw only its rows: sum the partial
  // gradients of a (weight, bias) pair, which sit side by side in the flat buffer.
  void reduce_sequence_parallel_grads(const std::string& weight, const std::string& bias) {
    if (!m_group.active() || !m_group.sequence_parallel) return;
    const auto& w = m_params.info(weight);
    const auto& b = m_params.info(bias);
    require(b.offset == w.offset + w.size(), "trident::model::Gpt2: '", weight, "' and '", bias, "' are not adjacent");
    auto pair = Kokkos::subview(m_params.grads(), Kokkos::make_pair(w.offset, b.offset + b.size()));
    comm::allreduce(m_space, m_group.comm, pair, comm::ReduceOp::sum);
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
  Gpt2Split m_split;
  tensor_parallel::Range m_vocab;
  store_type m_params;
  activations_type m_acts;
  Gpt2Hooks m_hooks;
  double m_loss_scale_taken = 0.0;  // non-zero: the logits already hold d(loss)/d(logits)
};

}  // namespace trident::model
