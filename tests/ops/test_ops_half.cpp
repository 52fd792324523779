// The operators on bfloat16 and float16 views: each computes in float and rounds once when it
// stores, so on inputs a 16-bit type holds exactly, its 16-bit result is bitwise the float
// operator's result on the same values, rounded (and a float output beside 16-bit inputs, such
// as a weight gradient kept in float, is bitwise the float operator's). A 16-bit accumulator,
// a second rounding or an intermediate stored in 16 bits shows up as a differing bit. Built
// with multiply-adds unfused (CMakeLists.txt): the two instantiations may otherwise fuse
// differently and differ in float's last bit.

#include "ops_test_helpers.hpp"

#include <trident/core/half_precision.hpp>
#include <trident/ops/activations.hpp>
#include <trident/ops/attention.hpp>
#include <trident/ops/bias_activation.hpp>
#include <trident/ops/cross_entropy.hpp>
#include <trident/ops/embedding.hpp>
#include <trident/ops/gelu.hpp>
#include <trident/ops/layernorm.hpp>
#include <trident/ops/linear.hpp>
#include <trident/ops/matmul.hpp>
#include <trident/ops/mse.hpp>
#include <trident/ops/residual.hpp>

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <type_traits>

using namespace ops_test;
using trident::bfloat16;
using trident::float16;

namespace {

using HalfTypesOnEverySpace = trident_test::ScalarsOnExecutionSpaces<bfloat16, float16>;

// The same values twice: in float and in the 16-bit type T (drawn in float, then rounded to T).
template <class T, class Space>
struct Twin {
  Matrix<float, Space> f;
  Matrix<T, Space> h;
};

template <class T, class Space>
Twin<T, Space> twin(const std::string& name, std::int64_t rows, std::int64_t cols, double low, double high,
                    std::uint64_t seed) {
  Twin<T, Space> t{random_matrix<float, Space>(name, rows, cols, low, high, seed),
                   Matrix<T, Space>(name + "_half", rows, cols)};
  auto f = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), t.f);
  auto h = Kokkos::create_mirror_view(t.h);
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) {
      h(i, j) = T(f(i, j));
      f(i, j) = static_cast<float>(h(i, j));
    }
  Kokkos::deep_copy(t.f, f);
  Kokkos::deep_copy(t.h, h);
  return t;
}

// A rank-1 twin: row 0 of a [1, n] one.
template <class T, class Space>
struct VectorTwin {
  Kokkos::View<float*, Kokkos::LayoutRight, typename Space::memory_space> f;
  Kokkos::View<T*, Kokkos::LayoutRight, typename Space::memory_space> h;
};

template <class T, class Space>
VectorTwin<T, Space> vector_twin(const std::string& name, std::int64_t length, double low, double high,
                                 std::uint64_t seed) {
  const auto t = twin<T, Space>(name, 1, length, low, high, seed);
  return {Kokkos::subview(t.f, 0, Kokkos::ALL), Kokkos::subview(t.h, 0, Kokkos::ALL)};
}

template <class View>
std::uint32_t bits_at(const View& host, std::int64_t k) {
  using Value = typename View::non_const_value_type;
  if constexpr (static_cast<int>(View::rank) == 1) {
    if constexpr (trident::is_half_precision_v<Value>) {
      return host(k).bits;
    } else {
      return trident::detail::bits_of(host(k));
    }
  } else {
    const auto cols = static_cast<std::int64_t>(host.extent(1));
    if constexpr (trident::is_half_precision_v<Value>) {
      return host(k / cols, k % cols).bits;
    } else {
      return trident::detail::bits_of(host(k / cols, k % cols));
    }
  }
}

template <class View>
float value_at(const View& host, std::int64_t k) {
  if constexpr (static_cast<int>(View::rank) == 1) {
    return static_cast<float>(host(k));
  } else {
    const auto cols = static_cast<std::int64_t>(host.extent(1));
    return static_cast<float>(host(k / cols, k % cols));
  }
}

