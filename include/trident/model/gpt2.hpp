#pragma once
// GPT-2 on one rank (GPT2LMHeadModel): pre-LayerNorm blocks, learned positions, the input
// embedding tied to the output head, LayerNorm eps 1e-5, biases everywhere, no dropout.
// Forward and backward read like the math, layer by layer; every kernel is in ops/.

#include <trident/core/parameter_store.hpp>
#include <trident/core/profiling.hpp>
#include <trident/model/gpt2_config.hpp>
#include <trident/model/gpt2_parameters.hpp>
#include <trident/ops/ops.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <functional>
#include <vector>

namespace trident::model {

// What one micro-batch of B sequences of T tokens leaves behind for the backward pass.
template <class Scalar, class MemorySpace>
struct Gpt2Activations {
  using matrix = Kokkos::View<Scalar**, Kokkos::LayoutRight, MemorySpace>;
  using vector = Kokkos::View<Scalar*, Kokkos::LayoutRight, MemorySpace>;

  struct Block {
    matrix ln_1;          // (N, C)
    vector ln_1_mean, ln_1_rstd;  // (N)
    matrix qkv;           // (N, 3C)
    ops::AttentionBuffers<Scalar, MemorySpace> attention;
    matrix attn_out;      // (N, C) heads concatenated, before c_proj
    matrix residual_attn; // (N, C) x + attention branch
    matrix ln_2;          // (N, C)
    vector ln_2_mean, ln_2_rstd;
    matrix fc;            // (N, 4C) before GELU
    matrix fc_gelu;       // (N, 4C)
    matrix residual_mlp;  // (N, C) block output
  };

  int batch = 0, seq = 0;
  Kokkos::View<int*, MemorySpace> tokens, targets;  // (N)
  matrix embedded;                                  // (N, C)
  std::vector<Block> blocks;
  matrix ln_f;  // (N, C)
  vector ln_f_mean, ln_f_rstd;
  matrix logits;  // (N, V); holds d(logits) once the loss gradient is taken
  vector losses;  // (N)

  // Gradient scratch, reused by every block.
  matrix d_residual, d_ln, d_attn_out, d_qkv, d_fc, d_fc_gelu;

  // Bytes held, attention scratch shared between blocks counted once.
  std::size_t bytes() const {
    std::size_t total = (tokens.span() + targets.span()) * sizeof(int);
    for (const auto* m : {&embedded, &ln_f, &logits, &d_residual, &d_ln, &d_attn_out, &d_qkv, &d_fc, &d_fc_gelu})
      total += m->span() * sizeof(Scalar);
    total += (ln_f_mean.span() + ln_f_rstd.span() + losses.span()) * sizeof(Scalar);
    for (std::size_t l = 0; l < blocks.size(); ++l) {
      const auto& b = blocks[l];
      for (const auto* m : {&b.ln_1, &b.qkv, &b.attn_out, &b.residual_attn, &b.ln_2, &b.fc, &b.fc_gelu, &b.residual_mlp})
        total += m->span() * sizeof(Scalar);
      total += (b.ln_1_mean.span() + b.ln_1_rstd.span() + b.ln_2_mean.span() + b.ln_2_rstd.span()) * sizeof(Scalar);
      total += l == 0 ? b.attention.bytes() : b.attention.probs.span() * sizeof(Scalar);
    }
    return total;
  }

