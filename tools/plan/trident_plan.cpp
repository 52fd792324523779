// trident-plan: the planner's ranking of layouts for a model on a cluster, without running
// anything. The cluster is a JSON description (devices per node, peak FLOP/s, memory, links;
// see clusters/) or a calibration cache that a run on the machine wrote.
//
//   trident-plan --cluster clusters/selene-a100.json --ranks 1024 --layers 96 --hidden 12288
//                --heads 96 --seq 2048 --vocab 51200 --batch 1536
//   trident-plan --cluster machine.json --ranks 4 --mlp 16,1024,1024,1 --batch 512
//   trident-plan --cluster clusters/selene-a100.json --megatron-table megatron_table1.json
//
// The last form reproduces Megatron-LM's published scaling table: for each row, the predicted
// throughput of the published layout beside the published one, and the planner's own choice.

#include <trident/gpt2/spec.hpp>
#include <trident/plan/search.hpp>

#include "cli.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

using trident_examples::Range;

struct Options {
  std::string cluster, megatron_table, mlp, attention = "blocked";
  trident::gpt2::Gpt2Config config;
  int ranks = 1, top = 10;
  std::int64_t batch = 8;
  double memory_gb = 0;
  bool json = false;
};

std::vector<std::int64_t> widths_of(const std::string& text) {
  std::vector<std::int64_t> widths;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    std::int64_t value = 0;
    const std::string error = trident_examples::detail::parse_number(item, value);
    trident::require_argument(error.empty() && value >= 1, "--mlp: '", item, "' in '", text, "' is not a width >= 1");
    widths.push_back(value);
  }
  trident::require_argument(widths.size() >= 2, "--mlp needs two or more widths, got '", text, "'");
  return widths;
}

// linear -> gelu -> linear ... with Megatron's pairs marked, as the surrogate example builds it.
trident::nn::ModelSpec mlp_spec(const std::vector<std::int64_t>& widths) {
  std::vector<trident::nn::LayerSpec> layers;
  for (std::size_t i = 0; i + 1 < widths.size(); ++i) {
    if (i > 0) layers.push_back(trident::nn::gelu());
    layers.push_back(trident::nn::linear(widths[i], widths[i + 1]));
  }
  return trident::nn::megatron_pairs(trident::nn::sequential(layers, trident::nn::Loss::mean_squared_error));
}

std::string tflops(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.0f", value / 1e12);
  return text;
}

