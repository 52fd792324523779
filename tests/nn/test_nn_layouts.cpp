// A user's MLP written with trident::nn against a plain one-rank reference written here from
// the definition of each layer (double precision, gradients by central differences), on one
// rank and on every layout of the ranks this test runs on: data, tensor and pipeline
// parallelism of 1, 2 and 4 and their mixes, with ZeRO stages and pipeline schedules varied.

#include "layouts.hpp"
#include "reference.hpp"

#include <cmath>
#include <map>
#include <string>
#include <vector>

namespace {

using namespace nn_layouts;
namespace ref = nn_reference;

constexpr int inputs = 3, hidden = 8, wide = 12, outputs = 2, rows = 8;

// Four top-level kinds of layer, every activation, two residual blocks whose inner linears
// pair up for tensor parallelism, and a top-level pair: 8 units, cut at width `hidden` or, inside
// the last pair, `wide` (split over the tensor-parallel group there).
nn::ModelSpec user_mlp() {
  return nn::megatron_pairs(nn::sequential(
      {nn::linear(inputs, hidden), nn::gelu(),
       nn::residual(
           {nn::layer_norm(hidden), nn::linear(hidden, 2 * hidden), nn::relu(), nn::linear(2 * hidden, hidden)}),
       nn::residual(
           {nn::layer_norm(hidden), nn::linear(hidden, 2 * hidden), nn::silu(), nn::linear(2 * hidden, hidden)}),
       nn::tanh(), nn::linear(hidden, wide), nn::gelu(), nn::linear(wide, outputs)},
      nn::Loss::mean_squared_error));
}

double input_value(int row, int col) {
  return std::sin(0.7 * row + 1.3 * col + 0.2);
}
double target_value(int row, int col) {
  return std::cos(0.5 * row - 0.9 * col);
}

// The mean over rows of the mean squared error per row, each layer from its definition.
double reference_loss(const Tensors& p) {
  ref::Rows x(rows, std::vector<double>(inputs));
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < inputs; ++c) x[static_cast<std::size_t>(r)][static_cast<std::size_t>(c)] = input_value(r, c);
  x = ref::pointwise(ref::linear(x, p, "0.", inputs, hidden), ref::gelu);
  auto block = [&](const ref::Rows& in, const std::string& prefix, double (*activation)(double)) {
    auto h = ref::layer_norm(in, p, prefix + "0.");
    h = ref::pointwise(ref::linear(h, p, prefix + "1.", hidden, 2 * hidden), activation);
    return ref::add(in, ref::linear(h, p, prefix + "3.", 2 * hidden, hidden));
  };
  x = block(x, "2.", [](double v) { return v > 0 ? v : 0.0; });
  x = block(x, "3.", [](double v) { return v / (1.0 + std::exp(-v)); });
  x = ref::pointwise(x, [](double v) { return std::tanh(v); });
  x = ref::pointwise(ref::linear(x, p, "5.", hidden, wide), ref::gelu);
  x = ref::linear(x, p, "7.", wide, outputs);
  double total = 0;
  for (int r = 0; r < rows; ++r) {
    double row_loss = 0;
    for (int c = 0; c < outputs; ++c) {
      const double d = x[static_cast<std::size_t>(r)][static_cast<std::size_t>(c)] - target_value(r, c);
      row_loss += d * d;
    }
    total += row_loss / outputs;
  }
  return total / rows;
}

Problem mlp_problem() {
  Problem problem;
  problem.spec = user_mlp();
  problem.rows = rows;
  problem.inputs = [](int first, int count) { return rows_of(first, count, inputs, input_value); };
  problem.targets = [](int first, int count) { return Targets{rows_of(first, count, outputs, target_value), {}}; };
  problem.reference_loss = reference_loss;
  return problem;
}

}  // namespace

TEST_CASE("a user's MLP matches the one-rank reference in every layout", "[nn]") {
  const auto layouts = layouts_of(trident_test::world_size());
  if (layouts.empty()) {
    WARN("no layouts for " << trident_test::world_size() << " ranks");
    return;
  }
  check_every_layout(mlp_problem(), layouts);
}

