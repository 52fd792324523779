#pragma once
// The reference the attention tests compare against: softmax(Q K^T / sqrt(d) + causal mask) V
// per head, in double, written the obvious way.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace ops_test {

// out[n, h*hd + d] for qkv rows laid out [Q | K | V], head h in columns [h*hd, (h+1)*hd).
inline std::vector<double> naive_attention(const std::vector<double>& qkv, int B, int T, int H, int hd) {
  const int cl = H * hd;
  std::vector<double> out(static_cast<std::size_t>(B) * T * cl, 0.0);
  auto at = [&](int b, int t, int part, int h, int d) { return qkv[(b * T + t) * 3 * cl + part * cl + h * hd + d]; };
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int t = 0; t < T; ++t) {
        std::vector<double> scores(t + 1);
        double max = -1e300;
        for (int j = 0; j <= t; ++j) {
          double s = 0;
          for (int d = 0; d < hd; ++d) s += at(b, t, 0, h, d) * at(b, j, 1, h, d);
          scores[j] = s / std::sqrt(static_cast<double>(hd));
          max = std::max(max, scores[j]);
        }
        double sum = 0;
        for (int j = 0; j <= t; ++j) sum += std::exp(scores[j] - max);
        for (int d = 0; d < hd; ++d) {
          double y = 0;
          for (int j = 0; j <= t; ++j) y += std::exp(scores[j] - max) / sum * at(b, j, 2, h, d);
          out[(b * T + t) * cl + h * hd + d] = y;
        }
      }
  return out;
}

// Each row's log(sum_j exp(S[t, j])) over its visible keys, as [B*H, T] row-major.
inline std::vector<double> naive_log_sum_exp(const std::vector<double>& qkv, int B, int T, int H, int hd) {
  const int cl = H * hd;
  std::vector<double> result(static_cast<std::size_t>(B) * H * T);
  auto at = [&](int b, int t, int part, int h, int d) { return qkv[(b * T + t) * 3 * cl + part * cl + h * hd + d]; };
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int t = 0; t < T; ++t) {
        double sum = 0;
        for (int j = 0; j <= t; ++j) {
          double s = 0;
          for (int d = 0; d < hd; ++d) s += at(b, t, 0, h, d) * at(b, j, 1, h, d);
          sum += std::exp(s / std::sqrt(static_cast<double>(hd)));
        }
        result[(static_cast<std::size_t>(b) * H + h) * T + t] = std::log(sum);
      }
  return result;
}

}  // namespace ops_test
