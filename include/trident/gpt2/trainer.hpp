#pragma once
// One training step of GPT-2, as the driver of llm.c reads: for each micro-batch forward and
// backward (gradients accumulate), then clip the global norm, pick the learning rate, update.
// The loss is the mean cross-entropy over every token of the global batch.
//
// On one rank, or data-parallel over the ranks of a communicator (plain, or ZeRO stage 1-3,
// see data_parallel/data_parallel.hpp): each of D ranks takes rows [r*B/D, (r+1)*B/D) of every
// step's batch, in micro-batches, and the step is the one-rank step on the whole batch.

#include <trident/comm/agreement.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/core/memory_accounting.hpp>
#include <trident/core/profiling.hpp>
#include <trident/data/batches.hpp>
#include <trident/data_parallel/data_parallel.hpp>
#include <trident/gpt2/model.hpp>
#include <trident/gpt2/checkpoint.hpp>
#include <trident/optim/adamw.hpp>
#include <trident/optim/clip.hpp>
#include <trident/optim/lr_schedule.hpp>
#include <trident/tensor_parallel/grad_norm.hpp>
#include <trident/train/nonfinite.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace trident::gpt2 {

using train::finite_step;
using train::NonFinitePolicy;
using train::parse_nonfinite_policy;

struct TrainerSettings {
  std::int64_t batch = 8;                                // sequences per step (the global batch)
  std::int64_t micro_batch = 8;                          // sequences per forward/backward
  int seq = 64;                                          // tokens per sequence
  double grad_clip = 1.0;                                // max global gradient norm; <= 0 disables clipping
  NonFinitePolicy on_nonfinite = NonFinitePolicy::stop;  // a step with a NaN/Inf loss or gradient
  optim::CosineSchedule schedule;
  optim::AdamWSettings adamw = optim::AdamWSettings::gpt2();

  void validate(const Gpt2Config& config) const {
    require_argument(batch >= 1 && micro_batch >= 1, "trident::gpt2::TrainerSettings: batch ", batch,
                     " and micro-batch ", micro_batch, " must be >= 1");
    require_argument(batch % micro_batch == 0, "trident::gpt2::TrainerSettings: the batch of ", batch,
                     " sequences is not a whole number of micro-batches of ", micro_batch);
    require_argument(seq >= 1 && seq <= config.seq, "trident::gpt2::TrainerSettings: sequence length ", seq,
                     " is outside [1, ", config.seq, "] (the model's context)");
  }

  // Data parallelism over `ranks`: every rank's rows must be whole micro-batches.
  void validate_data_parallel(int ranks) const {
    require_argument(ranks >= 1 && batch % (micro_batch * ranks) == 0, "trident::gpt2::TrainerSettings: the batch of ",
                     batch, " sequences does not split into whole micro-batches of ", micro_batch, " on each of ",
                     ranks, " data-parallel ranks (it must be a multiple of ", micro_batch * ranks, ")");
  }

  // What every data-parallel rank must agree on.
  std::string describe() const {
    return trident::detail::concat("batch=", batch, " micro_batch=", micro_batch, " seq=", seq,
                                   " grad_clip=", grad_clip,
                                   " on_nonfinite=", on_nonfinite == NonFinitePolicy::stop ? "stop" : "skip");
  }
};

// GPT-2's units for data parallelism, as far as `store` (the whole model or a pipeline
// stage) holds them: its hooks' units, each owning its tensors, and the head reading the tied
// wte as its output matrix where the stage holds both.
template <class Scalar, class MemorySpace>
data_parallel::UnitPlan gpt2_unit_plan(const ParameterStore<Scalar, MemorySpace>& store, const Gpt2Config& config) {
  std::vector<std::pair<int, std::string>> reads;
  if (store.contains("wte.weight") && store.contains("ln_f.weight")) reads.push_back({config.layers + 1, "wte.weight"});
  return data_parallel::UnitPlan(
      store, config.layers + 2, [&](const std::string& name) { return gpt2_unit_of(name, config); }, reads);
}

