#pragma once
// All schedule generators, and make_schedule() to pick one by name from a command line.

#include <trident/core/error.hpp>
#include <trident/pipeline/gpipe.hpp>
#include <trident/pipeline/interleaved.hpp>
#include <trident/pipeline/one_f_one_b.hpp>
#include <trident/pipeline/schedule.hpp>
#include <trident/pipeline/zero_bubble.hpp>

#include <string>

namespace trident::pipeline {

// "gpipe", "1f1b", "interleaved" (v chunks per rank) or "zb" (ZB-H1). Only "interleaved"
// takes v > 1.
inline Schedule make_schedule(const std::string& name, int ranks, int micro_batches, int chunks = 1) {
  require_schedule_shape("trident::pipeline::make_schedule", ranks, micro_batches, chunks);
  if (name == "interleaved") return interleaved_one_f_one_b(ranks, micro_batches, chunks);
  const bool known = name == "gpipe" || name == "1f1b" || name == "zb";
  require_argument(known, "trident::pipeline::make_schedule: unknown schedule '", name,
                   "'; expected gpipe, 1f1b, interleaved or zb");
  require_argument(chunks == 1, "trident::pipeline::make_schedule: schedule '", name,
                   "' holds one model chunk per rank, got v = ", chunks, "; only 'interleaved' takes v > 1");
  if (name == "gpipe") return gpipe(ranks, micro_batches);
  if (name == "1f1b") return one_f_one_b(ranks, micro_batches);
  return zero_bubble_h1(ranks, micro_batches);
}

}  // namespace trident::pipeline
