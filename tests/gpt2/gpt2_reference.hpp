#pragma once
// An independent double-precision GPT-2 for tests: the Hugging Face GPT2LMHeadModel network
// (pre-LayerNorm blocks, Conv1D weights [in,out], tanh GELU, tied output head, no dropout)
// with its loss and a hand-written backward pass. Plain loops over std::vector<double> and
// no library headers, so that agreement with the library means something.
//
// Layout: every array is row-major; a comment gives its shape in terms of
// B (batch), T (positions), C (hidden), NH (heads), hs = C / NH, V (vocabulary).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace trident_test::reference {

struct Gpt2Config {
  int layers = 0;
  int heads = 0;
  int hidden = 0;  // C
  int seq = 0;     // the number of positions wpe holds; a batch may use fewer
  int vocab = 0;   // V
};

struct ParameterSpec {
  std::string name;
  std::vector<std::int64_t> shape;
};

// Tensors by Hugging Face name (without the "transformer." prefix), row-major.
struct NamedTensors {
  std::map<std::string, std::vector<double>> values;
  std::map<std::string, std::vector<std::int64_t>> shapes;

  std::vector<double>& at(const std::string& name) {
    auto found = values.find(name);
    if (found == values.end()) throw std::out_of_range("no tensor named " + name);
    return found->second;
  }
  const std::vector<double>& at(const std::string& name) const {
    auto found = values.find(name);
    if (found == values.end()) throw std::out_of_range("no tensor named " + name);
    return found->second;
  }
};

inline std::int64_t element_count(const std::vector<std::int64_t>& shape) {
  std::int64_t count = 1;
  for (std::int64_t extent : shape) count *= extent;
  return count;
}

inline std::string layer_prefix(int layer) {
  return "h." + std::to_string(layer) + ".";
}

// Names and shapes in the canonical order: wte, wpe, the blocks in order, ln_f.
inline std::vector<ParameterSpec> parameter_specs(const Gpt2Config& config) {
  const std::int64_t V = config.vocab, T = config.seq, C = config.hidden;
  std::vector<ParameterSpec> specs = {{"wte.weight", {V, C}}, {"wpe.weight", {T, C}}};
  for (int layer = 0; layer < config.layers; ++layer) {
    const std::string h = layer_prefix(layer);
    const std::vector<ParameterSpec> block = {
        {h + "ln_1.weight", {C}},
        {h + "ln_1.bias", {C}},
        {h + "attn.c_attn.weight", {C, 3 * C}},
        {h + "attn.c_attn.bias", {3 * C}},
        {h + "attn.c_proj.weight", {C, C}},
        {h + "attn.c_proj.bias", {C}},
        {h + "ln_2.weight", {C}},
        {h + "ln_2.bias", {C}},
        {h + "mlp.c_fc.weight", {C, 4 * C}},
        {h + "mlp.c_fc.bias", {4 * C}},
        {h + "mlp.c_proj.weight", {4 * C, C}},
        {h + "mlp.c_proj.bias", {C}},
    };
    specs.insert(specs.end(), block.begin(), block.end());
  }
  specs.push_back({"ln_f.weight", {C}});
  specs.push_back({"ln_f.bias", {C}});
  return specs;
}

inline NamedTensors zero_tensors(const Gpt2Config& config) {
  NamedTensors tensors;
  for (const ParameterSpec& spec : parameter_specs(config)) {
    tensors.values[spec.name].assign(static_cast<std::size_t>(element_count(spec.shape)), 0.0);
    tensors.shapes[spec.name] = spec.shape;
  }
  return tensors;
}

