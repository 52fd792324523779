// An HPC-style use of trident: a 2-D reaction-diffusion simulation (Fisher-KPP,
// u_t = D lap(u) + r u (1 - u), explicit Euler, periodic) runs domain-decomposed in strips of
// rows over all ranks, with halo exchange through trident::comm. While it runs, every rank
// samples training pairs from its strip: the 5 x 5 patch around a point now, and the change of
// the point's value over the next k = 2 steps (the points drawn alike on every rank, so the data
// does not depend on the number of ranks). An MLP (width 1024 by default) learns that k-step
// update online, trained with data x tensor parallelism on the training ranks' own mesh; inside
// the simulation loop it then predicts the update at fresh points, and its error against the
// stencil is printed.
//
//   mpiexec -n 4 build/examples/surrogate/surrogate [--dp 2 --tp 2] [--grid 128 --width 1024 ...]

#include <trident/comm/comm.hpp>
#include <trident/nn.hpp>
#include <trident/train.hpp>

#include "cli.hpp"

#include <mpi.h>
#include <Kokkos_Core.hpp>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace {

using Space = Kokkos::DefaultExecutionSpace;
using Memory = Space::memory_space;
using Field = Kokkos::View<float**, Kokkos::LayoutRight, Memory>;
using Matrix = Kokkos::View<float**, Kokkos::LayoutRight, Memory>;
using Positions = Kokkos::View<int* [2], Memory>;

constexpr int steps_ahead = 2;       // k: the update the surrogate learns
constexpr int radius = steps_ahead;  // the k-step update depends on a (2k+1)^2 patch
constexpr int patch = (2 * radius + 1) * (2 * radius + 1);
constexpr int halo = radius;  // halo rows kept above and below each strip

struct Settings {
  int grid = 128, steps = 400, batch = 256, width = 1024, dp = 0, tp = 1, zero = 0, eval_every = 100;
  int eval_points = 512, restart_every = 25;
  double lr = 1e-3, diffusion = 0.2, growth = 0.2, dt = 0.5;
  std::uint64_t seed = 1;
};

// The strip of rows [first_row, first_row + rows) of the grid x grid field, with `halo` rows of
// the neighbouring strips above and below (the grid is periodic both ways).
class ReactionDiffusion {
 public:
  ReactionDiffusion(const Settings& s, const trident::comm::Communicator& world)
      : m_settings(s),
        m_world(world),
        m_rows(s.grid / world.size()),
        m_first_row(world.rank() * m_rows),
        m_u("u", m_rows + 2 * halo, s.grid),
        m_next("u_next", m_rows + 2 * halo, s.grid) {
    reset(s.seed);
  }

  // A new run: a few Gaussian colonies in [0, 1] at random places (the same on every rank), which
  // grow and spread until they fill the domain; restarting gives an ensemble of runs to learn from.
  void reset(std::uint64_t seed) {
    const Settings& s = m_settings;
    std::mt19937 random(static_cast<unsigned>(seed));
    std::uniform_real_distribution<double> where(0.0, s.grid);
    std::vector<double> bumps;
    for (int b = 0; b < 12; ++b) bumps.insert(bumps.end(), {where(random), where(random), 1.0 + where(random) / 32});
    auto host = Kokkos::create_mirror_view(m_u);
    for (int i = 0; i < m_rows; ++i)
      for (int j = 0; j < s.grid; ++j) {
        double value = 0;
        for (std::size_t b = 0; b < bumps.size(); b += 3) {
          const double dy = periodic_distance(m_first_row + i - bumps[b], s.grid);
          const double dx = periodic_distance(j - bumps[b + 1], s.grid);
          value += std::exp(-(dx * dx + dy * dy) / (2 * bumps[b + 2] * bumps[b + 2]));
        }
        host(halo + i, j) = static_cast<float>(std::min(value, 1.0));
      }
    Kokkos::deep_copy(m_u, host);
    exchange_halos();
  }