// `result` (16-bit or float) holds, bit for bit, the float `expected` rounded to its type. With
// a `slack`, for products summed in another order (a vendor's 16-bit GEMM): a result may also be
// within `slack` of `expected` (sums that cancel), or, in 16 bits, one step from its rounding
// (the two sums straddle a rounding).
template <class ResultView, class FloatView>
void require_rounded(const ResultView& result, const FloatView& expected, const char* what, float slack = 0) {
  using T = typename ResultView::non_const_value_type;
  const auto r = to_host(result);
  const auto e = to_host(expected);
  REQUIRE(r.size() == e.size());
  std::int64_t wrong = 0, nonzero = 0;
  std::ostringstream first;
  for (std::int64_t k = 0; k < static_cast<std::int64_t>(r.size()); ++k) {
    const float want_float = value_at(e, k);
    std::uint32_t want;
    if constexpr (trident::is_half_precision_v<T>) {
      want = T(want_float).bits;
    } else {
      want = trident::detail::bits_of(want_float);
    }
    nonzero += want_float != 0 ? 1 : 0;
    const std::uint32_t got = bits_at(r, k);
    const bool within_slack =
        slack > 0 && (std::fabs(value_at(r, k) - want_float) <= slack ||
                      (trident::is_half_precision_v<T> && (got > want ? got - want : want - got) <= 1));
    if (got != want && !within_slack) {
      if (wrong == 0) first << "element " << k << ": " << value_at(r, k) << " against " << want_float;
      ++wrong;
    }
  }
  INFO(what << ": " << wrong << " of " << r.size() << " elements differ; first " << first.str());
  CHECK(wrong == 0);
  CHECK(nonzero > 0);  // a comparison of zeros proves nothing
}

template <class View>
auto widened(const View& h) {
  Kokkos::View<float**, Kokkos::LayoutRight, typename View::memory_space> f("widened", h.extent(0), h.extent(1));
  auto host = Kokkos::create_mirror_view(f);
  const auto from = to_host(h);
  for (std::size_t i = 0; i < h.extent(0); ++i)
    for (std::size_t j = 0; j < h.extent(1); ++j) host(i, j) = static_cast<float>(from(i, j));
  Kokkos::deep_copy(f, host);
  return f;
}

// A 16-bit copy of a float matrix: each value rounded to T.
template <class T, class View>
auto copy_to_half(const View& f) {
  Kokkos::View<T**, Kokkos::LayoutRight, typename View::memory_space> h("half", f.extent(0), f.extent(1));
  auto host = Kokkos::create_mirror_view(h);
  const auto from = to_host(f);
  for (std::size_t i = 0; i < f.extent(0); ++i)
    for (std::size_t j = 0; j < f.extent(1); ++j) host(i, j) = T(from(i, j));
  Kokkos::deep_copy(h, host);
  return h;
}

// How many elements of two float matrices of one shape differ.
template <class View>
std::int64_t count_differing(const View& a, const View& b) {
  const auto ha = to_host(a), hb = to_host(b);
  std::int64_t differing = 0;
  for (std::size_t i = 0; i < a.extent(0); ++i)
    for (std::size_t j = 0; j < a.extent(1); ++j) differing += ha(i, j) != hb(i, j) ? 1 : 0;
  return differing;
}

template <class View>
View copy_of(const View& view) {
  View copy(view.label() + "_copy", view.layout());
  Kokkos::deep_copy(copy, view);
  return copy;
}

constexpr std::int64_t rows = 24, cols = 300;  // 300: a full block of the host's column sums and a part of one

}  // namespace

// How far a product may stray from the widened float one: nothing, but on a space whose 16-bit
// products run on the vendor's GEMM (values here are at most a few units, sums of 300 terms).
template <class Space>
constexpr float product_slack() {
  return trident::ops::has_vendor_gemm<Space>() ? 1e-4f : 0.0f;
}

