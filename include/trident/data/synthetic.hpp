#pragma once
// A synthetic language whose best achievable loss is known exactly: a random sparse Markov
// chain over V tokens. Each token has K successors with random, non-uniform probabilities.
// Its entropy rate H = sum_i pi_i H(P_i) (pi the stationary distribution, H(P_i) the entropy
// of token i's successor distribution) is the cross-entropy floor a model of the next token
// given the context reaches. A training run prints it next to ln V (the loss of a uniform
// guess) and shows how close it gets.
//
// Everything comes from the counter-based generator, keyed by the seed, so the chain and its
// streams are the same on every platform and compiler.

#include <trident/core/error.hpp>
#include <trident/core/random.hpp>
#include <trident/data/token_stream.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace trident::data {

class SyntheticMarkovLanguage {
 public:
  // Token i's first successor is i+1 (mod V), the others are distinct random tokens, except
  // that token 0's second successor is 0 itself. The ring step makes the chain irreducible and
  // the self loop (a cycle of length 1) makes it aperiodic, so the stationary distribution is
  // unique and every stream settles into it. The random successors are shortcuts across the
  // ring: the chain forgets its start in a few steps, even with K = 2.
  SyntheticMarkovLanguage(std::int32_t vocab_size, std::int32_t successors_per_token, std::uint64_t seed)
      : m_vocab_size(vocab_size), m_successors_per_token(successors_per_token), m_seed(seed) {
    require_argument(vocab_size >= 2, "trident::data::SyntheticMarkovLanguage: vocabulary size ", vocab_size,
                     " must be at least 2");
    require_argument(successors_per_token >= 2 && successors_per_token <= vocab_size,
                     "trident::data::SyntheticMarkovLanguage: ", successors_per_token,
                     " successors per token must lie in [2, vocabulary size ", vocab_size, "]");
    build_transitions();
    compute_stationary_distribution();
    m_entropy_rate = 0.0;
    for (std::int32_t i = 0; i < m_vocab_size; ++i)
      m_entropy_rate += m_stationary[static_cast<std::size_t>(i)] * successor_entropy(i);
  }

  std::int32_t vocab_size() const { return m_vocab_size; }
  std::int32_t successors_per_token() const { return m_successors_per_token; }
  std::uint64_t seed() const { return m_seed; }

  // The k-th successor of `token` and its probability, k in [0, successors_per_token).
  std::int32_t successor(std::int32_t token, std::int32_t k) const { return m_successors[flat(token, k)]; }
  double successor_probability(std::int32_t token, std::int32_t k) const { return m_probabilities[flat(token, k)]; }

  // P(next = to | current = from); zero when `to` is not a successor of `from`.
  double transition_probability(std::int32_t from, std::int32_t to) const {
    for (std::int32_t k = 0; k < m_successors_per_token; ++k)
      if (successor(from, k) == to) return successor_probability(from, k);
    return 0.0;
  }

  // Entropy of token i's successor distribution, in nats.
  double successor_entropy(std::int32_t token) const {
    double entropy = 0.0;
    for (std::int32_t k = 0; k < m_successors_per_token; ++k) {
      const double p = successor_probability(token, k);
      if (p > 0.0) entropy -= p * std::log(p);
    }
    return entropy;
  }

  const std::vector<double>& stationary_distribution() const { return m_stationary; }

  // The chain's entropy rate in nats per token: the loss floor of a next-token model.
  double entropy_rate() const { return m_entropy_rate; }

  // `length` tokens of stream `stream_id` (train and validation text come from different ids).
  // The first token is uniform over the vocabulary; token t is drawn with the generator's
  // element t, so generate(n) is a prefix of generate(m) for n < m.
  TokenStream generate(std::int64_t length, std::uint64_t stream_id = 0) const {
    require_argument(length >= 0, "trident::data::SyntheticMarkovLanguage::generate: negative length ", length);
    const auto stream = random_stream(m_seed, "trident::data::markov/generate/" + std::to_string(stream_id));
    TokenStream text;
    text.vocab_size = m_vocab_size;
    text.tokens.resize(static_cast<std::size_t>(length));
    if (length == 0) return text;
    std::int32_t current = uniform_token(random_uniform(stream, 0));
    text.tokens[0] = current;
    for (std::int64_t t = 1; t < length; ++t) {
      current = sample_successor(current, random_uniform(stream, static_cast<std::uint64_t>(t)));
      text.tokens[static_cast<std::size_t>(t)] = current;
    }
    return text;
  }

