// The building blocks under the operators: the float exponential and select, the integer-key
// maximum, and the device code paths (one team per row, one thread per element) run on the
// host, compared with the host paths the other tests check against references.

#include "ops_test_helpers.hpp"

#include <trident/ops/attention.hpp>
#include <trident/ops/cross_entropy.hpp>
#include <trident/ops/detail/fast_math.hpp>
#include <trident/ops/detail/launch.hpp>
#include <trident/ops/gelu.hpp>
#include <trident/ops/layernorm.hpp>

#include <limits>

using namespace ops_test;
namespace detail = trident::ops::detail;

using HostSpace = Kokkos::DefaultHostExecutionSpace;
using HostMatrix = Kokkos::View<float**, Kokkos::LayoutRight, Kokkos::HostSpace>;
using HostVector = Kokkos::View<float*, Kokkos::LayoutRight, Kokkos::HostSpace>;

TEST_CASE("fast_exp is within one ulp of exp and saturates outside the float range", "[ops][detail]") {
  double worst = 0;
  for (double x = -87.3; x < 88.3; x += 1.7e-3) {
    const float xf = static_cast<float>(x);
    const double reference = std::exp(static_cast<double>(xf));
    worst = std::max(worst, std::abs(detail::fast_exp(xf) - reference) / reference);
  }
  INFO("worst relative error " << worst);
  CHECK(worst < std::numeric_limits<float>::epsilon());  // below one ulp
  CHECK(detail::fast_exp(0.0f) == 1.0f);
  CHECK(detail::fast_exp(-1000.0f) >= 0.0f);
  CHECK(detail::fast_exp(-1000.0f) < 1.2e-38f);
  CHECK(std::isfinite(detail::fast_exp(1000.0f)));
  CHECK(detail::fast_exp(1000.0f) > 1e38f);
  CHECK(std::isnan(detail::fast_exp(std::numeric_limits<float>::quiet_NaN())));
  CHECK(detail::fast_exp(0.5) == std::exp(0.5));  // double goes to the library
}

TEST_CASE("select and the order-preserving integer keys", "[ops][detail]") {
  CHECK(detail::select(true, 1.5f, -2.0f) == 1.5f);
  CHECK(detail::select(false, 1.5f, -2.0f) == -2.0f);
  CHECK(detail::select(false, 1.0, 2.0) == 2.0);
  const std::vector<float> ordered = {
      -std::numeric_limits<float>::infinity(), -3e38f, -2.5f, -1e-30f, -0.0f, 0.0f, 1e-42f, 1.0f, 7.25f, 3e38f,
      std::numeric_limits<float>::infinity()};
  for (std::size_t i = 0; i < ordered.size(); ++i) {
    CHECK(detail::from_ordered_key(detail::ordered_key(ordered[i])) == ordered[i]);
    if (i > 0) CHECK(detail::ordered_key(ordered[i - 1]) < detail::ordered_key(ordered[i]));
  }
}

namespace {

// Runs a row body both ways on the host: sequentially (the host path) and as one team per row
// (the device path), into separate outputs.
template <class Body>
void run_both_ways(std::int64_t rows, const Body& sequential_body, const Body& team_body) {
  Kokkos::parallel_for("test::sequential", detail::IndexRange<HostSpace>(HostSpace(), 0, rows),
                       detail::SequentialRows<Body>{sequential_body});
  using Policy = Kokkos::TeamPolicy<HostSpace>;
  Kokkos::parallel_for("test::team", Policy(HostSpace(), static_cast<int>(rows), Kokkos::AUTO),
                       detail::TeamRows<Body, Policy::member_type>{team_body});
  Kokkos::fence();
}

template <class View>
void check_close(const View& a, const View& b, double tolerance) {
  const auto va = values(a), vb = values(b);
  CHECK(relative_error(va, vb) <= tolerance);
}

}  // namespace

