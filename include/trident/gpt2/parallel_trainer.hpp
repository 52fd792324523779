#pragma once
// GPT-2 trained in any dp x tp x pp layout of a ProcessMesh: the pipeline (pp ranks, any
// schedule) of tensor-parallel stages (tp ranks each), replicated dp times with data
// parallelism over each chunk's parameters (any ZeRO stage; ZeRO-3 holds a chunk gathered for
// the whole step, DataParallel::gather_for_step). Replica d takes rows [d B/dp, (d+1) B/dp)
// of every step's batch in micro-batches; the pipeline streams them; each chunk's gradients
// are then reduced over its dp group, and the step is the one-rank
// step on the global batch, up to the order of floating-point sums.
//
// The gradient norm counts every element of the global gradient once: a shard on each tp
// rank, a tensor that every tp rank holds whole on tp rank 0, the tied wte on the first stage.

#include <trident/comm/agreement.hpp>
#include <trident/comm/allreduce.hpp>
#include <trident/core/error.hpp>
#include <trident/core/profiling.hpp>
#include <trident/data/batches.hpp>
#include <trident/data_parallel/data_parallel.hpp>
#include <trident/mesh/process_mesh.hpp>
#include <trident/gpt2/checkpoint.hpp>
#include <trident/gpt2/pipeline.hpp>
#include <trident/gpt2/trainer.hpp>
#include <trident/optim/adamw.hpp>
#include <trident/optim/clip.hpp>
#include <trident/train/nonfinite.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace trident::gpt2 {

template <class Scalar, class ExecutionSpace>
class Gpt2ParallelTrainer {
 public:
  using pipeline_type = Gpt2Pipeline<Scalar, ExecutionSpace>;
  using memory_space = typename ExecutionSpace::memory_space;
  using store_type = ParameterStore<Scalar, memory_space>;
  using parallel_type = data_parallel::DataParallel<Scalar, ExecutionSpace>;

  // `plan` is for mesh.pp_size() ranks and batch / (dp * micro_batch) micro-batches.
  // Collective over the mesh.
  Gpt2ParallelTrainer(const ExecutionSpace& space, const Gpt2Config& config, const TrainerSettings& settings,
                      std::uint64_t seed, const ProcessMesh& mesh, const Gpt2PipelinePlan& plan,
                      bool sequence_parallel = false, bool recompute = false,
                      const data_parallel::DataParallelSettings& parallel = {})
      : m_space(space), m_config(config), m_settings(checked(config, settings, mesh, plan, parallel)), m_mesh(mesh) {
    m_pipe = std::make_unique<pipeline_type>(
        space, config, plan, mesh.pp(), static_cast<int>(settings.micro_batch), settings.seq,
        tensor_parallel::TensorParallelGroup{mesh.tp(), sequence_parallel}, recompute);
    m_pipe->initialize(seed);
    m_progress.seed = seed;
    for (int c = 0; c < m_pipe->chunk_count(); ++c) {
      auto& store = m_pipe->chunk(c).parameters();
      if (mesh.dp_size() > 1) {
        m_replicas.push_back(std::make_unique<parallel_type>(space, mesh.dp(), store, gpt2_unit_plan(store, config),
                                                             settings.adamw, parallel, settings.describe()));
      } else {
        m_optimizers.emplace_back(store, settings.adamw);
      }
    }
  }

  pipeline_type& pipeline() { return *m_pipe; }
  const TrainingProgress& progress() const { return m_progress; }
  std::int64_t skipped_steps() const { return m_skipped; }