  const Field& field() const { return m_u; }
  int rows() const { return m_rows; }
  int first_row() const { return m_first_row; }

  void step() {
    const auto u = m_u, next = m_next;
    const int n = m_settings.grid, rows = m_rows;
    const float d = static_cast<float>(m_settings.diffusion), r = static_cast<float>(m_settings.growth),
                dt = static_cast<float>(m_settings.dt);
    Kokkos::parallel_for(
        "surrogate::reaction_diffusion", Kokkos::MDRangePolicy<Space, Kokkos::Rank<2>>({halo, 0}, {halo + rows, n}),
        KOKKOS_LAMBDA(const int i, const int j) {
          const float c = u(i, j);
          const float laplacian = u(i - 1, j) + u(i + 1, j) + u(i, (j + n - 1) % n) + u(i, (j + 1) % n) - 4 * c;
          next(i, j) = c + dt * (d * laplacian + r * c * (1 - c));
        });
    std::swap(m_u, m_next);
    exchange_halos();
  }

  // The patches around `points` (rows within the strip, columns) as model inputs, centred on 0.
  void patches(const Positions& points, const Matrix& inputs) const {
    const auto u = m_u;
    const int n = m_settings.grid;
    Kokkos::parallel_for(
        "surrogate::patches", Kokkos::RangePolicy<Space>(0, static_cast<int>(points.extent(0))),
        KOKKOS_LAMBDA(const int s) {
          int k = 0;
          for (int di = -radius; di <= radius; ++di)
            for (int dj = -radius; dj <= radius; ++dj)
              inputs(s, k++) = u(halo + points(s, 0) + di, (points(s, 1) + dj + n) % n) - 0.5f;
        });
  }

  // The values at `points`, into column 0 of `out`.
  void values(const Positions& points, const Matrix& out) const {
    const auto u = m_u;
    Kokkos::parallel_for(
        "surrogate::values", Kokkos::RangePolicy<Space>(0, static_cast<int>(points.extent(0))),
        KOKKOS_LAMBDA(const int s) { out(s, 0) = u(halo + points(s, 0), points(s, 1)); });
  }

 private:
  static double periodic_distance(double d, int n) {
    d = std::fmod(std::abs(d), static_cast<double>(n));
    return std::min(d, n - d);
  }

  // Halo rows from the strips above and below, through trident::comm (device views are staged
  // through the host unless MPI is GPU-aware).
  void exchange_halos() {
    const int size = m_world.size(), rank = m_world.rank();
    const int up = (rank + size - 1) % size, down = (rank + 1) % size;
    const auto rows = [&](int first) {
      return Kokkos::subview(m_u, Kokkos::make_pair(first, first + halo), Kokkos::ALL);
    };
    trident::comm::sendrecv(Space(), m_world, rows(halo), up, rows(m_rows + halo), down, 1);
    trident::comm::sendrecv(Space(), m_world, rows(m_rows), down, rows(0), up, 2);
  }

  Settings m_settings;
  trident::comm::Communicator m_world;
  int m_rows, m_first_row;
  Field m_u, m_next;
};

// Pairs (patch now, rate of change over the next k steps) at `count` random points of the
// grid, drawn alike on every rank: each rank computes those in its strip and one sum over the
// ranks gives every rank the whole batch, in the order drawn, whatever the number of ranks.
struct Pairs {
  Matrix inputs, targets;
};

