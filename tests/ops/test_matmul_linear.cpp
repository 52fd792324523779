// matmul and the linear layers: forwards against plain loops, backwards against central
// finite differences, and the accumulate / empty-view conventions.

#include "ops_test_helpers.hpp"

#include <trident/ops/linear.hpp>
#include <trident/ops/matmul.hpp>

using namespace ops_test;

namespace {

// C = alpha op(A) op(B) + beta C on host copies, in double.
std::vector<double> reference_gemm(char ta, char tb, double alpha, const std::vector<double>& a, std::int64_t a_cols,
                                   const std::vector<double>& b, std::int64_t b_cols, double beta,
                                   std::vector<double> c, std::int64_t m, std::int64_t n, std::int64_t k) {
  auto A = [&](std::int64_t i, std::int64_t p) { return ta == 'N' ? a[i * a_cols + p] : a[p * a_cols + i]; };
  auto B = [&](std::int64_t p, std::int64_t j) { return tb == 'N' ? b[p * b_cols + j] : b[j * b_cols + p]; };
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      double total = 0;
      for (std::int64_t p = 0; p < k; ++p) total += A(i, p) * B(p, j);
      c[i * n + j] = alpha * total + beta * c[i * n + j];
    }
  return c;
}

template <class Scalar, class Space>
void check_matmul(char ta, char tb, double tolerance) {
  const std::int64_t m = 7, n = 5, k = 9;
  const auto a = ta == 'N' ? random_matrix<Scalar, Space>("a", m, k) : random_matrix<Scalar, Space>("a", k, m);
  const auto b = tb == 'N' ? random_matrix<Scalar, Space>("b", k, n) : random_matrix<Scalar, Space>("b", n, k);
  const auto c = random_matrix<Scalar, Space>("c", m, n);
  const auto expected =
      reference_gemm(ta, tb, 0.75, values(a), a.extent(1), values(b), b.extent(1), -0.5, values(c), m, n, k);
  trident::ops::matmul(Space(), ta, tb, Scalar(0.75), a, b, Scalar(-0.5), c);
  CHECK(relative_error(values(c), expected) < tolerance);
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("matmul matches a triple loop for every transpose", "[ops][matmul]",
                        trident_test::FloatAndDoubleOnEverySpace) {
  using Space = typename TestType::space;
  using TestScalar = typename TestType::scalar;
  const double tolerance = std::is_same<TestScalar, float>::value ? 1e-6 : 1e-14;
  for (char ta : {'N', 'T'})
    for (char tb : {'N', 'T'}) {
      INFO("trans_a = " << ta << ", trans_b = " << tb);
      check_matmul<TestScalar, Space>(ta, tb, tolerance);
    }
}

TEMPLATE_LIST_TEST_CASE("matmul on row blocks of a LayoutRight view", "[ops][matmul]", trident_test::ExecutionSpaces) {
  using Space = TestType;
  const auto a = random_matrix<double, Space>("a", 10, 6), b = random_matrix<double, Space>("b", 6, 4);
  Matrix<double, Space> c("c", 10, 4);
  const auto rows = Kokkos::make_pair(3, 8);
  trident::ops::matmul(Space(), 'N', 'N', 1.0, Kokkos::subview(a, rows, Kokkos::ALL), b, 0.0,
                       Kokkos::subview(c, rows, Kokkos::ALL));
  const auto full =
      reference_gemm('N', 'N', 1.0, values(a), 6, values(b), 4, 0.0, std::vector<double>(40, 0.0), 10, 4, 6);
  const auto got = values(c);
  for (std::int64_t i = 0; i < 10; ++i)
    for (std::int64_t j = 0; j < 4; ++j) {
      const double expected = (i >= 3 && i < 8) ? full[i * 4 + j] : 0.0;
      CHECK(std::abs(got[i * 4 + j] - expected) < 1e-13);
    }
}

TEMPLATE_LIST_TEST_CASE("matmul on column blocks (strided views)", "[ops][matmul]", trident_test::ExecutionSpaces) {
  using Space = TestType;
  const auto a = random_matrix<double, Space>("a", 6, 9), b = random_matrix<double, Space>("b", 5, 4);
  Matrix<double, Space> c("c", 6, 7);
  // A's columns [2, 7) and C's columns [1, 5): LayoutStride views.
  const auto a_cols = Kokkos::subview(a, Kokkos::ALL, Kokkos::make_pair(2, 7));
  const auto c_cols = Kokkos::subview(c, Kokkos::ALL, Kokkos::make_pair(1, 5));
  trident::ops::matmul(Space(), 'N', 'N', 1.0, a_cols, b, 0.0, c_cols);
  const auto ha = values(a), hb = values(b), hc = values(c);
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 7; ++j) {
      double expected = 0;
      if (j >= 1 && j < 5)
        for (int p = 0; p < 5; ++p) expected += ha[i * 9 + 2 + p] * hb[p * 4 + (j - 1)];
      CHECK(std::abs(hc[i * 7 + j] - expected) < 1e-13);
    }
}