// Deterministic parameters for tests: every value uniform in [-amplitude, amplitude], LayerNorm
// gains around 1 so they stay away from zero. Biases and LayerNorm offsets are non-zero on
// purpose: a gradient that forgets them must show up. amplitude 0.5 suits hidden sizes near 8.
inline NamedTensors random_parameters(const Gpt2Config& config, std::uint64_t seed, double amplitude = 0.5) {
  NamedTensors params = zero_tensors(config);
  std::uint64_t state = seed;
  auto next_uniform = [&state]() {  // SplitMix64, mapped to [-1, 1)
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return static_cast<double>(z >> 11) * (2.0 / 9007199254740992.0) - 1.0;
  };
  for (const ParameterSpec& spec : parameter_specs(config)) {
    const bool is_layernorm_gain = spec.name.find("ln_") != std::string::npos && spec.name.size() >= 7 &&
                                   spec.name.compare(spec.name.size() - 7, 7, ".weight") == 0;
    for (double& value : params.at(spec.name)) value = (is_layernorm_gain ? 1.0 : 0.0) + amplitude * next_uniform();
  }
  return params;
}

namespace detail {

constexpr double kLayerNormEps = 1e-5;
constexpr double kSqrt2OverPi = 0.79788456080286535588;  // sqrt(2 / pi)

inline void require(bool condition, const std::string& message) {
  if (!condition) throw std::invalid_argument("gpt2 reference: " + message);
}

inline const std::vector<double>& parameter(const NamedTensors& params, const std::string& name,
                                            std::size_t expected_count) {
  auto found = params.values.find(name);
  require(found != params.values.end(), "missing parameter " + name);
  require(found->second.size() == expected_count, "parameter " + name + " has the wrong number of elements");
  return found->second;
}

// ---------------------------------------------------------------------------------------------
// Layers: each forward next to its backward. Backward functions accumulate (+=) into their
// gradient outputs, which the caller zeroes once.

// out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:]
inline void encoder_forward(std::vector<double>& out,        // (B,T,C)
                            const std::vector<int>& tokens,  // (B,T)
                            const std::vector<double>& wte,  // (V,C)
                            const std::vector<double>& wpe,  // (maxT,C)
                            std::size_t B, std::size_t T, std::size_t C) {
  out.assign(B * T * C, 0.0);
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t t = 0; t < T; ++t) {
      const std::size_t token = static_cast<std::size_t>(tokens[b * T + t]);
      for (std::size_t c = 0; c < C; ++c) out[(b * T + t) * C + c] = wte[token * C + c] + wpe[t * C + c];
    }
}

inline void encoder_backward(std::vector<double>& dwte,        // (V,C)
                             std::vector<double>& dwpe,        // (maxT,C)
                             const std::vector<double>& dout,  // (B,T,C)
                             const std::vector<int>& tokens,   // (B,T)
                             std::size_t B, std::size_t T, std::size_t C) {
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t t = 0; t < T; ++t) {
      const std::size_t token = static_cast<std::size_t>(tokens[b * T + t]);
      for (std::size_t c = 0; c < C; ++c) {
        dwte[token * C + c] += dout[(b * T + t) * C + c];
        dwpe[t * C + c] += dout[(b * T + t) * C + c];
      }
    }
}

// out = (x - mean) / sqrt(var + eps) * weight + bias over the last axis, var biased.
inline void layernorm_forward(std::vector<double>& out,           // (N,C)
                              std::vector<double>& mean,          // (N)
                              std::vector<double>& rstd,          // (N)
                              const std::vector<double>& inp,     // (N,C)
                              const std::vector<double>& weight,  // (C)
                              const std::vector<double>& bias,    // (C)
                              std::size_t N, std::size_t C) {
  out.assign(N * C, 0.0);
  mean.assign(N, 0.0);
  rstd.assign(N, 0.0);
  for (std::size_t n = 0; n < N; ++n) {
    const double* x = &inp[n * C];
    double m = 0.0;
    for (std::size_t c = 0; c < C; ++c) m += x[c];
    m /= static_cast<double>(C);
    double var = 0.0;
    for (std::size_t c = 0; c < C; ++c) var += (x[c] - m) * (x[c] - m);
    var /= static_cast<double>(C);
    const double r = 1.0 / std::sqrt(var + kLayerNormEps);
    for (std::size_t c = 0; c < C; ++c) out[n * C + c] = (x[c] - m) * r * weight[c] + bias[c];
    mean[n] = m;
    rstd[n] = r;
  }
}