TEST_CASE("the spec is checked layer by layer with the values named", "[nn]") {
  using nn::linear;
  CHECK_THROWS_WITH(Model(Space(), nn::sequential({linear(3, 8), linear(4, 2)}, nn::Loss::mean_squared_error)),
                    "trident::nn: layer 1 (linear(4 -> 2)) takes 4 features but receives 8");
  CHECK_THROWS_WITH(Model(Space(), nn::sequential({linear(3, 8, nn::Parallel::column)}, nn::Loss::cross_entropy)),
                    Catch::Contains("the loss needs the model's output whole on every rank"));
  CHECK_THROWS_WITH(Model(Space(), nn::sequential({nn::gelu(), linear(3, 8)}, nn::Loss::cross_entropy)),
                    Catch::Contains("must fix the input features: a linear, a layer_norm"));
  CHECK_THROWS_WITH(
      Model(Space(), nn::sequential({linear(3, 8), nn::residual({linear(8, 4)})}, nn::Loss::mean_squared_error)),
      Catch::Contains("must return its 8 features as it receives them; its branch returns 4 features"));
  CHECK_THROWS_WITH(Model(Space(), nn::sequential({linear(3, 8)}, nn::Loss::mean_squared_error), {}, {1, 1}),
                    Catch::Contains("the stage of layers [1, 1) is not a non-empty range"));
  Model model(Space(), nn::sequential({linear(3, 8)}, nn::Loss::mean_squared_error));
  CHECK_THROWS_WITH(model.predict(Matrix("wrong", 2, 5)),
                    "trident::nn::Model::forward: the input has 5 features but the model takes 3");
  CHECK_THROWS_WITH(model.backward(1.0), "trident::nn::Model::backward: no forward to take the backward of");
  CHECK(nn::describe(
            nn::megatron_pairs(nn::sequential({linear(3, 8), nn::relu(), linear(8, 3)}, nn::Loss::mean_squared_error))
                .layers[0]) == "linear(3 -> 8, column)");
}

TEST_CASE("a classifier trains with cross-entropy and predicts", "[nn]") {
  // Two classes by the sign of x0 * x1: a model no linear map can fit, which the MLP learns.
  const auto spec = nn::sequential({nn::linear(2, 32), nn::tanh(), nn::linear(32, 32), nn::relu(), nn::linear(32, 2)},
                                   nn::Loss::cross_entropy);
  Model model(Space(), spec);
  model.initialize(3);
  const int n = 64;
  Matrix x("x", n, 2);
  Kokkos::View<int*, Space::memory_space> classes("classes", n);
  auto hx = Kokkos::create_mirror_view(x);
  auto hc = Kokkos::create_mirror_view(classes);
  for (int i = 0; i < n; ++i) {
    hx(i, 0) = std::sin(1.7 * i + 0.3);
    hx(i, 1) = std::cos(2.3 * i);
    hc(i) = hx(i, 0) * hx(i, 1) > 0 ? 1 : 0;
  }
  Kokkos::deep_copy(x, hx);
  Kokkos::deep_copy(classes, hc);
  trident::optim::AdamW<double, Space::memory_space> optimizer(model.parameters(), {0.9, 0.95, 1e-8, 0.0});
  double first = 0, last = 0;
  for (int step = 1; step <= 300; ++step) {
    model.zero_grad();
    const double loss = model.forward(x, {{}, classes}, 1.0 / n) / n;
    model.backward(1.0 / n);
    optimizer.step(Space(), model.parameters(), step, 0.01);
    if (step == 1) first = loss;
    last = loss;
  }
  INFO("loss " << first << " -> " << last);
  CHECK(first > 0.6);  // about ln 2 at the start
  CHECK(last < 0.1 * first);
  const auto logits = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), model.predict(x));
  int correct = 0;
  for (int i = 0; i < n; ++i) correct += (logits(i, 1) > logits(i, 0) ? 1 : 0) == hc(i);
  CHECK(correct >= n - 2);
}

