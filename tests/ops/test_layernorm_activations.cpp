// Layer norm, GELU and the other activations, residual adds: forwards against direct
// formulas, backwards against central finite differences, accumulate and empty views.

#include "ops_test_helpers.hpp"

#include <trident/ops/activations.hpp>
#include <trident/ops/gelu.hpp>
#include <trident/ops/layernorm.hpp>
#include <trident/ops/residual.hpp>

using namespace ops_test;

TEMPLATE_LIST_TEST_CASE("layernorm_forward matches the direct formula", "[ops][layernorm]",
                        trident_test::FloatAndDoubleOnEverySpace) {
  using Space = typename TestType::space;
  using TestScalar = typename TestType::scalar;
  const std::int64_t n = 5, c = 19;
  // An offset far from zero checks the two-pass variance.
  const auto x = random_matrix<TestScalar, Space>("x", n, c, 2.0, 6.0);
  const auto w = random_vector<TestScalar, Space>("w", c), b = random_vector<TestScalar, Space>("b", c);
  Matrix<TestScalar, Space> y("y", n, c);
  Vector<TestScalar, Space> mean("mean", n), rstd("rstd", n);
  trident::ops::layernorm_forward(Space(), y, mean, rstd, x, w, b);
  const auto hx = values(x), hw = values(w), hb = values(b), hy = values(y), hm = values(mean), hr = values(rstd);
  const double tolerance = std::is_same<TestScalar, float>::value ? 2e-5 : 1e-12;
  for (std::int64_t i = 0; i < n; ++i) {
    double mu = 0, var = 0;
    for (std::int64_t j = 0; j < c; ++j) mu += hx[i * c + j];
    mu /= c;
    for (std::int64_t j = 0; j < c; ++j) var += (hx[i * c + j] - mu) * (hx[i * c + j] - mu);
    var /= c;
    const double r = 1.0 / std::sqrt(var + 1e-5);
    CHECK(std::abs(hm[i] - mu) < tolerance * std::abs(mu));
    CHECK(std::abs(hr[i] - r) < tolerance * r);
    for (std::int64_t j = 0; j < c; ++j) {
      const double expected = (hx[i * c + j] - mu) * r * hw[j] + hb[j];
      CHECK(std::abs(hy[i * c + j] - expected) < tolerance * 4);
    }
  }
}

TEMPLATE_LIST_TEST_CASE("layernorm_backward matches finite differences", "[ops][layernorm]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  const std::int64_t n = 4, c = 7;
  auto x = random_matrix<double, Space>("x", n, c, -2.0, 2.0);
  auto w = random_vector<double, Space>("w", c, 0.5, 1.5);
  auto b = random_vector<double, Space>("b", c);
  const auto upstream = random_matrix<double, Space>("upstream", n, c);
  const auto g = values(upstream);
  Matrix<double, Space> y("y", n, c);
  Vector<double, Space> mean("mean", n), rstd("rstd", n);
  auto loss = [&]() {
    trident::ops::layernorm_forward(Space(), y, mean, rstd, x, w, b);
    return dot(values(y), g);
  };
  loss();
  Matrix<double, Space> dx("dx", n, c);
  Vector<double, Space> dw("dw", c), db("db", c);
  trident::ops::layernorm_backward(Space(), dx, dw, db, upstream, x, w, mean, rstd);
  SECTION("input") {
    check_gradient(values(dx), finite_differences(x, loss));
  }
  SECTION("weight") {
    check_gradient(values(dw), finite_differences(w, loss));
  }
  SECTION("bias") {
    check_gradient(values(db), finite_differences(b, loss));
  }
}