TEMPLATE_LIST_TEST_CASE("16-bit activations are the float ones rounded", "[ops][half]", HalfTypesOnEverySpace) {
  using T = typename TestType::scalar;
  using Space = typename TestType::space;
  const Space space;
  const auto x = twin<T, Space>("x", rows, cols, -4.0, 4.0, 1);
  const auto dout = twin<T, Space>("dout", rows, cols, -1.0, 1.0, 2);
  const auto dinp = twin<T, Space>("dinp", rows, cols, -1.0, 1.0, 3);
  Matrix<float, Space> out_f("out", rows, cols);
  Matrix<T, Space> out_h("out", rows, cols);

  trident::ops::gelu_forward(space, out_f, x.f);
  trident::ops::gelu_forward(space, out_h, x.h);
  require_rounded(out_h, out_f, "gelu forward");
  trident::ops::silu_forward(space, out_f, x.f);
  trident::ops::silu_forward(space, out_h, x.h);
  require_rounded(out_h, out_f, "silu forward");

  trident::ops::gelu_backward(space, out_f, x.f, dout.f);
  trident::ops::gelu_backward(space, out_h, x.h, dout.h);
  require_rounded(out_h, out_f, "gelu backward");
  // Accumulating: the old 16-bit value is read as float, the sum rounded once.
  trident::ops::tanh_backward(space, dinp.f, x.f, dout.f, true);
  trident::ops::tanh_backward(space, dinp.h, x.h, dout.h, true);
  require_rounded(dinp.h, dinp.f, "tanh backward, accumulated");
}

TEMPLATE_LIST_TEST_CASE("16-bit residual sums are the float ones rounded", "[ops][half]", HalfTypesOnEverySpace) {
  using T = typename TestType::scalar;
  using Space = typename TestType::space;
  const Space space;
  const auto a = twin<T, Space>("a", rows, cols, -2.0, 2.0, 4);
  const auto b = twin<T, Space>("b", rows, cols, -2.0, 2.0, 5);
  Matrix<float, Space> out_f("out", rows, cols);
  Matrix<T, Space> out_h("out", rows, cols);
  trident::ops::residual_forward(space, out_f, a.f, b.f);
  trident::ops::residual_forward(space, out_h, a.h, b.h);
  require_rounded(out_h, out_f, "residual forward");
  trident::ops::add_inplace(space, a.f, b.f);
  trident::ops::add_inplace(space, a.h, b.h);
  require_rounded(a.h, a.f, "add in place");
}

TEMPLATE_LIST_TEST_CASE("a 16-bit bias and activation round the pre-activation as the unfused ops do",
                        "[ops][half][fusion]", HalfTypesOnEverySpace) {
  using T = typename TestType::scalar;
  using Space = typename TestType::space;
  const Space space;
  const auto pre = twin<T, Space>("pre", rows, cols, -3.0, 3.0, 6);
  const auto bias = vector_twin<T, Space>("bias", cols, -1.0, 1.0, 7);
  const auto dout = twin<T, Space>("dout", rows, cols, -1.0, 1.0, 8);
  Matrix<float, Space> out_f("out", rows, cols), dpre_f("dpre", rows, cols);
  Matrix<T, Space> out_h("out", rows, cols), dpre_h("dpre", rows, cols);
  using Gelu = trident::ops::Gelu;

  trident::ops::bias_activation_forward<Gelu>(space, pre.f, out_f, bias.f);
  trident::ops::bias_activation_forward<Gelu>(space, pre.h, out_h, bias.h);
  require_rounded(pre.h, pre.f, "pre-activation with its bias");
  const auto pre_rounded = widened(pre.h);
  trident::ops::gelu_forward(space, out_f, pre_rounded);
  require_rounded(out_h, out_f, "activation of the rounded pre-activation");

  // The bias gradient stays in float: its column sums come from the same float gradients.
  Kokkos::View<float*, typename Space::memory_space> dbias_f("dbias", cols), dbias_h("dbias", cols);
  Kokkos::deep_copy(dbias_f, 0.25f);
  Kokkos::deep_copy(dbias_h, 0.25f);
  trident::ops::bias_activation_backward<Gelu>(space, dpre_f, dbias_f, pre_rounded, dout.f);
  trident::ops::bias_activation_backward<Gelu>(space, dpre_h, dbias_h, pre.h, dout.h);
  require_rounded(dpre_h, dpre_f, "pre-activation gradient");
  require_rounded(dbias_h, dbias_f, "float bias gradient from 16-bit gradients");
}

