#pragma once
// Callbacks around the units of a model (its layers, or GPT-2's embedding, blocks and head),
// so data parallelism can start reducing a unit's gradients as soon as they are final, and
// ZeRO-3 can gather a unit's parameters just before they are needed. Forward visits units
// 0, 1, ..., U-1; backward U-1, ..., 0.

#include <functional>

namespace trident {

struct UnitHooks {
  std::function<void(int unit)> before_forward;
  std::function<void(int unit)> before_backward;
  std::function<void(int unit)> after_backward;

  static void call(const std::function<void(int)>& hook, int unit) {
    if (hook) hook(unit);
  }
};

}  // namespace trident
