#pragma once
// Before train_gpt allocates anything: roughly how many bytes the busiest rank needs for the
// model and layout asked for, against the memory the node has left (MemAvailable in
// /proc/meminfo), so a model too large is one clear error naming the flag to change, not a bare
// std::bad_alloc or the kernel's OOM killer hours later.
//
// Per rank, in float (4 bytes; activations in 2 with 16-bit ones), GPT-2 with L blocks, C wide, H heads, T positions, V
// tokens:
//   parameters  the rank's share: ceil(L / pp) blocks of 12C^2 + 13C, the embeddings (V + T) C
//               and the final LayerNorm, split over tp; over dp too with ZeRO-3
//   gradients   as many; over dp with ZeRO-2 and 3
//   moments     AdamW's two, twice the parameters; over dp with ZeRO-1 and up
//   activations per block and micro-batch of B rows (llm.c's list): 4 BTC replicated, 12 BTC and
//               the attention's 2 BHT^2 (BHT with --attention flash) split over tp (BTC per block
//               kept with --recompute, plus one block recomputed), the head's logits and
//               probabilities 2 BTV / tp, times the
//               micro-batches in flight (1 without a pipeline, all with GPipe, up to pp otherwise)
//   data        the token stream (int32) and a copy while it is read
//   workspace   the SGEMM that measures the peak (without --peak-gflops), a checkpoint's buffers

#include <trident/gpt2/config.hpp>
#include <trident/ops/attention_kernel.hpp>
#include <trident/train/layout.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace train_gpt {

struct MemoryEstimate {
  double parameters = 0, gradients = 0, moments = 0, activations = 0, data = 0, workspace = 0;  // bytes

  double total() const { return parameters + gradients + moments + activations + data + workspace; }
  double model() const { return parameters + gradients + moments; }
};

inline std::string bytes_text(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  while (bytes >= 1024 && u < 6) {
    bytes /= 1024;
    ++u;
  }
  char text[64];
  std::snprintf(text, sizeof text, bytes < 10 && u > 0 ? "%.2f %s" : "%.1f %s", bytes, units[u]);
  return text;
}

struct MemoryInputs {
  trident::gpt2::Gpt2Config config;
  trident::train::Layout layout;
  trident::ops::AttentionKernel attention = trident::ops::AttentionKernel::blocked;
  std::int64_t batch = 1;  // sequences per step, global
  double data_tokens = 0;
  bool measures_peak = true, loads_checkpoint = false;
  double activation_bytes = 4;  // 2 with --dtype bf16 or fp16
};

inline MemoryEstimate estimate_memory(const MemoryInputs& in) {
  const double L = in.config.layers, C = in.config.hidden, H = in.config.heads, T = in.config.seq, V = in.config.vocab;
  const auto& l = in.layout;
  const double dp = l.dp, tp = l.tp, pp = l.pp;
  const double blocks = std::ceil(L / pp);
  const double block = 12 * C * C + 13 * C;
  const double params = (blocks * block + (V + T) * C + 2 * C) / tp;  // the rank holding the embeddings
  const double f = 4;                                                 // bytes per float
  MemoryEstimate e;
  e.parameters = f * params / (l.zero_stage >= 3 ? dp : 1) + (l.zero_stage >= 3 ? f * block / tp : 0);
  e.gradients = f * params / (l.zero_stage >= 2 ? dp : 1) + (l.dp > 1 ? l.bucket_mb * 1048576.0 : 0);
  e.moments = 2 * f * params / (l.zero_stage >= 1 ? dp : 1);

  const double B = static_cast<double>(std::max<std::int64_t>(l.micro_batch, 1));
  const double probabilities = in.attention == trident::ops::AttentionKernel::flash ? B * H * T : 2 * B * H * T * T;
  const double per_block = B * T * C * (4 + 12 / tp) + probabilities / tp;  // floats kept for backward
  const double kept = l.recompute ? B * T * C : per_block;
  const double head = 2 * B * T * V / tp + 2 * B * T * C;
  const double micro_batches = std::max(1.0, std::floor(static_cast<double>(in.batch) / (dp * B)));
  const double in_flight = l.stages() == 1 ? 1 : l.schedule == "gpipe" ? micro_batches : std::min(micro_batches, pp);
  e.activations = in.activation_bytes *
                  (in_flight * (blocks * kept + head) + per_block + head);  // + one block's and the head's gradients

  e.data = 2 * 4 * in.data_tokens;
  const double M = B * T;
  e.workspace = (in.measures_peak ? f * (M * C + 4 * C * C + 4 * M * C) : 0) +
                (in.loads_checkpoint ? 2 * 3 * f * params / dp : 0);
  return e;
}

// MemAvailable of /proc/meminfo in bytes, or 0 where it is not known.
inline double available_memory() {
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  double value = 0;
  while (in >> key >> value) {
    std::getline(in, unit);
    if (key == "MemAvailable:") return value * 1024;
  }
  return 0;
}

// "" when `e` fits `available` bytes shared by `ranks_here` ranks; otherwise the error.
inline std::string memory_refusal(const MemoryEstimate& e, const MemoryInputs& in, int ranks_here, double available) {
  const double needed = e.total() * ranks_here;
  if (available <= 0 || needed <= available) return "";
  std::string text = "the run needs about " + bytes_text(e.total()) + " per rank (parameters " +
                     bytes_text(e.parameters) + ", gradients " + bytes_text(e.gradients) + ", AdamW moments " +
                     bytes_text(e.moments) + ", activations " + bytes_text(e.activations) + ", data " +
                     bytes_text(e.data) + ", workspace " + bytes_text(e.workspace) + ")";
  if (ranks_here > 1)
    text += ", " + bytes_text(needed) + " for the " + std::to_string(ranks_here) + " ranks on this node";
  text += ", but only " + bytes_text(available) + " is available (MemAvailable in /proc/meminfo); ";
  const auto& c = in.config;
  const auto& l = in.layout;
  const std::pair<double, std::string> advice[] = {
      {e.model(), "most of it is the model's parameters, gradients and AdamW moments: shrink the model (--hidden " +
                      std::to_string(c.hidden) + ", --layers " + std::to_string(c.layers) + ", --vocab " +
                      std::to_string(c.vocab) + ") or spread it over more ranks (--zero " +
                      std::to_string(std::min(l.zero_stage + 1, 3)) + " with --dp, --tp, --pp)"},
      {e.activations, "most of it is activations: lower --micro-batch (" + std::to_string(l.micro_batch) +
                          ") or --seq (" + std::to_string(c.seq) + ")" + (l.recompute ? "" : ", or add --recompute") +
                          (in.attention == trident::ops::AttentionKernel::flash ? "" : ", or use --attention flash") +
                          (l.tp > 1 ? "" : ", or split them with --tp")},
      {e.data, "most of it is the token stream: lower --batch (" + std::to_string(in.batch) + ") or --seq (" +
                   std::to_string(c.seq) + ") (the synthetic stream holds 64 batches), or give --data files"},
      {e.workspace, "most of it is workspace: give --peak-gflops to skip measuring SGEMM, or lower --micro-batch"}};
  const auto* biggest = std::max_element(std::begin(advice), std::end(advice),
                                         [](const auto& a, const auto& b) { return a.first < b.first; });
  return text + biggest->second;
}

}  // namespace train_gpt