TEMPLATE_LIST_TEST_CASE("a 16-bit layer norm is the float one rounded, with float statistics", "[ops][half]",
                        HalfTypesOnEverySpace) {
  using T = typename TestType::scalar;
  using Space = typename TestType::space;
  using FloatVector = Kokkos::View<float*, typename Space::memory_space>;
  const Space space;
  const auto x = twin<T, Space>("x", rows, cols, -2.0, 3.0, 9);
  const auto weight = vector_twin<T, Space>("weight", cols, 0.5, 1.5, 10);
  const auto bias = vector_twin<T, Space>("bias", cols, -0.5, 0.5, 11);
  const auto dout = twin<T, Space>("dout", rows, cols, -1.0, 1.0, 12);
  Matrix<float, Space> out_f("out", rows, cols);
  Matrix<T, Space> out_h("out", rows, cols);
  FloatVector mean_f("mean", rows), rstd_f("rstd", rows), mean_h("mean", rows), rstd_h("rstd", rows);
  trident::ops::layernorm_forward(space, out_f, mean_f, rstd_f, x.f, weight.f, bias.f);
  trident::ops::layernorm_forward(space, out_h, mean_h, rstd_h, x.h, weight.h, bias.h);
  require_rounded(out_h, out_f, "layer norm output");
  require_rounded(mean_h, mean_f, "mean, accumulated in float");
  require_rounded(rstd_h, rstd_f, "rstd, accumulated in float");

  auto dinp = twin<T, Space>("dinp", rows, cols, -1.0, 1.0, 13);
  FloatVector dweight_f("dweight", cols), dbias_f("dbias", cols), dweight_h("dweight", cols), dbias_h("dbias", cols);
  trident::ops::layernorm_backward(space, dinp.f, dweight_f, dbias_f, dout.f, x.f, weight.f, mean_f, rstd_f, true);
  trident::ops::layernorm_backward(space, dinp.h, dweight_h, dbias_h, dout.h, x.h, weight.h, mean_h, rstd_h, true);
  require_rounded(dinp.h, dinp.f, "layer norm input gradient, accumulated");
  require_rounded(dweight_h, dweight_f, "float weight gradient");
  require_rounded(dbias_h, dbias_f, "float bias gradient");
}

TEMPLATE_LIST_TEST_CASE("a 16-bit product is the float product of the same values, rounded once", "[ops][half][matmul]",
                        HalfTypesOnEverySpace) {
  using T = typename TestType::scalar;
  using Space = typename TestType::space;
  const Space space;
  const std::int64_t m = 37, k = 300, n = 29;  // k long enough that a 16-bit accumulator would show
  const float slack = product_slack<Space>();
  for (const char ta : {'N', 'T'})
    for (const char tb : {'N', 'T'})
      for (const float beta : {0.0f, 1.0f}) {
        CAPTURE(ta, tb, beta);
        const auto a = ta == 'N' ? twin<T, Space>("a", m, k, -1.0, 1.0, 14) : twin<T, Space>("a", k, m, -1.0, 1.0, 14);
        const auto b = tb == 'N' ? twin<T, Space>("b", k, n, -1.0, 1.0, 15) : twin<T, Space>("b", n, k, -1.0, 1.0, 15);
        const auto c = twin<T, Space>("c", m, n, -1.0, 1.0, 16);
        trident::ops::matmul(space, ta, tb, 0.5f, a.f, b.f, beta, c.f);
        // All three in 16 bits; then 16-bit operands into a float C (a weight gradient in float).
        const auto c_h = copy_of(c.h);
        trident::ops::matmul(space, ta, tb, 0.5f, a.h, b.h, beta, c_h);
        require_rounded(c_h, c.f, "16-bit C", slack);
        const auto c_mixed = widened(c.h);
        trident::ops::matmul(space, ta, tb, 0.5f, a.h, b.h, beta, c_mixed);
        require_rounded(c_mixed, c.f, "float C from 16-bit A and B", slack);
      }
}