TEMPLATE_LIST_TEST_CASE("matmul with an empty inner dimension scales C by beta", "[ops][matmul]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  Matrix<double, Space> a("a", 3, 0), b("b", 0, 2);
  auto c = random_matrix<double, Space>("c", 3, 2);
  const auto before = values(c);
  trident::ops::matmul(Space(), 'N', 'N', 1.0, a, b, 2.0, c);
  const auto after = values(c);
  for (std::size_t i = 0; i < before.size(); ++i) CHECK(after[i] == 2.0 * before[i]);
}

TEMPLATE_LIST_TEST_CASE("matmul rejects mismatched shapes and modes", "[ops][matmul]", trident_test::ExecutionSpaces) {
  using Space = TestType;
  const auto a = random_matrix<double, Space>("a", 3, 4), b = random_matrix<double, Space>("b", 5, 2);
  Matrix<double, Space> c("c", 3, 2);
  CHECK_THROWS_AS(trident::ops::matmul(Space(), 'N', 'N', 1.0, a, b, 0.0, c), trident::InvalidArgument);
  CHECK_THROWS_WITH(trident::ops::matmul(Space(), 'N', 'N', 1.0, a, b, 0.0, c),
                    Catch::Matchers::Contains("op(A) is [3, 4], op(B) is [5, 2]"));
  CHECK_THROWS_AS(trident::ops::matmul(Space(), 'X', 'N', 1.0, a, b, 0.0, c), trident::InvalidArgument);
}

TEMPLATE_LIST_TEST_CASE("linear_forward matches x W + b", "[ops][linear]", trident_test::FloatAndDoubleOnEverySpace) {
  using Space = typename TestType::space;
  using TestScalar = typename TestType::scalar;
  const std::int64_t n = 6, in = 5, out_features = 7;
  const auto x = random_matrix<TestScalar, Space>("x", n, in),
             w = random_matrix<TestScalar, Space>("w", in, out_features);
  const auto bias = random_vector<TestScalar, Space>("bias", out_features);
  Matrix<TestScalar, Space> y("y", n, out_features), y_nobias("y_nobias", n, out_features);
  trident::ops::linear_forward(Space(), y, x, w, bias);
  trident::ops::linear_forward(Space(), y_nobias, x, w, Vector<TestScalar, Space>());
  const auto hx = values(x), hw = values(w), hb = values(bias), hy = values(y), hy0 = values(y_nobias);
  const double tolerance = std::is_same<TestScalar, float>::value ? 1e-6 : 1e-14;
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t o = 0; o < out_features; ++o) {
      double total = 0;
      for (std::int64_t p = 0; p < in; ++p) total += hx[i * in + p] * hw[p * out_features + o];
      CHECK(std::abs(hy0[i * out_features + o] - total) < tolerance * 10);
      CHECK(std::abs(hy[i * out_features + o] - (total + hb[o])) < tolerance * 10);
    }
}

TEMPLATE_LIST_TEST_CASE("linear_backward matches finite differences", "[ops][linear]", trident_test::ExecutionSpaces) {
  using Space = TestType;
  const std::int64_t n = 5, in = 4, out_features = 3;
  auto x = random_matrix<double, Space>("x", n, in);
  auto w = random_matrix<double, Space>("w", in, out_features);
  auto bias = random_vector<double, Space>("bias", out_features);
  const auto upstream = random_matrix<double, Space>("upstream", n, out_features);
  const auto g = values(upstream);
  Matrix<double, Space> y("y", n, out_features);
  auto loss = [&]() {
    trident::ops::linear_forward(Space(), y, x, w, bias);
    return dot(values(y), g);
  };
  Matrix<double, Space> dx("dx", n, in), dw("dw", in, out_features);
  Vector<double, Space> db("db", out_features);
  trident::ops::linear_backward(Space(), dx, dw, db, upstream, x, w);
  SECTION("input") {
    check_gradient(values(dx), finite_differences(x, loss));
  }
  SECTION("weight") {
    check_gradient(values(dw), finite_differences(w, loss));
  }
  SECTION("bias") {
    check_gradient(values(db), finite_differences(bias, loss));
  }
}