 private:
  std::size_t flat(std::int32_t token, std::int32_t k) const {
    return static_cast<std::size_t>(token) * static_cast<std::size_t>(m_successors_per_token) +
           static_cast<std::size_t>(k);
  }

  std::int32_t uniform_token(double u) const {
    const auto token = static_cast<std::int32_t>(u * m_vocab_size);
    return token < m_vocab_size ? token : m_vocab_size - 1;
  }

  std::int32_t sample_successor(std::int32_t token, double u) const {
    double cumulative = 0.0;
    for (std::int32_t k = 0; k + 1 < m_successors_per_token; ++k) {
      cumulative += successor_probability(token, k);
      if (u < cumulative) return successor(token, k);
    }
    return successor(token, m_successors_per_token - 1);  // also absorbs rounding in the sum
  }

  void build_transitions() {
    const auto K = static_cast<std::size_t>(m_successors_per_token);
    const auto V = static_cast<std::size_t>(m_vocab_size);
    m_successors.assign(V * K, 0);
    m_probabilities.assign(V * K, 0.0);
    const auto structure = random_stream(m_seed, "trident::data::markov/successors");
    const auto weights = random_stream(m_seed, "trident::data::markov/probabilities");
    for (std::int32_t i = 0; i < m_vocab_size; ++i) {
      std::int32_t* next = &m_successors[flat(i, 0)];
      next[0] = (i + 1) % m_vocab_size;
      std::int32_t filled = 1;
      if (i == 0) next[filled++] = 0;
      std::uint64_t attempt = 0;
      while (filled < m_successors_per_token) {
        const std::int32_t candidate =
            uniform_token(random_uniform(structure, (static_cast<std::uint64_t>(i) << 32) | attempt++));
        bool taken = false;
        for (std::int32_t j = 0; j < filled; ++j) taken = taken || next[j] == candidate;
        if (!taken) next[filled++] = candidate;
      }
      // Exponential weights give Dirichlet(1) probabilities: random and far from uniform. The
      // floor keeps every edge, so the ring stays in the chain.
      double total = 0.0;
      for (std::int32_t k = 0; k < m_successors_per_token; ++k) {
        const double u = random_uniform(weights, flat(i, k));
        m_probabilities[flat(i, k)] = 0.05 - std::log(1.0 - u);
        total += m_probabilities[flat(i, k)];
      }
      for (std::int32_t k = 0; k < m_successors_per_token; ++k) m_probabilities[flat(i, k)] /= total;
    }
  }

  // Power iteration on the lazy chain (P + I) / 2, which has the same stationary distribution
  // but no eigenvalue near -1, so it converges steadily from the uniform start.
  void compute_stationary_distribution() {
    const auto V = static_cast<std::size_t>(m_vocab_size);
    std::vector<double> current(V, 1.0 / static_cast<double>(V)), next(V);
    constexpr int max_iterations = 1000000;
    constexpr double tolerance = 1e-13;  // in L1 distance between successive iterates
    for (int iteration = 0; iteration < max_iterations; ++iteration) {
      for (std::size_t j = 0; j < V; ++j) next[j] = 0.5 * current[j];
      for (std::int32_t i = 0; i < m_vocab_size; ++i) {
        const double half_mass = 0.5 * current[static_cast<std::size_t>(i)];
        for (std::int32_t k = 0; k < m_successors_per_token; ++k)
          next[static_cast<std::size_t>(successor(i, k))] += half_mass * successor_probability(i, k);
      }
      double total = 0.0, change = 0.0;
      for (std::size_t j = 0; j < V; ++j) total += next[j];
      for (std::size_t j = 0; j < V; ++j) {
        next[j] /= total;
        change += std::abs(next[j] - current[j]);
      }
      current.swap(next);
      if (change < tolerance) {
        m_stationary = std::move(current);
        return;
      }
    }
    throw Error(trident::detail::concat("trident::data::SyntheticMarkovLanguage: the stationary distribution of the ",
                                        m_vocab_size, "-token chain with ", m_successors_per_token,
                                        " successors per token did not converge in ", max_iterations,
                                        " iterations (more successors per token make the chain mix faster)"));
  }

  std::int32_t m_vocab_size;
  std::int32_t m_successors_per_token;
  std::uint64_t m_seed;
  std::vector<std::int32_t> m_successors;  // (V, K)
  std::vector<double> m_probabilities;     // (V, K), each row sums to 1
  std::vector<double> m_stationary;        // (V)
  double m_entropy_rate = 0.0;
};

}  // namespace trident::data
