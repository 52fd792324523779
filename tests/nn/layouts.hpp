#pragma once
// One training step of a user's model in a layout of the ranks (data, tensor and pipeline
// parallelism, ZeRO stage, pipeline schedule), and the check that every layout gives the loss,
// gradients and AdamW step of the one-rank model, and those of a reference from definitions.

#include "reference.hpp"
#include "trident_test.hpp"

#include <trident/comm/comm.hpp>
#include <trident/data_parallel/data_parallel.hpp>
#include <trident/mesh/process_mesh.hpp>
#include <trident/nn/nn.hpp>
#include <trident/optim/adamw.hpp>
#include <trident/pipeline/pipeline.hpp>

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
  int rows = 0;         // the global batch; every layout's micro-batches must divide it evenly
  int cut_columns = 0;  // the columns at every cut between pipeline stages
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
};

inline std::string describe(const Layout& l) {
  return "dp=" + std::to_string(l.dp) + " tp=" + std::to_string(l.tp) + " pp=" + std::to_string(l.pp) +
         " zero=" + std::to_string(l.zero_stage) + " schedule=" + l.schedule +
         (l.sequence_parallel ? " sequence-parallel" : "") + (l.recompute ? " recompute" : "");
}

// Every layout of `world_size` ranks the tests run: each axis alone at 2 and 4, ZeRO 0-3, the
// 1F1B, GPipe and ZB-H1 schedules, sequence parallelism, recomputation, and mixes of the axes
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
              {1, 1, 2, 0, "zb-h1", false, true}};
    case 4:
      return {{4, 1, 1, 3},
              {4, 1, 1, 1},
              {1, 4, 1},
              {1, 1, 4, 0, "1f1b"},
              {1, 1, 4, 0, "gpipe", false, true},
              {2, 2, 1, 2},
              {2, 2, 1, 3, "1f1b", true},
              {2, 1, 2, 1},
              {1, 2, 2, 0, "zb-h1"},
              {1, 2, 2, 0, "zb-h1", true, true}};
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
};

constexpr double learning_rate = 1e-2;
constexpr std::uint64_t seed = 7;
inline const trident::optim::AdamWSettings adamw{0.9, 0.95, 1e-8, 0.1};

inline Outcome run_layout(const Problem& problem, const Layout& layout) {
  const trident::comm::Communicator world(MPI_COMM_WORLD, "world");
  trident::ProcessMesh mesh(world, layout.dp, layout.tp, layout.pp);
  const auto stages = nn::even_stages(static_cast<int>(problem.spec.layers.size()), layout.pp);
  Model model(Space(), problem.spec, {mesh.tp(), layout.sequence_parallel},
              stages[static_cast<std::size_t>(mesh.pp_rank())], layout.recompute);
  model.initialize(seed);

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

  const int local_rows = problem.rows / layout.dp, first_row = mesh.dp_rank() * local_rows;
  const double scale = 1.0 / problem.rows;
  double local_loss = 0;
  if (layout.pp == 1) {
    local_loss = model.forward(problem.inputs(first_row, local_rows), problem.targets(first_row, local_rows), scale);
    model.backward(scale);
  } else {
    const int micro_batches = 2 * layout.pp, micro_rows = local_rows / micro_batches;
    std::vector<Matrix> micro_inputs;
    std::vector<Targets> micro_targets;
    for (int m = 0; m < micro_batches; ++m) {
      micro_inputs.push_back(problem.inputs(first_row + m * micro_rows, micro_rows));
      micro_targets.push_back(problem.targets(first_row + m * micro_rows, micro_rows));
    }
    model.set_micro_batches(micro_inputs, micro_targets, scale);
    const auto schedule = std::string(layout.schedule) == "gpipe" ? trident::pipeline::gpipe(layout.pp, micro_batches)
                          : std::string(layout.schedule) == "zb-h1"
                              ? trident::pipeline::zero_bubble_h1(layout.pp, micro_batches)
                              : trident::pipeline::one_f_one_b(layout.pp, micro_batches);
    CHECK((model.is_first_stage() ? model.output_columns() : model.input_columns()) == problem.cut_columns);
    // Rows at the cuts: split over the tensor-parallel group under sequence parallelism.
    const auto cut = model.is_first_stage() ? model.stage().end : model.stage().first;
    trident::pipeline::Executor<double, Space> executor(
        Space(), mesh.pp(), schedule, static_cast<std::size_t>(model.rows_at(cut, micro_rows)), problem.cut_columns);
    local_loss = executor.run(std::vector<Model*>{&model});
    if (!model.is_last_stage()) local_loss = 0;  // counted once, by the last stage
    // A table a tied head reads on another stage: the two stages sum their gradients.
    for (const auto& table : nn::tied_tables(problem.spec)) {
      const auto stage_of = [&](int layer) {
        for (std::size_t s = 0; s < stages.size(); ++s)
          if (layer >= stages[s].first && layer < stages[s].end) return static_cast<int>(s);
        return -1;
      };
      const trident::pipeline::TiedGradients tied(mesh.pp(), stage_of(table.embedding_layer),
                                                  stage_of(table.head_layer));
      if (tied.holds())
        tied.sum(Space(), std::vector<Model::store_type::vector_view>{model.parameters().grad_vector(table.name)});
    }
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

  for (const auto& layout : layouts) {
    INFO(describe(layout));
    const Outcome outcome = run_layout(problem, layout);
    CHECK(std::abs(outcome.loss - expected_loss) <= 1e-12 * std::abs(expected_loss));
    if (!outcome.gradients.empty()) {
      CHECK(max_relative_difference(outcome.gradients, single_gradients) < 1e-10);
      CHECK(max_relative_difference(outcome.gradients, expected_gradients) < problem.difference_tolerance);
    }
    CHECK(max_relative_difference(outcome.after_step, single_after_step) < 1e-10);
  }
}

}  // namespace nn_layouts
