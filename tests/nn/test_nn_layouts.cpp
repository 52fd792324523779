// A user's MLP written with trident::nn against a plain one-rank reference written here from
// the definition of each layer (double precision, gradients by central differences), on one
// rank and on every layout of the ranks this test runs on: data, tensor and pipeline
// parallelism of 1, 2 and 4 and their mixes, with ZeRO stages and pipeline schedules varied.

#include "trident_test.hpp"

#include <trident/comm/comm.hpp>
#include <trident/data_parallel/data_parallel.hpp>
#include <trident/mesh/process_mesh.hpp>
#include <trident/nn/nn.hpp>
#include <trident/optim/adamw.hpp>
#include <trident/pipeline/pipeline.hpp>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace {

using Space = Kokkos::DefaultExecutionSpace;
using Model = trident::nn::Model<double, Space>;
using Matrix = Model::matrix;
using Tensors = std::map<std::string, std::vector<double>>;
namespace nn = trident::nn;

constexpr int inputs = 3, hidden = 8, outputs = 2, rows = 8;

// Four top-level kinds of layer, every activation, two residual blocks whose inner linears
// pair up for tensor parallelism, and a top-level pair: 8 units, cut at width `hidden`.
nn::ModelSpec user_mlp() {
  return nn::megatron_pairs(nn::sequential(
      {nn::linear(inputs, hidden), nn::gelu(),
       nn::residual(
           {nn::layer_norm(hidden), nn::linear(hidden, 2 * hidden), nn::relu(), nn::linear(2 * hidden, hidden)}),
       nn::residual(
           {nn::layer_norm(hidden), nn::linear(hidden, 2 * hidden), nn::silu(), nn::linear(2 * hidden, hidden)}),
       nn::tanh(), nn::linear(hidden, hidden), nn::gelu(), nn::linear(hidden, outputs)},
      nn::Loss::mean_squared_error));
}

double input_value(int row, int col) {
  return std::sin(0.7 * row + 1.3 * col + 0.2);
}
double target_value(int row, int col) {
  return std::cos(0.5 * row - 0.9 * col);
}

// ---- the reference: each layer from its definition, on host vectors ----

using Rows = std::vector<std::vector<double>>;