TEMPLATE_LIST_TEST_CASE("a 16-bit linear layer: activations in 16 bits, float weight gradients", "[ops][half]",
                        HalfTypesOnEverySpace) {
  using T = typename TestType::scalar;
  using Space = typename TestType::space;
  using FloatVector = Kokkos::View<float*, typename Space::memory_space>;
  const Space space;
  const std::int64_t in = 48, out = 300;
  const float slack = product_slack<Space>();
  const auto x = twin<T, Space>("x", rows, in, -1.0, 1.0, 17);
  const auto weight = twin<T, Space>("weight", in, out, -0.3, 0.3, 18);
  const auto bias = vector_twin<T, Space>("bias", out, -0.5, 0.5, 19);
  const auto dout = twin<T, Space>("dout", rows, out, -1.0, 1.0, 20);
  Matrix<float, Space> y_f("y", rows, out), dx_f("dx", rows, in), dw_f("dw", in, out);
  Matrix<T, Space> y_h("y", rows, out), dx_h("dx", rows, in);
  Matrix<float, Space> dw_h("dw", in, out);
  FloatVector db_f("db", out), db_h("db", out);
  trident::ops::linear_forward(space, y_f, x.f, weight.f, bias.f);
  trident::ops::linear_forward(space, y_h, x.h, weight.h, bias.h);
  require_rounded(y_h, y_f, "linear output", slack);
  trident::ops::linear_backward(space, dx_f, dw_f, db_f, dout.f, x.f, weight.f);
  trident::ops::linear_backward(space, dx_h, dw_h, db_h, dout.h, x.h, weight.h);
  require_rounded(dx_h, dx_f, "input gradient", slack);
  require_rounded(dw_h, dw_f, "float weight gradient", slack);
  require_rounded(db_h, db_f, "float bias gradient");
  // A float bias (not representable in 16 bits) joins the product before the one rounding.
  const auto fine_bias = random_vector<float, Space>("fine_bias", out, -0.5, 0.5, 21);
  trident::ops::linear_forward(space, y_f, x.f, weight.f, fine_bias);
  trident::ops::linear_forward(space, y_h, x.h, weight.h, fine_bias);
  require_rounded(y_h, y_f, "linear output with a float bias", slack);
}

TEMPLATE_LIST_TEST_CASE("a float weight beside 16-bit activations is rounded to their type for its products",
                        "[ops][half]", HalfTypesOnEverySpace) {
  using T = typename TestType::scalar;
  using Space = typename TestType::space;
  const Space space;
  const std::int64_t in = 48, out = 300;
  const float slack = product_slack<Space>();
  // A master weight of float values, most of which T cannot hold, and the same values rounded.
  const auto master = random_matrix<float, Space>("master", in, out, -0.3, 0.3, 22);
  const auto rounded = widened(copy_to_half<T>(master));
  const auto x = twin<T, Space>("x", rows, in, -1.0, 1.0, 23);
  const auto dout = twin<T, Space>("dout", rows, out, -1.0, 1.0, 24);
  const auto bias = random_vector<float, Space>("bias", out, -0.5, 0.5, 25);
  REQUIRE(count_differing(master, rounded) > in * out / 2);  // the rounding changes the weight
  Matrix<float, Space> y_f("y", rows, out), dx_f("dx", rows, in);
  Matrix<T, Space> y_h("y", rows, out), dx_h("dx", rows, in);
  const std::decay_t<decltype(bias)> no_bias;
  for (const bool with_bias : {false, true}) {
    CAPTURE(with_bias);
    trident::ops::linear_forward(space, y_f, x.f, rounded, with_bias ? bias : no_bias);
    trident::ops::linear_forward(space, y_h, x.h, master, with_bias ? bias : no_bias);
    require_rounded(y_h, y_f, "linear output", slack);
  }
  trident::ops::linear_backward(space, dx_f, Matrix<float, Space>(), no_bias, dout.f, x.f, rounded);
  trident::ops::linear_backward(space, dx_h, Matrix<float, Space>(), no_bias, dout.h, x.h, master);
  require_rounded(dx_h, dx_f, "input gradient", slack);
  // The tied head reads its table [V, C] transposed: here the master [in, out] as V = in, C = out.
  Matrix<float, Space> logits_f("logits", rows, in), dinp_f("dinp", rows, out);
  Matrix<T, Space> logits_h("logits", rows, in), dinp_h("dinp", rows, out);
  const auto dlogits = twin<T, Space>("dlogits", rows, in, -1.0, 1.0, 26);
  trident::ops::linear_transposed_forward(space, logits_f, dout.f, rounded);
  trident::ops::linear_transposed_forward(space, logits_h, dout.h, master);
  require_rounded(logits_h, logits_f, "tied head's logits", slack);
  trident::ops::linear_transposed_backward(space, dinp_f, Matrix<float, Space>(), dlogits.f, dout.f, rounded);
  trident::ops::linear_transposed_backward(space, dinp_h, Matrix<float, Space>(), dlogits.h, dout.h, master);
  require_rounded(dinp_h, dinp_f, "tied head's input gradient", slack);
  // Float activations multiply the master weight itself.
  Matrix<float, Space> y_master("y_master", rows, out);
  trident::ops::linear_forward(space, y_master, x.f, master, no_bias);
  trident::ops::linear_forward(space, y_f, x.f, rounded, no_bias);
  CHECK(count_differing(y_master, y_f) > 0);
}

