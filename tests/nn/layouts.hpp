#pragma once
// One training step of a user's model through train::Trainer in a layout of the ranks (data,
// tensor and pipeline parallelism, ZeRO stage, pipeline schedule), and the check that every layout gives the loss,
// gradients and AdamW step of the one-rank model, and those of a reference from definitions.

#include "reference.hpp"
#include "trident_test.hpp"

#include <trident/nn.hpp>
#include <trident/train.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace nn_layouts {

using Space = Kokkos::DefaultExecutionSpace;
using Model = trident::nn::Model<double, Space>;
using Matrix = Model::matrix;
using Targets = trident::nn::Targets<double, Space>;
using nn_reference::Tensors;
namespace nn = trident::nn;

// A model and its data: rows [first, first + count) of the inputs and the targets.
struct Problem {
  nn::ModelSpec spec;
  int rows = 0;  // the global batch; every layout's micro-batches must divide it evenly
  std::function<Matrix(int first, int count)> inputs;
  std::function<Targets(int first, int count)> targets;
  std::function<double(const Tensors&)> reference_loss;  // the mean loss over the rows
  double difference_tolerance = 1e-6;                    // of the gradients against the reference's central differences
};

struct Layout {
  int dp = 1, tp = 1, pp = 1;
  int zero_stage = 0;
  const char* schedule = "1f1b";
  bool sequence_parallel = false;
  bool recompute = false;
  const char* reduction = "auto";  // ZeRO-0's gradient all-reduce
};

inline std::string describe(const Layout& l) {
  return "dp=" + std::to_string(l.dp) + " tp=" + std::to_string(l.tp) + " pp=" + std::to_string(l.pp) +
         " zero=" + std::to_string(l.zero_stage) + " schedule=" + l.schedule +
         (l.sequence_parallel ? " sequence-parallel" : "") + (l.recompute ? " recompute" : "") +
         " reduction=" + l.reduction;
}

// Every layout of `world_size` ranks the tests run: each axis alone at 2 and 4, ZeRO 0-3, the
// 1F1B, GPipe and ZB-H1 schedules, sequence parallelism, recomputation, the two-level gradient
// all-reduce (its node split on one host: one node of all the replicas), and mixes of the axes
// on 4 ranks.
inline std::vector<Layout> layouts_of(int world_size) {
  switch (world_size) {
    case 1:
      return {{1, 1, 1}};
    case 2:
      return {{2, 1, 1, 0},
              {2, 1, 1, 3},
              {1, 2, 1},
              {1, 2, 1, 0, "1f1b", true},
              {1, 1, 2, 0, "1f1b"},
              {1, 1, 2, 0, "zb-h1"},
              {1, 1, 2, 0, "zb-h1", false, true},
              {2, 1, 1, 0, "1f1b", false, false, "hierarchical"}};
    case 4:
      return {{4, 1, 1, 3},
              {4, 1, 1, 1},
              {1, 4, 1},
              {1, 1, 4, 0, "1f1b"},
              {1, 1, 4, 0, "gpipe", false, true},
              {2, 2, 1, 2},
              {2, 2, 1, 3, "1f1b", true},
              {2, 1, 2, 1},
              {2, 1, 2, 3},
              {1, 2, 2, 0, "zb-h1"},
              {1, 2, 2, 0, "zb-h1", true, true},
              {4, 1, 1, 0, "1f1b", false, false, "hierarchical"},
              {2, 1, 2, 0, "1f1b", false, false, "hierarchical"}};
    default:
      return {};
  }
}

inline Matrix rows_of(int first, int count, int columns, const std::function<double(int, int)>& value) {
  Matrix m("rows", count, columns);
  auto host = Kokkos::create_mirror_view(m);
  for (int r = 0; r < count; ++r)
    for (int c = 0; c < columns; ++c) host(r, c) = value(first + r, c);
  Kokkos::deep_copy(m, host);
  return m;
}

// The largest difference of `a` from `b` relative to each element of b, floored at 1e-3 of
// b's largest element.
inline double max_relative_difference(const Tensors& a, const Tensors& b) {
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

struct Outcome {
  double loss = 0;
  Tensors gradients;  // empty under ZeRO, whose reduced gradients are shards
  Tensors after_step;
  double evaluated = 0;           // the mean loss of the updated model, forward only
  std::vector<double> predicted;  // its output, row-major (this rank's columns of a split head)
};

inline std::vector<double> host_values(const Matrix& m) {
  const auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), m);
  std::vector<double> values;
  for (std::size_t r = 0; r < host.extent(0); ++r)
    for (std::size_t c = 0; c < host.extent(1); ++c) values.push_back(host(r, c));
  return values;
}

constexpr double learning_rate = 1e-2;
constexpr std::uint64_t seed = 7;
inline const trident::optim::AdamWSettings adamw{0.9, 0.95, 1e-8, 0.1};