TEMPLATE_LIST_TEST_CASE("layernorm_backward accumulates parameters, honours accumulate and empty views",
                        "[ops][layernorm]", trident_test::ExecutionSpaces) {
  using Space = TestType;
  const std::int64_t n = 6, c = 37;  // two full column blocks of 16 and a tail of 5
  const auto x = random_matrix<double, Space>("x", n, c), upstream = random_matrix<double, Space>("up", n, c);
  const auto w = random_vector<double, Space>("w", c), b = random_vector<double, Space>("b", c);
  Matrix<double, Space> y("y", n, c), dx("dx", n, c);
  Vector<double, Space> mean("mean", n), rstd("rstd", n), dw("dw", c), db("db", c);
  trident::ops::layernorm_forward(Space(), y, mean, rstd, x, w, b);
  trident::ops::layernorm_backward(Space(), dx, dw, db, upstream, x, w, mean, rstd);
  const auto dx1 = values(dx), dw1 = values(dw), db1 = values(db);

  // dweight and dbias against plain column sums.
  const auto hx = values(x), hg = values(upstream), hm = values(mean), hr = values(rstd);
  for (std::int64_t j = 0; j < c; ++j) {
    double sw = 0, sb = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      sw += hg[i * c + j] * (hx[i * c + j] - hm[i]) * hr[i];
      sb += hg[i * c + j];
    }
    CHECK(std::abs(dw1[j] - sw) < 1e-12);
    CHECK(std::abs(db1[j] - sb) < 1e-12);
  }

  trident::ops::layernorm_backward(Space(), dx, dw, db, upstream, x, w, mean, rstd, true);
  const auto dx2 = values(dx), dw2 = values(dw), db2 = values(db);
  for (std::size_t i = 0; i < dx1.size(); ++i) CHECK(std::abs(dx2[i] - 2 * dx1[i]) < 1e-12);
  for (std::size_t i = 0; i < dw1.size(); ++i) CHECK(std::abs(dw2[i] - 2 * dw1[i]) < 1e-12);
  for (std::size_t i = 0; i < db1.size(); ++i) CHECK(std::abs(db2[i] - 2 * db1[i]) < 1e-12);

  // Only the bias gradient requested.
  Vector<double, Space> db_only("db_only", c);
  trident::ops::layernorm_backward(Space(), Matrix<double, Space>(), Vector<double, Space>(), db_only, upstream, x, w,
                                   mean, rstd);
  const auto dbo = values(db_only);
  for (std::size_t i = 0; i < db1.size(); ++i) CHECK(std::abs(dbo[i] - db1[i]) < 1e-12);
}

TEMPLATE_LIST_TEST_CASE("layernorm_backward_plus adds a residual's gradient in its own pass",
                        "[ops][layernorm][residual]", trident_test::ExecutionSpaces) {
  using Space = TestType;
  const std::int64_t n = 6, c = 37;
  const auto x = random_matrix<float, Space>("x", n, c), upstream = random_matrix<float, Space>("up", n, c);
  const auto skip = random_matrix<float, Space>("skip", n, c);
  const auto w = random_vector<float, Space>("w", c), b = random_vector<float, Space>("b", c);
  Matrix<float, Space> y("y", n, c), branch("branch", n, c), apart("apart", n, c), joined("joined", n, c);
  Vector<float, Space> mean("mean", n), rstd("rstd", n), dw1("dw1", c), db1("db1", c), dw2("dw2", c), db2("db2", c);
  trident::ops::layernorm_forward(Space(), y, mean, rstd, x, w, b);
  // Apart: the branch's input gradient, then the residual's add (what nn::Residual did before).
  trident::ops::layernorm_backward(Space(), branch, dw1, db1, upstream, x, w, mean, rstd);
  trident::ops::residual_forward(Space(), apart, skip, branch);
  // The compiler may fuse the add with the last product into one multiply-add (one rounding
  // fewer): equal to a float rounding, not bit for bit; the parameter gradients bit for bit.
  const auto check_joined = [&](const Matrix<float, Space>& got, const Vector<float, Space>& dw,
                                const Vector<float, Space>& db) {
    const auto g = values(got), a = values(apart);
    for (std::size_t i = 0; i < a.size(); ++i) CHECK(std::abs(g[i] - a[i]) <= 1e-6 * std::max(1.0, std::abs(a[i])));
    CHECK(values(dw) == values(dw1));
    CHECK(values(db) == values(db1));
  };
  trident::ops::layernorm_backward_plus(Space(), joined, skip, dw2, db2, upstream, x, w, mean, rstd);
  check_joined(joined, dw2, db2);
  // In place: the skip gradient is the output's own buffer.
  Matrix<float, Space> in_place("in_place", n, c);
  Kokkos::deep_copy(in_place, skip);
  trident::ops::layernorm_backward_plus(Space(), in_place, in_place, Vector<float, Space>(), Vector<float, Space>(),
                                        upstream, x, w, mean, rstd);
  CHECK(values(in_place) == values(joined));
  // A branch of one LayerNorm: the stream's gradient is its dout, the skip and its dinp at once.
  Matrix<float, Space> one_buffer("one_buffer", n, c);
  Vector<float, Space> dw3("dw3", c), db3("db3", c);
  Kokkos::deep_copy(one_buffer, upstream);
  trident::ops::residual_forward(Space(), apart, upstream, branch);
  trident::ops::layernorm_backward_plus(Space(), one_buffer, one_buffer, dw3, db3, one_buffer, x, w, mean, rstd);
  check_joined(one_buffer, dw3, db3);
  // A skip of another shape is refused, naming it.
  const Matrix<float, Space> wrong("wrong", n, c + 1);
  CHECK_THROWS_WITH(trident::ops::layernorm_backward_plus(Space(), joined, wrong, dw2, db2, upstream, x, w, mean, rstd),
                    Catch::Contains("skip"));
}