TEMPLATE_LIST_TEST_CASE("16-bit logits give the float cross-entropy, and its gradient rounded", "[ops][half][loss]",
                        HalfTypesOnEverySpace) {
  using T = typename TestType::scalar;
  using Space = typename TestType::space;
  using FloatVector = Kokkos::View<float*, typename Space::memory_space>;
  const Space space;
  const std::int64_t vocab = 300;
  const auto logits = twin<T, Space>("logits", rows, vocab, -4.0, 4.0, 21);
  Kokkos::View<int*, typename Space::memory_space> targets("targets", rows);
  auto host_targets = Kokkos::create_mirror_view(targets);
  for (std::int64_t n = 0; n < rows; ++n) host_targets(n) = n == 3 ? -1 : static_cast<int>((n * 37) % vocab);
  Kokkos::deep_copy(targets, host_targets);

  FloatVector loss_f("loss", rows), loss_h("loss", rows);
  trident::ops::cross_entropy_forward(space, loss_f, logits.f, targets);
  trident::ops::cross_entropy_forward(space, loss_h, logits.h, targets);
  require_rounded(loss_h, loss_f, "losses");

  // The gradient in place of the logits, as a training step computes it.
  const float scale = 1.0f / static_cast<float>(rows);
  FloatVector both_f("both", rows), both_h("both", rows);
  const auto dlogits_f = copy_of(logits.f);
  const auto dlogits_h = copy_of(logits.h);
  trident::ops::cross_entropy_forward_backward(space, both_f, dlogits_f, dlogits_f, targets, scale);
  trident::ops::cross_entropy_forward_backward(space, both_h, dlogits_h, dlogits_h, targets, scale);
  require_rounded(dlogits_h, dlogits_f, "logit gradients");
  require_rounded(both_h, both_f, "losses beside the gradients");
}

TEMPLATE_LIST_TEST_CASE("16-bit mean squared error and embeddings are the float ones rounded", "[ops][half][loss]",
                        HalfTypesOnEverySpace) {
  using T = typename TestType::scalar;
  using Space = typename TestType::space;
  using FloatVector = Kokkos::View<float*, typename Space::memory_space>;
  const Space space;
  const auto pred = twin<T, Space>("pred", rows, cols, -1.0, 1.0, 22);
  const auto target = twin<T, Space>("target", rows, cols, -1.0, 1.0, 23);
  FloatVector loss_f("loss", rows), loss_h("loss", rows);
  trident::ops::mse_forward(space, loss_f, pred.f, target.f);
  trident::ops::mse_forward(space, loss_h, pred.h, target.h);
  require_rounded(loss_h, loss_f, "mean squared errors");
  Matrix<float, Space> dpred_f("dpred", rows, cols);
  Matrix<T, Space> dpred_h("dpred", rows, cols);
  trident::ops::mse_backward(space, dpred_f, pred.f, target.f, 0.125f);
  trident::ops::mse_backward(space, dpred_h, pred.h, target.h, 0.125f);
  require_rounded(dpred_h, dpred_f, "prediction gradient");

  // Tokens and positions: [B = 3, T = 8] rows; the table's gradient in float, summed over
  // repeated tokens from 16-bit output gradients.
  const int seq = 8, vocab = 11;
  const std::int64_t n = 3 * seq, c = 40;
  const auto table = twin<T, Space>("table", vocab, c, -1.0, 1.0, 24);
  const auto positions = twin<T, Space>("positions", seq, c, -1.0, 1.0, 25);
  const auto dout = twin<T, Space>("dout", n, c, -1.0, 1.0, 26);
  Kokkos::View<int*, typename Space::memory_space> tokens("tokens", n);
  auto host_tokens = Kokkos::create_mirror_view(tokens);
  for (std::int64_t r = 0; r < n; ++r) host_tokens(r) = static_cast<int>((r * 7) % vocab);
  Kokkos::deep_copy(tokens, host_tokens);
  Matrix<float, Space> emb_f("emb", n, c);
  Matrix<T, Space> emb_h("emb", n, c);
  trident::ops::embedding_forward(space, emb_f, tokens, table.f, positions.f, seq);
  trident::ops::embedding_forward(space, emb_h, tokens, table.h, positions.h, seq);
  require_rounded(emb_h, emb_f, "token plus position embedding");
  Matrix<float, Space> dtable_f("dtable", vocab, c), dpos_f("dpos", seq, c), dtable_h("dtable", vocab, c),
      dpos_h("dpos", seq, c);
  trident::ops::embedding_backward(space, dtable_f, dpos_f, dout.f, tokens, seq);
  trident::ops::embedding_backward(space, dtable_h, dpos_h, dout.h, tokens, seq);
  require_rounded(dtable_h, dtable_f, "float table gradient");
  require_rounded(dpos_h, dpos_f, "float position gradient");
}

