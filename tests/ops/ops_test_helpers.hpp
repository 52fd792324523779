#pragma once
// Helpers for the operator tests: random device views, host copies, plain-loop references
// and central finite differences. Everything goes through explicit host mirrors, so the tests
// also run where the default execution space is a GPU.

#include "execution_spaces.hpp"
#include "trident_test.hpp"

#include <trident/core/random.hpp>

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace ops_test {

// Views in the memory of the execution space a test case runs on.
template <class Scalar, class Space>
using Matrix = Kokkos::View<Scalar**, Kokkos::LayoutRight, typename Space::memory_space>;
template <class Scalar, class Space>
using Vector = Kokkos::View<Scalar*, Kokkos::LayoutRight, typename Space::memory_space>;

template <class Scalar, class Space>
Matrix<Scalar, Space> random_matrix(const std::string& name, std::int64_t rows, std::int64_t cols, double low = -1.0,
                                    double high = 1.0, std::uint64_t seed = 17) {
  Matrix<Scalar, Space> m(name, rows, cols);
  trident::fill_uniform(Space(), m, trident::random_stream(seed, name), low, high);
  return m;
}

template <class Scalar, class Space>
Vector<Scalar, Space> random_vector(const std::string& name, std::int64_t length, double low = -1.0, double high = 1.0,
                                    std::uint64_t seed = 17) {
  Vector<Scalar, Space> v(name, length);
  trident::fill_uniform(Space(), v, trident::random_stream(seed, name), low, high);
  return v;
}

template <class View>
auto to_host(const View& view) {
  return Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), view);
}

// The elements of a rank-1 or rank-2 view, row-major, as doubles.
template <class View>
std::vector<double> values(const View& view) {
  const auto host = to_host(view);
  std::vector<double> out;
  out.reserve(host.size());
  if constexpr (static_cast<int>(View::rank) == 1) {
    for (std::size_t i = 0; i < host.extent(0); ++i) out.push_back(static_cast<double>(host(i)));
  } else {
    for (std::size_t i = 0; i < host.extent(0); ++i)
      for (std::size_t j = 0; j < host.extent(1); ++j) out.push_back(static_cast<double>(host(i, j)));
  }
  return out;
}

inline double norm(const std::vector<double>& x) {
  double total = 0;
  for (double v : x) total += v * v;
  return std::sqrt(total);
}

inline double max_abs(const std::vector<double>& x) {
  double m = 0;
  for (double v : x) m = std::max(m, std::abs(v));
  return m;
}

// ||a - b|| / ||b||
inline double relative_error(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  std::vector<double> diff(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) diff[i] = a[i] - b[i];
  const double denominator = norm(b);
  return denominator > 0 ? norm(diff) / denominator : norm(diff);
}

// max_i |a_i - b_i| / max(|b_i|, floor * max|b|): elementwise, with a floor for entries that
// are tiny compared with the rest.
inline double elementwise_error(const std::vector<double>& a, const std::vector<double>& b, double floor = 1e-3) {
  REQUIRE(a.size() == b.size());
  const double scale = max_abs(b);
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double denominator = std::max({std::abs(b[i]), floor * scale, 1e-300});
    worst = std::max(worst, std::abs(a[i] - b[i]) / denominator);
  }
  return worst;
}

// sum_i x_i * w_i: turns an output into a scalar loss whose gradient is w.
inline double dot(const std::vector<double>& x, const std::vector<double>& w) {
  REQUIRE(x.size() == w.size());
  double total = 0;
  for (std::size_t i = 0; i < x.size(); ++i) total += x[i] * w[i];
  return total;
}

// Central differences (L(x + h e_i) - L(x - h e_i)) / 2h for every element of the double view
// `param`, where loss() evaluates L with the current contents of `param`.
template <class View, class Loss>
std::vector<double> finite_differences(const View& param, const Loss& loss, double h = 1e-6) {
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), param);
  double* data = host.data();
  std::vector<double> grad(host.size());
  for (std::size_t i = 0; i < host.size(); ++i) {
    const double original = data[i];
    data[i] = original + h;
    Kokkos::deep_copy(param, host);
    const double plus = loss();
    data[i] = original - h;
    Kokkos::deep_copy(param, host);
    const double minus = loss();
    data[i] = original;
    grad[i] = (plus - minus) / (2 * h);
  }
  Kokkos::deep_copy(param, host);
  return grad;
}

// Checks an analytic gradient against finite differences to `tolerance`, normwise and elementwise.
inline void check_gradient(const std::vector<double>& analytic, const std::vector<double>& numeric,
                           double tolerance = 1e-6) {
  INFO("||numeric|| = " << norm(numeric));
  CHECK(norm(numeric) > 0);
  CHECK(relative_error(analytic, numeric) <= tolerance);
  CHECK(elementwise_error(analytic, numeric) <= 100 * tolerance);
}

}  // namespace ops_test
