// A linear's bias added by the activation after it (ops/bias_activation.hpp): the fused passes
// against the bias and the activation applied one after the other, the bias gradient against
// finite differences, and its accumulation and shape checks; the column sums behind every bias
// gradient against the rows added in order.

#include "ops_test_helpers.hpp"

#include <trident/ops/activations.hpp>
#include <trident/ops/bias_activation.hpp>
#include <trident/ops/detail/launch.hpp>
#include <trident/ops/gelu.hpp>

#include <algorithm>

using namespace ops_test;

namespace {

// 300 columns, not a multiple of 16: a host's last block of bias sums is partial; 37 for the
// finite differences; 2085 for a host block at its capacity (2048 columns) and a part of one.
constexpr std::int64_t rows = 5, cols = 300, cols_small = 37, cols_wide = 2085;

// An element of a matrix, counting how often each is asked for (a value that writes, such as a
// gradient whose column sums are a bias gradient, must be asked once).
template <class Space>
struct CountedElement {
  Kokkos::View<float**, Kokkos::LayoutRight, typename Space::memory_space> m_matrix;
  Kokkos::View<int**, Kokkos::LayoutRight, typename Space::memory_space> m_visits;
  KOKKOS_FUNCTION float operator()(const std::int64_t n, const std::int64_t c) const {
    Kokkos::atomic_add(&m_visits(n, c), 1);
    return m_matrix(n, c);
  }
};

// The activation one element at a time, as the unfused kernels apply it.
template <class Activation, class Scalar>
std::vector<double> activation_values(const std::vector<double>& x) {
  std::vector<double> y;
  for (double v : x) y.push_back(static_cast<double>(Activation::value(static_cast<Scalar>(v))));
  return y;
}

template <class Activation, class Scalar>
std::vector<double> derivative_values(const std::vector<double>& x) {
  std::vector<double> y;
  for (double v : x) y.push_back(static_cast<double>(Activation::derivative(static_cast<Scalar>(v))));
  return y;
}

template <class Activation, class Scalar, class Space>
void check_against_unfused() {
  const double tolerance = std::is_same<Scalar, float>::value ? 1e-6 : 1e-14;
  auto pre = random_matrix<Scalar, Space>("pre", rows, cols, -3.0, 3.0, 3);
  const auto bias = random_vector<Scalar, Space>("bias", cols, -1.0, 1.0, 4);
  const auto dout = random_matrix<Scalar, Space>("dout", rows, cols, -1.0, 1.0, 5);
  const auto product = values(pre), b = values(bias), upstream = values(dout);
  Matrix<Scalar, Space> out("out", rows, cols), dpre("dpre", rows, cols);

  trident::ops::bias_activation_forward<Activation>(Space(), pre, out, bias);
  // The pre-activation is the product plus the bias, in place, computed in Scalar.
  std::vector<double> expected_pre;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      expected_pre.push_back(static_cast<double>(static_cast<Scalar>(product[static_cast<std::size_t>(r * cols + c)]) +
                                                 static_cast<Scalar>(b[static_cast<std::size_t>(c)])));
  CHECK(values(pre) == expected_pre);
  CHECK(elementwise_error(values(out), activation_values<Activation, Scalar>(expected_pre)) <= tolerance);

  // dbias starts non-zero: the sums are added to it.
  const auto dbias = random_vector<Scalar, Space>("dbias", cols, -1.0, 1.0, 6);
  const auto dbias_before = values(dbias);
  trident::ops::bias_activation_backward<Activation>(Space(), dpre, dbias, pre, dout);
  const auto derivative = derivative_values<Activation, Scalar>(expected_pre);
  std::vector<double> expected_dpre(derivative.size()), expected_dbias = dbias_before;
  for (std::size_t i = 0; i < derivative.size(); ++i) {
    expected_dpre[i] = derivative[i] * upstream[i];
    expected_dbias[i % static_cast<std::size_t>(cols)] += expected_dpre[i];
  }
  CHECK(elementwise_error(values(dpre), expected_dpre) <= tolerance);
  CHECK(elementwise_error(values(dbias), expected_dbias) <= 10 * tolerance);

  // Without dpre (nobody needs it) the bias gradient is still summed, the same.
  const auto dbias_only = random_vector<Scalar, Space>("dbias", cols, -1.0, 1.0, 6);
  trident::ops::bias_activation_backward<Activation>(Space(), Matrix<Scalar, Space>(), dbias_only, pre, dout);
  CHECK(elementwise_error(values(dbias_only), values(dbias)) <= 10 * tolerance);
}

// d/db of sum(out * w) by central differences, against the fused backward's bias gradient, and
// d/dpre likewise.
template <class Activation, class Space>
void check_gradients() {
  constexpr std::int64_t cols = cols_small;
  const auto product = random_matrix<double, Space>("product", rows, cols, -2.0, 2.0, 7);
  auto bias = random_vector<double, Space>("bias", cols, -1.0, 1.0, 8);
  const auto w = random_matrix<double, Space>("w", rows, cols, -1.0, 1.0, 9);
  Matrix<double, Space> pre("pre", rows, cols), out("out", rows, cols), dpre("dpre", rows, cols);
  Vector<double, Space> dbias("dbias", cols);
  const auto loss = [&]() {
    Kokkos::deep_copy(pre, product);
    trident::ops::bias_activation_forward<Activation>(Space(), pre, out, bias);
    return dot(values(out), values(w));
  };
  const auto numeric_dbias = finite_differences(bias, loss);
  loss();
  trident::ops::bias_activation_backward<Activation>(Space(), dpre, dbias, pre, w);
  check_gradient(values(dbias), numeric_dbias);
  auto product_copy = random_matrix<double, Space>("product", rows, cols, -2.0, 2.0, 7);
  const auto numeric_dpre = finite_differences(product_copy, [&]() {
    Kokkos::deep_copy(pre, product_copy);
    trident::ops::bias_activation_forward<Activation>(Space(), pre, out, bias);
    return dot(values(out), values(w));
  });
  check_gradient(values(dpre), numeric_dpre);
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("a bias added by the activation equals the bias then the activation",
                        "[ops][activations][fusion]", trident_test::FloatAndDoubleOnEverySpace) {
  using Space = typename TestType::space;
  using TestScalar = typename TestType::scalar;
  SECTION("gelu") {
    check_against_unfused<trident::ops::Gelu, TestScalar, Space>();
  }
  SECTION("relu") {
    check_against_unfused<trident::ops::Relu, TestScalar, Space>();
  }
  SECTION("tanh") {
    check_against_unfused<trident::ops::Tanh, TestScalar, Space>();
  }
  SECTION("silu") {
    check_against_unfused<trident::ops::Silu, TestScalar, Space>();
  }
}

TEMPLATE_LIST_TEST_CASE("the fused backward matches finite differences", "[ops][activations][fusion]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  SECTION("gelu") {
    check_gradients<trident::ops::Gelu, Space>();
  }
  SECTION("tanh") {
    check_gradients<trident::ops::Tanh, Space>();
  }
  SECTION("silu") {
    check_gradients<trident::ops::Silu, Space>();
  }
}

TEMPLATE_LIST_TEST_CASE("the fused passes reject mismatched shapes", "[ops][activations][fusion]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  const auto pre = random_matrix<double, Space>("pre", 3, 4);
  const Matrix<double, Space> out("out", 3, 5);
  const Vector<double, Space> bias("bias", 4), short_bias("bias", 3);
  CHECK_THROWS_WITH(trident::ops::bias_activation_forward<trident::ops::Gelu>(Space(), pre, out, bias),
                    "trident::ops::bias_activation_forward: out is [3, 5] but must be [3, 4]");
  CHECK_THROWS_WITH(trident::ops::bias_activation_backward<trident::ops::Gelu>(Space(), Matrix<double, Space>(),
                                                                               short_bias, pre, pre),
                    "trident::ops::bias_activation_backward: dbias has 3 elements but must have 4");
}

// The block width changes only which work item adds a column, never the order of its rows, so
// the sums are bitwise the rows added one after the other, at every width up to the capacity.
TEMPLATE_LIST_TEST_CASE("column sums add each column's rows in order at any block width", "[ops][fusion]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  namespace detail = trident::ops::detail;
  constexpr std::int64_t n = 7;
  const auto m = random_matrix<float, Space>("m", n, cols_wide, -1.0, 1.0, 11);
  const auto host = to_host(m);
  std::vector<float> expected(cols_wide);
  for (std::int64_t c = 0; c < cols_wide; ++c) {
    float sum = 0;
    for (std::int64_t r = 0; r < n; ++r) sum += host(r, c);
    expected[c] = 0.5f + sum;
  }
  auto count_mismatches = [&](const Vector<float, Space>& sums) {
    const auto got = to_host(sums);
    int mismatches = 0;
    for (std::int64_t c = 0; c < cols_wide; ++c) mismatches += got(c) != expected[c];
    return mismatches;
  };
  constexpr int capacity = detail::column_block_capacity<Space>();
  using Sums = Vector<float, Space>;
  using Element = detail::ElementOf<Matrix<float, Space>>;
  for (const int width : {1, 16, 48, 512, 2048}) {
    if (width > capacity) continue;
    CAPTURE(width);
    const Sums sums("sums", cols_wide);
    Kokkos::deep_copy(sums, 0.5f);
    Kokkos::parallel_for(detail::IndexRange<Space>(Space(), 0, detail::column_block_count(cols_wide, width)),
                         detail::ColumnBlockSums<Sums, Element, capacity>{sums, Element{m}, n, cols_wide, width});
    CHECK(count_mismatches(sums) == 0);
  }
  const Sums sums("sums", cols_wide);
  Kokkos::deep_copy(sums, 0.5f);
  detail::accumulate_column_sums(Space(), "sums", sums, n, cols_wide, Element{m});
  CHECK(count_mismatches(sums) == 0);
}

// The devices' column sums, run here on every space: chunks of device_column_chunk_rows rows
// summed apart, then each column's chunks added in order; bitwise that order, with every value
// asked for once. On a device accumulate_column_sums takes this path and gives the same bits.
TEMPLATE_LIST_TEST_CASE("device column sums add chunks of rows, then each column's chunks in order", "[ops][fusion]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  namespace detail = trident::ops::detail;
  constexpr std::int64_t chunk_rows = detail::device_column_chunk_rows;
  constexpr std::int64_t n = 2 * chunk_rows + 22, chunks = 3;  // two whole chunks and a part of one
  const auto m = random_matrix<float, Space>("m", n, cols_small, -1.0, 1.0, 12);
  const auto host = to_host(m);
  std::vector<float> expected(cols_small);
  for (std::int64_t c = 0; c < cols_small; ++c) {
    float total = 0;
    for (std::int64_t k = 0; k < chunks; ++k) {
      float chunk = 0;
      for (std::int64_t r = k * chunk_rows; r < std::min(n, (k + 1) * chunk_rows); ++r) chunk += host(r, c);
      total += chunk;
    }
    expected[c] = 0.5f + total;
  }
  using Sums = Vector<float, Space>;
  using Chunks = Kokkos::View<float**, Kokkos::LayoutRight, typename Space::memory_space>;
  const CountedElement<Space> value{
      m, Kokkos::View<int**, Kokkos::LayoutRight, typename Space::memory_space>("visits", n, cols_small)};
  const Chunks partial("chunks", chunks, cols_small);
  const Sums sums("sums", cols_small);
  Kokkos::deep_copy(sums, 0.5f);
  Kokkos::parallel_for(
      detail::IndexRange<Space>(Space(), 0, chunks * cols_small),
      detail::ColumnChunkSums<Chunks, CountedElement<Space>>{partial, value, n, cols_small, chunk_rows});
  Kokkos::parallel_for(detail::IndexRange<Space>(Space(), 0, cols_small),
                       detail::AddColumnChunks<Sums, Chunks>{sums, partial});
  const auto got = to_host(sums);
  const auto visits = to_host(value.m_visits);
  int mismatches = 0, wrong_visits = 0;
  for (std::int64_t c = 0; c < cols_small; ++c) {
    mismatches += got(c) != expected[c];
    for (std::int64_t r = 0; r < n; ++r) wrong_visits += visits(r, c) != 1;
  }
  CHECK(mismatches == 0);
  CHECK(wrong_visits == 0);
  if constexpr (!detail::runs_on_host<Space>()) {
    const Sums direct("direct", cols_small);
    Kokkos::deep_copy(direct, 0.5f);
    detail::accumulate_column_sums(Space(), "sums", direct, n, cols_small, detail::ElementOf<Matrix<float, Space>>{m});
    const auto direct_host = to_host(direct);
    int direct_mismatches = 0;
    for (std::int64_t c = 0; c < cols_small; ++c) direct_mismatches += direct_host(c) != expected[c];
    CHECK(direct_mismatches == 0);
  }
}

TEST_CASE("host column blocks: one per thread, multiples of 16, at most the capacity", "[ops][fusion]") {
  using trident::ops::detail::column_block_width_for;
  CHECK(column_block_width_for(2, 1024, 2048) == 512);
  CHECK(column_block_width_for(1, 1024, 2048) == 1024);
  CHECK(column_block_width_for(3, 1000, 2048) == 336);
  CHECK(column_block_width_for(2, 10, 2048) == 16);
  CHECK(column_block_width_for(1, 50257, 2048) == 2048);
  CHECK(column_block_width_for(0, 100, 2048) == 112);
  CHECK(column_block_width_for(4, 3072, 1) == 1);  // a device's embedding backward: one column a thread
}