TEMPLATE_LIST_TEST_CASE("attention on 16-bit activations computes in float buffers and rounds its outputs once",
                        "[ops][half][attention]", HalfTypesOnEverySpace) {
  using T = typename TestType::scalar;
  using Space = typename TestType::space;
  using trident::ops::AttentionKernel;
  using Path = trident::ops::detail::FlashPath;
  const Space space;
  const int B = 2, seq = 19, H = 2, hd = 8, cl = H * hd;
  const auto qkv = twin<T, Space>("qkv", B * seq, 3 * cl, -2.0, 2.0, 27);
  const auto dout = twin<T, Space>("dout", B * seq, cl, -1.0, 1.0, 28);
  // Blocked with blocks of 8 (a partial last one), flash on both of its paths.
  struct Case {
    AttentionKernel kernel;
    Path path;
  };
  for (const Case c : {Case{AttentionKernel::blocked, Path::automatic}, Case{AttentionKernel::flash, Path::row_blocks},
                       Case{AttentionKernel::flash, Path::teams}}) {
    CAPTURE(trident::ops::attention_kernel_name(c.kernel), static_cast<int>(c.path));
    using Buffers = trident::ops::AttentionBuffers<float, typename Space::memory_space>;
    const Buffers for_float(B, seq, H, hd, 8, c.kernel, 4), for_half(B, seq, H, hd, 8, c.kernel, 4);
    Matrix<float, Space> out_f("out", B * seq, cl);
    Matrix<T, Space> out_h("out", B * seq, cl);
    const bool flash = c.kernel == AttentionKernel::flash;
    if (flash) {
      trident::ops::flash_attention_forward(space, out_f, for_float, qkv.f, c.path);
      trident::ops::flash_attention_forward(space, out_h, for_half, qkv.h, c.path);
    } else {
      trident::ops::attention_forward(space, out_f, for_float, qkv.f, B, seq, H);
      trident::ops::attention_forward(space, out_h, for_half, qkv.h, B, seq, H);
    }
    require_rounded(out_h, out_f, "attention output");
    // The backward reads the output the forward stored: the rounded one in 16 bits.
    const auto out_rounded = widened(out_h);
    auto dqkv = twin<T, Space>("dqkv", B * seq, 3 * cl, -1.0, 1.0, 29);
    if (flash) {
      trident::ops::flash_attention_backward(space, dqkv.f, dout.f, for_float, qkv.f, out_rounded, true, c.path);
      trident::ops::flash_attention_backward(space, dqkv.h, dout.h, for_half, qkv.h, out_h, true, c.path);
    } else {
      trident::ops::attention_backward(space, dqkv.f, dout.f, for_float, qkv.f, out_rounded, B, seq, H, true);
      trident::ops::attention_backward(space, dqkv.h, dout.h, for_half, qkv.h, out_h, B, seq, H, true);
    }
    require_rounded(dqkv.h, dqkv.f, "qkv gradient, accumulated");
  }
}