// One training step of the Trainer in `layout` on the problem's whole batch: the pipeline
// streams 2 pp micro-batches per replica.
inline Outcome run_layout(const Problem& problem, const Layout& layout) {
  const trident::comm::Communicator world(MPI_COMM_WORLD, "world");
  trident::train::Layout l;
  l.dp = layout.dp;
  l.tp = layout.tp;
  l.pp = layout.pp;
  l.zero_stage = layout.zero_stage;
  l.schedule = std::string(layout.schedule) == "zb-h1" ? "zb" : layout.schedule;
  l.sequence_parallel = layout.sequence_parallel;
  l.recompute = layout.recompute;
  l.reduction = trident::data_parallel::reduction_from_name(layout.reduction);
  l.bucket_mb = 0.001;  // several buckets
  const std::int64_t samples = problem.rows / nn::rows_per_sample(problem.spec);
  if (layout.pp > 1) l.micro_batch = samples / (layout.dp * 2 * layout.pp);
  trident::train::TrainerSettings settings;
  settings.adamw = adamw;
  settings.grad_clip = 0;
  settings.seed = seed;
  trident::train::Trainer<double, Space> trainer(world, problem.spec, l, settings);
  const auto report = trainer.step({problem.inputs(0, problem.rows), problem.targets(0, problem.rows)}, learning_rate);
  Outcome outcome;
  outcome.loss = report.loss;
  if (layout.zero_stage == 0) outcome.gradients = trainer.global_gradients();  // ZeRO-1 and up keep shards
  outcome.after_step = trainer.global_parameters();
  outcome.evaluated = trainer.evaluate({problem.inputs(0, problem.rows), problem.targets(0, problem.rows)});
  outcome.predicted = host_values(trainer.predict(problem.inputs(0, problem.rows)));
  return outcome;
}

// The one-rank model against the reference (loss to 1e-12, gradients to the 1e-6 of central
// differences, or the problem's own tolerance), then every layout against the one-rank model (loss, gradients and the
// values after one AdamW step to 1e-10).
inline void check_every_layout(const Problem& problem, const std::vector<Layout>& layouts) {
  Model single(Space(), problem.spec);
  single.initialize(seed);
  const trident::comm::Communicator self(MPI_COMM_SELF, "self");
  const Tensors initial = nn::global_tensors(single, nn::Buffer::values, self);
  const double expected_loss = problem.reference_loss(initial);
  const Tensors expected_gradients = nn_reference::central_difference_gradients(initial, problem.reference_loss);

  const double single_loss =
      single.forward(problem.inputs(0, problem.rows), problem.targets(0, problem.rows)) / problem.rows;
  single.backward(1.0 / problem.rows);
  CHECK(std::abs(single_loss - expected_loss) <= 1e-12 * std::abs(expected_loss));
  const Tensors single_gradients = nn::global_tensors(single, nn::Buffer::gradients, self);
  CHECK(max_relative_difference(single_gradients, expected_gradients) < problem.difference_tolerance);
  trident::optim::AdamW<double, Space::memory_space> optimizer(single.parameters(), adamw);
  optimizer.step(Space(), single.parameters(), 1, learning_rate);
  const Tensors single_after_step = nn::global_tensors(single, nn::Buffer::values, self);
  const double single_evaluated =
      single.forward(problem.inputs(0, problem.rows), problem.targets(0, problem.rows), 1.0) / problem.rows;
  const std::vector<double> single_predicted = host_values(single.predict(problem.inputs(0, problem.rows)));

  for (const auto& layout : layouts) {
    INFO(describe(layout));
    const Outcome outcome = run_layout(problem, layout);
    CHECK(std::abs(outcome.loss - expected_loss) <= 1e-12 * std::abs(expected_loss));
    if (!outcome.gradients.empty()) {
      CHECK(max_relative_difference(outcome.gradients, single_gradients) < 1e-10);
      CHECK(max_relative_difference(outcome.gradients, expected_gradients) < problem.difference_tolerance);
    }
    CHECK(max_relative_difference(outcome.after_step, single_after_step) < 1e-10);
    // Evaluation and inference in the layout: the updated one-rank model's loss and output
    // (whole outputs; a vocabulary-parallel head gives each rank its columns).
    CHECK(std::abs(outcome.evaluated - single_evaluated) <= 1e-10 * std::abs(single_evaluated));
    if (outcome.predicted.size() == single_predicted.size()) {
      for (std::size_t i = 0; i < single_predicted.size(); ++i)
        CHECK(std::abs(outcome.predicted[i] - single_predicted[i]) <= 1e-10 * (1 + std::abs(single_predicted[i])));
    } else {
      CHECK(layout.tp > 1);
    }
  }
}

}  // namespace nn_layouts
