// The synthetic Markov language: determinism, structure, the stationary distribution against an
// independent linear solve, and the entropy rate against the empirical loss of the true model.

#include "trident_test.hpp"

#include <trident/data/synthetic.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

using trident::data::SyntheticMarkovLanguage;

// The chain as a dense V x V matrix, from its public transition probabilities.
std::vector<std::vector<double>> dense_transitions(const SyntheticMarkovLanguage& chain) {
  const auto V = static_cast<std::size_t>(chain.vocab_size());
  std::vector<std::vector<double>> P(V, std::vector<double>(V, 0.0));
  for (std::size_t i = 0; i < V; ++i)
    for (std::size_t j = 0; j < V; ++j)
      P[i][j] = chain.transition_probability(static_cast<std::int32_t>(i), static_cast<std::int32_t>(j));
  return P;
}

// Solves pi (P - I) = 0 with sum(pi) = 1 by Gaussian elimination with partial pivoting.
std::vector<double> solve_stationary(const std::vector<std::vector<double>>& P) {
  const std::size_t V = P.size();
  std::vector<std::vector<double>> A(V, std::vector<double>(V + 1, 0.0));  // rows: equations for pi_j
  for (std::size_t j = 0; j < V; ++j)
    for (std::size_t i = 0; i < V; ++i) A[j][i] = P[i][j] - (i == j ? 1.0 : 0.0);
  for (std::size_t i = 0; i < V; ++i) A[V - 1][i] = 1.0;  // replace one redundant equation by the normalisation
  A[V - 1][V] = 1.0;
  for (std::size_t col = 0; col < V; ++col) {
    std::size_t pivot = col;
    for (std::size_t r = col + 1; r < V; ++r)
      if (std::abs(A[r][col]) > std::abs(A[pivot][col])) pivot = r;
    std::swap(A[col], A[pivot]);
    for (std::size_t r = 0; r < V; ++r) {
      if (r == col) continue;
      const double factor = A[r][col] / A[col][col];
      for (std::size_t c = col; c <= V; ++c) A[r][c] -= factor * A[col][c];
    }
  }
  std::vector<double> pi(V);
  for (std::size_t i = 0; i < V; ++i) pi[i] = A[i][V] / A[i][i];
  return pi;
}

}  // namespace

TEST_CASE("the chain and its streams depend on the seed alone", "[data][markov]") {
  const SyntheticMarkovLanguage a(50, 4, 7), b(50, 4, 7), c(50, 4, 8);
  int structure_differences_ab = 0, structure_differences_ac = 0;
  for (std::int32_t i = 0; i < 50; ++i)
    for (std::int32_t k = 0; k < 4; ++k) {
      structure_differences_ab += a.successor(i, k) != b.successor(i, k);
      structure_differences_ab += a.successor_probability(i, k) != b.successor_probability(i, k);
      structure_differences_ac += a.successor(i, k) != c.successor(i, k);
    }
  CHECK(structure_differences_ab == 0);
  CHECK(structure_differences_ac > 0);
  CHECK(a.entropy_rate() == b.entropy_rate());

  const auto long_stream = a.generate(1000).tokens;
  CHECK(long_stream == b.generate(1000).tokens);
  CHECK(long_stream != c.generate(1000).tokens);
  CHECK(long_stream != a.generate(1000, 1).tokens);
  const auto prefix = a.generate(300).tokens;
  CHECK(std::equal(prefix.begin(), prefix.end(), long_stream.begin()));
  CHECK(a.generate(1000).vocab_size == 50);
  CHECK(a.generate(0).tokens.empty());

  // Pinned values: the generator is counter-based double arithmetic, so every platform must
  // produce these; a change here changes every synthetic run's data.
  const auto pinned = SyntheticMarkovLanguage(16, 3, 2024).generate(12).tokens;
  CHECK(pinned == std::vector<std::int32_t>{12, 13, 14, 9, 6, 9, 14, 9, 6, 9, 14, 9});
}

TEST_CASE("each token has the ring step and distinct random successors with non-uniform probabilities",
          "[data][markov]") {
  const std::int32_t V = 40, K = 5;
  const SyntheticMarkovLanguage chain(V, K, 11);
  int bad_structure = 0, nearly_uniform_rows = 0;
  double smallest = 1.0, largest = 0.0;
  for (std::int32_t i = 0; i < V; ++i) {
    bad_structure += chain.successor(i, 0) != (i + 1) % V;
    if (i == 0) bad_structure += chain.successor(i, 1) != 0;  // the self loop that makes the chain aperiodic
    std::vector<std::int32_t> next;
    double total = 0.0, row_min = 1.0, row_max = 0.0;
    for (std::int32_t k = 0; k < K; ++k) {
      next.push_back(chain.successor(i, k));
      bad_structure += chain.successor(i, k) < 0 || chain.successor(i, k) >= V;
      const double p = chain.successor_probability(i, k);
      bad_structure += !(p > 0.0);
      total += p;
      row_min = std::min(row_min, p);
      row_max = std::max(row_max, p);
    }
    std::sort(next.begin(), next.end());
    bad_structure += std::adjacent_find(next.begin(), next.end()) != next.end();
    bad_structure += std::abs(total - 1.0) > 1e-12;
    nearly_uniform_rows += row_max < 1.2 * row_min;
    smallest = std::min(smallest, row_min);
    largest = std::max(largest, row_max);
  }
  CHECK(bad_structure == 0);
  CHECK(nearly_uniform_rows < V / 4);
  CHECK(largest > 3 * smallest);
  CHECK(chain.transition_probability(3, 4) == chain.successor_probability(3, 0));
}

