#pragma once
// How a data-parallel group trains: which ZeRO stage shards what, how large the gradient
// buckets are, and whether communication overlaps compute.

#include <trident/core/error.hpp>

#include <cmath>
#include <cstdint>
#include <string>

namespace trident::data_parallel {

// How stage 0 all-reduces its gradients. automatic: in two levels (reduce-scatter in the node,
// a ring between nodes, all-gather in the node) when the group spans nodes with the same number
// of ranks on each; flat: one MPI all-reduce over the group.
enum class Reduction { automatic, flat, hierarchical };

inline const char* reduction_name(Reduction reduction) {
  switch (reduction) {
    case Reduction::automatic:
      return "auto";
    case Reduction::flat:
      return "flat";
    case Reduction::hierarchical:
      return "hierarchical";
  }
  return "unknown";
}

// "auto", "flat" or "hierarchical".
inline Reduction reduction_from_name(const std::string& name) {
  for (Reduction reduction : {Reduction::automatic, Reduction::flat, Reduction::hierarchical})
    if (name == reduction_name(reduction)) return reduction;
  throw InvalidArgument(trident::detail::concat("trident::data_parallel: the gradient reduction is auto, flat or ",
                                                "hierarchical, not '", name, "'"));
}

// The type gradients travel in between replicas, as PyTorch DDP's bf16 and fp16 compression
// hooks and DeepSpeed's communication_data_type. full: the parameters' own type; bf16, fp16:
// rounded to 16 bits before the reduction (half of fp32's bytes on the wire), summed pairwise
// in float, widened back after it. Optimizer and gradient buffers keep their type. fp16 ends
// at 65504: a larger sum becomes infinite, and the step goes as any non-finite gradient does.
enum class GradientPrecision { full, bf16, fp16 };

inline const char* gradient_precision_name(GradientPrecision precision) {
  switch (precision) {
    case GradientPrecision::full:
      return "full";
    case GradientPrecision::bf16:
      return "bf16";
    case GradientPrecision::fp16:
      return "fp16";
  }
  return "unknown";
}

// "full", "bf16" or "fp16".
inline GradientPrecision gradient_precision_from_name(const std::string& name) {
  for (GradientPrecision precision : {GradientPrecision::full, GradientPrecision::bf16, GradientPrecision::fp16})
    if (name == gradient_precision_name(precision)) return precision;
  throw InvalidArgument(trident::detail::concat(
      "trident::data_parallel: gradients are reduced in full, bf16 or fp16 precision, not '", name, "'"));
}

struct DataParallelSettings {
  // 0: every rank holds everything (plain data parallelism, gradients all-reduced);
  // 1: AdamW moments sharded; 2: gradients sharded too; 3: parameters sharded too (FSDP).
  int zero_stage = 0;
  // Gradient bucket size in MiB, as PyTorch DDP's bucket_cap_mb (25 by default).
  double bucket_mb = 25.0;
  // Reduce buckets during backward and prefetch ZeRO-3 gathers; false runs every collective
  // only when its data is needed (what overlap hides is measured against it).
  bool overlap = true;
  // Keep a timeline of hooks and collectives (events()), for tests and traces.
  bool record_events = false;
  Reduction reduction = Reduction::automatic;
  GradientPrecision gradient_precision = GradientPrecision::full;

  void validate() const {
    require_argument(zero_stage >= 0 && zero_stage <= 3, "trident::data_parallel: ZeRO stage ", zero_stage,
                     " is not one of 0, 1, 2, 3");
    require_argument(bucket_mb > 0 && std::isfinite(bucket_mb), "trident::data_parallel: bucket size ", bucket_mb,
                     " MiB must be positive");
    require_argument(reduction != Reduction::hierarchical || zero_stage == 0,
                     "trident::data_parallel: the hierarchical reduction is ZeRO-0's all-reduce; ZeRO stage ",
                     zero_stage, " reduce-scatters its gradients in one level");
  }
  std::int64_t bucket_bytes() const { return static_cast<std::int64_t>(std::llround(bucket_mb * 1024.0 * 1024.0)); }

  // What every rank of the group must agree on (part of the start-up consistency check).
  std::string describe() const {
    return trident::detail::concat("zero_stage=", zero_stage, " bucket_bytes=", bucket_bytes(), " overlap=", overlap,
                                   " reduction=", reduction_name(reduction),
                                   " gradient_precision=", gradient_precision_name(gradient_precision));
  }
};

}  // namespace trident::data_parallel