TEST_CASE("the team-per-row path computes what the host path computes", "[ops][detail]") {
  const std::int64_t n = 7, v = 45;
  auto logits = to_host(random_matrix<float, HostSpace>("logits", n, v, -8.0, 8.0));
  HostMatrix dlogits_seq("dseq", n, v), dlogits_team("dteam", n, v);
  HostVector losses_seq("lseq", n), losses_team("lteam", n);
  Kokkos::View<int*, Kokkos::HostSpace> targets("targets", n);
  for (std::int64_t i = 0; i < n; ++i) targets(i) = static_cast<int>((i * 13) % v);
  targets(3) = -1;

  SECTION("cross-entropy forward and backward") {
    using Forward = detail::CrossEntropyForwardRow<HostVector, HostMatrix, decltype(targets)>;
    run_both_ways(n, Forward{losses_seq, logits, targets, v}, Forward{losses_team, logits, targets, v});
    check_close(losses_seq, losses_team, 1e-6);
    CHECK(losses_team(3) == 0.0f);
    using Backward = detail::CrossEntropyBackwardRow<HostMatrix, HostMatrix, decltype(targets), HostVector, true>;
    HostVector fused_seq("fused_seq", n), fused_team("fused_team", n);
    run_both_ways(n, Backward{dlogits_seq, logits, targets, v, 0.25f, fused_seq},
                  Backward{dlogits_team, logits, targets, v, 0.25f, fused_team});
    check_close(dlogits_seq, dlogits_team, 1e-6);
    check_close(fused_team, losses_team, 1e-6);
  }

  SECTION("layer norm forward and backward") {
    const auto w = to_host(random_vector<float, HostSpace>("w", v)),
               b = to_host(random_vector<float, HostSpace>("b", v));
    HostVector mean_seq("m1", n), rstd_seq("r1", n), mean_team("m2", n), rstd_team("r2", n);
    using Forward = detail::LayerNormForwardRow<HostMatrix, HostVector, HostVector, HostMatrix, HostVector, HostVector>;
    run_both_ways(n, Forward{dlogits_seq, mean_seq, rstd_seq, logits, w, b, v, 1e-5f},
                  Forward{dlogits_team, mean_team, rstd_team, logits, w, b, v, 1e-5f});
    check_close(dlogits_seq, dlogits_team, 1e-6);
    check_close(rstd_seq, rstd_team, 1e-6);
    HostMatrix dx_seq("dx1", n, v), dx_team("dx2", n, v);
    using Backward =
        detail::LayerNormBackwardRow<HostMatrix, HostMatrix, HostMatrix, HostVector, HostVector, HostVector>;
    run_both_ways(n, Backward{dx_seq, dlogits_seq, logits, w, mean_seq, rstd_seq, v, false, HostMatrix()},
                  Backward{dx_team, dlogits_seq, logits, w, mean_seq, rstd_seq, v, false, HostMatrix()});
    check_close(dx_seq, dx_team, 1e-5);
    // adding a residual's gradient in the same pass
    HostMatrix dx_skip_seq("dx3", n, v), dx_skip_team("dx4", n, v);
    run_both_ways(n, Backward{dx_skip_seq, dlogits_seq, logits, w, mean_seq, rstd_seq, v, true, logits},
                  Backward{dx_skip_team, dlogits_seq, logits, w, mean_seq, rstd_seq, v, true, logits});
    check_close(dx_skip_seq, dx_skip_team, 1e-5);
  }
}

TEST_CASE("the device paths of attention's softmax and head copies match the host paths", "[ops][detail]") {
  const int B = 2, T = 7, H = 2, hd = 3;
  using Buffers = trident::ops::AttentionBuffers<float, Kokkos::HostSpace>;
  Buffers seq(B, T, H, hd, 3), team(B, T, H, hd, 3);
  const auto scores = to_host(random_matrix<float, HostSpace>("scores", B * H, seq.blocks.size(), -3.0, 3.0));
  Kokkos::deep_copy(seq.probs, scores);
  Kokkos::deep_copy(team.probs, scores);
  using Softmax = detail::CausalSoftmaxRow<Buffers::scores_view>;
  run_both_ways(B * H * T, Softmax{seq.probs, seq.blocks, 0}, Softmax{team.probs, team.blocks, 0});
  check_close(seq.probs, team.probs, 1e-6);
  const auto dp = to_host(random_matrix<float, HostSpace>("dp", B * H, seq.blocks.size()));
  Kokkos::deep_copy(seq.dscores, dp);
  Kokkos::deep_copy(team.dscores, dp);
  using SoftmaxBackward = detail::CausalSoftmaxBackwardRow<Buffers::scores_view, Buffers::scores_view>;
  run_both_ways(B * H * T, SoftmaxBackward{seq.dscores, seq.probs, seq.blocks, 0.5f, 0},
                SoftmaxBackward{team.dscores, team.probs, team.blocks, 0.5f, 0});
  check_close(seq.dscores, team.dscores, 1e-6);

  // Head split and merge: by row (host) and by element (device) give the same copies.
  const auto qkv = to_host(random_matrix<float, HostSpace>("qkv", B * T, 3 * H * hd));
  using Split = detail::SplitHeads<Buffers::heads_view, HostMatrix>;
  const Split by_row{{seq.q, seq.k, seq.v}, qkv, T, H, hd, 3}, by_element{{team.q, team.k, team.v}, qkv, T, H, hd, 3};
  Kokkos::parallel_for(Kokkos::RangePolicy<HostSpace, detail::RowTag>(0, B * T), by_row);
  Kokkos::parallel_for(Kokkos::RangePolicy<HostSpace, detail::ElementTag>(0, B * T * 3 * H * hd), by_element);
  Kokkos::fence();
  for (const auto& pair :
       {std::make_pair(seq.q, team.q), std::make_pair(seq.k, team.k), std::make_pair(seq.v, team.v)}) {
    const auto& a = pair.first;
    const auto& b = pair.second;
    int mismatches = 0;
    for (std::size_t i = 0; i < a.size(); ++i) mismatches += a.data()[i] != b.data()[i];
    CHECK(mismatches == 0);
  }
  HostMatrix merged_row("merged_row", B * T, 3 * H * hd), merged_element("merged_element", B * T, 3 * H * hd);
  using Merge = detail::MergeHeads<HostMatrix, Buffers::heads_view, false>;
  Kokkos::parallel_for(Kokkos::RangePolicy<HostSpace, detail::RowTag>(0, B * T),
                       Merge{merged_row, {seq.q, seq.k, seq.v}, T, H, hd, 3});
  Kokkos::parallel_for(Kokkos::RangePolicy<HostSpace, detail::ElementTag>(0, B * T * 3 * H * hd),
                       Merge{merged_element, {seq.q, seq.k, seq.v}, T, H, hd, 3});
  Kokkos::fence();
  CHECK(values(merged_row) == values(qkv));
  CHECK(values(merged_element) == values(qkv));
}

