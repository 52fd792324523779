// A two-layer MLP (16 -> 32, GELU, -> 4, mean squared error over 64 rows) trained with the
// 16-bit pieces put together as a training driver does: weights and activations in bfloat16 or
// float16, weight gradients in float, float master weights whose AdamW step writes the model's
// 16-bit copy, and for float16 the dynamic loss scale, skipping the steps whose gradients
// overflowed. Its loss curve, indexed by applied updates, must track the same MLP trained in
// float.
//
// The tolerance: a 16-bit store keeps 8 (bfloat16) or 11 (float16) significant bits, so every
// activation, and every weight the forward reads, is off by up to 2^-9 or 2^-12 of itself; the
// errors are independent and the loss averages 256 squared differences, so one forward moves
// it by well under 2^-9 of its value, and 60 AdamW steps (each of about lr, far above the
// rounding of the master weights) add little. Measured: bfloat16 stays within 4.4e-4 of the
// first loss and float16 within 3.7e-5 (about 2^-3 of their epsilons); the bounds, 2e-3 and
// 2e-4, are about five times that. A broken piece moves the curve by far more: a copy left
// unwritten keeps the first loss while float's halves, and a skipped step applied turns it NaN.

#include "execution_spaces.hpp"
#include "trident_test.hpp"

#include <trident/core/half_precision.hpp>
#include <trident/core/parameter_store.hpp>
#include <trident/ops/convert.hpp>
#include <trident/ops/gelu.hpp>
#include <trident/ops/linear.hpp>
#include <trident/ops/mse.hpp>
#include <trident/optim/adamw.hpp>
#include <trident/optim/loss_scaler.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <type_traits>
#include <vector>

using trident::bfloat16;
using trident::float16;
using trident::optim::LossScaler;
using trident::optim::LossScalerSettings;

namespace {

constexpr std::int64_t rows = 64, inputs = 16, hidden = 32, outputs = 4;
constexpr int updates = 60;

struct Curve {
  std::vector<double> loss;  // loss[u]: the mean loss after u applied updates
  std::int64_t skipped = 0;
  double final_scale = 1.0;
};

// The same draws for every run: inputs in [-1, 1], targets in [-0.8, 0.8], weights uniform in
// +-1/sqrt(fan in), biases in +-0.1.
std::vector<float> draws(std::size_t count, double low, double high, unsigned seed) {
  std::mt19937 generator(seed);
  std::uniform_real_distribution<double> uniform(low, high);
  std::vector<float> values(count);
  for (auto& v : values) v = static_cast<float>(uniform(generator));
  return values;
}

// The values in the view's type (rounded where it has 16 bits).
template <class View>
void fill(const View& view, const std::vector<float>& values) {
  using Value = typename View::non_const_value_type;
  const auto host = Kokkos::create_mirror_view(view);
  for (std::size_t k = 0; k < values.size(); ++k) {
    if constexpr (static_cast<int>(View::rank) == 2) {
      const auto cols = view.extent(1);
      host(k / cols, k % cols) = static_cast<Value>(values[k]);
    } else {
      host(k) = static_cast<Value>(values[k]);
    }
  }
  Kokkos::deep_copy(view, host);
}

// Trains the MLP with activations and weights in Act (float: the reference, without a copy)
// for `updates` applied AdamW steps.
template <class Act, class Space>
Curve train(const LossScalerSettings& scaling) {
  using Memory = typename Space::memory_space;
  using Matrix = Kokkos::View<Act**, Kokkos::LayoutRight, Memory>;
  using FloatMatrix = Kokkos::View<float**, Kokkos::LayoutRight, Memory>;
  constexpr bool mixed = trident::is_half_precision_v<Act>;
  const Space space;

  trident::ParameterStore<float, Memory> master;
  master.declare("w1", {inputs, hidden}, true);
  master.declare("b1", {hidden}, false);
  master.declare("w2", {hidden, outputs}, true);
  master.declare("b2", {outputs}, false);
  master.allocate("test::master");
  std::vector<float> init = draws(inputs * hidden, -0.25, 0.25, 1), more = draws(hidden, -0.1, 0.1, 2);
  init.insert(init.end(), more.begin(), more.end());
  more = draws(hidden * outputs, -0.177, 0.177, 3);
  init.insert(init.end(), more.begin(), more.end());
  more = draws(outputs, -0.1, 0.1, 4);
  init.insert(init.end(), more.begin(), more.end());
  fill(master.values(), init);

  // The weights the model computes with: the master itself in float, else its 16-bit copy.
  using CopyStore = trident::ParameterStore<Act, Memory>;
  typename CopyStore::flat_view copy;
  if constexpr (mixed) {
    copy = typename CopyStore::flat_view("test::copy", static_cast<std::size_t>(master.size()));
    trident::ops::convert(space, copy, master.values());
  } else {
    copy = master.values();
  }
  const auto w1 = CopyStore::matrix_of(copy, master.info("w1"));
  const auto b1 = CopyStore::vector_of(copy, master.info("b1"));
  const auto w2 = CopyStore::matrix_of(copy, master.info("w2"));
  const auto b2 = CopyStore::vector_of(copy, master.info("b2"));

  // The inputs in the model's type, the targets in float (as the loss reads them).
  Matrix x("x", rows, inputs), h("h", rows, hidden), a("a", rows, hidden), y("y", rows, outputs);
  Matrix dy("dy", rows, outputs), da("da", rows, hidden), dh("dh", rows, hidden);
  FloatMatrix target("target", rows, outputs);
  fill(x, draws(rows * inputs, -1.0, 1.0, 5));
  fill(target, draws(rows * outputs, -0.8, 0.8, 6));
  Kokkos::View<float*, Memory> losses("losses", rows);

  const auto n = master.size();
  const trident::optim::AdamWChunks<Memory> chunks(master.tensors(), 0, n);
  Kokkos::View<float*, Memory> exp_avg("exp_avg", n), exp_avg_sq("exp_avg_sq", n);
  const trident::optim::AdamWSettings settings{0.9, 0.95, 1e-8, 0.01};
  LossScaler scaler(scaling);
  Curve curve;
  std::int64_t applied = 0;
  for (int iteration = 0; applied < updates && iteration < 4 * updates; ++iteration) {
    trident::ops::linear_forward(space, h, x, w1, b1);
    trident::ops::gelu_forward(space, a, h);
    trident::ops::linear_forward(space, y, a, w2, b2);
    trident::ops::mse_forward(space, losses, y, target);
    double sum = 0;
    Kokkos::parallel_reduce(
        "test::loss_sum", Kokkos::RangePolicy<Space>(space, 0, rows),
        KOKKOS_LAMBDA(const int r, double& s) { s += losses(r); }, sum);
    if (static_cast<std::int64_t>(curve.loss.size()) == applied) curve.loss.push_back(sum / rows);

    const double used = scaler.scale();
    Kokkos::deep_copy(space, master.grads(), 0.0f);
    trident::ops::mse_backward(space, dy, y, target, static_cast<float>(used / rows));
    trident::ops::linear_backward(space, da, master.grad_matrix("w2"), master.grad_vector("b2"), dy, a, w2);
    trident::ops::gelu_backward(space, dh, h, da);
    trident::ops::linear_backward(space, Matrix(), master.grad_matrix("w1"), master.grad_vector("b1"), dh, x, w1);

    // Overflow anywhere (here one rank; a driver reduces the flag over the run), then unscale.
    const auto grads = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), master.grads());
    bool nonfinite = false;
    for (std::int64_t i = 0; i < n; ++i) nonfinite = nonfinite || !std::isfinite(grads(i));
    if (!scaler.update(nonfinite)) continue;
    for (std::int64_t i = 0; i < n; ++i) grads(i) = static_cast<float>(grads(i) / used);
    Kokkos::deep_copy(master.grads(), grads);
    ++applied;
    if constexpr (mixed) {
      trident::optim::adamw_update(space, master.values(), master.grads(), exp_avg, exp_avg_sq, chunks, settings,
                                   applied, 3e-3, copy);
    } else {
      trident::optim::adamw_update(space, master.values(), master.grads(), exp_avg, exp_avg_sq, chunks, settings,
                                   applied, 3e-3);
    }
  }
  REQUIRE(applied == updates);
  curve.skipped = scaler.skipped_steps();
  curve.final_scale = scaler.scale();
  return curve;
}

