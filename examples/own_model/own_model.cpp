// Your own model, trained in any layout by the one training driver: a regression MLP, or a
// small transformer with a tied head that learns to repeat the previous token. The same
// program runs on one rank or on dp x tp x pp ranks, saves in one layout and resumes in any
// other:
//   mpiexec -n 4 build/examples/own_model/own_model --model transformer --dp 2 --tp 2 --save run.safetensors
//   mpiexec -n 2 build/examples/own_model/own_model --model transformer --pp 2 --load run.safetensors --steps 40
// --dtype bf16 or fp16 trains with 16-bit activations (mixed precision); the checkpoints stay
// float, so a run of one --dtype resumes in another.
// Every rank makes the batch of step k from k alone, so every layout sees the same data.

#include <trident/train.hpp>

#include "options.hpp"

#include <mpi.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

namespace {

using Space = Kokkos::DefaultExecutionSpace;
using Batch = trident::train::Batch<float, Space>;

constexpr int vocab = 32, width = 32, heads = 4, seq = 16, sequences = 8, points = 64;

// A number in [0, 1) from (step, i): the data of a step does not depend on the layout.
double uniform(std::int64_t step, std::int64_t i) {
  std::uint64_t x = static_cast<std::uint64_t>(step) * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(i) + 1;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return static_cast<double>((x ^ (x >> 31)) >> 11) * 0x1.0p-53;
}

// y = sin(3 x0) cos(2 x1) at `points` random points of [-1, 1]^2.
Batch regression_batch(std::int64_t step) {
  Kokkos::View<float**, Kokkos::LayoutRight, Kokkos::HostSpace> x("x", points, 2), y("y", points, 1);
  for (int i = 0; i < points; ++i) {
    x(i, 0) = static_cast<float>(2 * uniform(step, 2 * i) - 1);
    x(i, 1) = static_cast<float>(2 * uniform(step, 2 * i + 1) - 1);
    y(i, 0) = static_cast<float>(std::sin(3 * x(i, 0)) * std::cos(2 * x(i, 1)));
  }
  return {trident::train::to_device<Space>(x), {trident::train::to_device<Space>(y), {}}, false};
}

// Random tokens (as ids in one column); each row's target is the token before it.
Batch repeat_batch(std::int64_t step) {
  Kokkos::View<float**, Kokkos::LayoutRight, Kokkos::HostSpace> ids("ids", sequences * seq, 1);
  Kokkos::View<int*, Kokkos::HostSpace> previous("previous", sequences * seq);
  for (int r = 0; r < sequences * seq; ++r) {
    ids(r, 0) = static_cast<float>(static_cast<int>(uniform(step, r) * vocab));
    previous(r) = static_cast<int>(ids(r % seq == 0 ? r : r - 1, 0));
  }
  return {trident::train::to_device<Space>(ids), {{}, trident::train::to_device<Space>(previous)}, false};
}

// [own-model]
namespace nn = trident::nn;

nn::ModelSpec regression_mlp() {
  return nn::megatron_pairs(nn::sequential({nn::linear(2, 64), nn::gelu(), nn::linear(64, 64), nn::gelu(),
                                            nn::linear(64, 32), nn::tanh(), nn::linear(32, 1)},
                                           nn::Loss::mean_squared_error));
}

nn::ModelSpec repeat_transformer() {
  const int c = width;
  const auto block =
      nn::sequence({nn::residual({nn::layer_norm(c), nn::linear(c, 3 * c), nn::causal_self_attention(c, heads, seq),
                                  nn::linear(c, c)}),
                    nn::residual({nn::layer_norm(c), nn::linear(c, 4 * c), nn::gelu(), nn::linear(4 * c, c)})});
  return nn::megatron_pairs(nn::sequential({nn::named("wte", nn::embedding(vocab, c)), nn::position_embedding(seq, c),
                                            block, block, nn::layer_norm(c), nn::tied_head(vocab, c, "wte")},
                                           nn::Loss::cross_entropy));
}

// Activation: float, or trident::bfloat16 / trident::float16 for mixed precision.
template <class Activation>
void train(const Options& o) {
  const trident::comm::Communicator world(MPI_COMM_WORLD, "world");
  trident::train::Layout layout;
  layout.dp = o.dp;
  layout.tp = o.tp;
  layout.pp = o.pp;
  layout.zero_stage = o.zero;
  layout.micro_batch = o.micro_batch;
  trident::train::TrainerSettings settings;
  settings.seed = 42;
  const bool mlp = o.model == "mlp";
  trident::train::Trainer<Activation> trainer(world, mlp ? regression_mlp() : repeat_transformer(), layout, settings);
  if (!o.load.empty()) trainer.load(o.load);
  while (trainer.steps_done() < o.steps) {
    const std::int64_t step = trainer.steps_done() + 1;
    const auto report = trainer.step(mlp ? regression_batch(step) : repeat_batch(step), o.lr);
    if (world.rank() == 0) std::printf("step %lld loss %.17g\n", static_cast<long long>(step), report.loss);
  }
  if (!o.save.empty()) trainer.save(o.save);
}
// [own-model end]

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  Kokkos::initialize(argc, argv);
  int status = 0;
  try {
    Options options;
    if (!parse_options(argc, argv, options)) {
    } else if (options.dtype == "bf16") {
      train<trident::bfloat16>(options);
    } else if (options.dtype == "fp16") {
      train<trident::float16>(options);
    } else {
      train<float>(options);
    }
  } catch (const std::exception& e) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    // An error every rank holds alike (a bad flag, a bad layout, a bad checkpoint) is printed once.
    const bool alike = dynamic_cast<const trident::comm::AgreedFailure*>(&e) != nullptr || is_usage_error(e);
    if (rank == 0 || !alike) std::fprintf(stderr, "own_model: error: %s\n", e.what());
    status = 2;
  }
  Kokkos::finalize();
  MPI_Finalize();
  return status;
}