namespace {

double gelu_reference(double x) {
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}
double relu_reference(double x) {
  return x > 0 ? x : 0;
}
double tanh_reference(double x) {
  return std::tanh(x);
}
double silu_reference(double x) {
  return x / (1.0 + std::exp(-x));
}

template <class Scalar, class Space, class Forward, class Reference>
void check_activation_forward(const Forward& forward, const Reference& reference) {
  const std::int64_t n = 3, f = 21;
  const auto x = random_matrix<Scalar, Space>("x", n, f, -4.0, 4.0);
  Matrix<Scalar, Space> y("y", n, f);
  forward(Space(), y, x);
  const auto hx = values(x), hy = values(y);
  const double tolerance = std::is_same<Scalar, float>::value ? 2e-6 : 1e-14;
  for (std::size_t i = 0; i < hx.size(); ++i) {
    INFO("x = " << hx[i]);
    CHECK(std::abs(hy[i] - reference(hx[i])) <= tolerance * std::max(1.0, std::abs(reference(hx[i]))));
  }
}

template <class Space, class Forward, class Backward>
void check_activation_backward(const Forward& forward, const Backward& backward) {
  const std::int64_t n = 3, f = 7;
  auto x = random_matrix<double, Space>("x", n, f, -3.0, 3.0, 5);
  const auto upstream = random_matrix<double, Space>("up", n, f);
  const auto g = values(upstream);
  Matrix<double, Space> y("y", n, f), dx("dx", n, f);
  auto loss = [&]() {
    forward(Space(), y, x);
    return dot(values(y), g);
  };
  backward(Space(), dx, x, upstream, false);
  const auto dx1 = values(dx);
  check_gradient(dx1, finite_differences(x, loss));
  backward(Space(), dx, x, upstream, true);
  const auto dx2 = values(dx);
  for (std::size_t i = 0; i < dx1.size(); ++i) CHECK(std::abs(dx2[i] - 2 * dx1[i]) < 1e-14);
  // An empty dinp is a no-op, not an error.
  backward(Space(), Matrix<double, Space>(), x, upstream, false);
}

}  // namespace

#define TRIDENT_FORWARD(name) [](const auto& s, const auto& o, const auto& i) { trident::ops::name##_forward(s, o, i); }
#define TRIDENT_BACKWARD(name)                                               \
  [](const auto& s, const auto& d, const auto& i, const auto& g, bool acc) { \
    trident::ops::name##_backward(s, d, i, g, acc);                          \
  }