// With xhat = (x - mean) * rstd and g = dout * weight:
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),  dweight += dout * xhat,  dbias += dout.
inline void layernorm_backward(std::vector<double>& dinp,          // (N,C)
                               std::vector<double>& dweight,       // (C)
                               std::vector<double>& dbias,         // (C)
                               const std::vector<double>& dout,    // (N,C)
                               const std::vector<double>& inp,     // (N,C)
                               const std::vector<double>& weight,  // (C)
                               const std::vector<double>& mean,    // (N)
                               const std::vector<double>& rstd,    // (N)
                               std::size_t N, std::size_t C) {
  for (std::size_t n = 0; n < N; ++n) {
    double mean_g = 0.0, mean_g_xhat = 0.0;
    for (std::size_t c = 0; c < C; ++c) {
      const double xhat = (inp[n * C + c] - mean[n]) * rstd[n];
      const double g = dout[n * C + c] * weight[c];
      mean_g += g;
      mean_g_xhat += g * xhat;
    }
    mean_g /= static_cast<double>(C);
    mean_g_xhat /= static_cast<double>(C);
    for (std::size_t c = 0; c < C; ++c) {
      const double xhat = (inp[n * C + c] - mean[n]) * rstd[n];
      const double g = dout[n * C + c] * weight[c];
      dinp[n * C + c] += rstd[n] * (g - mean_g - xhat * mean_g_xhat);
      dweight[c] += dout[n * C + c] * xhat;
      dbias[c] += dout[n * C + c];
    }
  }
}

// Conv1D: out = inp @ weight + bias, weight stored [in, out].
inline void matmul_forward(std::vector<double>& out,           // (N,OC)
                           const std::vector<double>& inp,     // (N,IC)
                           const std::vector<double>& weight,  // (IC,OC)
                           const std::vector<double>& bias,    // (OC)
                           std::size_t N, std::size_t IC, std::size_t OC) {
  out.assign(N * OC, 0.0);
  for (std::size_t n = 0; n < N; ++n)
    for (std::size_t o = 0; o < OC; ++o) {
      double sum = bias[o];
      for (std::size_t i = 0; i < IC; ++i) sum += inp[n * IC + i] * weight[i * OC + o];
      out[n * OC + o] = sum;
    }
}

// dinp += dout @ weight^T,  dweight += inp^T @ dout,  dbias += sum over rows of dout.
inline void matmul_backward(std::vector<double>& dinp,          // (N,IC)
                            std::vector<double>& dweight,       // (IC,OC)
                            std::vector<double>& dbias,         // (OC)
                            const std::vector<double>& dout,    // (N,OC)
                            const std::vector<double>& inp,     // (N,IC)
                            const std::vector<double>& weight,  // (IC,OC)
                            std::size_t N, std::size_t IC, std::size_t OC) {
  for (std::size_t n = 0; n < N; ++n)
    for (std::size_t o = 0; o < OC; ++o) {
      const double d = dout[n * OC + o];
      dbias[o] += d;
      for (std::size_t i = 0; i < IC; ++i) {
        dinp[n * IC + i] += d * weight[i * OC + o];
        dweight[i * OC + o] += d * inp[n * IC + i];
      }
    }
}