// The largest distance between the curves, as a fraction of the first loss.
double largest_gap(const Curve& a, const Curve& reference) {
  REQUIRE(a.loss.size() == reference.loss.size());
  double gap = 0;
  for (std::size_t u = 0; u < a.loss.size(); ++u) gap = std::max(gap, std::abs(a.loss[u] - reference.loss[u]));
  return gap / reference.loss.front();
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("a bfloat16 MLP with float master weights tracks the float one", "[optim][half][train]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  const Curve reference = train<float, Space>(LossScalerSettings::none());
  // The MLP learns: what the 16-bit runs must reproduce is a curve, not a constant.
  CHECK(reference.loss.back() < 0.5 * reference.loss.front());
  CHECK(reference.skipped == 0);
  const Curve half = train<bfloat16, Space>(LossScalerSettings::none());
  CHECK(half.skipped == 0);
  const double gap = largest_gap(half, reference);
  INFO("bfloat16 against float: largest gap " << gap << " of the first loss " << reference.loss.front());
  CHECK(gap < 2e-3);
  CHECK(gap > 0);  // computed in 16 bits indeed
}

TEMPLATE_LIST_TEST_CASE("a float16 MLP recovers from a loss scale that overflows and tracks the float one",
                        "[optim][half][train]", trident_test::ExecutionSpaces) {
  using Space = TestType;
  const Curve reference = train<float, Space>(LossScalerSettings::none());
  // Starting at 2^24 the output gradient (about 2^24 * 2/4 * 0.5/64) overflows float16's 65504:
  // steps are skipped and the scale halves until the gradients fit.
  LossScalerSettings scaling;
  scaling.initial_scale = 16777216.0;
  scaling.hysteresis = 1;  // each overflow halves the scale; 1000 clean steps before it grows
  const Curve half = train<float16, Space>(scaling);
  INFO("float16: " << half.skipped << " steps skipped, final scale " << half.final_scale);
  CHECK(half.skipped >= 2);  // 2 with these draws: 2^24 and 2^23 overflow
  CHECK(half.final_scale == scaling.initial_scale * std::pow(0.5, static_cast<double>(half.skipped)));
  const double gap = largest_gap(half, reference);
  INFO("float16 against float: largest gap " << gap << " of the first loss " << reference.loss.front());
  CHECK(gap < 2e-4);
  CHECK(gap > 0);
}
