#pragma once
// A store declared exactly like another (same tensors, shapes, blocks and offsets) with full
// buffers of its own: where a sharded model's whole state is assembled for a one-rank
// checkpoint, or read from one before each rank keeps its part.

#include <trident/core/parameter_store.hpp>

#include <string>

namespace trident::data_parallel {

template <class Scalar, class MemorySpace>
ParameterStore<Scalar, MemorySpace> store_like(const ParameterStore<Scalar, MemorySpace>& store,
                                               const std::string& label) {
  ParameterStore<Scalar, MemorySpace> copy;
  for (const auto& t : store.tensors())
    copy.declare(t.name, t.global_shape, t.local_shape, t.blocks, t.weight_decay, t.replicated);
  copy.allocate(label);
  return copy;
}

}  // namespace trident::data_parallel
