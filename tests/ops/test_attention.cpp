// Causal multi-head attention against a naive softmax(Q K^T / sqrt(d) + mask) V, its backward
// against central finite differences, and the buffers' conventions.

#include "naive_attention.hpp"
#include "ops_test_helpers.hpp"

#include <trident/ops/attention.hpp>

#include <algorithm>
#include <type_traits>
#include <utility>

using namespace ops_test;

TEMPLATE_LIST_TEST_CASE("attention_forward matches the naive causal softmax(QK^T/sqrt(d))V", "[ops][attention]",
                        trident_test::FloatAndDoubleOnEverySpace) {
  using Space = typename TestType::space;
  using TestScalar = typename TestType::scalar;
  const int B = 2, T = 5, H = 3, hd = 4, cl = H * hd;
  const auto qkv = random_matrix<TestScalar, Space>("qkv", B * T, 3 * cl, -2.0, 2.0);
  const auto expected = naive_attention(values(qkv), B, T, H, hd);
  const double tolerance = std::is_same<TestScalar, float>::value ? 1e-6 : 1e-14;
  // Causal blocks of 1, 2 (a partial last block), 3, exactly T, and more than T rows.
  for (int block : {1, 2, 3, 5, 64}) {
    INFO("causal block = " << block);
    trident::ops::AttentionBuffers<TestScalar, typename Space::memory_space> buffers(B, T, H, hd, block);
    Matrix<TestScalar, Space> out("out", B * T, cl);
    trident::ops::attention_forward(Space(), out, buffers, qkv, B, T, H);
    CHECK(relative_error(values(out), expected) < tolerance);
    CHECK(elementwise_error(values(out), expected) < 100 * tolerance);

    // The stored probabilities: each row sums to one, zero right of the diagonal.
    const auto probs = to_host(buffers.probs);
    const auto& blocks = buffers.blocks;
    for (int bh = 0; bh < B * H; ++bh)
      for (int t = 0; t < T; ++t) {
        double total = 0;
        for (std::int64_t j = 0; j < blocks.row_width(t); ++j) {
          const double p = probs(bh, blocks.row_offset(t) + j);
          if (j > t) CHECK(p == 0);
          total += p;
        }
        CHECK(std::abs(total - 1.0) < 10 * tolerance);
      }
  }
}

TEST_CASE("causal blocks tile the lower triangle without overlap", "[ops][attention]") {
  for (int T : {1, 5, 64, 100}) {
    for (int block : {1, 3, 32, 64}) {
      const trident::ops::CausalBlocks blocks{T, std::min(block, T)};
      INFO("T = " << T << ", block = " << block);
      std::vector<int> owner(static_cast<std::size_t>(blocks.size()), 0);
      for (int t = 0; t < T; ++t) {
        CHECK(blocks.row_width(t) > t);
        CHECK(blocks.row_width(t) <= T);
        for (std::int64_t j = 0; j < blocks.row_width(t); ++j)
          ++owner[static_cast<std::size_t>(blocks.row_offset(t) + j)];
      }
      CHECK(std::count(owner.begin(), owner.end(), 1) == static_cast<long>(owner.size()));
    }
  }
}

TEMPLATE_LIST_TEST_CASE("attention_forward is stable for large scores", "[ops][attention]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  const int B = 1, T = 4, H = 2, hd = 3, cl = H * hd;
  const auto qkv = random_matrix<float, Space>("qkv", B * T, 3 * cl, -40.0, 40.0);
  trident::ops::AttentionBuffers<float, typename Space::memory_space> buffers(B, T, H, hd);
  Matrix<float, Space> out("out", B * T, cl);
  trident::ops::attention_forward(Space(), out, buffers, qkv, B, T, H);
  const auto got = values(out);
  for (double v : got) CHECK(std::isfinite(v));
  CHECK(relative_error(got, naive_attention(values(qkv), B, T, H, hd)) < 1e-5);
}

TEMPLATE_LIST_TEST_CASE("attention_backward matches finite differences", "[ops][attention]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  const int B = 2, T = 5, H = 3, hd = 2, cl = H * hd;
  auto qkv = random_matrix<double, Space>("qkv", B * T, 3 * cl, -1.5, 1.5);
  const auto upstream = random_matrix<double, Space>("upstream", B * T, cl);
  const auto g = values(upstream);
  const int block = GENERATE(2, 5);  // several causal blocks (the last one partial), and one
  INFO("causal block = " << block);
  trident::ops::AttentionBuffers<double, typename Space::memory_space> buffers(B, T, H, hd, block);
  Matrix<double, Space> out("out", B * T, cl);
  auto loss = [&]() {
    trident::ops::attention_forward(Space(), out, buffers, qkv, B, T, H);
    return dot(values(out), g);
  };
  loss();
  Matrix<double, Space> dqkv("dqkv", B * T, 3 * cl);
  trident::ops::attention_backward(Space(), dqkv, upstream, buffers, qkv, out, B, T, H);
  const auto analytic = values(dqkv);
  check_gradient(analytic, finite_differences(qkv, loss));

  SECTION("accumulate adds, repeated backward is stable") {
    loss();
    trident::ops::attention_backward(Space(), dqkv, upstream, buffers, qkv, out, B, T, H, true);
    const auto twice = values(dqkv);
    for (std::size_t i = 0; i < analytic.size(); ++i) CHECK(std::abs(twice[i] - 2 * analytic[i]) < 1e-13);
  }
}