// Causal multi-head attention. qkv columns are [Q | K | V]; head h owns columns
// [h*hs, (h+1)*hs) within each of the three. att keeps the softmax probabilities (zero above
// the diagonal) for the backward pass.
inline void attention_forward(std::vector<double>& out,        // (B,T,C)
                              std::vector<double>& att,        // (B,NH,T,T)
                              const std::vector<double>& qkv,  // (B,T,3C)
                              std::size_t B, std::size_t T, std::size_t C, std::size_t NH) {
  const std::size_t hs = C / NH;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hs));
  out.assign(B * T * C, 0.0);
  att.assign(B * NH * T * T, 0.0);
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t h = 0; h < NH; ++h)
      for (std::size_t t = 0; t < T; ++t) {
        const double* q = &qkv[(b * T + t) * 3 * C + h * hs];
        double* probs = &att[((b * NH + h) * T + t) * T];
        double max_score = -std::numeric_limits<double>::infinity();
        for (std::size_t j = 0; j <= t; ++j) {
          const double* k = &qkv[(b * T + j) * 3 * C + C + h * hs];
          double score = 0.0;
          for (std::size_t i = 0; i < hs; ++i) score += q[i] * k[i];
          probs[j] = score * scale;
          if (probs[j] > max_score) max_score = probs[j];
        }
        double sum = 0.0;
        for (std::size_t j = 0; j <= t; ++j) {
          probs[j] = std::exp(probs[j] - max_score);
          sum += probs[j];
        }
        for (std::size_t j = 0; j <= t; ++j) probs[j] /= sum;
        for (std::size_t j = 0; j <= t; ++j) {
          const double* v = &qkv[(b * T + j) * 3 * C + 2 * C + h * hs];
          for (std::size_t i = 0; i < hs; ++i) out[(b * T + t) * C + h * hs + i] += probs[j] * v[i];
        }
      }
}

// With p = softmax(s), s = scale * q.k:  dp[j] = dout . v[j],  ds[j] = p[j] (dp[j] - sum_k p[k] dp[k]),
// dq += scale * ds[j] k[j],  dk[j] += scale * ds[j] q,  dv[j] += p[j] dout.
inline void attention_backward(std::vector<double>& dqkv,        // (B,T,3C)
                               const std::vector<double>& dout,  // (B,T,C)
                               const std::vector<double>& qkv,   // (B,T,3C)
                               const std::vector<double>& att,   // (B,NH,T,T)
                               std::size_t B, std::size_t T, std::size_t C, std::size_t NH) {
  const std::size_t hs = C / NH;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hs));
  std::vector<double> dprobs(T);  // (T)
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t h = 0; h < NH; ++h)
      for (std::size_t t = 0; t < T; ++t) {
        const double* probs = &att[((b * NH + h) * T + t) * T];
        const double* d = &dout[(b * T + t) * C + h * hs];
        const std::size_t q_offset = (b * T + t) * 3 * C + h * hs;
        double p_dot_dp = 0.0;
        for (std::size_t j = 0; j <= t; ++j) {
          const std::size_t v_offset = (b * T + j) * 3 * C + 2 * C + h * hs;
          double dp = 0.0;
          for (std::size_t i = 0; i < hs; ++i) {
            dp += d[i] * qkv[v_offset + i];
            dqkv[v_offset + i] += probs[j] * d[i];
          }
          dprobs[j] = dp;
          p_dot_dp += probs[j] * dp;
        }
        for (std::size_t j = 0; j <= t; ++j) {
          const double dscore = probs[j] * (dprobs[j] - p_dot_dp) * scale;
          const std::size_t k_offset = (b * T + j) * 3 * C + C + h * hs;
          for (std::size_t i = 0; i < hs; ++i) {
            dqkv[q_offset + i] += dscore * qkv[k_offset + i];
            dqkv[k_offset + i] += dscore * qkv[q_offset + i];
          }
        }
      }
}

// gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
inline double gelu(double x) {
  return 0.5 * x * (1.0 + std::tanh(kSqrt2OverPi * (x + 0.044715 * x * x * x)));
}

