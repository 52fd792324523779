#pragma once
// How a training run is laid out over the ranks: data, tensor and pipeline parallelism (any
// dp x tp x pp of the world) and where their groups sit on the nodes, the pipeline's schedule
// and its stage cuts, micro-batches, ZeRO, the gradient reduction and its precision, sequence
// parallelism and recomputation. Plain data: the Trainer checks it against the model and the
// world, on every rank together.

#include <trident/core/error.hpp>
#include <trident/data_parallel/settings.hpp>
#include <trident/mesh/mesh_layout.hpp>
#include <trident/nn/spec.hpp>

#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

namespace trident::train {

struct Layout {
  int dp = 1, tp = 1, pp = 1;
  bool sequence_parallel = false;  // with tp > 1: split the rows between tensor-parallel regions
  std::string schedule = "1f1b";   // with pp > 1: gpipe, 1f1b, interleaved (virtual_stages > 1) or zb
  int virtual_stages = 1;          // model chunks per pipeline rank (interleaved)
  // Samples per micro-batch (a sample is one row, or one sequence of a model with positions);
  // 0: one micro-batch per data-parallel replica without a pipeline, pp micro-batches with one.
  std::int64_t micro_batch = 0;
  int zero_stage = 0;          // 0 none, 1 optimizer state, 2 and gradients, 3 and parameters
  double bucket_mb = 25;       // gradient buckets of the data-parallel reduction (MiB)
  bool recompute = false;      // keep only each top-level layer's input; backward recomputes the rest
  bool overlap = true;         // without a pipeline: reduce gradients during backward, unit by unit
  bool record_events = false;  // keep each step's data-parallel timeline (Trainer::data_parallel(c).events())
  // Top-level layers per pipeline stage, first stage first (pp * virtual_stages entries); empty:
  // the cut that balances the layers' forward cost.
  std::vector<int> stage_layers;
  // Which groups are neighbours: with the default, tensor-parallel groups stay inside a node,
  // then pipelines; the data-parallel reduction crosses between nodes (ProcessMesh).
  MeshOrder order = default_mesh_order;
  MeshPlacement placement = MeshPlacement::by_node;
  // ZeRO-0's gradient all-reduce: in two levels when replicas span nodes, by default.
  data_parallel::Reduction reduction = data_parallel::Reduction::automatic;
  // The type gradients are reduced in between replicas: bf16 or fp16 send half of fp32's bytes.
  data_parallel::GradientPrecision gradient_precision = data_parallel::GradientPrecision::full;

  int world_size() const { return dp * tp * pp; }
  int stages() const { return pp * virtual_stages; }

  data_parallel::DataParallelSettings data_parallel_settings() const {
    data_parallel::DataParallelSettings settings;
    settings.zero_stage = zero_stage;
    settings.bucket_mb = bucket_mb;
    settings.overlap = overlap && stages() == 1;  // a pipeline reduces once all its micro-batches are done
    settings.record_events = record_events;
    settings.reduction = reduction;
    settings.gradient_precision = gradient_precision;
    return settings;
  }

  // "dp 2 x tp 2 x pp 1, ZeRO-1, sequence parallel"; the pipeline's schedule when pp > 1.
  std::string describe() const {
    std::string text = "dp " + std::to_string(dp) + " x tp " + std::to_string(tp) + " x pp " + std::to_string(pp) +
                       ", ZeRO-" + std::to_string(zero_stage);
    if (pp > 1) {
      text += ", schedule " + schedule;
      if (virtual_stages > 1) text += " with " + std::to_string(virtual_stages) + " chunks per rank";
    }
    if (micro_batch > 0) text += ", micro-batches of " + std::to_string(micro_batch);
    if (sequence_parallel) text += ", sequence parallel";
    if (recompute) text += ", recompute";
    if (order != default_mesh_order) text += ", mesh order " + to_string(order);
    if (placement != MeshPlacement::by_node) text += std::string(", placed by ") + mesh_placement_name(placement);
    if (reduction != data_parallel::Reduction::automatic)
      text += std::string(", ") + data_parallel::reduction_name(reduction) + " gradient reduction";
    if (gradient_precision != data_parallel::GradientPrecision::full)
      text += std::string(", gradients reduced in ") + data_parallel::gradient_precision_name(gradient_precision);
    if (!stage_layers.empty()) {
      text += ", stage layers ";
      for (std::size_t s = 0; s < stage_layers.size(); ++s) text += (s ? "," : "") + std::to_string(stage_layers[s]);
    }
    return text;
  }

  // Throws trident::InvalidArgument naming what does not fit `world_size` ranks and `spec`.
  void validate(int world_size, const nn::ModelSpec& spec) const {
    const char* op = "trident::train::Layout";
    require_argument(dp >= 1 && tp >= 1 && pp >= 1, op, ": dp, tp and pp must be >= 1, got ", describe());
    require_argument(dp * tp * pp == world_size, op, ": dp ", dp, " x tp ", tp, " x pp ", pp, " = ", dp * tp * pp,
                     " ranks, but the communicator has ", world_size);
    require_argument(!sequence_parallel || tp > 1, op, ": sequence parallelism needs tp > 1");
    require_argument(virtual_stages >= 1, op, ": virtual_stages must be >= 1, got ", virtual_stages);
    require_argument(virtual_stages == 1 || schedule == "interleaved", op, ": ", virtual_stages,
                     " chunks per rank need the interleaved schedule, not '", schedule, "'");
    require_argument(micro_batch >= 0, op, ": micro_batch must be >= 0 (0: the default), got ", micro_batch);
    require_argument(zero_stage >= 0 && zero_stage <= 3, op, ": the ZeRO stage is 0, 1, 2 or 3, got ", zero_stage);
    require_argument(bucket_mb > 0, op, ": bucket_mb must be > 0, got ", bucket_mb);
    require_argument(reduction != data_parallel::Reduction::hierarchical || zero_stage == 0, op,
                     ": the hierarchical gradient reduction is ZeRO-0's all-reduce, not ZeRO-", zero_stage, "'s");
    const int layers = static_cast<int>(spec.layers.size());
    require_argument(stages() <= layers, op, ": ", stages(), " pipeline stages (pp ", pp, " x ", virtual_stages,
                     " chunks) but the model has only ", layers, " top-level layers");
    if (!stage_layers.empty()) {
      require_argument(static_cast<int>(stage_layers.size()) == stages(), op, ": ", stage_layers.size(),
                       " stage_layers entries for ", stages(), " stages");
      for (int count : stage_layers) require_argument(count >= 1, op, ": every stage needs a layer, got ", count);
      const int total = std::accumulate(stage_layers.begin(), stage_layers.end(), 0);
      require_argument(total == layers, op, ": stage_layers add up to ", total, " but the model has ", layers,
                       " top-level layers");
    }
  }
};

}  // namespace trident::train
