#pragma once
// GPT-2 cut into pipeline stages. plan_gpt2_pipeline() picks the schedule and the stages (by
// a cost estimate, or an explicit "3,2,2" split) and rejects what cannot run, identically on
// every rank, before any work. Gpt2Pipeline holds this rank's model chunks and runs a step's
// forward and backward through the pipeline executor, then sums the gradient of wte, which
// the first stage (embedding) and the last (tied head) each hold a copy of.
//
// A training step, the one-rank step over the same micro-batches:
//   pipeline.zero_grad();
//   loss = pipeline.forward_backward(tokens, targets, 1.0 / global_tokens);  // every pp rank
//   norm = sqrt(pipeline.grad_norm_squared());  // wte counted once
//   pipeline.scale_gradients(clip_coefficient(norm, max_norm));
//   for each chunk: its own AdamW step on chunk.parameters()

#include <trident/comm/agreement.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/core/error.hpp>
#include <trident/core/profiling.hpp>
#include <trident/gpt2/model.hpp>
#include <trident/gpt2/config.hpp>
#include <trident/gpt2/parameters.hpp>
#include <trident/optim/clip.hpp>
#include <trident/pipeline/executor.hpp>
#include <trident/pipeline/grad_norm.hpp>
#include <trident/pipeline/partition.hpp>
#include <trident/pipeline/schedules.hpp>
#include <trident/pipeline/tied_gradients.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace trident::gpt2 {

// Per-token forward multiply-adds of GPT-2's parts, what the partitioner balances: a block
// 12 C^2 (its four weight matrices) + 2 T C (attention scores and values), the embedding C
// (the position add), ln_f and the tied head V C.
struct Gpt2PartCosts {
  std::vector<double> blocks;
  double embedding = 0;
  double head = 0;
};

inline Gpt2PartCosts gpt2_part_costs(const Gpt2Config& config, int seq) {
  const double c = config.hidden, t = seq, v = config.vocab;
  Gpt2PartCosts costs;
  costs.blocks.assign(static_cast<std::size_t>(config.layers), 12 * c * c + 2 * t * c);
  costs.embedding = c;
  costs.head = v * c + c;
  return costs;
}

struct Gpt2PipelinePlan {
  pipeline::Schedule schedule;
  std::vector<Gpt2Stage> stages;  // p * v stages; stage s is chunk s / p of rank s mod p

  // The stages of `rank`, chunk by chunk.
  std::vector<Gpt2Stage> stages_of(int rank) const {
    std::vector<Gpt2Stage> mine;
    for (int c = 0; c < schedule.chunks; ++c)
      mine.push_back(stages.at(static_cast<std::size_t>(schedule.stage(rank, c))));
    return mine;
  }
};

// The schedule ("gpipe", "1f1b", "interleaved" with v chunks per rank, "zb") of m micro-batches
// over p ranks, and its p * v stages: `stage_layers` ("3,2,2", first stage first) or, when
// empty, the cut that balances gpt2_part_costs at sequence length `seq`. Throws
// trident::InvalidArgument for fewer blocks than stages, an m the schedule cannot take, or a
// split that does not add up to L.
inline Gpt2PipelinePlan plan_gpt2_pipeline(const Gpt2Config& config, const std::string& schedule, int ranks,
                                           int micro_batches, int chunks = 1, const std::string& stage_layers = "",
                                           int seq = 0) {
  config.validate();
  Gpt2PipelinePlan plan;
  plan.schedule = pipeline::make_schedule(schedule, ranks, micro_batches, chunks);
  const int stages = plan.schedule.stages();
  if (!stage_layers.empty()) {
    plan.stages = pipeline::parse_stage_layers(stage_layers, config.layers, stages);
  } else {
    const auto costs = gpt2_part_costs(config, seq > 0 ? seq : config.seq);
    plan.stages = pipeline::partition_stages(costs.blocks, stages, costs.embedding, costs.head).stages;
  }
  return plan;
}

template <class Scalar, class ExecutionSpace>
class Gpt2Pipeline {
 public:
  using model_type = Gpt2<Scalar, ExecutionSpace>;
  using memory_space = typename model_type::memory_space;
  using group_type = typename model_type::group_type;
  using executor_type = pipeline::Executor<Scalar, ExecutionSpace>;