// d/dx = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
inline double gelu_derivative(double x) {
  const double tanh_u = std::tanh(kSqrt2OverPi * (x + 0.044715 * x * x * x));
  return 0.5 * (1.0 + tanh_u) + 0.5 * x * (1.0 - tanh_u * tanh_u) * kSqrt2OverPi * (1.0 + 3.0 * 0.044715 * x * x);
}

inline void gelu_forward(std::vector<double>& out,          // (N)
                         const std::vector<double>& inp) {  // (N)
  out.resize(inp.size());
  for (std::size_t n = 0; n < inp.size(); ++n) out[n] = gelu(inp[n]);
}

inline void gelu_backward(std::vector<double>& dinp,         // (N)
                          const std::vector<double>& dout,   // (N)
                          const std::vector<double>& inp) {  // (N)
  for (std::size_t n = 0; n < inp.size(); ++n) dinp[n] += dout[n] * gelu_derivative(inp[n]);
}

inline void residual_forward(std::vector<double>& out,        // (N)
                             const std::vector<double>& a,    // (N)
                             const std::vector<double>& b) {  // (N)
  out.resize(a.size());
  for (std::size_t n = 0; n < a.size(); ++n) out[n] = a[n] + b[n];
}

inline void residual_backward(std::vector<double>& da,            // (N)
                              std::vector<double>& db,            // (N)
                              const std::vector<double>& dout) {  // (N)
  for (std::size_t n = 0; n < dout.size(); ++n) {
    da[n] += dout[n];
    db[n] += dout[n];
  }
}

// Tied output head: logits = inp @ wte^T, no bias.
inline void tied_head_forward(std::vector<double>& logits,     // (N,V)
                              const std::vector<double>& inp,  // (N,C)
                              const std::vector<double>& wte,  // (V,C)
                              std::size_t N, std::size_t C, std::size_t V) {
  logits.assign(N * V, 0.0);
  for (std::size_t n = 0; n < N; ++n)
    for (std::size_t v = 0; v < V; ++v) {
      double sum = 0.0;
      for (std::size_t c = 0; c < C; ++c) sum += inp[n * C + c] * wte[v * C + c];
      logits[n * V + v] = sum;
    }
}

inline void tied_head_backward(std::vector<double>& dinp,           // (N,C)
                               std::vector<double>& dwte,           // (V,C)
                               const std::vector<double>& dlogits,  // (N,V)
                               const std::vector<double>& inp,      // (N,C)
                               const std::vector<double>& wte,      // (V,C)
                               std::size_t N, std::size_t C, std::size_t V) {
  for (std::size_t n = 0; n < N; ++n)
    for (std::size_t v = 0; v < V; ++v) {
      const double d = dlogits[n * V + v];
      for (std::size_t c = 0; c < C; ++c) {
        dinp[n * C + c] += d * wte[v * C + c];
        dwte[v * C + c] += d * inp[n * C + c];
      }
    }
}

// losses[n] = logsumexp(logits[n,:]) - logits[n, targets[n]]; probs keeps softmax(logits).
inline void crossentropy_forward(std::vector<double>& losses,        // (N)
                                 std::vector<double>& probs,         // (N,V)
                                 const std::vector<double>& logits,  // (N,V)
                                 const std::vector<int>& targets,    // (N)
                                 std::size_t N, std::size_t V) {
  losses.assign(N, 0.0);
  probs.assign(N * V, 0.0);
  for (std::size_t n = 0; n < N; ++n) {
    const double* row = &logits[n * V];
    double max_logit = row[0];
    for (std::size_t v = 1; v < V; ++v) max_logit = std::max(max_logit, row[v]);
    double sum = 0.0;
    for (std::size_t v = 0; v < V; ++v) sum += std::exp(row[v] - max_logit);
    for (std::size_t v = 0; v < V; ++v) probs[n * V + v] = std::exp(row[v] - max_logit) / sum;
    losses[n] = max_logit + std::log(sum) - row[static_cast<std::size_t>(targets[n])];
  }
}

