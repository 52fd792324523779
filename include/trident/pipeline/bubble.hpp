#pragma once
// The pipeline bubble as the papers state it, to compare with simulate() and with traces.
//
// Definition used throughout trident: the bubble fraction of a rank is its idle time
// divided by the step's total time (idle / (idle + busy)), the share of the step in which
// the rank computes nothing. Megatron-LM quotes instead the ratio of idle to ideal (busy)
// time, (p - 1) / m for 1F1B and (p - 1) / (v m) for interleaving; bubble_ratio() converts.
//
// The formulas hold when every stage takes the same time for each kind of pass and
// transfers are free.

#include <trident/core/error.hpp>

#include <algorithm>

namespace trident::pipeline {

namespace detail {
inline void require_bubble_arguments(const char* operation, int ranks, int micro_batches, int chunks) {
  require_argument(ranks >= 1 && micro_batches >= 1 && chunks >= 1, operation,
                   ": p, m and v must be at least 1, got p = ", ranks, ", m = ", micro_batches, ", v = ", chunks);
}
}  // namespace detail

// GPipe: the pipeline fills and drains once per step, (p - 1) of the m + p - 1 slots idle.
inline double gpipe_bubble_fraction(int ranks, int micro_batches) {
  detail::require_bubble_arguments("trident::pipeline::gpipe_bubble_fraction", ranks, micro_batches, 1);
  return static_cast<double>(ranks - 1) / static_cast<double>(micro_batches + ranks - 1);
}

// 1F1B reorders GPipe's passes to save memory; the fill and drain, and so the bubble, stay.
inline double one_f_one_b_bubble_fraction(int ranks, int micro_batches) {
  detail::require_bubble_arguments("trident::pipeline::one_f_one_b_bubble_fraction", ranks, micro_batches, 1);
  return gpipe_bubble_fraction(ranks, micro_batches);
}

// Interleaved 1F1B: fill and drain take chunk-sized steps, 1/v of a stage, so the idle time
// is (p - 1)/v stage-passes against m busy ones: (p - 1) / (v m + p - 1).
inline double interleaved_bubble_fraction(int ranks, int micro_batches, int chunks) {
  detail::require_bubble_arguments("trident::pipeline::interleaved_bubble_fraction", ranks, micro_batches, chunks);
  return static_cast<double>(ranks - 1) / static_cast<double>(chunks * micro_batches + ranks - 1);
}

// ZB-H1 (Qi et al. 2023), m >= p: the paper's idle time (p - 1)(F + Bi - W) per rank, against
// 1F1B's (p - 1)(F + Bi + W), holds while W <= min(F, Bi). A W pass can only fill a wait once
// some input gradient has been computed, so the start-up waits stay: the last rank waits
// (p - 1) F for its first forward and the first rank (p - 1) Bi for its first gradient.
// The idle time is therefore (p - 1) max(F + Bi - W, F, Bi), the busy time m (F + Bi + W).
inline double zero_bubble_h1_bubble_fraction(int ranks, int micro_batches, double forward, double backward_input,
                                             double backward_weight) {
  detail::require_bubble_arguments("trident::pipeline::zero_bubble_h1_bubble_fraction", ranks, micro_batches, 1);
  require_argument(micro_batches >= ranks,
                   "trident::pipeline::zero_bubble_h1_bubble_fraction: needs m >= p, got m = ", micro_batches,
                   ", p = ", ranks);
  require_argument(forward > 0 && backward_input > 0 && backward_weight > 0,
                   "trident::pipeline::zero_bubble_h1_bubble_fraction: pass times must be positive, got F = ", forward,
                   ", Bi = ", backward_input, ", W = ", backward_weight);
  const double wait = std::max({forward + backward_input - backward_weight, forward, backward_input});
  const double idle = (ranks - 1) * wait;
  const double busy = micro_batches * (forward + backward_input + backward_weight);
  return idle / (idle + busy);
}

// Megatron's idle / busy from trident's idle / (idle + busy).
inline double bubble_ratio(double bubble_fraction) {
  return bubble_fraction / (1.0 - bubble_fraction);
}

}  // namespace trident::pipeline