  // Collective over `pp` (whose rank r runs list r of the plan's schedule). Every micro-batch
  // holds `batch` sequences of `seq` tokens. `tp` splits each chunk (tensor parallelism).
  Gpt2Pipeline(const ExecutionSpace& space, const Gpt2Config& config, const Gpt2PipelinePlan& plan,
               const comm::Communicator& pp, int batch, int seq, group_type tp = group_type::single(),
               bool recompute = false, pipeline::ExecutorSettings settings = {})
      : m_space(space), m_pp(pp), m_batch(batch), m_seq(seq) {
    ScopedRegion region("trident::gpt2::Gpt2Pipeline");
    comm::agree_on_failure(pp, "trident::gpt2::Gpt2Pipeline", [&] {
      require_argument(pp.size() == plan.schedule.ranks,
                       "trident::gpt2::Gpt2Pipeline: the plan is for p = ", plan.schedule.ranks,
                       " ranks but the pipeline communicator has ", pp.size());
      require_argument(static_cast<int>(plan.stages.size()) == plan.schedule.stages(),
                       "trident::gpt2::Gpt2Pipeline: the plan has ", plan.stages.size(),
                       " stages for p * v = ", plan.schedule.stages());
      require_argument(batch >= 1 && seq >= 1 && seq <= config.seq, "trident::gpt2::Gpt2Pipeline: micro-batches of ",
                       batch, " x ", seq, " tokens for a context of ", config.seq);
      for (const auto& stage : plan.stages_of(pp.rank()))
        m_chunks.push_back(std::make_unique<model_type>(space, config, stage, tp, recompute));
    });
    const auto& first = *m_chunks.front();
    m_executor = std::make_unique<executor_type>(space, pp, plan.schedule, first.boundary_rows(batch, seq),
                                                 static_cast<std::size_t>(config.hidden), settings);
    m_tied = std::make_unique<pipeline::TiedGradients>(pp, plan.schedule.rank_of_stage(0),
                                                       plan.schedule.rank_of_stage(plan.schedule.stages() - 1));
  }

  int chunk_count() const { return static_cast<int>(m_chunks.size()); }
  model_type& chunk(int c) { return *m_chunks.at(static_cast<std::size_t>(c)); }
  const model_type& chunk(int c) const { return *m_chunks.at(static_cast<std::size_t>(c)); }
  executor_type& executor() { return *m_executor; }
  const pipeline::Schedule& schedule() const { return m_executor->schedule(); }
  const comm::Communicator& communicator() const { return m_pp; }

  // By name, as the one-rank model: the copies of wte start equal.
  void initialize(std::uint64_t seed) {
    for (auto& chunk : m_chunks) chunk->initialize(seed);
  }

  void zero_grad() {
    for (auto& chunk : m_chunks) chunk->zero_grad();
  }

  // The step's forward and backward over its m micro-batches (host vectors of batch*seq tokens
  // and targets each, the same on every pp rank); gradients accumulate, scaled by
  // `loss_scale`. Returns the summed token losses on every rank; afterwards both copies of wte
  // hold the whole gradient. Collective over the pipeline.
  double forward_backward(const std::vector<std::vector<int>>& tokens, const std::vector<std::vector<int>>& targets,
                          double loss_scale) {
    ScopedRegion region("trident::gpt2::Gpt2Pipeline::forward_backward");
    comm::agree_on_failure(m_pp, "trident::gpt2::Gpt2Pipeline::forward_backward", [&] {
      require_argument(static_cast<int>(tokens.size()) == schedule().micro_batches,
                       "trident::gpt2::Gpt2Pipeline::forward_backward: the schedule runs m = ",
                       schedule().micro_batches, " micro-batches, got ", tokens.size());
      for (auto& chunk : m_chunks) chunk->set_micro_batches(tokens, targets, m_batch, m_seq, loss_scale);
    });
    std::vector<model_type*> chunks;
    for (auto& chunk : m_chunks) chunks.push_back(chunk.get());
    const double loss = m_executor->run(chunks);
    sum_tied_gradients();
    return loss;
  }

  // The squared global gradient norm, wte counted once; the same on every rank of the pipeline
  // and of the tensor-parallel group. Collective over both.
  double grad_norm_squared() const {
    std::vector<pipeline::StageGradients<Scalar, memory_space>> stages;
    for (const auto& chunk : m_chunks) {
      const auto& stage = chunk->stage();
      const bool tied_copy = stage.holds_head && !stage.holds_embedding;  // the first stage counts wte
      stages.push_back(
          {&chunk->parameters(), tied_copy ? std::vector<std::string>{"wte.weight"} : std::vector<std::string>{}});
    }
    return pipeline::grad_norm_squared(m_space, stages, m_pp, m_chunks.front()->tensor_parallel_group().comm);
  }

  // Multiplies every gradient (clipping); a coefficient of 1 does nothing.
  void scale_gradients(double coefficient) {
    if (coefficient == 1.0) return;
    for (auto& chunk : m_chunks) optim::scale_in_place(m_space, chunk->parameters().grads(), coefficient);
  }

 private:
  void sum_tied_gradients() {
    std::vector<typename model_type::store_type::vector_view> copies;
    for (auto& chunk : m_chunks) {
      const auto& stage = chunk->stage();
      if ((stage.holds_embedding || stage.holds_head) && !(stage.holds_embedding && stage.holds_head))
        copies.push_back(chunk->parameters().grad_vector("wte.weight"));
    }
    if (!copies.empty()) m_tied->sum(m_space, copies);
  }

  ExecutionSpace m_space;
  comm::Communicator m_pp;
  int m_batch, m_seq;
  std::vector<std::unique_ptr<model_type>> m_chunks;
  std::unique_ptr<executor_type> m_executor;
  std::unique_ptr<pipeline::TiedGradients> m_tied;
};

}  // namespace trident::gpt2