// dlogits[n,v] += dloss[n] * (probs[n,v] - [v == targets[n]])
inline void crossentropy_backward(std::vector<double>& dlogits,      // (N,V)
                                  const std::vector<double>& dloss,  // (N)
                                  const std::vector<double>& probs,  // (N,V)
                                  const std::vector<int>& targets,   // (N)
                                  std::size_t N, std::size_t V) {
  for (std::size_t n = 0; n < N; ++n)
    for (std::size_t v = 0; v < V; ++v) {
      const double indicator = v == static_cast<std::size_t>(targets[n]) ? 1.0 : 0.0;
      dlogits[n * V + v] += dloss[n] * (probs[n * V + v] - indicator);
    }
}

// ---------------------------------------------------------------------------------------------
// The whole network.

struct BlockActivations {
  std::vector<double> input;                    // (B,T,C) the residual stream entering the block
  std::vector<double> ln1, ln1_mean, ln1_rstd;  // (B,T,C), (B,T), (B,T)
  std::vector<double> qkv;                      // (B,T,3C)
  std::vector<double> att;                      // (B,NH,T,T)
  std::vector<double> atty;                     // (B,T,C)
  std::vector<double> attproj;                  // (B,T,C)
  std::vector<double> residual2;                // (B,T,C)
  std::vector<double> ln2, ln2_mean, ln2_rstd;  // (B,T,C), (B,T), (B,T)
  std::vector<double> fch;                      // (B,T,4C)
  std::vector<double> fch_gelu;                 // (B,T,4C)
  std::vector<double> fcproj;                   // (B,T,C)
  std::vector<double> output;                   // (B,T,C)
};

struct Activations {
  std::vector<double> encoded;                  // (B,T,C)
  std::vector<BlockActivations> blocks;         // (L)
  std::vector<double> lnf, lnf_mean, lnf_rstd;  // (B,T,C), (B,T), (B,T)
  std::vector<double> logits;                   // (B,T,V)
  std::vector<double> probs;                    // (B,T,V)
  std::vector<double> losses;                   // (B,T)
};

struct Dimensions {
  std::size_t B, T, C, NH, V, L, maxT;
};

inline Dimensions check_inputs(const Gpt2Config& config, const NamedTensors& params, const std::vector<int>& tokens,
                               const std::vector<int>& targets, int B, int T) {
  require(config.layers >= 0 && config.heads > 0 && config.hidden > 0 && config.vocab > 0 && config.seq > 0,
          "config extents must be positive");
  require(config.hidden % config.heads == 0, "hidden must be a multiple of heads");
  require(B > 0 && T > 0 && T <= config.seq, "need B > 0 and 0 < T <= config.seq");
  const std::size_t count = static_cast<std::size_t>(B) * static_cast<std::size_t>(T);
  require(tokens.size() == count && targets.size() == count, "tokens and targets must hold B*T entries");
  for (std::size_t n = 0; n < count; ++n)
    require(tokens[n] >= 0 && tokens[n] < config.vocab && targets[n] >= 0 && targets[n] < config.vocab,
            "token or target outside the vocabulary");
  for (const ParameterSpec& spec : parameter_specs(config))
    parameter(params, spec.name, static_cast<std::size_t>(element_count(spec.shape)));
  return {static_cast<std::size_t>(B),
          static_cast<std::size_t>(T),
          static_cast<std::size_t>(config.hidden),
          static_cast<std::size_t>(config.heads),
          static_cast<std::size_t>(config.vocab),
          static_cast<std::size_t>(config.layers),
          static_cast<std::size_t>(config.seq)};
}

