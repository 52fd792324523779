#pragma once
// Which implementation a causal self-attention runs. Both compute the same function (equal up
// to fp32 rounding); they differ in what a layer keeps for its backward and in speed.
//
//   blocked  the scores in causal row blocks, each a BLAS product; the softmax probabilities
//            of every (sample, head) are kept for the backward: B H T^2 / 2 numbers per layer.
//   flash    tiles and an online softmax; only each row's log-sum-exp is kept (B H T numbers)
//            and the backward recomputes the probabilities from it: memory linear in T, at
//            the price of one more Q K^T product in the backward.

#include <trident/core/error.hpp>

#include <string>

namespace trident::ops {

enum class AttentionKernel { blocked, flash };

inline const char* attention_kernel_name(AttentionKernel kernel) {
  return kernel == AttentionKernel::flash ? "flash" : "blocked";
}

// "blocked" or "flash"; anything else is an error naming both.
inline AttentionKernel parse_attention_kernel(const std::string& name) {
  if (name == "blocked") return AttentionKernel::blocked;
  if (name == "flash") return AttentionKernel::flash;
  throw InvalidArgument("trident: unknown attention kernel '" + name + "' (blocked or flash)");
}

}  // namespace trident::ops