TEST_CASE("the one-thread-per-element path matches the row loop", "[ops][detail]") {
  const auto x = to_host(random_matrix<float, HostSpace>("x", 5, 9, -4.0, 4.0));
  HostMatrix by_row("by_row", 5, 9), flat("flat", 5, 9);
  using Gelu = detail::PointwiseForward<trident::ops::Gelu, HostMatrix, HostMatrix>;
  Kokkos::parallel_for(detail::IndexRange<HostSpace>(0, 5), detail::ElementsByRow<Gelu>{Gelu{by_row, x}, 9});
  Kokkos::parallel_for(detail::IndexRange<HostSpace>(0, 45), detail::ElementsFlat<Gelu>{Gelu{flat, x}, 9});
  Kokkos::fence();
  CHECK(values(by_row) == values(flat));
}

// On a device the layer norm's parameter gradients are column sums in chunks of rows
// (layernorm_parameter_gradients_in_chunks), not the host's 16-column strips: the same terms
// added in the chunks' order (replayed here: bitwise for the bias, whose terms are plain
// elements; the weight's products may be contracted differently, so within a few roundings of
// the terms' magnitude), within float rounding of the host's sums.
TEST_CASE("the device path of the layer norm's parameter gradients matches the host strips", "[ops][detail]") {
  constexpr std::int64_t chunk_rows = detail::device_column_chunk_rows;
  const std::int64_t n = 2 * chunk_rows + 22, c = 37;  // two whole chunks and a part; strips and a tail
  const auto dout = to_host(random_matrix<float, HostSpace>("dout", n, c, -1.0, 1.0, 31));
  const auto x = to_host(random_matrix<float, HostSpace>("x", n, c, -2.0, 2.0, 32));
  const auto w = to_host(random_vector<float, HostSpace>("w", c));
  HostMatrix y("y", n, c), empty;
  HostVector mean("mean", n), rstd("rstd", n), b("b", c);
  trident::ops::layernorm_forward(HostSpace(), y, mean, rstd, x, w, b);
  HostVector host_dw("host_dw", c), host_db("host_db", c), chunked_dw("chunked_dw", c), chunked_db("chunked_db", c);
  Kokkos::deep_copy(host_dw, 0.25f);  // both paths add to what the gradients hold
  Kokkos::deep_copy(host_db, -0.5f);
  Kokkos::deep_copy(chunked_dw, 0.25f);
  Kokkos::deep_copy(chunked_db, -0.5f);
  trident::ops::layernorm_backward(HostSpace(), empty, host_dw, host_db, dout, x, w, mean, rstd);
  detail::layernorm_parameter_gradients_in_chunks(HostSpace(), chunked_dw, chunked_db, dout, x, mean, rstd, true, true);
  Kokkos::fence();
  for (std::int64_t j = 0; j < c; ++j) {
    float total_w = 0, total_b = 0, magnitude_w = 0;
    for (std::int64_t k = 0; k * chunk_rows < n; ++k) {
      float chunk_w = 0, chunk_b = 0;
      for (std::int64_t r = k * chunk_rows; r < std::min(n, (k + 1) * chunk_rows); ++r) {
        const float term = dout(r, j) * (x(r, j) - mean(r)) * rstd(r);
        chunk_w += term;
        chunk_b += dout(r, j);
        magnitude_w += std::fabs(term);
      }
      total_w += chunk_w;
      total_b += chunk_b;
    }
    CHECK(chunked_db(j) == -0.5f + total_b);
    CHECK(chunked_dw(j) == Approx(0.25f + total_w).epsilon(0).margin(1e-6 * magnitude_w));
    CHECK(chunked_db(j) == Approx(host_db(j)).epsilon(1e-5).margin(1e-5));
    CHECK(chunked_dw(j) == Approx(host_dw(j)).epsilon(0).margin(1e-6 * magnitude_w));
  }
  // Only the gradients asked for are written.
  HostVector untouched_dw("untouched_dw", c), untouched_db("untouched_db", c);
  detail::layernorm_parameter_gradients_in_chunks(HostSpace(), untouched_dw, untouched_db, dout, x, mean, rstd, false,
                                                  true);
  detail::layernorm_parameter_gradients_in_chunks(HostSpace(), chunked_dw, untouched_db, dout, x, mean, rstd, false,
                                                  false);
  Kokkos::fence();
  for (std::int64_t j = 0; j < c; ++j) {
    CHECK(untouched_dw(j) == 0.0f);
    CHECK(untouched_db(j) == chunked_db(j) + 0.5f);
  }
}