Pairs sample_pairs(ReactionDiffusion& sim, const trident::comm::Communicator& world, int count, std::mt19937& random,
                   const Settings& s) {
  std::uniform_int_distribution<int> where(0, s.grid - 1);
  std::vector<int> mine;  // (row in the strip, column, index in the batch) of the points in this strip
  for (int p = 0; p < count; ++p) {
    const int row = where(random), col = where(random);
    if (row >= sim.first_row() && row < sim.first_row() + sim.rows())
      mine.insert(mine.end(), {row - sim.first_row(), col, p});
  }
  const int n = static_cast<int>(mine.size() / 3);
  Positions points("points", n);
  Kokkos::View<int*, Memory> index("index", n);
  auto host_points = Kokkos::create_mirror_view(points);
  auto host_index = Kokkos::create_mirror_view(index);
  for (int p = 0; p < n; ++p) {
    host_points(p, 0) = mine[3 * p];
    host_points(p, 1) = mine[3 * p + 1];
    host_index(p) = mine[3 * p + 2];
  }
  Kokkos::deep_copy(points, host_points);
  Kokkos::deep_copy(index, host_index);
  Matrix inputs("inputs", n, patch), now("now", n, 1), later("later", n, 1);
  sim.patches(points, inputs);
  sim.values(points, now);
  for (int k = 0; k < steps_ahead; ++k) sim.step();
  sim.values(points, later);
  const float scale = static_cast<float>(1.0 / (steps_ahead * s.dt));
  Pairs global{Matrix("batch_inputs", count, patch), Matrix("batch_targets", count, 1)};
  const auto all_inputs = global.inputs, all_targets = global.targets;
  Kokkos::parallel_for(
      "surrogate::place_pairs", Kokkos::RangePolicy<Space>(0, n), KOKKOS_LAMBDA(const int p) {
        for (int k = 0; k < patch; ++k) all_inputs(index(p), k) = inputs(p, k);
        all_targets(index(p), 0) = (later(p, 0) - now(p, 0)) * scale;
      });
  trident::comm::allreduce(Space(), world, global.inputs);  // every other rank adds zeros
  trident::comm::allreduce(Space(), world, global.targets);
  return global;
}