TEMPLATE_LIST_TEST_CASE("linear_backward accumulates parameter gradients and honours accumulate and empty views",
                        "[ops][linear]", trident_test::ExecutionSpaces) {
  using Space = TestType;
  const std::int64_t n = 9, in = 19, out_features = 17;  // 17 columns: one full block of 16 and a tail
  const auto x = random_matrix<double, Space>("x", n, in), w = random_matrix<double, Space>("w", in, out_features);
  const auto dy = random_matrix<double, Space>("dy", n, out_features);
  Matrix<double, Space> dx("dx", n, in), dw("dw", in, out_features);
  Vector<double, Space> db("db", out_features);
  trident::ops::linear_backward(Space(), dx, dw, db, dy, x, w);
  const auto dx1 = values(dx), dw1 = values(dw), db1 = values(db);

  // Column sums of dy by hand.
  const auto hdy = values(dy);
  for (std::int64_t o = 0; o < out_features; ++o) {
    double total = 0;
    for (std::int64_t i = 0; i < n; ++i) total += hdy[i * out_features + o];
    CHECK(std::abs(db1[o] - total) < 1e-13);
  }

  // Second call: parameter gradients double, dinp is overwritten (not doubled).
  trident::ops::linear_backward(Space(), dx, dw, db, dy, x, w);
  const auto dx2 = values(dx), dw2 = values(dw), db2 = values(db);
  for (std::size_t i = 0; i < dx1.size(); ++i) CHECK(dx2[i] == dx1[i]);
  for (std::size_t i = 0; i < dw1.size(); ++i) CHECK(std::abs(dw2[i] - 2 * dw1[i]) < 1e-13);
  for (std::size_t i = 0; i < db1.size(); ++i) CHECK(std::abs(db2[i] - 2 * db1[i]) < 1e-13);

  // accumulate = true adds into dinp; empty parameter gradients are skipped.
  trident::ops::linear_backward(Space(), dx, Matrix<double, Space>(), Vector<double, Space>(), dy, x, w, true);
  const auto dx3 = values(dx);
  for (std::size_t i = 0; i < dx1.size(); ++i) CHECK(std::abs(dx3[i] - 2 * dx1[i]) < 1e-13);

  // An empty dinp is skipped: only dweight changes.
  Matrix<double, Space> dw_only("dw_only", in, out_features);
  trident::ops::linear_backward(Space(), Matrix<double, Space>(), dw_only, Vector<double, Space>(), dy, x, w);
  const auto dwo = values(dw_only);
  for (std::size_t i = 0; i < dw1.size(); ++i) CHECK(std::abs(dwo[i] - dw1[i]) < 1e-13);
}

TEMPLATE_LIST_TEST_CASE("linear rejects mismatched shapes with a message naming them", "[ops][linear]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  const auto x = random_matrix<double, Space>("x", 4, 12), w = random_matrix<double, Space>("w", 10, 3);
  Matrix<double, Space> y("y", 4, 3);
  CHECK_THROWS_WITH(
      trident::ops::linear_forward(Space(), y, x, w, Vector<double, Space>()),
      Catch::Matchers::Contains("trident::ops::linear_forward: inp has 12 columns but weight has 10 rows"));
  const auto w2 = random_matrix<double, Space>("w2", 12, 3);
  Matrix<double, Space> wrong("wrong", 5, 3);
  CHECK_THROWS_AS(trident::ops::linear_forward(Space(), wrong, x, w2, Vector<double, Space>()),
                  trident::InvalidArgument);
  CHECK_THROWS_AS(trident::ops::linear_forward(Space(), y, x, w2, Vector<double, Space>("b", 4)),
                  trident::InvalidArgument);
}

TEMPLATE_LIST_TEST_CASE("linear_transposed_forward matches x W^T", "[ops][linear]",
                        trident_test::FloatAndDoubleOnEverySpace) {
  using Space = typename TestType::space;
  using TestScalar = typename TestType::scalar;
  const std::int64_t n = 4, c = 6, v = 11;
  const auto x = random_matrix<TestScalar, Space>("x", n, c), w = random_matrix<TestScalar, Space>("w", v, c);
  Matrix<TestScalar, Space> y("y", n, v);
  trident::ops::linear_transposed_forward(Space(), y, x, w);
  const auto hx = values(x), hw = values(w), hy = values(y);
  const double tolerance = std::is_same<TestScalar, float>::value ? 1e-5 : 1e-13;
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < v; ++j) {
      double total = 0;
      for (std::int64_t p = 0; p < c; ++p) total += hx[i * c + p] * hw[j * c + p];
      CHECK(std::abs(hy[i * v + j] - total) < tolerance);
    }
}

TEMPLATE_LIST_TEST_CASE("linear_transposed_backward matches finite differences and accumulates", "[ops][linear]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  const std::int64_t n = 4, c = 3, v = 7;
  auto x = random_matrix<double, Space>("x", n, c);
  auto w = random_matrix<double, Space>("w", v, c);
  const auto upstream = random_matrix<double, Space>("upstream", n, v);
  const auto g = values(upstream);
  Matrix<double, Space> y("y", n, v);
  auto loss = [&]() {
    trident::ops::linear_transposed_forward(Space(), y, x, w);
    return dot(values(y), g);
  };
  Matrix<double, Space> dx("dx", n, c), dw("dw", v, c);
  trident::ops::linear_transposed_backward(Space(), dx, dw, upstream, x, w);
  check_gradient(values(dx), finite_differences(x, loss));
  check_gradient(values(dw), finite_differences(w, loss));

  const auto dx1 = values(dx), dw1 = values(dw);
  trident::ops::linear_transposed_backward(Space(), dx, dw, upstream, x, w, true);
  const auto dx2 = values(dx), dw2 = values(dw);
  for (std::size_t i = 0; i < dx1.size(); ++i) CHECK(std::abs(dx2[i] - 2 * dx1[i]) < 1e-13);
  for (std::size_t i = 0; i < dw1.size(); ++i) CHECK(std::abs(dw2[i] - 2 * dw1[i]) < 1e-13);
}