struct StepReport {
  std::int64_t step = 0;
  double loss = 0;       // mean cross-entropy over the global batch
  double grad_norm = 0;  // before clipping
  double lr = 0;
  double seconds = 0;
  bool skipped = false;             // non-finite, not applied (NonFinitePolicy::skip)
  std::int64_t skipped_so_far = 0;  // by this trainer
};

// The range of a data-parallel store this rank owns, with the engine's values and AdamW
// moments over it; `writes` picks the tensors it saves.
template <class Scalar, class ExecutionSpace>
Gpt2StatePart<Scalar, typename ExecutionSpace::memory_space> owned_part(
    const data_parallel::DataParallel<Scalar, ExecutionSpace>& engine,
    const ParameterStore<Scalar, typename ExecutionSpace::memory_space>& store,
    std::function<bool(const ParameterInfo&)> writes = {}) {
  const auto owned = engine.owned_state();
  return {&store, owned.begin, owned.end, owned.values, owned.exp_avg, owned.exp_avg_sq, std::move(writes)};
}

template <class Scalar, class ExecutionSpace>
class Gpt2Trainer {
 public:
  using model_type = Gpt2<Scalar, ExecutionSpace>;
  using memory_space = typename model_type::memory_space;
  using parallel_type = data_parallel::DataParallel<Scalar, ExecutionSpace>;

  // One rank, or tensor parallelism over `tensor_parallel` (every rank of the group runs the
  // same micro-batches and holds its shard of every layer).
  Gpt2Trainer(const ExecutionSpace& space, const Gpt2Config& config, const TrainerSettings& settings,
              std::uint64_t seed,
              tensor_parallel::TensorParallelGroup tensor_parallel = tensor_parallel::TensorParallelGroup::single())
      : m_settings((settings.validate(config), settings)),
        m_model(space, config, std::move(tensor_parallel)),
        m_adamw(std::in_place, m_model.parameters(), settings.adamw) {
    m_progress.seed = seed;
    m_model.initialize(seed);
  }

  // Data-parallel training over the ranks of `dp`, all calling with the same arguments
  // (checked: a rank that differs makes every rank throw).
  // With `tensor_parallel` too, data parallelism over replicas of a tensor-parallel model: `dp`
  // joins the ranks that hold the same shard (the same coordinate in the group).
  Gpt2Trainer(const ExecutionSpace& space, const Gpt2Config& config, const TrainerSettings& settings,
              std::uint64_t seed, const comm::Communicator& dp, const data_parallel::DataParallelSettings& parallel,
              tensor_parallel::TensorParallelGroup tensor_parallel = tensor_parallel::TensorParallelGroup::single())
      : m_settings(checked_settings(config, settings, dp, parallel)),
        m_model(space, config, std::move(tensor_parallel)) {
    m_progress.seed = seed;
    m_model.initialize(seed);
    m_parallel =
        std::make_unique<parallel_type>(space, dp, m_model.parameters(), gpt2_unit_plan(m_model.parameters(), config),
                                        settings.adamw, parallel, settings.describe());
    const auto& tp = m_model.tensor_parallel_group();
    m_model_ranks = tp.active() ? dp.plane_with(tp.comm, "dp x tp") : dp;
    parallel_type* engine = m_parallel.get();
    m_model.set_hooks({[engine](int unit) { engine->before_forward(unit); },
                       [engine](int unit) { engine->before_backward(unit); },
                       [engine](int unit) { engine->after_backward(unit); }});
  }

  model_type& model() { return m_model; }
  // The data-parallel state (nullptr on one rank): memory, shards, events, full parameters.
  parallel_type* parallel() { return m_parallel.get(); }
  const TrainingProgress& progress() const { return m_progress; }
  const TrainerSettings& settings() const { return m_settings; }