  // Step progress().step + 1 on the data loader's batch for that step. Collective over the mesh.
  StepReport train_step(const data::BatchLoader& data) {
    ScopedRegion region("trident::gpt2::Gpt2ParallelTrainer::train_step");
    const auto start = std::chrono::steady_clock::now();
    const std::int64_t step = m_progress.step + 1;
    const double global_tokens = static_cast<double>(m_settings.batch) * m_settings.seq;
    const std::int64_t rows = m_settings.batch / m_mesh.dp_size(), first_row = m_mesh.dp_rank() * rows;
    std::vector<std::vector<int>> tokens, targets;
    for (std::int64_t first = 0; first < rows; first += m_settings.micro_batch) {
      const auto micro = data.batch(step - 1, first_row + first, m_settings.micro_batch);
      tokens.emplace_back(micro.inputs.begin(), micro.inputs.end());
      targets.emplace_back(micro.targets.begin(), micro.targets.end());
    }
    if (m_replicas.empty()) {
      m_pipe->zero_grad();
    } else {
      for (auto& replica : m_replicas) {
        replica->begin_step();
        if (replica->stage() == 3) replica->gather_for_step();
        replica->begin_micro_batch(false);  // no hooks: each chunk reduces once the pipeline is done
      }
    }
    const double local_loss = m_pipe->forward_backward(tokens, targets, 1.0 / global_tokens);
    StepReport report;
    report.step = step;
    report.skipped_so_far = m_skipped;
    double loss_sum = local_loss, squares = 0;
    if (m_replicas.empty()) {
      squares = m_pipe->grad_norm_squared();
    } else {
      for (int c = 0; c < m_pipe->chunk_count(); ++c) {
        const auto summary =
            m_replicas[static_cast<std::size_t>(c)]->finish_gradients(c == 0 ? local_loss : 0.0, counted_once(c));
        if (c == 0) loss_sum = summary.loss_sum;
        squares += summary.sum_of_squares;
      }
      Kokkos::View<double*, Kokkos::HostSpace> total("trident::gpt2::Gpt2ParallelTrainer::norm", 1);
      total(0) = squares;
      comm::allreduce(Kokkos::DefaultHostExecutionSpace(), m_mesh.pp(), total);
      comm::allreduce(Kokkos::DefaultHostExecutionSpace(), m_mesh.tp(), total);
      squares = total(0);
    }
    report.loss = loss_sum / global_tokens;
    report.grad_norm = std::sqrt(squares);
    if (!finite_step(step, report.loss, report.grad_norm, m_settings.on_nonfinite, m_pipe->chunk(0).parameters())) {
      report.skipped = true;
      report.skipped_so_far = ++m_skipped;
    } else {
      const double coef =
          m_settings.grad_clip > 0 ? optim::clip_coefficient(report.grad_norm, m_settings.grad_clip) : 1.0;
      report.lr = m_settings.schedule(step);
      for (int c = 0; c < m_pipe->chunk_count(); ++c) {
        if (m_replicas.empty()) {
          if (coef < 1.0) optim::scale_in_place(m_space, m_pipe->chunk(c).parameters().grads(), coef);
          m_optimizers[static_cast<std::size_t>(c)].step(m_space, m_pipe->chunk(c).parameters(), step, report.lr);
        } else {
          if (coef < 1.0) m_replicas[static_cast<std::size_t>(c)]->scale_gradients(coef);
          m_replicas[static_cast<std::size_t>(c)]->step(step, report.lr);
        }
      }
    }
    compat::fence(m_space, "trident::gpt2::Gpt2ParallelTrainer::train_step");
    m_progress.step = step;
    m_progress.tokens_consumed += static_cast<std::int64_t>(global_tokens);
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return report;
  }

  // The one-rank checkpoint, written by every rank of the mesh at once: each its ZeRO range
  // (or, without data parallelism, all) of its chunks' tensor-parallel shards; a tensor all
  // ranks of a tensor-parallel group hold whole comes from its rank 0, the tied wte from the
  // first stage. Nothing is gathered. Collective over the mesh.
  void save(const std::string& path) {
    std::vector<Gpt2StatePart<Scalar, memory_space>> parts;
    for (int c = 0; c < m_pipe->chunk_count(); ++c) {
      parts.push_back(held_part(c));
      parts.back().writes = counted_once(c);
    }
    save_gpt2_checkpoint(path, m_config, m_settings.adamw, m_progress, parts, m_mesh.world());
  }