TEMPLATE_LIST_TEST_CASE("activation forwards match their formulas", "[ops][activations]",
                        trident_test::FloatAndDoubleOnEverySpace) {
  using Space = typename TestType::space;
  using TestScalar = typename TestType::scalar;
  SECTION("gelu") {
    check_activation_forward<TestScalar, Space>(TRIDENT_FORWARD(gelu), gelu_reference);
  }
  SECTION("relu") {
    check_activation_forward<TestScalar, Space>(TRIDENT_FORWARD(relu), relu_reference);
  }
  SECTION("tanh") {
    check_activation_forward<TestScalar, Space>(TRIDENT_FORWARD(tanh), tanh_reference);
  }
  SECTION("silu") {
    check_activation_forward<TestScalar, Space>(TRIDENT_FORWARD(silu), silu_reference);
  }
}

TEMPLATE_LIST_TEST_CASE("activation backwards match finite differences and accumulate", "[ops][activations]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  SECTION("gelu") {
    check_activation_backward<Space>(TRIDENT_FORWARD(gelu), TRIDENT_BACKWARD(gelu));
  }
  SECTION("relu") {
    check_activation_backward<Space>(TRIDENT_FORWARD(relu), TRIDENT_BACKWARD(relu));
  }
  SECTION("tanh") {
    check_activation_backward<Space>(TRIDENT_FORWARD(tanh), TRIDENT_BACKWARD(tanh));
  }
  SECTION("silu") {
    check_activation_backward<Space>(TRIDENT_FORWARD(silu), TRIDENT_BACKWARD(silu));
  }
}

TEMPLATE_LIST_TEST_CASE("activations reject mismatched shapes", "[ops][activations]", trident_test::ExecutionSpaces) {
  using Space = TestType;
  const auto x = random_matrix<double, Space>("x", 3, 4);
  Matrix<double, Space> y("y", 3, 5);
  CHECK_THROWS_WITH(trident::ops::gelu_forward(Space(), y, x),
                    Catch::Matchers::Contains("trident::ops::gelu_forward: out is [3, 5] but must be [3, 4]"));
}

TEMPLATE_LIST_TEST_CASE("residual_forward and add_inplace on rank-1 and rank-2 views", "[ops][residual]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  const auto a = random_matrix<float, Space>("a", 5, 3), b = random_matrix<float, Space>("b", 5, 3);
  Matrix<float, Space> out("out", 5, 3);
  trident::ops::residual_forward(Space(), out, a, b);
  const auto ha = values(a), hb = values(b), ho = values(out);
  for (std::size_t i = 0; i < ha.size(); ++i) CHECK(ho[i] == static_cast<double>(static_cast<float>(ha[i] + hb[i])));
  trident::ops::add_inplace(Space(), out, a);
  const auto ho2 = values(out);
  for (std::size_t i = 0; i < ha.size(); ++i)
    CHECK(ho2[i] == static_cast<double>(static_cast<float>(ho[i]) + static_cast<float>(ha[i])));

  const auto u = random_vector<double, Space>("u", 1500), v = random_vector<double, Space>("v", 1500);
  Vector<double, Space> w("w", 1500);
  trident::ops::residual_forward(Space(), w, u, v);
  trident::ops::add_inplace(Space(), w, u);
  const auto hu = values(u), hv = values(v), hw = values(w);
  for (std::size_t i = 0; i < hu.size(); ++i) CHECK(hw[i] == (hu[i] + hv[i]) + hu[i]);

  Matrix<float, Space> wrong("wrong", 5, 4);
  CHECK_THROWS_WITH(trident::ops::residual_forward(Space(), wrong, a, b),
                    Catch::Matchers::Contains("trident::ops::residual_forward: a is [5, 3] but out is [5, 4]"));
  CHECK_THROWS_AS(trident::ops::add_inplace(Space(), u, Vector<double, Space>("short", 3)), trident::InvalidArgument);
}
