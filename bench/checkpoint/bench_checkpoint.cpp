// Saving and loading a GPT-2 training checkpoint (parameters and AdamW moments) in one layout
// of the world, beside one rank writing the same file alone. Every rank of the layout writes
// and reads only its own part; the one-writer line is what a gathering checkpoint costs at
// best (the gather itself not counted), and the bytes it must hold on that rank.
//
// mpiexec -n N bench_checkpoint [--dp D --tp T --pp P --zero Z] [--layers --hidden --heads
//   --seq --vocab] [--reps R] [--dir DIR]
// prints one JSON line: the layout, file bytes, save and load seconds (median of R, the
// slowest rank), the one-writer save seconds, and the most bytes of state one rank handles.

#include "../common/gpt2_arguments.hpp"
#include "../common/json_line.hpp"
#include "../common/median.hpp"

#include <trident/gpt2/checkpoint.hpp>
#include <trident/gpt2/spec.hpp>
#include <trident/io/safetensors.hpp>
#include <trident/nn/model.hpp>
#include <trident/train.hpp>

#include <mpi.h>

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace {

using Space = Kokkos::DefaultExecutionSpace;

// Seconds of the slowest rank for one collective action.
template <class Action>
double timed(Action&& action) {
  MPI_Barrier(MPI_COMM_WORLD);
  const auto start = std::chrono::steady_clock::now();
  action();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  MPI_Allreduce(MPI_IN_PLACE, &seconds, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return seconds;
}

void run(int argc, char** argv) {
  using trident_bench::argument;
  int size = 1, rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const int dp = argument(argc, argv, "--dp", size), tp = argument(argc, argv, "--tp", 1);
  const int pp = argument(argc, argv, "--pp", 1), zero = argument(argc, argv, "--zero", dp > 1 ? 1 : 0);
  const int reps = argument(argc, argv, "--reps", 3);
  std::string dir = "/tmp";
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--dir") dir = argv[i + 1];
  const auto config = trident_bench::gpt2_config_from(argc, argv);

  trident::train::Layout layout;
  layout.dp = dp;
  layout.tp = tp;
  layout.pp = pp;
  layout.zero_stage = zero;
  trident::train::TrainerSettings settings;
  settings.adamw = trident::optim::AdamWSettings::gpt2();
  settings.seed = 1234;
  trident::train::Trainer<float, Space> trainer(trident::comm::Communicator(MPI_COMM_WORLD, "world"),
                                                trident::gpt2::gpt2_spec(config), layout, settings);
  trainer.set_metadata("config", trident::gpt2::config_to_json(config).dump());  // as train_gpt's checkpoints
  const std::string path = dir + "/bench_checkpoint_np" + std::to_string(size) + ".safetensors";
  std::vector<double> saves, loads, alone;
  for (int r = 0; r < reps; ++r) saves.push_back(timed([&] { trainer.save(path); }));
  for (int r = 0; r < reps; ++r) loads.push_back(timed([&] { trainer.load(path); }));
  const auto file_bytes = static_cast<std::int64_t>(std::filesystem::file_size(path));

  // One rank writing the same tensors alone, from memory: the gathering writer's best case.
  std::int64_t alone_bytes = 0;
  if (rank == 0) {
    const trident::io::SafetensorsFile file(path);
    std::vector<std::vector<float>> values;
    std::vector<trident::io::HostTensor> tensors;
    for (const auto& t : file.tensors()) values.push_back(file.read<float>(t.name, t.shape));
    for (std::size_t i = 0; i < values.size(); ++i)
      tensors.push_back(trident::io::host_tensor(file.tensors()[i].name, file.tensors()[i].shape, values[i].data()));
    for (const auto& v : values) alone_bytes += static_cast<std::int64_t>(v.size() * sizeof(float));
    const std::string copy = path + ".alone";
    for (int r = 0; r < reps; ++r) {
      const auto start = std::chrono::steady_clock::now();
      trident::io::write_safetensors(copy, tensors, file.metadata());
      alone.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    std::filesystem::remove(copy);
  }
  // The state bytes this rank writes and reads: its range of its chunks' three buffers.
  std::int64_t mine = 0;
  for (int c = 0; c < trainer.chunk_count(); ++c)
    mine += 3 * trainer.chunk(c).parameters().size() * static_cast<std::int64_t>(sizeof(float)) / dp;
  MPI_Allreduce(MPI_IN_PLACE, &mine, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) {
    std::filesystem::remove(path);
    const double save = trident_bench::median(saves), load = trident_bench::median(loads),
                 one = trident_bench::median(alone);
    trident_bench::print_json<Space>(
        "{\"bench\":\"checkpoint\",\"ranks\":%d,\"dp\":%d,\"tp\":%d,\"pp\":%d,\"zero\":%d,\"file_bytes\":%lld,"
        "\"save_s\":%.4f,\"load_s\":%.4f,\"one_writer_save_s\":%.4f,\"save_vs_one_writer\":%.3f,"
        "\"save_gb_per_s\":%.3f,\"max_state_bytes_per_rank\":%lld,\"one_writer_state_bytes\":%lld}\n",
        size, dp, tp, pp, zero, static_cast<long long>(file_bytes), save, load, one, one / save,
        static_cast<double>(file_bytes) / save / 1e9, static_cast<long long>(mine),
        static_cast<long long>(alone_bytes));
  }
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  Kokkos::initialize(argc, argv);
  int status = 0;
  try {
    run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_checkpoint: %s\n", e.what());
    status = 1;
  }
  Kokkos::finalize();
  MPI_Finalize();
  return status;
}
