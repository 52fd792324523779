// Tensor-parallel GPT-2, per layer: forward+backward time at tp = 1 (rank 0 alone, same run)
// and tp = world size, the efficiency t1 / (tp * t_tp), and the bytes each layer communicates
// as counted by the comm layer next to Megatron's analytic count. JSON lines. The model is the
// GPT-2 spec on nn::Model, what train::Trainer runs at tp > 1; its units (top-level layers) are
// timed through the unit hooks, which the Trainer keeps for its data-parallel engine.
//   mpiexec -n 2 bench_tensor_parallel [--layers 4 --hidden 256 --heads 4 --seq 256 --vocab 4096
//                                        --batch 4 --steps 5 --sequence-parallel 0]

#include <trident/core/compat.hpp>
#include <trident/core/unit_hooks.hpp>
#include <trident/gpt2/batch.hpp>
#include <trident/gpt2/spec.hpp>
#include <trident/nn/model.hpp>

#include "gpt2_arguments.hpp"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace {

using Space = Kokkos::DefaultExecutionSpace;
using Model = trident::nn::Model<float, Space>;
using Clock = std::chrono::steady_clock;

struct UnitProfile {
  std::vector<double> seconds;      // forward + backward per unit (0 embedding, 1..L blocks, L+1 head)
  std::vector<std::int64_t> bytes;  // communicated per unit, forward + backward
};

// Median over `steps` of each unit's forward+backward time, from the model's hooks.
UnitProfile profile(Model& model, int batch, int seq, int vocab, int steps) {
  const int units = model.unit_count();
  const auto& comm = model.tensor_parallel_group().comm;
  std::vector<std::vector<double>> samples(static_cast<std::size_t>(units));
  std::vector<double> step_seconds(static_cast<std::size_t>(units));
  std::vector<std::int64_t> bytes(static_cast<std::size_t>(units));
  Clock::time_point mark;
  std::int64_t byte_mark = 0;
  int open_unit = -1;
  auto close = [&]() {
    trident::compat::fence(model.space(), "bench_tensor_parallel");
    if (open_unit >= 0) {
      step_seconds[static_cast<std::size_t>(open_unit)] += std::chrono::duration<double>(Clock::now() - mark).count();
      bytes[static_cast<std::size_t>(open_unit)] += comm.stats().total_bytes() - byte_mark;
    }
    mark = Clock::now();
    byte_mark = comm.stats().total_bytes();
  };
  trident::UnitHooks hooks;
  hooks.before_forward = [&](int unit) {
    close();
    open_unit = unit;
  };
  hooks.before_backward = [&](int unit) {
    close();
    open_unit = unit;
  };
  hooks.after_backward = [&](int) {
    close();
    open_unit = -1;
  };
  model.set_hooks(hooks);
  trident::data::Batch tokens;  // every token its own target: the loss does not matter here
  tokens.rows = batch;
  tokens.sequence_length = seq;
  for (std::size_t i = 0; i < static_cast<std::size_t>(batch * seq); ++i)
    tokens.inputs.push_back(static_cast<int>((i * 7919) % static_cast<std::size_t>(vocab)));
  tokens.targets = tokens.inputs;
  const auto data = trident::gpt2::gpt2_token_batch<float, Space>(tokens, false);
  const double scale = 1.0 / static_cast<double>(tokens.inputs.size());
  for (int s = -1; s < steps; ++s) {  // step -1 warms up
    std::fill(step_seconds.begin(), step_seconds.end(), 0.0);
    std::fill(bytes.begin(), bytes.end(), 0);
    open_unit = -1;
    model.zero_grad();
    model.forward(data.inputs, data.targets, scale);
    close();  // the head's forward ends with the loss
    open_unit = -1;
    model.backward(scale);
    if (s < 0) continue;
    for (int u = 0; u < units; ++u)
      samples[static_cast<std::size_t>(u)].push_back(step_seconds[static_cast<std::size_t>(u)]);
  }
  model.set_hooks({});
  UnitProfile result;
  for (auto& s : samples) {
    std::sort(s.begin(), s.end());
    result.seconds.push_back(s[s.size() / 2]);
  }
  result.bytes = bytes;
  return result;
}

// Megatron's count, in the comm layer's units, forward + backward of one micro-batch of N rows.
std::int64_t analytic_bytes(int unit, int layers, std::int64_t n, std::int64_t c, int tp, bool sp) {
  if (tp == 1) return 0;
  const std::int64_t activation = n * c * static_cast<std::int64_t>(sizeof(float));
  const std::int64_t f = sizeof(float);
  if (unit == 0) return activation + (sp ? activation : 0);
  if (unit == layers + 1) return 3 * n * f + activation + (sp ? activation + 2 * c * f : 0);
  return sp ? 8 * activation + 4 * c * f : 4 * activation;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  Kokkos::initialize(argc, argv);
  {
    const trident::gpt2::Gpt2Config config = trident_bench::gpt2_config_from(argc, argv);
    const int batch = trident_bench::argument(argc, argv, "--batch", 4),
              steps = trident_bench::argument(argc, argv, "--steps", 5);
    const bool sp = trident_bench::argument(argc, argv, "--sequence-parallel", 0) != 0;
    trident::comm::Communicator world(MPI_COMM_WORLD, "world");
    const int tp = world.size();

    UnitProfile single;
    if (world.rank() == 0) {
      Model one(Space(), trident::gpt2::gpt2_spec(config));
      one.initialize(1);
      single = profile(one, batch, config.seq, config.vocab, steps);
    }
    world.barrier();
    Model shard(Space(), trident::gpt2::gpt2_spec(config), {world, sp});
    shard.initialize(1);
    const UnitProfile split = profile(shard, batch, config.seq, config.vocab, steps);
    if (world.rank() == 0) {
      const std::int64_t n = static_cast<std::int64_t>(batch) * config.seq;
      double t1 = 0, tt = 0;
      for (int u = 0; u < shard.unit_count(); ++u) {
        const auto i = static_cast<std::size_t>(u);
        const char* kind = u == 0 ? "embedding" : (u == config.layers + 1 ? "head" : "block");
        t1 += single.seconds[i];
        tt += split.seconds[i];
        std::printf(
            "{\"bench\":\"tensor_parallel_layer\",\"unit\":%d,\"kind\":\"%s\",\"tp\":%d,\"sequence_parallel\":%s,"
            "\"tp1_ms\":%.3f,\"tp_ms\":%.3f,\"efficiency\":%.3f,\"bytes\":%lld,\"analytic_bytes\":%lld}\n",
            u, kind, tp, sp ? "true" : "false", single.seconds[i] * 1e3, split.seconds[i] * 1e3,
            single.seconds[i] / (tp * split.seconds[i]), static_cast<long long>(split.bytes[i]),
            static_cast<long long>(analytic_bytes(u, config.layers, n, config.hidden, tp, sp)));
      }
      std::printf(
          "{\"bench\":\"tensor_parallel_step\",\"tp\":%d,\"sequence_parallel\":%s,\"tp1_ms\":%.2f,\"tp_ms\":%.2f,"
          "\"speedup\":%.3f,\"efficiency\":%.3f}\n",
          tp, sp ? "true" : "false", t1 * 1e3, tt * 1e3, t1 / tt, t1 / (tp * tt));
    }
  }
  Kokkos::finalize();
  MPI_Finalize();
  return 0;
}
