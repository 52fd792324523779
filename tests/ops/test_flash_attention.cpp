// The flash attention kernel, both ways it runs (row blocks of GEMMs, the host path; tiles in
// team scratch, the device path, run here on the host): its output and kept log-sum-exps
// against the naive reference, its backward against finite differences, and both against the
// blocked kernel. It keeps B H T numbers per layer where the blocked kernel keeps B H T^2 / 2.

#include "naive_attention.hpp"
#include "ops_test_helpers.hpp"

#include <trident/ops/attention.hpp>

using namespace ops_test;
using trident::ops::AttentionKernel;
using Path = trident::ops::detail::FlashPath;

namespace {

template <class Scalar, class Space>
using Buffers = trident::ops::AttentionBuffers<Scalar, typename Space::memory_space>;

// Flash buffers with causal row blocks of `block` and team tiles of `tile` (0: the largest that fits).
template <class Scalar, class Space>
Buffers<Scalar, Space> flash_buffers(int B, int T, int H, int hd, int block, int tile) {
  return Buffers<Scalar, Space>(B, T, H, hd, block, AttentionKernel::flash, tile);
}

const char* path_name(Path path) {
  return path == Path::teams ? "team tiles" : "row blocks";
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("flash attention matches the naive causal softmax and keeps each row's log-sum-exp",
                        "[ops][attention][flash]", trident_test::FloatAndDoubleOnEverySpace) {
  using Space = typename TestType::space;
  using TestScalar = typename TestType::scalar;
  const int B = 2, T = 7, H = 3, hd = 4, cl = H * hd;
  const auto qkv = random_matrix<TestScalar, Space>("qkv", B * T, 3 * cl, -2.0, 2.0);
  const auto expected = naive_attention(values(qkv), B, T, H, hd);
  const auto expected_lse = naive_log_sum_exp(values(qkv), B, T, H, hd);
  const double tolerance = std::is_same<TestScalar, float>::value ? 2e-6 : 1e-14;
  // Row blocks / tiles of 1, 2 and 3 (partial last ones), exactly T, and more than T.
  for (const Path path : {Path::row_blocks, Path::teams})
    for (int size : {1, 2, 3, 7, 16}) {
      INFO(path_name(path) << " of " << size);
      auto buffers = flash_buffers<TestScalar, Space>(B, T, H, hd, size, size);
      Matrix<TestScalar, Space> out("out", B * T, cl);
      trident::ops::flash_attention_forward(Space(), out, buffers, qkv, path);
      CHECK(relative_error(values(out), expected) < tolerance);
      CHECK(elementwise_error(values(out), expected) < 100 * tolerance);
      CHECK(relative_error(values(buffers.log_sum_exp), expected_lse) < tolerance);
    }
}

TEMPLATE_LIST_TEST_CASE("flash attention's backward matches finite differences", "[ops][attention][flash]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  const int B = 2, T = 5, H = 2, hd = 3, cl = H * hd;
  auto qkv = random_matrix<double, Space>("qkv", B * T, 3 * cl, -1.5, 1.5);
  const auto upstream = random_matrix<double, Space>("upstream", B * T, cl);
  const auto g = values(upstream);
  const Path path = GENERATE(Path::row_blocks, Path::teams);
  const int size = GENERATE(2, 5);  // several blocks or tiles (the last one partial), and one
  INFO(path_name(path) << " of " << size);
  auto buffers = flash_buffers<double, Space>(B, T, H, hd, size, size);
  Matrix<double, Space> out("out", B * T, cl);
  auto loss = [&]() {
    trident::ops::flash_attention_forward(Space(), out, buffers, qkv, path);
    return dot(values(out), g);
  };
  loss();
  Matrix<double, Space> dqkv("dqkv", B * T, 3 * cl);
  trident::ops::flash_attention_backward(Space(), dqkv, upstream, buffers, qkv, out, false, path);
  const auto analytic = values(dqkv);
  check_gradient(analytic, finite_differences(qkv, loss));

  SECTION("accumulate adds") {
    loss();
    trident::ops::flash_attention_backward(Space(), dqkv, upstream, buffers, qkv, out, true, path);
    const auto twice = values(dqkv);
    for (std::size_t i = 0; i < analytic.size(); ++i) CHECK(std::abs(twice[i] - 2 * analytic[i]) < 1e-13);
  }
}

TEMPLATE_LIST_TEST_CASE("flash and blocked attention agree in float, forward and backward", "[ops][attention][flash]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  const int B = 2, T = 37, H = 3, hd = 8, cl = H * hd;
  const auto qkv = random_matrix<float, Space>("qkv", B * T, 3 * cl, -2.0, 2.0);
  const auto dout = random_matrix<float, Space>("dout", B * T, cl);
  Buffers<float, Space> blocked(B, T, H, hd, 16);
  Matrix<float, Space> out_blocked("out_blocked", B * T, cl), d_blocked("d_blocked", B * T, 3 * cl);
  trident::ops::attention_forward(Space(), out_blocked, blocked, qkv, B, T, H);
  trident::ops::attention_backward(Space(), d_blocked, dout, blocked, qkv, out_blocked, B, T, H);
  const auto reference_out = values(out_blocked), reference_d = values(d_blocked);

  // Through the public entry points (the space's own path), and each path by name.
  const auto flash = flash_buffers<float, Space>(B, T, H, hd, 16, 0);
  Matrix<float, Space> out("out", B * T, cl), d("d", B * T, 3 * cl);
  trident::ops::attention_forward(Space(), out, flash, qkv, B, T, H);
  trident::ops::attention_backward(Space(), d, dout, flash, qkv, out, B, T, H);
  CHECK(relative_error(values(out), reference_out) < 1e-6);
  CHECK(relative_error(values(d), reference_d) < 1e-5);
  for (const Path path : {Path::row_blocks, Path::teams}) {
    INFO(path_name(path));
    trident::ops::flash_attention_forward(Space(), out, flash, qkv, path);
    trident::ops::flash_attention_backward(Space(), d, dout, flash, qkv, out, false, path);
    CHECK(relative_error(values(out), reference_out) < 1e-6);
    CHECK(relative_error(values(d), reference_d) < 1e-5);
  }
}

TEMPLATE_LIST_TEST_CASE("flash attention keeps B H T numbers per layer and shares the rest", "[ops][attention][flash]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  const int B = 2, T = 64, H = 2, hd = 4;
  const auto first = flash_buffers<double, Space>(B, T, H, hd, 16, 0);
  const auto second = Buffers<double, Space>::sharing_scratch_with(first);
  CHECK(first.probs.span() == 0);
  CHECK(first.log_sum_exp.span() == static_cast<std::size_t>(B * H * T));
  CHECK(second.log_sum_exp.data() != first.log_sum_exp.data());
  CHECK(second.q.data() == first.q.data());
  CHECK(second.row_dots.data() == first.row_dots.data());
  const Buffers<double, Space> blocked(B, T, H, hd, 16);
  CHECK(blocked.log_sum_exp.span() == 0);
  CHECK(blocked.probs.span() == static_cast<std::size_t>(B * H) * blocked.blocks.size());

  // Two layers sharing scratch, backward in reverse order: each reads its own log-sum-exps.
  const int cl = H * hd;
  const auto qkv1 = random_matrix<double, Space>("qkv1", B * T, 3 * cl),
             qkv2 = random_matrix<double, Space>("qkv2", B * T, 3 * cl);
  const auto dout = random_matrix<double, Space>("dout", B * T, cl);
  Matrix<double, Space> out1("out1", B * T, cl), out2("out2", B * T, cl), d1("d1", B * T, 3 * cl),
      d2("d2", B * T, 3 * cl), reference("reference", B * T, 3 * cl), out("out", B * T, cl);
  trident::ops::attention_forward(Space(), out1, first, qkv1, B, T, H);
  trident::ops::attention_forward(Space(), out2, second, qkv2, B, T, H);
  trident::ops::attention_backward(Space(), d2, dout, second, qkv2, out2, B, T, H);
  trident::ops::attention_backward(Space(), d1, dout, first, qkv1, out1, B, T, H);
  const auto alone = flash_buffers<double, Space>(B, T, H, hd, 16, 0);
  trident::ops::attention_forward(Space(), out, alone, qkv1, B, T, H);
  trident::ops::attention_backward(Space(), reference, dout, alone, qkv1, out, B, T, H);
  CHECK(values(d1) == values(reference));
}

TEST_CASE("flash attention's team tiles fit the team scratch, or the error names the sizes",
          "[ops][attention][flash]") {
  using Space = Kokkos::DefaultHostExecutionSpace;
  const std::size_t limit = Kokkos::TeamPolicy<Space>::scratch_size_max(0);
  for (int hd : {4, 64, 128}) {
    const int tile = trident::ops::detail::flash_tile_size<Space, float>(hd, 0);
    INFO("head_dim " << hd << ": tiles of " << tile);
    CHECK(tile >= 1);
    CHECK(trident::ops::detail::FlashTiles<Space, float>::most_bytes(tile, hd) <= limit);
    if (tile < 64) CHECK(trident::ops::detail::FlashTiles<Space, float>::most_bytes(2 * tile, hd) > limit);
  }
  CHECK_THROWS_WITH((trident::ops::detail::flash_tile_size<Space, float>(64, 256)),
                    Catch::Matchers::Contains("tiles of 256 rows of head_dim 64 need") &&
                        Catch::Matchers::Contains("bytes of team scratch"));
  CHECK(trident::ops::parse_attention_kernel("flash") == AttentionKernel::flash);
  CHECK(trident::ops::parse_attention_kernel("blocked") == AttentionKernel::blocked);
  CHECK_THROWS_WITH(trident::ops::parse_attention_kernel("fused"),
                    Catch::Matchers::Contains("unknown attention kernel 'fused' (blocked or flash)"));
}