TEST_CASE("the stationary distribution is the chain's fixed point", "[data][markov]") {
  for (const auto& [V, K] : {std::pair<std::int32_t, std::int32_t>{12, 3}, {12, 2}, {30, 4}, {2, 2}}) {
    INFO("V = " << V << ", K = " << K);
    const SyntheticMarkovLanguage chain(V, K, 5);
    const auto P = dense_transitions(chain);
    const auto& pi = chain.stationary_distribution();
    REQUIRE(pi.size() == static_cast<std::size_t>(V));
    const auto reference = solve_stationary(P);
    double sum = 0.0, worst = 0.0, smallest = 1.0;
    for (std::size_t j = 0; j < pi.size(); ++j) {
      sum += pi[j];
      smallest = std::min(smallest, pi[j]);
      worst = std::max(worst, std::abs(pi[j] - reference[j]));
    }
    CHECK(std::abs(sum - 1.0) < 1e-12);
    CHECK(smallest > 0.0);
    CHECK(worst < 1e-10);

    // H = sum_i pi_i * (-sum_j P_ij ln P_ij), from the dense matrix and the reference pi.
    double entropy = 0.0;
    for (std::size_t i = 0; i < P.size(); ++i)
      for (double p : P[i])
        if (p > 0.0) entropy -= reference[i] * p * std::log(p);
    CHECK(std::abs(chain.entropy_rate() - entropy) < 1e-10);
  }

  // Two tokens: pi_0 = P(1 -> 0) / (P(0 -> 1) + P(1 -> 0)).
  const SyntheticMarkovLanguage pair(2, 2, 9);
  const double p01 = pair.transition_probability(0, 1), p10 = pair.transition_probability(1, 0);
  CHECK(std::abs(pair.stationary_distribution()[0] - p10 / (p01 + p10)) < 1e-12);
}

TEST_CASE("the entropy rate is the loss of the true model on a long stream", "[data][markov]") {
  const std::int32_t V = 64, K = 4;
  const SyntheticMarkovLanguage chain(V, K, 3);
  const std::int64_t length = 400000, burn_in = 1000;
  const auto tokens = chain.generate(length).tokens;
  double loss = 0.0;
  std::int64_t impossible_steps = 0;  // steps along no edge of the chain
  std::vector<double> frequency(static_cast<std::size_t>(V), 0.0);
  for (std::int64_t t = burn_in; t + 1 < length; ++t) {
    const double p =
        chain.transition_probability(tokens[static_cast<std::size_t>(t)], tokens[static_cast<std::size_t>(t + 1)]);
    impossible_steps += p == 0.0;
    loss -= p > 0.0 ? std::log(p) : 0.0;
    frequency[static_cast<std::size_t>(tokens[static_cast<std::size_t>(t)])] += 1.0;
  }
  REQUIRE(impossible_steps == 0);
  const double samples = static_cast<double>(length - burn_in - 1);
  loss /= samples;
  // Standard error of the mean is about 1.5e-3 nats here; 0.01 leaves room for correlation.
  CHECK(std::abs(loss - chain.entropy_rate()) < 0.01);
  double worst = 0.0;
  for (std::size_t j = 0; j < frequency.size(); ++j)
    worst = std::max(worst, std::abs(frequency[j] / samples - chain.stationary_distribution()[j]));
  CHECK(worst < 0.002);
  // Non-uniform successors: clearly below ln K, the rate of uniform successors.
  CHECK(chain.entropy_rate() > 0.3);
  CHECK(chain.entropy_rate() < std::log(static_cast<double>(K)) - 0.05);
}

TEST_CASE("impossible chains are refused", "[data][markov]") {
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(SyntheticMarkovLanguage(1, 1, 0), Contains("vocabulary size 1 must be at least 2"));
  CHECK_THROWS_WITH(SyntheticMarkovLanguage(8, 1, 0),
                    Contains("1 successors per token must lie in [2, vocabulary size 8]"));
  CHECK_THROWS_WITH(SyntheticMarkovLanguage(8, 9, 0), Contains("9 successors"));
  CHECK_THROWS_WITH(SyntheticMarkovLanguage(8, 2, 0).generate(-1), Contains("negative length -1"));
}