  Gpt2Activations() = default;
  Gpt2Activations(const Gpt2Config& config, int batch_size, int seq_len) : batch(batch_size), seq(seq_len) {
    const auto n = static_cast<std::size_t>(batch_size) * static_cast<std::size_t>(seq_len);
    const auto c = static_cast<std::size_t>(config.hidden);
    tokens = Kokkos::View<int*, MemorySpace>("trident::gpt2::tokens", n);
    targets = Kokkos::View<int*, MemorySpace>("trident::gpt2::targets", n);
    embedded = matrix("trident::gpt2::embedded", n, c);
    for (int l = 0; l < config.layers; ++l) {
      Block b;
      b.ln_1 = matrix("trident::gpt2::ln_1", n, c);
      b.ln_1_mean = vector("trident::gpt2::ln_1_mean", n);
      b.ln_1_rstd = vector("trident::gpt2::ln_1_rstd", n);
      b.qkv = matrix("trident::gpt2::qkv", n, 3 * c);
      // Attention scratch is shared by all blocks; each keeps only its own probabilities.
      b.attention = l == 0 ? ops::AttentionBuffers<Scalar, MemorySpace>(batch_size, seq_len, config.heads,
                                                                         config.head_dim())
                           : ops::AttentionBuffers<Scalar, MemorySpace>::sharing_scratch_with(blocks[0].attention);
      b.attn_out = matrix("trident::gpt2::attn_out", n, c);
      b.residual_attn = matrix("trident::gpt2::residual_attn", n, c);
      b.ln_2 = matrix("trident::gpt2::ln_2", n, c);
      b.ln_2_mean = vector("trident::gpt2::ln_2_mean", n);
      b.ln_2_rstd = vector("trident::gpt2::ln_2_rstd", n);
      b.fc = matrix("trident::gpt2::fc", n, 4 * c);
      b.fc_gelu = matrix("trident::gpt2::fc_gelu", n, 4 * c);
      b.residual_mlp = matrix("trident::gpt2::residual_mlp", n, c);
      blocks.push_back(b);
    }
    ln_f = matrix("trident::gpt2::ln_f", n, c);
    ln_f_mean = vector("trident::gpt2::ln_f_mean", n);
    ln_f_rstd = vector("trident::gpt2::ln_f_rstd", n);
    logits = matrix("trident::gpt2::logits", n, static_cast<std::size_t>(config.vocab));
    losses = vector("trident::gpt2::losses", n);
    d_residual = matrix("trident::gpt2::d_residual", n, c);
    d_ln = matrix("trident::gpt2::d_ln", n, c);
    d_attn_out = matrix("trident::gpt2::d_attn_out", n, c);
    d_qkv = matrix("trident::gpt2::d_qkv", n, 3 * c);
    d_fc = matrix("trident::gpt2::d_fc", n, 4 * c);
    d_fc_gelu = matrix("trident::gpt2::d_fc_gelu", n, 4 * c);
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

template <class Scalar, class ExecutionSpace>
class Gpt2 {
 public:
  using memory_space = typename ExecutionSpace::memory_space;
  using store_type = ParameterStore<Scalar, memory_space>;
  using activations_type = Gpt2Activations<Scalar, memory_space>;
  using token_view = Kokkos::View<int*, memory_space>;

  Gpt2(const ExecutionSpace& space, const Gpt2Config& config) : m_space(space), m_config(config) {
    config.validate();
    declare_gpt2_parameters(m_params, config);
    m_params.allocate("trident::gpt2");
  }

  const Gpt2Config& config() const { return m_config; }
  store_type& parameters() { return m_params; }
  const store_type& parameters() const { return m_params; }
  const ExecutionSpace& space() const { return m_space; }

  void initialize(std::uint64_t seed) { initialize_gpt2_parameters(m_space, m_params, m_config, seed); }

  void set_hooks(Gpt2Hooks hooks) { m_hooks = std::move(hooks); }
  int unit_count() const { return m_config.layers + 2; }

  void zero_grad() { Kokkos::deep_copy(m_space, m_params.grads(), Scalar(0)); }

  // Runs B sequences of T tokens (host vectors of B*T tokens each) and returns the SUM of the
  // per-token cross-entropy losses (divide by the global token count for the mean).
  // A non-zero `loss_scale` also takes the loss gradient for backward(loss_scale) in the same
  // pass over the logits (training); zero keeps the logits for inspection.
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
    if (m_acts.batch != batch || m_acts.seq != seq) m_acts = activations_type(m_config, batch, seq);
    copy_tokens(m_acts.tokens, tokens);
    copy_tokens(m_acts.targets, targets);
    return forward_device(batch, seq, loss_scale);
  }

  // The same with tokens already in device memory.
  double forward_device(int batch, int seq, double loss_scale = 0.0) {
    auto& a = m_acts;
    const int T = seq;
    call(m_hooks.before_forward, 0);
    ops::embedding_forward(m_space, a.embedded, a.tokens, m_params.matrix("wte.weight"),
                           m_params.matrix("wpe.weight"), T);
    auto residual = a.embedded;
    for (int l = 0; l < m_config.layers; ++l) {
      auto& b = a.blocks[static_cast<std::size_t>(l)];
      call(m_hooks.before_forward, l + 1);
      ops::layernorm_forward(m_space, b.ln_1, b.ln_1_mean, b.ln_1_rstd, residual, vec(l, "ln_1.weight"),
                             vec(l, "ln_1.bias"));
      ops::linear_forward(m_space, b.qkv, b.ln_1, mat(l, "attn.c_attn.weight"), vec(l, "attn.c_attn.bias"));
      ops::attention_forward(m_space, b.attn_out, b.attention, b.qkv, batch, T, m_config.heads);
      ops::linear_forward(m_space, b.residual_attn, b.attn_out, mat(l, "attn.c_proj.weight"),
                          vec(l, "attn.c_proj.bias"));
      ops::add_inplace(m_space, b.residual_attn, residual);
      ops::layernorm_forward(m_space, b.ln_2, b.ln_2_mean, b.ln_2_rstd, b.residual_attn, vec(l, "ln_2.weight"),
                             vec(l, "ln_2.bias"));
      ops::linear_forward(m_space, b.fc, b.ln_2, mat(l, "mlp.c_fc.weight"), vec(l, "mlp.c_fc.bias"));
      ops::gelu_forward(m_space, b.fc_gelu, b.fc);
      ops::linear_forward(m_space, b.residual_mlp, b.fc_gelu, mat(l, "mlp.c_proj.weight"), vec(l, "mlp.c_proj.bias"));
      ops::add_inplace(m_space, b.residual_mlp, b.residual_attn);
      residual = b.residual_mlp;
    }
    call(m_hooks.before_forward, m_config.layers + 1);
    ops::layernorm_forward(m_space, a.ln_f, a.ln_f_mean, a.ln_f_rstd, residual, m_params.vector("ln_f.weight"),
                           m_params.vector("ln_f.bias"));
    ops::linear_transposed_forward(m_space, a.logits, a.ln_f, m_params.matrix("wte.weight"));
    if (loss_scale != 0.0) {
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
    ops::linear_transposed_backward(m_space, a.d_ln, m_params.grad_matrix("wte.weight"), a.logits, a.ln_f,
                                    m_params.matrix("wte.weight"));
    auto last = m_config.layers > 0 ? a.blocks.back().residual_mlp : a.embedded;
    ops::layernorm_backward(m_space, a.d_residual, m_params.grad_vector("ln_f.weight"),
                            m_params.grad_vector("ln_f.bias"), a.d_ln, last, m_params.vector("ln_f.weight"),
                            a.ln_f_mean, a.ln_f_rstd);
    call(m_hooks.after_backward, head);
    // d_residual now holds d(loss)/d(block output); each block adds its branches' gradients.
    for (int l = m_config.layers - 1; l >= 0; --l) {
      auto& b = a.blocks[static_cast<std::size_t>(l)];
      auto residual = l == 0 ? a.embedded : a.blocks[static_cast<std::size_t>(l - 1)].residual_mlp;
      call(m_hooks.before_backward, l + 1);
      ops::linear_backward(m_space, a.d_fc_gelu, gmat(l, "mlp.c_proj.weight"), gvec(l, "mlp.c_proj.bias"),
                           a.d_residual, b.fc_gelu, mat(l, "mlp.c_proj.weight"));
      ops::gelu_backward(m_space, a.d_fc, b.fc, a.d_fc_gelu);
      ops::linear_backward(m_space, a.d_ln, gmat(l, "mlp.c_fc.weight"), gvec(l, "mlp.c_fc.bias"), a.d_fc, b.ln_2,
                           mat(l, "mlp.c_fc.weight"));
      ops::layernorm_backward(m_space, a.d_residual, gvec(l, "ln_2.weight"), gvec(l, "ln_2.bias"), a.d_ln,
                              b.residual_attn, vec(l, "ln_2.weight"), b.ln_2_mean, b.ln_2_rstd, true);
      ops::linear_backward(m_space, a.d_attn_out, gmat(l, "attn.c_proj.weight"), gvec(l, "attn.c_proj.bias"),
                           a.d_residual, b.attn_out, mat(l, "attn.c_proj.weight"));
      ops::attention_backward(m_space, a.d_qkv, a.d_attn_out, b.attention, b.qkv, a.batch, T, m_config.heads);
      ops::linear_backward(m_space, a.d_ln, gmat(l, "attn.c_attn.weight"), gvec(l, "attn.c_attn.bias"), a.d_qkv,
                           b.ln_1, mat(l, "attn.c_attn.weight"));
      ops::layernorm_backward(m_space, a.d_residual, gvec(l, "ln_1.weight"), gvec(l, "ln_1.bias"), a.d_ln, residual,
                              vec(l, "ln_1.weight"), b.ln_1_mean, b.ln_1_rstd, true);
      call(m_hooks.after_backward, l + 1);
    }
    call(m_hooks.before_backward, 0);
    ops::embedding_backward(m_space, m_params.grad_matrix("wte.weight"), m_params.grad_matrix("wpe.weight"),
                            a.d_residual, a.tokens, T);
    call(m_hooks.after_backward, 0);
  }

  const activations_type& activations() const { return m_acts; }

 private:
  using matrix_view = typename store_type::matrix_view;
  using vector_view = typename store_type::vector_view;

  matrix_view mat(int l, const char* suffix) const { return m_params.matrix(layer_name(l, suffix)); }
  vector_view vec(int l, const char* suffix) const { return m_params.vector(layer_name(l, suffix)); }
  matrix_view gmat(int l, const char* suffix) const { return m_params.grad_matrix(layer_name(l, suffix)); }
  vector_view gvec(int l, const char* suffix) const { return m_params.grad_vector(layer_name(l, suffix)); }

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
  store_type m_params;
  activations_type m_acts;
  Gpt2Hooks m_hooks;
  double m_loss_scale_taken = 0.0;  // non-zero: the logits already hold d(loss)/d(logits)
};

}  // namespace trident::model
