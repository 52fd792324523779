#pragma once
// One training step of GPT-2, as the driver of llm.c reads: for each micro-batch forward and
// backward (gradients accumulate), then clip the global norm, pick the learning rate, update.
// The loss is the mean cross-entropy over every token of the global batch.

#include <trident/core/profiling.hpp>
#include <trident/data/batches.hpp>
#include <trident/model/gpt2.hpp>
#include <trident/model/gpt2_checkpoint.hpp>
#include <trident/optim/adamw.hpp>
#include <trident/optim/clip.hpp>
#include <trident/optim/lr_schedule.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <string>

namespace trident::model {

struct TrainerSettings {
  std::int64_t batch = 8;        // sequences per step (the global batch)
  std::int64_t micro_batch = 8;  // sequences per forward/backward
  int seq = 64;                  // tokens per sequence
  double grad_clip = 1.0;        // max global gradient norm; <= 0 disables clipping
  optim::CosineSchedule schedule;
  optim::AdamWSettings adamw;

  void validate(const Gpt2Config& config) const {
    require_argument(batch >= 1 && micro_batch >= 1, "trident::model::TrainerSettings: batch ", batch,
                     " and micro-batch ", micro_batch, " must be >= 1");
    require_argument(batch % micro_batch == 0, "trident::model::TrainerSettings: the batch of ", batch,
                     " sequences is not a whole number of micro-batches of ", micro_batch);
    require_argument(seq >= 1 && seq <= config.seq, "trident::model::TrainerSettings: sequence length ", seq,
                     " is outside [1, ", config.seq, "] (the model's context)");
  }
};

struct StepReport {
  std::int64_t step = 0;
  double loss = 0;       // mean cross-entropy over the global batch
  double grad_norm = 0;  // before clipping
  double lr = 0;
  double seconds = 0;
};

template <class Scalar, class ExecutionSpace>
class Gpt2Trainer {
 public:
  using model_type = Gpt2<Scalar, ExecutionSpace>;
  using memory_space = typename model_type::memory_space;

  Gpt2Trainer(const ExecutionSpace& space, const Gpt2Config& config, const TrainerSettings& settings,
              std::uint64_t seed)
      : m_settings((settings.validate(config), settings)),
        m_model(space, config),
        m_adamw(m_model.parameters(), settings.adamw) {
    m_progress.seed = seed;
    m_model.initialize(seed);
  }

  model_type& model() { return m_model; }
  const TrainingProgress& progress() const { return m_progress; }
  const TrainerSettings& settings() const { return m_settings; }

  // Step number progress().step + 1 on the data loader's batch for that step.
  StepReport train_step(const data::BatchLoader& data) {
    ScopedRegion region("trident::model::Gpt2Trainer::train_step");
    const auto start = std::chrono::steady_clock::now();
    const std::int64_t step = m_progress.step + 1;
    const auto& space = m_model.space();
    const double global_tokens = static_cast<double>(m_settings.batch) * m_settings.seq;
    m_model.zero_grad();
    double loss_sum = 0;
    for (std::int64_t first = 0; first < m_settings.batch; first += m_settings.micro_batch) {
      const auto micro = data.batch(step - 1, first, m_settings.micro_batch);
      loss_sum += m_model.forward(micro.inputs, micro.targets, static_cast<int>(m_settings.micro_batch),
                                  m_settings.seq, 1.0 / global_tokens);
      m_model.backward(1.0 / global_tokens);
    }
    StepReport report;
    report.step = step;
    report.loss = loss_sum / global_tokens;
    report.grad_norm = std::sqrt(optim::sum_of_squares(space, m_model.parameters().grads()));
    if (m_settings.grad_clip > 0) {
      const double coef = optim::clip_coefficient(report.grad_norm, m_settings.grad_clip);
      if (coef < 1.0) optim::scale_in_place(space, m_model.parameters().grads(), coef);
    }
    report.lr = m_settings.schedule(step);
    m_adamw.step(space, m_model.parameters(), step, report.lr);
    compat::fence(space, "trident::model::Gpt2Trainer::train_step");
    m_progress.step = step;
    m_progress.tokens_consumed += static_cast<std::int64_t>(global_tokens);
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return report;
  }

  void save(const std::string& path) const {
    save_gpt2_checkpoint(path, m_model.config(), m_model.parameters(), m_adamw, m_progress);
  }

  void load(const std::string& path) {
    m_progress = load_gpt2_checkpoint(path, m_model.config(), m_model.parameters(), m_adamw);
  }

 private:
  TrainerSettings m_settings;
  model_type m_model;
  optim::AdamW<Scalar, memory_space> m_adamw;
  TrainingProgress m_progress;
};

}  // namespace trident::model