  // Step number progress().step + 1 on the data loader's batch for that step.
  StepReport train_step(const data::BatchLoader& data) {
    if (m_parallel) return train_step_data_parallel(data);
    ScopedRegion region("trident::gpt2::Gpt2Trainer::train_step");
    const auto start = std::chrono::steady_clock::now();
    const std::int64_t step = m_progress.step + 1;
    const auto& space = m_model.space();
    const double global_tokens = static_cast<double>(m_settings.batch) * m_settings.seq;
    m_model.zero_grad();
    double loss_sum = 0;
    for (std::int64_t first = 0; first < m_settings.batch; first += m_settings.micro_batch) {
      const auto micro = data.batch(step - 1, first, m_settings.micro_batch);
      loss_sum += m_model.forward(micro.inputs, micro.targets, static_cast<int>(m_settings.micro_batch), m_settings.seq,
                                  1.0 / global_tokens);
      m_model.backward(1.0 / global_tokens);
    }
    StepReport report;
    report.step = step;
    report.skipped_so_far = m_skipped;
    report.loss = loss_sum / global_tokens;
    // Every element of the global gradient once: shards summed over the group, replicas once.
    report.grad_norm =
        std::sqrt(tensor_parallel::grad_norm_squared(space, m_model.parameters(), m_model.tensor_parallel_group()));
    if (!finite_step(step, report.loss, report.grad_norm, m_settings.on_nonfinite, m_model.parameters()))
      return skip(report, global_tokens, start);
    if (m_settings.grad_clip > 0) {
      const double coef = optim::clip_coefficient(report.grad_norm, m_settings.grad_clip);
      if (coef < 1.0) optim::scale_in_place(space, m_model.parameters().grads(), coef);
    }
    report.lr = m_settings.schedule(step);
    m_adamw->step(space, m_model.parameters(), step, report.lr);
    compat::fence(space, "trident::gpt2::Gpt2Trainer::train_step");
    m_progress.step = step;
    m_progress.tokens_consumed += static_cast<std::int64_t>(global_tokens);
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return report;
  }

  // Collective over every rank of the model: each writes its own part of the one-rank file
  // (with ZeRO, its shard; replicas split the tensors they all hold), nothing is gathered.
  void save(const std::string& path) const {
    const auto& tp = m_model.tensor_parallel_group();
    if (!m_parallel) {
      save_gpt2_checkpoint(path, m_model.config(), m_model.parameters(), *m_adamw, m_progress, &tp.comm);
      return;
    }
    const auto part = owned_part(*m_parallel, m_model.parameters(), saved_by(tp.rank() == 0));
    save_gpt2_checkpoint(path, m_model.config(), m_settings.adamw, m_progress, std::vector{part}, m_model_ranks);
  }

  // Every rank reads its own part of a file saved in any layout (data-parallel: collective;
  // each its ZeRO range, then the engine rebuilds what its stage holds whole).
  void load(const std::string& path) {
    if (!m_parallel) {
      m_progress = load_gpt2_checkpoint(path, m_model.config(), m_model.parameters(), *m_adamw,
                                        &m_model.tensor_parallel_group().comm);
      return;
    }
    const auto part = with_fresh_buffers(
        owned_part(*m_parallel, m_model.parameters(), saved_by(m_model.tensor_parallel_group().rank() == 0)));
    const auto progress = load_gpt2_checkpoint(path, m_model.config(), std::vector{part}, m_model_ranks);
    m_parallel->load_owned_state(part.values, part.exp_avg, part.exp_avg_sq);
    m_progress = progress;
  }

 private:
  // Settings checked on every rank of `dp` together, so that a rank with bad ones cannot
  // leave the others waiting in the first collective.
  static TrainerSettings checked_settings(const Gpt2Config& config, const TrainerSettings& settings,
                                          const comm::Communicator& dp,
                                          const data_parallel::DataParallelSettings& parallel) {
    comm::agree_on_failure(dp, "trident::gpt2::Gpt2Trainer: checking the settings", [&] {
      config.validate();
      settings.validate(config);
      settings.validate_data_parallel(dp.size());
      parallel.validate();
    });
    return settings;
  }