inline double forward(const Dimensions& d, const NamedTensors& params, const std::vector<int>& tokens,
                      const std::vector<int>& targets, Activations& acts) {
  const std::size_t N = d.B * d.T, C = d.C;
  encoder_forward(acts.encoded, tokens, params.at("wte.weight"), params.at("wpe.weight"), d.B, d.T, C);
  acts.blocks.assign(d.L, BlockActivations{});
  const std::vector<double>* residual = &acts.encoded;  // (B,T,C)
  for (std::size_t l = 0; l < d.L; ++l) {
    const std::string h = layer_prefix(static_cast<int>(l));
    BlockActivations& a = acts.blocks[l];
    a.input = *residual;
    layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, a.input, params.at(h + "ln_1.weight"), params.at(h + "ln_1.bias"),
                      N, C);
    matmul_forward(a.qkv, a.ln1, params.at(h + "attn.c_attn.weight"), params.at(h + "attn.c_attn.bias"), N, C, 3 * C);
    attention_forward(a.atty, a.att, a.qkv, d.B, d.T, C, d.NH);
    matmul_forward(a.attproj, a.atty, params.at(h + "attn.c_proj.weight"), params.at(h + "attn.c_proj.bias"), N, C, C);
    residual_forward(a.residual2, a.input, a.attproj);
    layernorm_forward(a.ln2, a.ln2_mean, a.ln2_rstd, a.residual2, params.at(h + "ln_2.weight"),
                      params.at(h + "ln_2.bias"), N, C);
    matmul_forward(a.fch, a.ln2, params.at(h + "mlp.c_fc.weight"), params.at(h + "mlp.c_fc.bias"), N, C, 4 * C);
    gelu_forward(a.fch_gelu, a.fch);
    matmul_forward(a.fcproj, a.fch_gelu, params.at(h + "mlp.c_proj.weight"), params.at(h + "mlp.c_proj.bias"), N, 4 * C,
                   C);
    residual_forward(a.output, a.residual2, a.fcproj);
    residual = &a.output;
  }
  layernorm_forward(acts.lnf, acts.lnf_mean, acts.lnf_rstd, *residual, params.at("ln_f.weight"), params.at("ln_f.bias"),
                    N, C);
  tied_head_forward(acts.logits, acts.lnf, params.at("wte.weight"), N, C, d.V);
  crossentropy_forward(acts.losses, acts.probs, acts.logits, targets, N, d.V);
  double total = 0.0;
  for (double l : acts.losses) total += l;
  return total / static_cast<double>(N);
}