int run(int argc, char** argv) {
  const trident::comm::Communicator world(MPI_COMM_WORLD, "world");
  trident_examples::CommandLine cli("surrogate", "A reaction-diffusion simulation that trains its own MLP surrogate.");
  using trident_examples::Range;
  Settings s;
  cli.number("--grid", s.grid, "grid points per side (a multiple of the rank count)", Range::at_least(2 * radius + 1));
  cli.number("--steps", s.steps, "training steps, one batch of fresh pairs each", Range::at_least(0));
  cli.number("--batch", s.batch, "pairs per training step, over all ranks", Range::at_least(1));
  cli.number("--width", s.width, "hidden width of the MLP", Range::at_least(1));
  cli.number("--dp", s.dp, "data-parallel replicas (0: ranks / tp)", Range::at_least(0));
  cli.number("--tp", s.tp, "tensor-parallel ranks per replica", Range::at_least(1));
  cli.number("--zero", s.zero, "ZeRO stage of the data-parallel replicas", Range::between(0, 3));
  cli.number("--eval-every", s.eval_every, "steps between surrogate evaluations", Range::at_least(1));
  cli.number("--eval-points", s.eval_points, "fresh points per evaluation, over all ranks", Range::at_least(1));
  cli.number("--restart-every", s.restart_every, "training steps between new simulation runs", Range::at_least(1));
  cli.number("--lr", s.lr, "AdamW learning rate", Range::above(0));
  cli.number("--seed", s.seed, "seed of the initial field, the sampling and the weights");
  if (!cli.parse(argc, argv)) {
    if (world.rank() == 0) std::printf("%s", cli.usage().c_str());
    return 0;
  }
  const int size = world.size();
  if (s.dp == 0) s.dp = size / s.tp;
  const auto require = [](bool ok, auto&&... message) {
    if (!ok) throw trident_examples::UsageError(trident::detail::concat(message...));
  };
  require(s.dp * s.tp == size, "dp x tp = ", s.dp, " x ", s.tp, " must equal the ", size, " ranks");
  require(s.grid % size == 0 && s.grid / size >= halo, "a grid of ", s.grid, " rows (--grid) does not split into ",
          size, " strips of at least ", halo, " rows");
  require(s.batch % s.dp == 0, "--batch ", s.batch, " must be a multiple of the ", s.dp, " data-parallel replicas");

  // The training mesh: its tp axis splits the MLP's layers, its dp axis replicates it.
  const auto spec = trident::nn::megatron_pairs(trident::nn::sequential(
      {trident::nn::linear(patch, s.width), trident::nn::gelu(), trident::nn::linear(s.width, s.width),
       trident::nn::gelu(), trident::nn::linear(s.width, 1)},
      trident::nn::Loss::mean_squared_error));
  trident::train::Layout layout;
  layout.dp = s.dp;
  layout.tp = s.tp;
  layout.zero_stage = s.zero;
  trident::train::TrainerSettings settings;
  settings.adamw = {0.9, 0.99, 1e-8, 0.0};
  settings.grad_clip = 0;
  settings.seed = s.seed;
  trident::train::Trainer<float, Space> trainer(world, spec, layout, settings);
  const auto& mesh = trainer.mesh();

  ReactionDiffusion sim(s, world);
  if (world.rank() == 0) {
    std::printf("surrogate: %d ranks on %s; simulation %d x %d in %d strips of %d rows; MLP ", size, Space::name(),
                s.grid, s.grid, size, s.grid / size);
    for (std::size_t i = 0; i < spec.layers.size(); ++i)
      std::printf("%s%s", i ? " -> " : "", trident::nn::describe(spec.layers[i]).c_str());
    std::printf(";\n  training mesh dp=%d x tp=%d, ZeRO-%d, %lld parameters per rank; layout (rank: dp, tp):", s.dp,
                s.tp, s.zero, static_cast<long long>(trainer.chunk(0).parameters().size()));
    for (int r = 0; r < size; ++r) {
      const auto c = mesh.layout().coords_of(r);
      std::printf(" %d:(%d,%d)", r, c.dp, c.tp);
    }
    std::printf("\n");
  }

  std::mt19937 random(static_cast<unsigned>(s.seed * 1000003u));  // the same draws on every rank
  double last_error = 1.0;
  auto evaluate = [&](int step) {
    // The surrogate's k-step update at fresh points of the current field, against the stencil.
    const Pairs fresh = sample_pairs(sim, world, s.eval_points, random, s);
    const auto predicted = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), trainer.predict(fresh.inputs));
    const auto exact = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), fresh.targets);
    double error = 0, norm = 0;
    for (std::size_t p = 0; p < exact.extent(0); ++p) {
      error += (predicted(p, 0) - exact(p, 0)) * (predicted(p, 0) - exact(p, 0));
      norm += exact(p, 0) * exact(p, 0);
    }
    last_error = std::sqrt(error / std::max(norm, 1e-30));
    if (world.rank() == 0)
      std::printf("step %5d | surrogate error %.4f (relative RMS of the %d-step update at %d fresh points)\n", step,
                  last_error, steps_ahead, s.eval_points);
  };

  for (int step = 1; step <= s.steps; ++step) {
    if (step > 1 && (step - 1) % s.restart_every == 0) sim.reset(s.seed + static_cast<std::uint64_t>(step));
    const Pairs batch = sample_pairs(sim, world, s.batch, random, s);  // the global batch, on every rank
    const double loss = trainer.step({batch.inputs, {batch.targets, {}}}, s.lr).loss;
    if (world.rank() == 0 && (step == 1 || step % std::max(1, s.eval_every / 4) == 0))
      std::printf("step %5d | training loss %.9g\n", step, loss);
    if (step % s.eval_every == 0 || step == s.steps) evaluate(step);
  }
  if (world.rank() == 0) std::printf("final surrogate error %.4f\n", last_error);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  Kokkos::initialize(argc, argv);
  int status = 0;
  try {
    status = run(argc, argv);
  } catch (const trident_examples::UsageError& e) {
    // Every rank found it alike in the command line: rank 0 reports it, once.
    if (rank == 0) std::fprintf(stderr, "surrogate: error: %s\n", e.what());
    status = 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "surrogate: error (rank %d): %s\n", rank, e.what());
    status = 2;
  }
  Kokkos::finalize();
  MPI_Finalize();
  return status;
}
