#pragma once
// A GEMM's time as one smooth function of its shape, fitted to the shapes calibration measured:
//
//   seconds = latency + FLOPs / flops_per_s + bytes of A, B and C / bytes_per_s
//
// On a host that other work shares, one shape's timing varies by tens of percent from one
// calibration to the next, and a layout uses only a handful of shapes, so the noise of a few
// samples would decide the ranking. The fit, over all shapes at once, varies far less.
// `sample_weight` says how far a measured shape's own time moves the price away from the fit:
// calibration times every shape twice, and the weight is the part of the samples' scatter
// around the fit that the two timings agree on (what is not noise), 0 when they agree on none.
//
// fit_gemms() minimises the relative error with no term negative (the best of the fits over each
// subset of the three terms).

#include <trident/plan/layer_costs.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

namespace trident::plan {

struct GemmFit {
  double latency_s = 0;
  double flops_per_s = 0;  // 0: no fit
  double bytes_per_s = 0;  // 0: no bandwidth term
  double sample_weight = 1;

  bool fitted() const { return flops_per_s > 0; }
  double seconds(const Gemm& g, double element_bytes) const {
    const double bytes = element_bytes * g.operand_elements();
    return latency_s + g.flops() / flops_per_s + (bytes_per_s > 0 ? bytes / bytes_per_s : 0.0);
  }
  // A measured shape: the fit moved towards its own time by the sample weight (in log-space).
  double seconds(const Gemm& g, double element_bytes, double measured) const {
    const double smooth = seconds(g, element_bytes);
    if (!(measured > 0) || !(smooth > 0)) return smooth;
    return smooth * std::pow(measured / smooth, std::clamp(sample_weight, 0.0, 1.0));
  }
};

struct GemmTiming {
  Gemm shape;
  double seconds = 0;
};

namespace detail {

inline std::array<double, 3> gemm_terms(const Gemm& g, double element_bytes) {
  return {1.0, g.flops(), element_bytes * g.operand_elements()};
}

// Solves the n x n system a x = b (n <= 3) by elimination with pivoting; false when singular.
inline bool solve_small(std::array<std::array<double, 4>, 3> a, int n, std::array<double, 3>& x) {
  for (int c = 0; c < n; ++c) {
    int pivot = c;
    for (int r = c + 1; r < n; ++r)
      if (std::fabs(a[r][c]) > std::fabs(a[pivot][c])) pivot = r;
    if (!(std::fabs(a[pivot][c]) > 0)) return false;
    std::swap(a[c], a[pivot]);
    for (int r = 0; r < n; ++r) {
      if (r == c) continue;
      const double f = a[r][c] / a[c][c];
      for (int k = c; k <= n; ++k) a[r][k] -= f * a[c][k];
    }
  }
  for (int r = 0; r < n; ++r) x[r] = a[r][n] / a[r][r];
  return true;
}

}  // namespace detail

// The fit over `timings` (at least two with a positive time), minimising the sum of squared
// relative errors; an unfitted GemmFit when there are too few.
inline GemmFit fit_gemms(const std::vector<GemmTiming>& timings, double element_bytes) {
  GemmFit best;
  double best_error = std::numeric_limits<double>::infinity();
  std::size_t usable = 0;
  for (const auto& t : timings) usable += t.seconds > 0 && t.shape.flops() > 0 ? 1 : 0;
  if (usable < 2) return best;
  // Every subset of the terms that keeps the FLOPs term.
  for (int mask : {2, 3, 6, 7}) {
    std::array<int, 3> terms{};
    int n = 0;
    for (int t = 0; t < 3; ++t)
      if (mask & (1 << t)) terms[static_cast<std::size_t>(n++)] = t;
    // Normal equations of the weighted problem: rows scaled by 1 / measured.
    std::array<std::array<double, 4>, 3> a{};
    for (const auto& t : timings) {
      if (!(t.seconds > 0) || !(t.shape.flops() > 0)) continue;
      const auto x = detail::gemm_terms(t.shape, element_bytes);
      const double w = 1.0 / (t.seconds * t.seconds);
      for (int i = 0; i < n; ++i) {
        for (int j = 0; j < n; ++j) a[i][j] += w * x[terms[i]] * x[terms[j]];
        a[i][n] += w * x[terms[i]] * t.seconds;
      }
    }
    std::array<double, 3> solution{};
    if (!detail::solve_small(a, n, solution)) continue;
    std::array<double, 3> coefficient{};
    bool nonnegative = true;
    for (int i = 0; i < n; ++i) {
      coefficient[terms[i]] = solution[i];
      nonnegative &= solution[i] >= 0;
    }
    if (!nonnegative || !(coefficient[1] > 0)) continue;
    double error = 0;
    for (const auto& t : timings) {
      if (!(t.seconds > 0) || !(t.shape.flops() > 0)) continue;
      const auto x = detail::gemm_terms(t.shape, element_bytes);
      const double predicted = coefficient[0] * x[0] + coefficient[1] * x[1] + coefficient[2] * x[2];
      error += std::pow(predicted / t.seconds - 1.0, 2);
    }
    if (error < best_error) {
      best_error = error;
      best.latency_s = coefficient[0];
      best.flops_per_s = 1.0 / coefficient[1];
      best.bytes_per_s = coefficient[2] > 0 ? 1.0 / coefficient[2] : 0.0;
    }
  }
  return best;
}

// The sample weight from several timings of each shape (`passes`, each in the same order and shapes)
// and the fit: 1 - (noise of their geometric mean) / (scatter of that mean around the fit), in
// log-space. A pass slower or faster as a whole (a spell of the machine) is not noise between
// shapes: each pass's mean offset is taken out first.
inline double gemm_sample_weight(const std::vector<std::vector<GemmTiming>>& passes, const GemmFit& fit,
                                 double element_bytes) {
  if (passes.size() < 2) return 1;
  std::size_t shapes = passes.front().size();
  for (const auto& pass : passes) shapes = std::min(shapes, pass.size());
  const auto n = static_cast<double>(passes.size());
  std::vector<std::vector<double>> residual(passes.size());  // log time minus the shape's mean
  std::vector<double> scatter;
  for (std::size_t i = 0; i < shapes; ++i) {
    const bool positive =
        std::all_of(passes.begin(), passes.end(), [&](const auto& pass) { return pass[i].seconds > 0; });
    if (!positive) continue;
    double mean = 0;
    for (const auto& pass : passes) mean += std::log(pass[i].seconds) / n;
    for (std::size_t p = 0; p < passes.size(); ++p) residual[p].push_back(std::log(passes[p][i].seconds) - mean);
    scatter.push_back(mean - std::log(fit.seconds(passes.front()[i].shape, element_bytes)));
  }
  if (scatter.size() < 2) return 1;
  const auto variance = [](const std::vector<double>& v) {
    double mean = 0, sum = 0;
    for (double x : v) mean += x / static_cast<double>(v.size());
    for (double x : v) sum += (x - mean) * (x - mean);
    return sum / static_cast<double>(v.size() - 1);
  };
  // One timing's variance, pooled over the passes: each about its own pass's mean, so that a
  // pass slower as a whole adds nothing.
  double noise = 0;
  for (const auto& r : residual) noise += variance(r) / (n - 1);
  const double around_fit = variance(scatter);
  if (!(around_fit > 0)) return 1;
  return std::clamp(1.0 - noise / n / around_fit, 0.0, 1.0);
}

inline double gemm_sample_weight(const std::vector<GemmTiming>& first, const std::vector<GemmTiming>& second,
                                 const GemmFit& fit, double element_bytes) {
  return gemm_sample_weight(std::vector<std::vector<GemmTiming>>{first, second}, fit, element_bytes);
}

}  // namespace trident::plan