  // Every rank reads its own part of a checkpoint saved in any layout: its chunks' tensor-
  // parallel shards, cut to its ZeRO range under data parallelism. Collective over the mesh;
  // a file that fails on any rank leaves every rank's model as it was.
  void load(const std::string& path) {
    std::vector<Gpt2StatePart<Scalar, memory_space>> parts;
    for (int c = 0; c < m_pipe->chunk_count(); ++c) {
      parts.push_back(with_fresh_buffers(held_part(c)));
      parts.back().writes = counted_once(c);
    }
    auto progress = load_gpt2_checkpoint(path, m_config, parts, m_mesh.world());
    for (int c = 0; c < m_pipe->chunk_count(); ++c) {
      const auto& part = parts[static_cast<std::size_t>(c)];
      if (m_replicas.empty()) {
        const auto held = held_part(c);
        Kokkos::deep_copy(m_space, held.values, part.values);
        Kokkos::deep_copy(m_space, held.exp_avg, part.exp_avg);
        Kokkos::deep_copy(m_space, held.exp_avg_sq, part.exp_avg_sq);
      } else {
        m_replicas[static_cast<std::size_t>(c)]->load_owned_state(part.values, part.exp_avg, part.exp_avg_sq);
      }
    }
    compat::fence(m_space, "trident::gpt2::Gpt2ParallelTrainer::load");
    progress.seed = m_progress.seed;
    m_progress = progress;
  }

 private:
  // The tensors of chunk c this rank counts in the gradient norm and writes to checkpoints, so
  // that every element of the one-rank model counts once: a tensor every rank of the tensor-
  // parallel group holds whole counts on its rank 0, the tied wte on the first stage.
  std::function<bool(const ParameterInfo&)> counted_once(int c) const {
    const auto& stage = m_pipe->chunk(c).stage();
    const bool tied_copy = stage.holds_head && !stage.holds_embedding;
    return [saved = saved_by(m_mesh.tp_rank() == 0), tied_copy](const ParameterInfo& t) {
      return saved(t) && !(tied_copy && t.name == "wte.weight");
    };
  }

  // What this rank holds of chunk c: all of it, or its ZeRO range under data parallelism.
  Gpt2StatePart<Scalar, memory_space> held_part(int c) const {
    const auto& store = m_pipe->chunk(c).parameters();
    if (m_replicas.empty()) return whole_store_part(store, m_optimizers[static_cast<std::size_t>(c)], true);
    return owned_part(*m_replicas[static_cast<std::size_t>(c)], store);
  }

  static TrainerSettings checked(const Gpt2Config& config, const TrainerSettings& settings, const ProcessMesh& mesh,
                                 const Gpt2PipelinePlan& plan, const data_parallel::DataParallelSettings& parallel) {
    comm::agree_on_failure(mesh.world(), "trident::gpt2::Gpt2ParallelTrainer: checking the settings", [&] {
      config.validate();
      settings.validate(config);
      settings.validate_data_parallel(mesh.dp_size());
      parallel.validate();
      const std::int64_t m = settings.batch / (mesh.dp_size() * settings.micro_batch);
      require_argument(plan.schedule.micro_batches == m, "trident::gpt2::Gpt2ParallelTrainer: the schedule runs ",
                       plan.schedule.micro_batches, " micro-batches but each replica has ", m);
    });
    return settings;
  }

  ExecutionSpace m_space;
  Gpt2Config m_config;
  TrainerSettings m_settings;
  ProcessMesh m_mesh;
  std::unique_ptr<pipeline_type> m_pipe;
  std::vector<std::unique_ptr<parallel_type>> m_replicas;        // dp > 1: one per chunk
  std::vector<optim::AdamW<Scalar, memory_space>> m_optimizers;  // dp = 1: one per chunk
  TrainingProgress m_progress;
  std::int64_t m_skipped = 0;
};

}  // namespace trident::gpt2