  StepReport train_step_data_parallel(const data::BatchLoader& data) {
    ScopedRegion region("trident::gpt2::Gpt2Trainer::train_step");
    const auto start = std::chrono::steady_clock::now();
    const std::int64_t step = m_progress.step + 1;
    auto& parallel = *m_parallel;
    const auto& dp = parallel.communicator();
    const double global_tokens = static_cast<double>(m_settings.batch) * m_settings.seq;
    const std::int64_t rows = m_settings.batch / dp.size(), first_row = dp.rank() * rows;
    parallel.begin_step();
    double loss_sum = 0;
    for (std::int64_t first = 0; first < rows; first += m_settings.micro_batch) {
      parallel.begin_micro_batch(first + m_settings.micro_batch >= rows);
      const auto micro = data.batch(step - 1, first_row + first, m_settings.micro_batch);
      loss_sum += m_model.forward(micro.inputs, micro.targets, static_cast<int>(m_settings.micro_batch), m_settings.seq,
                                  1.0 / global_tokens);
      m_model.backward(1.0 / global_tokens);
    }
    parallel.memory().set(MemoryCategory::activations, static_cast<std::int64_t>(m_model.activation_bytes()));
    const auto& tp = m_model.tensor_parallel_group();
    // Tensors every rank of the tensor-parallel group holds whole count on its rank 0 only.
    auto gradients = tp.rank() == 0
                         ? parallel.finish_gradients(loss_sum)
                         : parallel.finish_gradients(loss_sum, [](const ParameterInfo& t) { return !t.replicated; });
    if (tp.active()) {  // the norm of the whole model: every shard's, replicated tensors once
      Kokkos::View<double*, Kokkos::HostSpace> squares("trident::gpt2::Gpt2Trainer::norm", 1);
      squares(0) = gradients.sum_of_squares;
      comm::allreduce(Kokkos::DefaultHostExecutionSpace(), tp.comm, squares);
      gradients.sum_of_squares = squares(0);
    }
    StepReport report;
    report.step = step;
    report.skipped_so_far = m_skipped;
    report.loss = gradients.loss_sum / global_tokens;
    report.grad_norm = std::sqrt(gradients.sum_of_squares);
    if (!finite_step(step, report.loss, report.grad_norm, m_settings.on_nonfinite, m_model.parameters()))
      return skip(report, global_tokens, start);
    if (m_settings.grad_clip > 0) {
      const double coef = optim::clip_coefficient(report.grad_norm, m_settings.grad_clip);
      if (coef < 1.0) parallel.scale_gradients(coef);
    }
    report.lr = m_settings.schedule(step);
    parallel.step(step, report.lr);
    m_progress.step = step;
    m_progress.tokens_consumed += static_cast<std::int64_t>(global_tokens);
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return report;
  }

  // A step that is not applied: its data is consumed, nothing else changes.
  StepReport skip(StepReport report, double global_tokens, std::chrono::steady_clock::time_point start) {
    report.skipped = true;
    report.skipped_so_far = ++m_skipped;
    m_progress.step = report.step;
    m_progress.tokens_consumed += static_cast<std::int64_t>(global_tokens);
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return report;
  }

  TrainerSettings m_settings;
  model_type m_model;
  std::int64_t m_skipped = 0;
  std::optional<optim::AdamW<Scalar, memory_space>> m_adamw;  // one rank
  std::unique_ptr<parallel_type> m_parallel;                  // data-parallel
  comm::Communicator m_model_ranks;                           // data-parallel: every rank of dp x tp
  TrainingProgress m_progress;
};

}  // namespace trident::gpt2