// Megatron's published table, row by row: the published layout's predicted throughput and the
// planner's choice. Prints Markdown.
int megatron_table(const Options& o, const trident::plan::Machine& machine) {
  std::ifstream in(o.megatron_table);
  trident::require_argument(in.good(), "--megatron-table: cannot open '", o.megatron_table, "'");
  const auto table = nlohmann::json::parse(in);
  const int seq = table.at("seq"), vocab = table.at("vocab");
  std::printf(
      "| model | GPUs | published t, p, d | published TFLOP/s | predicted for it | error | its step | "
      "planner's choice | its step | its TFLOP/s | memory/GPU |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|\n");
  trident::plan::SearchSpace space;
  space.schedules = {"1f1b", "interleaved"};
  space.try_sequence_parallel = false;  // 2021: no sequence parallelism
  space.max_micro_batch = 16;
  space.max_virtual_stages = 3;
  space.zero_stages = {0};  // 2021: no distributed optimizer
  for (const auto& row : table.at("rows")) {
    trident::gpt2::Gpt2Config config;
    config.layers = row.at("layers"), config.heads = row.at("heads"), config.hidden = row.at("hidden");
    config.seq = seq, config.vocab = vocab;
    const int gpus = row.at("gpus"), t = row.at("t"), p = row.at("p"), chunks = row.at("chunks");
    trident::plan::Workload work{trident::gpt2::gpt2_spec(config), row.at("batch").get<std::int64_t>(), 0};
    trident::plan::Candidate published;
    published.tp = t, published.pp = p, published.dp = gpus / (t * p);
    published.micro_batch = row.at("micro_batch");
    published.recompute = true;  // every row used full activation recomputation
    published.schedule = chunks > 1 ? "interleaved" : "1f1b";
    published.virtual_stages = chunks;
    const auto predicted = trident::plan::estimate(work, published, machine, true);
    const double predicted_tflops = predicted.flops_per_rank_per_s(gpus);
    const double published_tflops = row.at("tflops").get<double>() * 1e12;
    const auto start = std::chrono::steady_clock::now();
    const auto plans = trident::plan::search(work, gpus, machine, space);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::string choice = "none fits", choice_tflops = "", memory = "";
    if (!plans.ranked.empty()) {
      const auto& best = plans.ranked.front();
      choice = best.layout.describe();
      choice_tflops = tflops(best.estimate.flops_per_rank_per_s(gpus));
      char text[32];
      std::snprintf(text, sizeof text, "%.0f GB", best.estimate.peak_bytes / 1e9);
      memory = text;
    }
    std::printf("| %.1fB | %d | %d, %d, %d | %.0f | %s | %+.0f%% | %.2f s | %s | %.2f s | %s | %s |\n",
                row.at("billions").get<double>(), gpus, t, p, gpus / (t * p), published_tflops / 1e12,
                tflops(predicted_tflops).c_str(), 100 * (predicted_tflops / published_tflops - 1),
                predicted.step_seconds, choice.c_str(),
                plans.ranked.empty() ? 0.0 : plans.ranked.front().estimate.step_seconds, choice_tflops.c_str(),
                memory.c_str());
    if (o.json)
      std::fprintf(stderr,
                   "{\"billions\":%.1f,\"published_tflops\":%.1f,\"predicted_tflops\":%.3f,\"choice\":\"%s\","
                   "\"choice_tflops\":%.3f,\"published_step_s\":%.4f,\"choice_step_s\":%.4f,\"search_s\":%.3f,"
                   "\"considered\":%lld}\n",
                   row.at("billions").get<double>(), published_tflops / 1e12, predicted_tflops / 1e12, choice.c_str(),
                   plans.ranked.empty() ? 0.0 : plans.ranked.front().estimate.flops_per_rank_per_s(gpus) / 1e12,
                   predicted.step_seconds, plans.ranked.empty() ? 0.0 : plans.ranked.front().estimate.step_seconds,
                   seconds, static_cast<long long>(plans.considered));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  trident_examples::CommandLine cli("trident-plan", "Ranks the layouts of a model on a cluster, without running it.");
  cli.text("--cluster", o.cluster, "a cluster description or calibration cache (JSON)");
  cli.number("--ranks", o.ranks, "ranks (devices) to plan for", Range::at_least(1));
  cli.number("--layers", o.config.layers, "GPT-2 blocks L", Range::at_least(1));
  cli.number("--heads", o.config.heads, "attention heads H", Range::at_least(1));
  cli.number("--hidden", o.config.hidden, "width C", Range::at_least(1));
  cli.number("--seq", o.config.seq, "sequence length T", Range::at_least(1));
  cli.number("--vocab", o.config.vocab, "vocabulary V", Range::at_least(1));
  cli.choice("--attention", o.attention, {"blocked", "flash"},
             "GPT-2's attention kernel: blocked keeps the probabilities, flash a log-sum-exp per row");
  cli.text("--mlp", o.mlp, "plan an MLP of these widths instead, e.g. 16,1024,1024,1");
  cli.number("--batch", o.batch, "global batch, samples per step", Range::at_least(1));
  cli.number("--memory-gb", o.memory_gb, "memory per rank in GB (0: the cluster's)", Range::at_least(0));
  cli.number("--top", o.top, "plans to print", Range::at_least(1));
  cli.flag("--json", o.json, "also print each plan as a JSON line on stderr");
  cli.text("--megatron-table", o.megatron_table, "reproduce this published table (JSON) instead");
  try {
    if (!cli.parse(argc, argv)) {
      std::cout << cli.usage();
      return 0;
    }
    trident::require_argument(!o.cluster.empty(), "--cluster is required: a cluster description or calibration cache");
    trident::plan::Machine machine = trident::plan::read_machine(o.cluster);
    if (o.memory_gb > 0) machine.memory_bytes = o.memory_gb * 1e9;
    if (!o.megatron_table.empty()) return megatron_table(o, machine);
    o.config.validate();
    const auto gpt2 = trident::nn::with_attention_kernel(trident::gpt2::gpt2_spec(o.config),
                                                         trident::ops::parse_attention_kernel(o.attention));
    trident::plan::Workload work{o.mlp.empty() ? gpt2 : mlp_spec(widths_of(o.mlp)), o.batch, 0};
    const auto start = std::chrono::steady_clock::now();
    const auto plans = trident::plan::search(work, o.ranks, machine);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%s: %d ranks, %s, batch %lld: %lld layouts in %.2f s, %lld over the memory cap\n",
                machine.name.c_str(), o.ranks, o.mlp.empty() ? "GPT-2" : ("MLP " + o.mlp).c_str(),
                static_cast<long long>(o.batch), static_cast<long long>(plans.considered), seconds,
                static_cast<long long>(plans.too_large));
    trident::require_argument(!plans.ranked.empty(), "no layout of ", o.ranks, " ranks fits the memory cap");
    for (std::size_t i = 0; i < plans.ranked.size() && i < static_cast<std::size_t>(o.top); ++i) {
      const auto& p = plans.ranked[i];
      std::printf("%3zu. %-58s step %10.4f s  memory/rank %8.2f GB  bubble %5.1f%%  %.1f TFLOP/s per rank\n", i + 1,
                  p.layout.describe().c_str(), p.estimate.step_seconds, p.estimate.peak_bytes / 1e9,
                  100 * p.estimate.bubble_seconds / p.estimate.step_seconds,
                  p.estimate.flops_per_rank_per_s(o.ranks) / 1e12);
      if (o.json)
        std::fprintf(stderr, "{\"rank\":%zu,\"layout\":\"%s\",\"step_s\":%.6f,\"peak_bytes\":%.0f}\n", i + 1,
                     p.layout.describe().c_str(), p.estimate.step_seconds, p.estimate.peak_bytes);
    }
    if (plans.ranked.size() >= 2)
      std::printf("the first %s against the second\n",
                  trident::plan::why_faster(plans.ranked[0].estimate, plans.ranked[1].estimate).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "trident-plan: %s\n", e.what());
    return 2;
  }
  return 0;
}