inline void backward(const Dimensions& d, const NamedTensors& params, const std::vector<int>& tokens,
                     const std::vector<int>& targets, const Activations& acts, NamedTensors& grads) {
  const std::size_t N = d.B * d.T, C = d.C;
  // The loss is the mean over the B*T positions.
  const std::vector<double> dlosses(N, 1.0 / static_cast<double>(N));  // (B,T)
  std::vector<double> dlogits(N * d.V, 0.0);                           // (B,T,V)
  crossentropy_backward(dlogits, dlosses, acts.probs, targets, N, d.V);
  std::vector<double> dlnf(N * C, 0.0);  // (B,T,C)
  tied_head_backward(dlnf, grads.at("wte.weight"), dlogits, acts.lnf, params.at("wte.weight"), N, C, d.V);
  const std::vector<double>& final_residual = d.L > 0 ? acts.blocks.back().output : acts.encoded;
  std::vector<double> dresidual(N * C, 0.0);  // (B,T,C) gradient of the residual stream
  layernorm_backward(dresidual, grads.at("ln_f.weight"), grads.at("ln_f.bias"), dlnf, final_residual,
                     params.at("ln_f.weight"), acts.lnf_mean, acts.lnf_rstd, N, C);

  for (std::size_t l = d.L; l-- > 0;) {
    const std::string h = layer_prefix(static_cast<int>(l));
    const BlockActivations& a = acts.blocks[l];
    // output = residual2 + fcproj
    std::vector<double> dresidual2(N * C, 0.0), dfcproj(N * C, 0.0);  // (B,T,C)
    residual_backward(dresidual2, dfcproj, dresidual);
    std::vector<double> dfch_gelu(N * 4 * C, 0.0), dfch(N * 4 * C, 0.0);  // (B,T,4C)
    matmul_backward(dfch_gelu, grads.at(h + "mlp.c_proj.weight"), grads.at(h + "mlp.c_proj.bias"), dfcproj, a.fch_gelu,
                    params.at(h + "mlp.c_proj.weight"), N, 4 * C, C);
    gelu_backward(dfch, dfch_gelu, a.fch);
    std::vector<double> dln2(N * C, 0.0);  // (B,T,C)
    matmul_backward(dln2, grads.at(h + "mlp.c_fc.weight"), grads.at(h + "mlp.c_fc.bias"), dfch, a.ln2,
                    params.at(h + "mlp.c_fc.weight"), N, C, 4 * C);
    layernorm_backward(dresidual2, grads.at(h + "ln_2.weight"), grads.at(h + "ln_2.bias"), dln2, a.residual2,
                       params.at(h + "ln_2.weight"), a.ln2_mean, a.ln2_rstd, N, C);
    // residual2 = input + attproj
    std::vector<double> dinput(N * C, 0.0), dattproj(N * C, 0.0);  // (B,T,C)
    residual_backward(dinput, dattproj, dresidual2);
    std::vector<double> datty(N * C, 0.0);  // (B,T,C)
    matmul_backward(datty, grads.at(h + "attn.c_proj.weight"), grads.at(h + "attn.c_proj.bias"), dattproj, a.atty,
                    params.at(h + "attn.c_proj.weight"), N, C, C);
    std::vector<double> dqkv(N * 3 * C, 0.0);  // (B,T,3C)
    attention_backward(dqkv, datty, a.qkv, a.att, d.B, d.T, C, d.NH);
    std::vector<double> dln1(N * C, 0.0);  // (B,T,C)
    matmul_backward(dln1, grads.at(h + "attn.c_attn.weight"), grads.at(h + "attn.c_attn.bias"), dqkv, a.ln1,
                    params.at(h + "attn.c_attn.weight"), N, C, 3 * C);
    layernorm_backward(dinput, grads.at(h + "ln_1.weight"), grads.at(h + "ln_1.bias"), dln1, a.input,
                       params.at(h + "ln_1.weight"), a.ln1_mean, a.ln1_rstd, N, C);
    dresidual = std::move(dinput);
  }
  encoder_backward(grads.at("wte.weight"), grads.at("wpe.weight"), dresidual, tokens, d.B, d.T, C);
}

}  // namespace detail

// The mean cross-entropy over the B*T positions of tokens (B,T) predicting targets (B,T),
// positions 0..T-1 with T <= config.seq. logits, if given, receives (B*T, V).
inline double loss(const Gpt2Config& config, const NamedTensors& params, const std::vector<int>& tokens,
                   const std::vector<int>& targets, int B, int T, std::vector<double>* logits = nullptr) {
  const detail::Dimensions dims = detail::check_inputs(config, params, tokens, targets, B, T);
  detail::Activations acts;
  const double mean_loss = detail::forward(dims, params, tokens, targets, acts);
  if (logits != nullptr) *logits = acts.logits;
  return mean_loss;
}

// The same loss, and in grads (overwritten, every parameter name and shape) its gradient with
// respect to every parameter. wte's gradient holds both its uses: embedding and output head.
inline double loss_and_gradients(const Gpt2Config& config, const NamedTensors& params, const std::vector<int>& tokens,
                                 const std::vector<int>& targets, int B, int T, NamedTensors& grads) {
  const detail::Dimensions dims = detail::check_inputs(config, params, tokens, targets, B, T);
  detail::Activations acts;
  const double mean_loss = detail::forward(dims, params, tokens, targets, acts);
  grads = zero_tensors(config);
  detail::backward(dims, params, tokens, targets, acts, grads);
  return mean_loss;
}

}  // namespace trident_test::reference
