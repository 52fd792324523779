#pragma once
// The types a model's users see without the layers themselves: the views a model reads and
// writes, what its loss compares the output with, and the layers a pipeline stage holds.

#include <trident/core/error.hpp>
#include <trident/core/half_precision.hpp>
#include <trident/core/parameter_store.hpp>

#include <Kokkos_Core.hpp>

#include <vector>

namespace trident::nn {

// Scalar is the type of the activations and their gradients. A 16-bit Scalar (bfloat16,
// float16) trains in mixed precision: the parameters, their gradients and the optimizer stay
// in param_type (float), and so do what the model reads from outside (its input: token ids
// are exact in float, while bfloat16 holds integers only to 256), the targets, the losses and
// per-row statistics; a kernel reads its 16-bit operands into float and rounds its result
// once. A linear layer's products read its float weights rounded to Scalar (ops/linear.hpp).
// For float and double all of these are Scalar.
template <class Scalar, class ExecutionSpace>
struct LayerTypes {
  using memory_space = typename ExecutionSpace::memory_space;
  using param_type = compute_t<Scalar>;
  using matrix = Kokkos::View<Scalar**, Kokkos::LayoutRight, memory_space>;
  using param_matrix = Kokkos::View<param_type**, Kokkos::LayoutRight, memory_space>;
  using param_vector = Kokkos::View<param_type*, Kokkos::LayoutRight, memory_space>;
  using input_matrix = param_matrix;
  using store_type = ParameterStore<param_type, memory_space>;
};

// What the loss compares the model's output with: `values` [rows, outputs] for the mean
// squared error, `classes` [rows] for cross-entropy.
template <class Scalar, class ExecutionSpace>
struct Targets {
  typename LayerTypes<Scalar, ExecutionSpace>::param_matrix values;
  Kokkos::View<int*, typename ExecutionSpace::memory_space> classes;
};

// The top-level layers [first, end) one pipeline stage holds; end = -1: to the last layer.
struct StageRange {
  int first = 0;
  int end = -1;
};

// `layers` top-level layers over `stages` stages, as evenly as possible (the first
// layers % stages stages get one more).
inline std::vector<StageRange> even_stages(int layers, int stages) {
  require_argument(stages >= 1 && stages <= layers, "trident::nn::even_stages: ", layers,
                   " top-level layers cannot fill ", stages, " pipeline stages");
  std::vector<StageRange> ranges;
  int first = 0;
  for (int s = 0; s < stages; ++s) {
    const int count = layers / stages + (s < layers % stages ? 1 : 0);
    ranges.push_back({first, first + count});
    first += count;
  }
  return ranges;
}

}  // namespace trident::nn
