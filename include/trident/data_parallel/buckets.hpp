#pragma once
// Gradient buckets as PyTorch DDP forms them: contiguous ranges of the flat gradient buffer,
// whole tensors, filled in backward order (the reverse of the store's) until they reach the
// size cap. A bucket is reduced as soon as every unit owning one of its tensors has finished
// its backward.

#include <trident/core/error.hpp>
#include <trident/core/parameter_store.hpp>
#include <trident/data_parallel/unit_plan.hpp>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace trident::data_parallel {

struct GradientBucket {
  TensorRange range;
  std::vector<int> units;  // the units whose after_backward makes the bucket's gradients final
};

// Buckets in the order backward fills them: buckets[0] holds the store's last tensors.
inline std::vector<GradientBucket> make_gradient_buckets(const std::vector<ParameterInfo>& tensors,
                                                         const UnitPlan& plan, std::int64_t cap_bytes,
                                                         std::size_t scalar_bytes) {
  require_argument(cap_bytes > 0, "trident::data_parallel::make_gradient_buckets: bucket cap of ", cap_bytes,
                   " bytes must be positive");
  std::vector<GradientBucket> buckets;
  std::size_t last = tensors.size();
  std::int64_t bytes = 0;
  for (std::size_t i = tensors.size(); i-- > 0;) {
    bytes += tensors[i].size() * static_cast<std::int64_t>(scalar_bytes);
    if (bytes < cap_bytes && i > 0) continue;
    GradientBucket bucket;
    bucket.range = {i, last, tensors[i].offset, tensors[last - 1].offset + tensors[last - 1].size()};
    for (std::size_t t = i; t < last; ++t) {
      const int unit = plan.unit_of_tensor(t);
      if (std::find(bucket.units.begin(), bucket.units.end(), unit) == bucket.units.end()) bucket.units.push_back(unit);
    }
    buckets.push_back(std::move(bucket));
    last = i;
    bytes = 0;
  }
  return buckets;
}

}  // namespace trident::data_parallel