TEST_CASE("a split backward must be completed by its weight pass, once", "[nn]") {
  const Problem problem = mlp_problem();
  Model model(Space(), problem.spec);
  model.initialize(seed);
  model.set_micro_batches({problem.inputs(0, 4)}, {problem.targets(0, 4)}, 0.25);
  model.stage_forward(0, Matrix(), Matrix());
  model.stage_backward_input(0, Matrix(), Matrix());
  CHECK_THROWS_WITH(model.stage_backward(0, Matrix(), Matrix()),
                    "trident::nn::Model::stage_backward: micro-batch 0 already ran its backward_input and awaits "
                    "stage_backward_weight");
  CHECK_THROWS_WITH(model.set_micro_batches({problem.inputs(0, 4)}, {problem.targets(0, 4)}, 0.25),
                    Catch::Contains("the weight pass of a split backward, did not run"));
  model.stage_backward_weight(0);
  CHECK_THROWS_WITH(model.stage_backward_weight(0),
                    "trident::nn::Model::stage_backward_weight: micro-batch 0 has no "
                    "backward_input to complete");
}

namespace {

// How often each Kokkos profiling region opens (trident opens one per public operation), through
// the Kokkos Tools callbacks, while it lives.
class RegionCounts {
 public:
  RegionCounts() {
    counts().clear();
    Kokkos::Tools::Experimental::set_push_region_callback([](const char* name) { ++counts()[name]; });
  }
  ~RegionCounts() { Kokkos::Tools::Experimental::set_push_region_callback(nullptr); }
  RegionCounts(const RegionCounts&) = delete;
  RegionCounts& operator=(const RegionCounts&) = delete;
  int operator[](const std::string& name) const {
    const auto found = counts().find(name);
    return found == counts().end() ? 0 : found->second;
  }

 private:
  static std::map<std::string, int>& counts() {
    static std::map<std::string, int> by_name;
    return by_name;
  }
};

}  // namespace

TEST_CASE("an activation after a linear of its chain adds the linear's bias in its own passes", "[nn][fusion]") {
  // user_mlp(): the residual blocks' relu and silu follow their linear in one chain; the two
  // top-level gelus follow a top-level linear (another unit, which a pipeline may cut from them).
  const Problem problem = mlp_problem();
  Model model(Space(), problem.spec);
  model.initialize(seed);
  RegionCounts regions;
  model.forward(problem.inputs(0, rows), problem.targets(0, rows), 1.0);
  model.backward(1.0);
  CHECK(regions["trident::ops::bias_activation_forward"] == 2);
  CHECK(regions["trident::ops::bias_activation_backward"] == 2);
  CHECK(regions["trident::ops::relu_forward"] == 0);
  CHECK(regions["trident::ops::silu_backward"] == 0);
  CHECK(regions["trident::ops::gelu_forward"] == 2);
  CHECK(regions["trident::ops::gelu_backward"] == 2);

  using nn::Parallel;
  const auto column = nn::linear(8, 16, Parallel::column), row = nn::linear(16, 8, Parallel::row),
             whole = nn::linear(8, 8), no_bias = nn::linear(8, 8, Parallel::none, false);
  CHECK(nn::activation_takes_bias(column, nn::gelu(), false, false));
  CHECK(nn::activation_takes_bias(column, nn::gelu(), true, false));  // gathers its rows: its bias sees them all
  CHECK(nn::activation_takes_bias(row, nn::relu(), false, false));
  CHECK(nn::activation_takes_bias(whole, nn::tanh(), false, false));
  // Gradients of this rank's rows only, summed over the group: the linear keeps its bias.
  CHECK_FALSE(nn::activation_takes_bias(row, nn::relu(), false, true));
  CHECK_FALSE(nn::activation_takes_bias(whole, nn::tanh(), true, false));
  CHECK_FALSE(nn::activation_takes_bias(no_bias, nn::gelu(), false, false));
  CHECK_FALSE(nn::activation_takes_bias(whole, nn::layer_norm(8), false, false));
}
