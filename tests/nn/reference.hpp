#pragma once
// The layers of trident::nn written again from their definitions, on host rows in double, and
// gradients by central differences: what the layout tests compare every layout with.

#include <cmath>
#include <map>
#include <string>
#include <vector>

namespace nn_reference {

using Tensors = std::map<std::string, std::vector<double>>;  // global tensors by name, row-major
using Rows = std::vector<std::vector<double>>;               // [rows][features]

inline Rows linear(const Rows& x, const Tensors& p, const std::string& prefix, int in, int out) {
  const auto& w = p.at(prefix + "weight");
  const auto& b = p.at(prefix + "bias");
  Rows y(x.size(), std::vector<double>(static_cast<std::size_t>(out)));
  for (std::size_t r = 0; r < x.size(); ++r)
    for (int j = 0; j < out; ++j) {
      double total = b[static_cast<std::size_t>(j)];
      for (int i = 0; i < in; ++i)
        total += x[r][static_cast<std::size_t>(i)] * w[static_cast<std::size_t>(i * out + j)];
      y[r][static_cast<std::size_t>(j)] = total;
    }
  return y;
}

template <class F>
Rows pointwise(Rows x, F f) {
  for (auto& row : x)
    for (auto& v : row) v = f(v);
  return x;
}

inline double gelu(double x) {
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

inline Rows layer_norm(const Rows& x, const Tensors& p, const std::string& prefix) {
  const auto& w = p.at(prefix + "weight");
  const auto& b = p.at(prefix + "bias");
  Rows y = x;
  for (std::size_t r = 0; r < x.size(); ++r) {
    double mean = 0, var = 0;
    for (double v : x[r]) mean += v;
    mean /= static_cast<double>(x[r].size());
    for (double v : x[r]) var += (v - mean) * (v - mean);
    var /= static_cast<double>(x[r].size());
    for (std::size_t j = 0; j < x[r].size(); ++j) y[r][j] = (x[r][j] - mean) / std::sqrt(var + 1e-5) * w[j] + b[j];
  }
  return y;
}

inline Rows add(Rows a, const Rows& b) {
  for (std::size_t r = 0; r < a.size(); ++r)
    for (std::size_t j = 0; j < a[r].size(); ++j) a[r][j] += b[r][j];
  return a;
}

// d loss / d p for every element of every tensor, by central differences.
template <class Loss>
Tensors central_difference_gradients(Tensors p, const Loss& loss) {
  Tensors grads;
  const double h = 1e-6;
  for (auto& [name, values] : p) {
    auto& g = grads[name];
    for (auto& v : values) {
      const double original = v;
      v = original + h;
      const double plus = loss(p);
      v = original - h;
      const double minus = loss(p);
      v = original;
      g.push_back((plus - minus) / (2 * h));
    }
  }
  return grads;
}

}  // namespace nn_reference