TEMPLATE_LIST_TEST_CASE("attention buffers can share scratch between layers", "[ops][attention]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  const int B = 1, T = 6, H = 2, hd = 3, cl = H * hd;
  const auto qkv1 = random_matrix<double, Space>("qkv1", B * T, 3 * cl),
             qkv2 = random_matrix<double, Space>("qkv2", B * T, 3 * cl);
  const auto dout = random_matrix<double, Space>("dout", B * T, cl);
  trident::ops::AttentionBuffers<double, typename Space::memory_space> layer1(B, T, H, hd);
  auto layer2 = trident::ops::AttentionBuffers<double, typename Space::memory_space>::sharing_scratch_with(layer1);
  CHECK(layer2.q.data() == layer1.q.data());
  CHECK(layer2.probs.data() != layer1.probs.data());
  Matrix<double, Space> out1("out1", B * T, cl), out2("out2", B * T, cl), d1("d1", B * T, 3 * cl),
      d2("d2", B * T, 3 * cl);
  trident::ops::attention_forward(Space(), out1, layer1, qkv1, B, T, H);
  trident::ops::attention_forward(Space(), out2, layer2, qkv2, B, T, H);
  // Backward in reverse order, as a model does, after the other layer overwrote the scratch.
  trident::ops::attention_backward(Space(), d2, dout, layer2, qkv2, out2, B, T, H);
  trident::ops::attention_backward(Space(), d1, dout, layer1, qkv1, out1, B, T, H);

  trident::ops::AttentionBuffers<double, typename Space::memory_space> alone(B, T, H, hd);
  Matrix<double, Space> reference("reference", B * T, 3 * cl), out("out", B * T, cl);
  trident::ops::attention_forward(Space(), out, alone, qkv1, B, T, H);
  trident::ops::attention_backward(Space(), reference, dout, alone, qkv1, out, B, T, H);
  CHECK(values(d1) == values(reference));
}

TEMPLATE_LIST_TEST_CASE("attention handles T = 1 and rejects inconsistent shapes", "[ops][attention]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  const int B = 3, T = 1, H = 2, hd = 2, cl = H * hd;
  const auto qkv = random_matrix<double, Space>("qkv", B * T, 3 * cl);
  trident::ops::AttentionBuffers<double, typename Space::memory_space> buffers(B, T, H, hd);
  Matrix<double, Space> out("out", B * T, cl);
  trident::ops::attention_forward(Space(), out, buffers, qkv, B, T, H);
  // With one position, attention returns V.
  const auto hq = values(qkv), ho = values(out);
  for (int n = 0; n < B; ++n)
    for (int c = 0; c < cl; ++c) CHECK(ho[n * cl + c] == hq[n * 3 * cl + 2 * cl + c]);

  CHECK_THROWS_AS(trident::ops::attention_forward(Space(), out, buffers, qkv, B, T, 3), trident::InvalidArgument);
  CHECK_THROWS_WITH(trident::ops::attention_forward(Space(), out, buffers, qkv, B, 2, H),
                    Catch::Matchers::Contains("qkv has 3 rows but B*T = 3*2"));
  Matrix<double, Space> wrong("wrong", B * T, cl + 1);
  CHECK_THROWS_AS(trident::ops::attention_forward(Space(), wrong, buffers, qkv, B, T, H), trident::InvalidArgument);
}

// On a host space with several threads the (b, h) pairs run at once (detail::for_each_head),
// each pair's blocks in order on one thread: the results of both kernels are the one-thread
// ones, bit for bit.
TEMPLATE_TEST_CASE("attention on host threads equals attention on one thread, bit for bit", "[ops][attention]", float,
                   double) {
  using Threaded = Kokkos::DefaultHostExecutionSpace;
#if defined(KOKKOS_ENABLE_SERIAL)
  using OneThread = Kokkos::Serial;
#else
  using OneThread = Threaded;
#endif
  if (std::is_same<Threaded, OneThread>::value || Threaded().concurrency() == 1) {
    WARN("the host space runs one thread here: nothing to compare");
    return;
  }
  const int B = 3, T = 7, H = 4, hd = 4, cl = H * hd;
  const auto qkv = random_matrix<TestType, Threaded>("qkv", B * T, 3 * cl, -2.0, 2.0);
  const auto upstream = random_matrix<TestType, Threaded>("upstream", B * T, cl);
  for (const auto kernel : {trident::ops::AttentionKernel::blocked, trident::ops::AttentionKernel::flash})
    for (int block : {2, 64}) {
      INFO(trident::ops::attention_kernel_name(kernel) << " kernel, causal block = " << block);
      const auto run = [&](auto space) {
        trident::ops::AttentionBuffers<TestType, Kokkos::HostSpace> buffers(B, T, H, hd, block, kernel);
        Matrix<TestType, Threaded> out("out", B * T, cl), dqkv("dqkv", B * T, 3 * cl);
        trident::ops::attention_forward(space, out, buffers, qkv, B, T, H);
        trident::ops::attention_backward(space, dqkv, upstream, buffers, qkv, out, B, T, H);
        return std::make_pair(values(out), values(dqkv));
      };
      const auto threaded = run(Threaded());
      const auto one_thread = run(OneThread());
      CHECK(threaded.first == one_thread.first);
      CHECK(threaded.second == one_thread.second);
    }
}
