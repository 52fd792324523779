// Embeddings (with vocabulary shards), cross-entropy, mean-squared error and the sum/mean
// reductions: forwards against direct formulas, backwards against finite differences or
// plain sums, determinism, and the in-place cross-entropy backward.

#include "ops_test_helpers.hpp"

#include <trident/ops/cross_entropy.hpp>
#include <trident/ops/embedding.hpp>
#include <trident/ops/mse.hpp>
#include <trident/ops/reduction.hpp>

#include <numeric>

using namespace ops_test;

namespace {

template <class Space>
Vector<int, Space> token_view(const std::vector<int>& tokens) {
  Vector<int, Space> view("tokens", tokens.size());
  auto host = Kokkos::create_mirror_view(view);
  for (std::size_t i = 0; i < tokens.size(); ++i) host(i) = tokens[i];
  Kokkos::deep_copy(view, host);
  return view;
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("embedding_forward adds token and position rows; out-of-shard tokens give zero",
                        "[ops][embedding]", trident_test::FloatAndDoubleOnEverySpace) {
  using Space = typename TestType::space;
  using TestScalar = typename TestType::scalar;
  const int T = 3, C = 5, vocab_local = 4, offset = 4;  // shard [4, 8) of a vocabulary of 11
  const std::vector<int> tokens = {4, 7, 2, 10, 5, 8};  // 2, 10, 8 lie outside the shard
  const auto tok = token_view<Space>(tokens);
  const auto wte = random_matrix<TestScalar, Space>("wte", vocab_local, C),
             wpe = random_matrix<TestScalar, Space>("wpe", T + 2, C);
  Matrix<TestScalar, Space> out("out", tokens.size(), C), tok_only("tok_only", tokens.size(), C);
  trident::ops::embedding_forward(Space(), out, tok, wte, wpe, T, offset);
  trident::ops::token_embedding_forward(Space(), tok_only, tok, wte, offset);
  const auto hte = values(wte), hpe = values(wpe), ho = values(out), ht = values(tok_only);
  for (std::size_t n = 0; n < tokens.size(); ++n) {
    const int row = tokens[n] - offset;
    const bool inside = row >= 0 && row < vocab_local;
    for (int c = 0; c < C; ++c) {
      const double token_part = inside ? hte[row * C + c] : 0.0;
      CHECK(ht[n * C + c] == token_part);
      CHECK(ho[n * C + c] == static_cast<double>(static_cast<TestScalar>(token_part + hpe[(n % T) * C + c])));
    }
  }
  // Positions added afterwards (the vocabulary-parallel order) give the same result.
  trident::ops::position_embedding_forward(Space(), tok_only, wpe, T, true);
  CHECK(values(tok_only) == ho);
  Matrix<TestScalar, Space> positions("positions", tokens.size(), C);
  trident::ops::position_embedding_forward(Space(), positions, wpe, T);
  const auto hp = values(positions);
  for (std::size_t n = 0; n < tokens.size(); ++n)
    for (int c = 0; c < C; ++c) CHECK(hp[n * C + c] == hpe[(n % T) * C + c]);
}

TEMPLATE_LIST_TEST_CASE("embedding_backward sums gradients per token and position, deterministically",
                        "[ops][embedding]", trident_test::ExecutionSpaces) {
  using Space = TestType;
  const int T = 4, C = 21, vocab = 6;  // 21 columns: a block of 16 and a tail
  const std::vector<int> tokens = {1, 3, 1, 5, 1, 0, 3, 3, 2, 1, 4, 1};
  const auto tok = token_view<Space>(tokens);
  const auto dout = random_matrix<float, Space>("dout", tokens.size(), C);
  Matrix<float, Space> dwte("dwte", vocab, C), dwpe("dwpe", T + 1, C);
  trident::ops::embedding_backward(Space(), dwte, dwpe, dout, tok, T);
  const auto first_wte = values(dwte), first_wpe = values(dwpe);

  // The same sums in token order, in float.
  const auto hd = to_host(dout);
  std::vector<float> ref_wte(vocab * C, 0.0f), ref_wpe((T + 1) * C, 0.0f);
  for (std::size_t n = 0; n < tokens.size(); ++n)
    for (int c = 0; c < C; ++c) ref_wte[tokens[n] * C + c] += hd(n, c);
  for (int t = 0; t < T; ++t)
    for (int c = 0; c < C; ++c) {
      float total = 0;
      for (std::size_t b = 0; b < tokens.size() / T; ++b) total += hd(b * T + t, c);
      ref_wpe[t * C + c] += total;
    }
  for (int i = 0; i < vocab * C; ++i) CHECK(first_wte[i] == ref_wte[i]);
  for (int i = 0; i < (T + 1) * C; ++i) CHECK(first_wpe[i] == ref_wpe[i]);  // row T untouched (zero)

  // Bitwise identical on a second run; gradients accumulate.
  Matrix<float, Space> again("again", vocab, C);
  trident::ops::embedding_backward(Space(), again, Matrix<float, Space>(), dout, tok, T);
  CHECK(values(again) == first_wte);
  // Accumulation continues token by token onto what is there.
  trident::ops::embedding_backward(Space(), dwte, dwpe, dout, tok, T);
  for (std::size_t n = 0; n < tokens.size(); ++n)
    for (int c = 0; c < C; ++c) ref_wte[tokens[n] * C + c] += hd(n, c);
  const auto second = values(dwte);
  for (std::size_t i = 0; i < second.size(); ++i) CHECK(second[i] == ref_wte[i]);
}

TEMPLATE_LIST_TEST_CASE("embedding_backward matches finite differences and skips out-of-shard tokens",
                        "[ops][embedding]", trident_test::ExecutionSpaces) {
  using Space = TestType;
  const int T = 2, C = 3, vocab_local = 3, offset = 2;
  const std::vector<int> tokens = {2, 4, 0, 3, 4, 7};
  const auto tok = token_view<Space>(tokens);
  auto wte = random_matrix<double, Space>("wte", vocab_local, C);
  auto wpe = random_matrix<double, Space>("wpe", T, C);
  const auto upstream = random_matrix<double, Space>("up", tokens.size(), C);
  const auto g = values(upstream);
  Matrix<double, Space> out("out", tokens.size(), C);
  auto loss = [&]() {
    trident::ops::embedding_forward(Space(), out, tok, wte, wpe, T, offset);
    return dot(values(out), g);
  };
  Matrix<double, Space> dwte("dwte", vocab_local, C), dwpe("dwpe", T, C);
  trident::ops::embedding_backward(Space(), dwte, dwpe, upstream, tok, T, offset);
  check_gradient(values(dwte), finite_differences(wte, loss));
  check_gradient(values(dwpe), finite_differences(wpe, loss));
}

TEMPLATE_LIST_TEST_CASE("embedding rejects a batch that is not whole sequences", "[ops][embedding]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  const auto tok = token_view<Space>({0, 1, 2, 0, 1});
  const auto wte = random_matrix<float, Space>("wte", 3, 2), wpe = random_matrix<float, Space>("wpe", 2, 2);
  Matrix<float, Space> out("out", 5, 2);
  CHECK_THROWS_WITH(trident::ops::embedding_forward(Space(), out, tok, wte, wpe, 2),
                    Catch::Matchers::Contains("5 rows are not a whole number of sequences of length T = 2"));
  CHECK_THROWS_AS(trident::ops::embedding_forward(Space(), out, tok, wte, wpe, 5), trident::InvalidArgument);
}

namespace {

std::vector<double> reference_cross_entropy(const std::vector<double>& logits, const std::vector<int>& targets, int V) {
  std::vector<double> losses(targets.size());
  for (std::size_t n = 0; n < targets.size(); ++n) {
    if (targets[n] < 0 || targets[n] >= V) {
      losses[n] = 0;
      continue;
    }
    long double max = logits[n * V];
    for (int v = 1; v < V; ++v) max = std::max<long double>(max, logits[n * V + v]);
    long double sum = 0;
    for (int v = 0; v < V; ++v) sum += std::exp(static_cast<long double>(logits[n * V + v]) - max);
    losses[n] = static_cast<double>(std::log(sum) + max - logits[n * V + targets[n]]);
  }
  return losses;
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("cross_entropy_forward matches log-sum-exp minus the target logit", "[ops][cross_entropy]",
                        trident_test::FloatAndDoubleOnEverySpace) {
  using Space = typename TestType::space;
  using TestScalar = typename TestType::scalar;
  const int V = 37;
  const std::vector<int> target_list = {0, 36, 5, -1, 17, 36, 2};
  const auto targets = token_view<Space>(target_list);
  // Large logits: a naive exp would overflow in float.
  const auto logits = random_matrix<TestScalar, Space>("logits", target_list.size(), V, -30.0, 120.0);
  Vector<TestScalar, Space> losses("losses", target_list.size());
  trident::ops::cross_entropy_forward(Space(), losses, logits, targets);
  const auto expected = reference_cross_entropy(values(logits), target_list, V);
  const auto got = values(losses);
  const double tolerance = std::is_same<TestScalar, float>::value ? 1e-5 : 1e-13;
  for (std::size_t n = 0; n < got.size(); ++n) {
    CHECK(std::isfinite(got[n]));
    CHECK(std::abs(got[n] - expected[n]) <= tolerance * std::max(1.0, std::abs(expected[n])));
  }
  CHECK(got[3] == 0.0);  // ignored target
}

TEMPLATE_LIST_TEST_CASE("cross_entropy_backward matches finite differences", "[ops][cross_entropy]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  const int V = 11;
  const std::vector<int> target_list = {3, 0, 10, 7, -1};
  const auto targets = token_view<Space>(target_list);
  auto logits = random_matrix<double, Space>("logits", target_list.size(), V, -3.0, 3.0);
  Vector<double, Space> losses("losses", target_list.size());
  const double scale = 1.0 / 4.0;
  auto loss = [&]() {
    trident::ops::cross_entropy_forward(Space(), losses, logits, targets);
    return scale * trident::ops::sum(Space(), losses);
  };
  Matrix<double, Space> dlogits("dlogits", target_list.size(), V);
  trident::ops::cross_entropy_backward(Space(), dlogits, logits, targets, scale);
  const auto analytic = values(dlogits);
  check_gradient(analytic, finite_differences(logits, loss));
  for (int v = 0; v < V; ++v) CHECK(analytic[4 * V + v] == 0.0);  // ignored row
  // Each row of softmax - onehot sums to zero.
  for (int n = 0; n < 4; ++n) {
    double total = 0;
    for (int v = 0; v < V; ++v) total += analytic[n * V + v];
    CHECK(std::abs(total) < 1e-15);
  }
}

TEMPLATE_LIST_TEST_CASE("cross_entropy_backward in place equals out of place", "[ops][cross_entropy]",
                        trident_test::FloatAndDoubleOnEverySpace) {
  using Space = typename TestType::space;
  using TestScalar = typename TestType::scalar;
  const int V = 53;
  const std::vector<int> target_list = {52, 1, 0, 26, 13, 40};
  const auto targets = token_view<Space>(target_list);
  const auto logits = random_matrix<TestScalar, Space>("logits", target_list.size(), V, -5.0, 5.0);
  Matrix<TestScalar, Space> separate("separate", target_list.size(), V), in_place("in_place", target_list.size(), V);
  Kokkos::deep_copy(in_place, logits);
  trident::ops::cross_entropy_backward(Space(), separate, logits, targets, TestScalar(0.125));
  trident::ops::cross_entropy_backward(Space(), in_place, in_place, targets, TestScalar(0.125));
  CHECK(values(in_place) == values(separate));
  // And the values are scale * (softmax - onehot).
  const auto hl = values(logits), hs = values(separate);
  const double tolerance = std::is_same<TestScalar, float>::value ? 1e-7 : 1e-16;
  for (std::size_t n = 0; n < target_list.size(); ++n) {
    double max = -1e300, sum = 0;
    for (int v = 0; v < V; ++v) max = std::max(max, hl[n * V + v]);
    for (int v = 0; v < V; ++v) sum += std::exp(hl[n * V + v] - max);
    for (int v = 0; v < V; ++v) {
      const double expected = 0.125 * (std::exp(hl[n * V + v] - max) / sum - (v == target_list[n] ? 1.0 : 0.0));
      CHECK(std::abs(hs[n * V + v] - expected) < tolerance);
    }
  }
}

TEMPLATE_LIST_TEST_CASE("cross_entropy_forward_backward equals forward then backward", "[ops][cross_entropy]",
                        trident_test::FloatAndDoubleOnEverySpace) {
  using Space = typename TestType::space;
  using TestScalar = typename TestType::scalar;
  const int V = 29;
  const std::vector<int> target_list = {28, 0, -1, 14, 3};
  const auto targets = token_view<Space>(target_list);
  const auto logits = random_matrix<TestScalar, Space>("logits", target_list.size(), V, -6.0, 9.0);
  Vector<TestScalar, Space> losses("losses", target_list.size()), fused_losses("fused_losses", target_list.size());
  Matrix<TestScalar, Space> dlogits("dlogits", target_list.size(), V), fused("fused", target_list.size(), V);
  trident::ops::cross_entropy_forward(Space(), losses, logits, targets);
  trident::ops::cross_entropy_backward(Space(), dlogits, logits, targets, TestScalar(0.2));
  Kokkos::deep_copy(fused, logits);  // in place, as a model does it
  trident::ops::cross_entropy_forward_backward(Space(), fused_losses, fused, fused, targets, TestScalar(0.2));
  CHECK(values(fused) == values(dlogits));
  const auto expected = values(losses), got = values(fused_losses);
  const double tolerance = std::is_same<TestScalar, float>::value ? 1e-6 : 1e-15;
  for (std::size_t i = 0; i < got.size(); ++i)
    CHECK(std::abs(got[i] - expected[i]) <= tolerance * std::abs(expected[i]));
  CHECK(got[2] == 0.0);
}

TEMPLATE_LIST_TEST_CASE("mse matches its formula and finite differences", "[ops][mse]", trident_test::ExecutionSpaces) {
  using Space = TestType;
  const std::int64_t n = 4, f = 5;
  auto pred = random_matrix<double, Space>("pred", n, f);
  const auto target = random_matrix<double, Space>("target", n, f);
  Vector<double, Space> losses("losses", n);
  trident::ops::mse_forward(Space(), losses, pred, target);
  const auto hp = values(pred), ht = values(target), hl = values(losses);
  for (std::int64_t i = 0; i < n; ++i) {
    double total = 0;
    for (std::int64_t j = 0; j < f; ++j) total += (hp[i * f + j] - ht[i * f + j]) * (hp[i * f + j] - ht[i * f + j]);
    CHECK(std::abs(hl[i] - total / f) < 1e-15);
  }
  const double scale = 1.0 / n;
  auto loss = [&]() {
    trident::ops::mse_forward(Space(), losses, pred, target);
    return scale * trident::ops::sum(Space(), losses);
  };
  Matrix<double, Space> dpred("dpred", n, f);
  trident::ops::mse_backward(Space(), dpred, pred, target, scale);
  const auto first = values(dpred);
  check_gradient(first, finite_differences(pred, loss));
  trident::ops::mse_backward(Space(), dpred, pred, target, scale, true);
  const auto second = values(dpred);
  for (std::size_t i = 0; i < first.size(); ++i) CHECK(std::abs(second[i] - 2 * first[i]) < 1e-15);
}

TEMPLATE_LIST_TEST_CASE("sum and mean accumulate in double in a fixed order", "[ops][reduction]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  const auto v = random_vector<float, Space>("v", 2500, 0.0, 1.0);
  const auto hv = values(v);
  // The documented order: blocks of 1024 in order, then the block sums in order.
  double blocks[3] = {0, 0, 0};
  for (std::size_t i = 0; i < hv.size(); ++i) blocks[i / 1024] += hv[i];
  const double expected = (blocks[0] + blocks[1]) + blocks[2];
  CHECK(trident::ops::sum(Space(), v) == expected);
  CHECK(trident::ops::mean(Space(), v) == expected / 2500);

  const auto m = random_matrix<double, Space>("m", 7, 3);
  const auto hm = values(m);
  double rows_total = 0;
  for (int i = 0; i < 7; ++i) rows_total += (hm[i * 3] + hm[i * 3 + 1]) + hm[i * 3 + 2];
  CHECK(trident::ops::sum(Space(), m) == rows_total);
  CHECK(trident::ops::sum(Space(), Vector<double, Space>()) == 0.0);
  CHECK(trident::ops::mean(Space(), Vector<double, Space>()) == 0.0);
}