Rows reference_linear(const Rows& x, const Tensors& p, const std::string& prefix, int in, int out) {
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

double gelu(double x) {
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

Rows reference_layer_norm(const Rows& x, const Tensors& p, const std::string& prefix) {
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

Rows add(Rows a, const Rows& b) {
  for (std::size_t r = 0; r < a.size(); ++r)
    for (std::size_t j = 0; j < a[r].size(); ++j) a[r][j] += b[r][j];
  return a;
}

// The mean over rows of the mean squared error per row.
double reference_loss(const Tensors& p) {
  Rows x(rows, std::vector<double>(inputs));
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < inputs; ++c) x[static_cast<std::size_t>(r)][static_cast<std::size_t>(c)] = input_value(r, c);
  x = pointwise(reference_linear(x, p, "0.", inputs, hidden), gelu);
  auto block = [&](const Rows& in, const std::string& prefix, double (*activation)(double)) {
    auto h = reference_layer_norm(in, p, prefix + "0.");
    h = pointwise(reference_linear(h, p, prefix + "1.", hidden, 2 * hidden), activation);
    return add(in, reference_linear(h, p, prefix + "3.", 2 * hidden, hidden));
  };
  x = block(x, "2.", [](double v) { return v > 0 ? v : 0.0; });
  x = block(x, "3.", [](double v) { return v / (1.0 + std::exp(-v)); });
  x = pointwise(x, [](double v) { return std::tanh(v); });
  x = pointwise(reference_linear(x, p, "5.", hidden, hidden), gelu);
  x = reference_linear(x, p, "7.", hidden, outputs);
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

Tensors reference_gradients(Tensors p) {
  Tensors grads;
  const double h = 1e-6;
  for (auto& [name, values] : p) {
    auto& g = grads[name];
    for (auto& v : values) {
      const double original = v;
      v = original + h;
      const double plus = reference_loss(p);
      v = original - h;
      const double minus = reference_loss(p);
      v = original;
      g.push_back((plus - minus) / (2 * h));
    }
  }
  return grads;
}

double max_relative_difference(const Tensors& a, const Tensors& b) {
  double worst = 0, scale = 0;
  for (const auto& [name, values] : b)
    for (double v : values) scale = std::max(scale, std::abs(v));
  for (const auto& [name, values] : b) {
    const auto& other = a.at(name);
    REQUIRE(other.size() == values.size());
    for (std::size_t i = 0; i < values.size(); ++i)
      worst = std::max(worst, std::abs(other[i] - values[i]) / std::max(std::abs(values[i]), 1e-3 * scale));
  }
  return worst;
}

// ---- one layout ----

struct Layout {
  int dp = 1, tp = 1, pp = 1;
  int zero_stage = 0;
  const char* schedule = "1f1b";
};

std::string describe(const Layout& l) {
  return "dp=" + std::to_string(l.dp) + " tp=" + std::to_string(l.tp) + " pp=" + std::to_string(l.pp) +
         " zero=" + std::to_string(l.zero_stage) + " schedule=" + l.schedule;
}

Matrix rows_of(int first, int count, int columns, double (*value)(int, int)) {
  Matrix m("rows", count, columns);
  auto host = Kokkos::create_mirror_view(m);
  for (int r = 0; r < count; ++r)
    for (int c = 0; c < columns; ++c) host(r, c) = value(first + r, c);
  Kokkos::deep_copy(m, host);
  return m;
}

struct Outcome {
  double loss = 0;
  Tensors gradients;  // empty under ZeRO, whose reduced gradients are shards
  Tensors after_step;
};

constexpr double learning_rate = 1e-2;

Outcome run_layout(const Layout& layout) {
  const trident::comm::Communicator world(MPI_COMM_WORLD, "world");
  trident::ProcessMesh mesh(world, layout.dp, layout.tp, layout.pp);
  const auto spec = user_mlp();
  const auto stages = nn::even_stages(static_cast<int>(spec.layers.size()), layout.pp);
  Model model(Space(), spec, {mesh.tp(), false}, stages[static_cast<std::size_t>(mesh.pp_rank())]);
  model.initialize(7);

  const trident::optim::AdamWSettings adamw{0.9, 0.95, 1e-8, 0.1};
  std::unique_ptr<trident::data_parallel::DataParallel<double, Space>> engine;
  std::unique_ptr<trident::optim::AdamW<double, Space::memory_space>> optimizer;
  if (layout.dp > 1) {
    trident::data_parallel::DataParallelSettings settings;
    settings.zero_stage = layout.zero_stage;
    settings.bucket_mb = 0.001;  // several buckets
    settings.overlap = layout.pp == 1;
    engine = std::make_unique<trident::data_parallel::DataParallel<double, Space>>(
        Space(), mesh.dp(), model.parameters(), model.unit_plan(), adamw, settings);
    if (layout.pp == 1) {
      auto* e = engine.get();
      model.set_hooks({[e](int u) { e->before_forward(u); }, [e](int u) { e->before_backward(u); },
                       [e](int u) { e->after_backward(u); }});
    }
    engine->begin_step();
    engine->begin_micro_batch(layout.pp == 1);  // under a pipeline: reduce after all micro-batches
  } else {
    optimizer = std::make_unique<trident::optim::AdamW<double, Space::memory_space>>(model.parameters(), adamw);
  }

  const int local_rows = rows / layout.dp, first_row = mesh.dp_rank() * local_rows;
  const double scale = 1.0 / rows;
  double local_loss = 0;
  if (layout.pp == 1) {
    nn::Targets<double, Space> targets{rows_of(first_row, local_rows, outputs, target_value), {}};
    local_loss = model.forward(rows_of(first_row, local_rows, inputs, input_value), targets, scale);
    model.backward(scale);
  } else {
    const int micro_batches = 2 * layout.pp, micro_rows = local_rows / micro_batches;
    std::vector<Matrix> micro_inputs;
    std::vector<nn::Targets<double, Space>> micro_targets;
    for (int m = 0; m < micro_batches; ++m) {
      micro_inputs.push_back(rows_of(first_row + m * micro_rows, micro_rows, inputs, input_value));
      micro_targets.push_back({rows_of(first_row + m * micro_rows, micro_rows, outputs, target_value), {}});
    }
    model.set_micro_batches(micro_inputs, micro_targets, scale);
    const auto schedule = std::string(layout.schedule) == "gpipe" ? trident::pipeline::gpipe(layout.pp, micro_batches)
                          : std::string(layout.schedule) == "zb-h1"
                              ? trident::pipeline::zero_bubble_h1(layout.pp, micro_batches)
                              : trident::pipeline::one_f_one_b(layout.pp, micro_batches);
    // Every cut of user_mlp() is at the hidden width.
    CHECK((model.is_first_stage() ? model.output_columns() : model.input_columns()) == hidden);
    trident::pipeline::Executor<double, Space> executor(Space(), mesh.pp(), schedule,
                                                        static_cast<std::size_t>(micro_rows), hidden);
    local_loss = executor.run(std::vector<Model*>{&model});
    if (!model.is_last_stage()) local_loss = 0;  // counted once, by the last stage
  }

  Outcome outcome;
  // The loss over the whole mesh: every rank's share, counted once per (dp replica, last stage, tp rank 0).
  Kokkos::View<double*, Kokkos::HostSpace> loss("loss", 1);
  loss(0) = mesh.tp_rank() == 0 ? local_loss : 0.0;
  if (engine) {
    const auto summary = engine->finish_gradients(local_loss);
    (void)summary;
  }
  trident::comm::allreduce(Kokkos::DefaultHostExecutionSpace(), world, loss);
  outcome.loss = loss(0) * scale;

  const bool counts = mesh.dp_rank() == 0;
  if (layout.zero_stage == 0)  // ZeRO-1 and up reduce-scatter into shards
    outcome.gradients = nn::global_tensors(model, nn::Buffer::gradients, world, counts);
  if (engine) {
    engine->step(1, learning_rate);
    model.parameters().set_values(engine->full_values());
  } else {
    optimizer->step(Space(), model.parameters(), 1, learning_rate);
  }
  outcome.after_step = nn::global_tensors(model, nn::Buffer::values, world, counts);
  return outcome;
}

std::vector<Layout> layouts_of(int world_size) {
  switch (world_size) {
    case 1:
      return {{1, 1, 1}};
    case 2:
      return {{2, 1, 1, 0}, {2, 1, 1, 3}, {1, 2, 1}, {1, 1, 2, 0, "1f1b"}, {1, 1, 2, 0, "zb-h1"}};
    case 4:
      return {{4, 1, 1, 3},          {4, 1, 1, 1}, {1, 4, 1},    {1, 1, 4, 0, "1f1b"},
              {1, 1, 4, 0, "gpipe"}, {2, 2, 1, 2}, {2, 1, 2, 1}, {1, 2, 2, 0, "zb-h1"}};
    default:
      return {};
  }
}

}  // namespace

TEST_CASE("a user's MLP matches the one-rank reference in every layout", "[nn]") {
  const int size = trident_test::world_size();
  const auto layouts = layouts_of(size);
  if (layouts.empty()) {
    WARN("no layouts for " << size << " ranks");
    return;
  }
  // The one-rank model on every rank, and the reference from its initial values.
  Model single(Space(), user_mlp());
  single.initialize(7);
  const trident::comm::Communicator self(MPI_COMM_SELF, "self");
  const Tensors initial = nn::global_tensors(single, nn::Buffer::values, self);
  const double expected_loss = reference_loss(initial);
  const Tensors expected_gradients = reference_gradients(initial);

  nn::Targets<double, Space> targets{rows_of(0, rows, outputs, target_value), {}};
  const double single_loss = single.forward(rows_of(0, rows, inputs, input_value), targets) / rows;
  single.backward(1.0 / rows);
  CHECK(std::abs(single_loss - expected_loss) <= 1e-12 * std::abs(expected_loss));
  const Tensors single_gradients = nn::global_tensors(single, nn::Buffer::gradients, self);
  CHECK(max_relative_difference(single_gradients, expected_gradients) < 1e-6);  // central differences
  trident::optim::AdamW<double, Space::memory_space> optimizer(single.parameters(), {0.9, 0.95, 1e-8, 0.1});
  optimizer.step(Space(), single.parameters(), 1, learning_rate);
  const Tensors single_after_step = nn::global_tensors(single, nn::Buffer::values, self);

  for (const auto& layout : layouts) {
    INFO(describe(layout));
    const Outcome outcome = run_layout(layout);
    CHECK(std::abs(outcome.loss - expected_loss) <= 1e-12 * std::abs(expected_loss));
    if (!outcome.gradients.empty()) {
      CHECK(max_relative_difference(outcome.gradients, single_gradients) < 1e-10);
      CHECK(max_relative_difference(outcome.gradients, expected_gradients) < 1e-6);
    }
    CHECK(max_relative_difference(outcome.after_step, single_after_step) < 1e-10);
  }
}

TEST_CASE("the spec is checked layer by layer with the values named", "[nn]") {
  using nn::linear;
  CHECK_THROWS_WITH(Model(Space(), nn::sequential({linear(3, 8), linear(4, 2)}, nn::Loss::mean_squared_error)),
                    "trident::nn: layer 1 (linear(4 -> 2)) takes 4 features but receives 8");
  CHECK_THROWS_WITH(Model(Space(), nn::sequential({linear(3, 8, nn::Parallel::column)}, nn::Loss::cross_entropy)),
                    Catch::Contains("the loss needs the model's output whole on every rank"));
  CHECK_THROWS_WITH(Model(Space(), nn::sequential({nn::gelu(), linear(3, 8)}, nn::Loss::cross_entropy)),
                    Catch::Contains("must be a linear or a layer_norm"));
  CHECK_THROWS_WITH(
      Model(Space(), nn::sequential({linear(3, 8), nn::residual({linear(8, 4)})}, nn::Loss::mean_squared_error)),
      Catch::Contains("must return 8 features whole on every rank; its branch returns 4 features"));
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
