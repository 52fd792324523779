#pragma once
// GPT-2 training checkpoints: Hugging Face tensor names, AdamW moments as
// optimizer.exp_avg.<name> / optimizer.exp_avg_sq.<name>, and in __metadata__ the step, the
// model config, the optimizer settings and the data position. The file is the one-rank file
// in every layout: each rank writes its own shards into it, and reads its own back.

#include <trident/comm/agreement.hpp>
#include <trident/comm/allreduce.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/core/parameter_store.hpp>
#include <trident/core/profiling.hpp>
#include <trident/io/safetensors_reader.hpp>
#include <trident/io/shard_pieces.hpp>
#include <trident/gpt2/config.hpp>
#include <trident/gpt2/parameters.hpp>
#include <trident/optim/adamw.hpp>
#include <trident/train/checkpoint.hpp>

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace trident::gpt2 {

struct TrainingProgress {
  std::int64_t step = 0;             // steps completed
  std::int64_t tokens_consumed = 0;  // data position: tokens of the stream read so far
  std::uint64_t seed = 0;
};

inline nlohmann::json config_to_json(const Gpt2Config& c) {
  return {{"layers", c.layers}, {"heads", c.heads}, {"hidden", c.hidden}, {"seq", c.seq}, {"vocab", c.vocab}};
}

inline io::Metadata gpt2_checkpoint_metadata(const Gpt2Config& config, const optim::AdamWSettings& adamw,
                                             const TrainingProgress& progress) {
  const nlohmann::json optimizer = {{"name", "AdamW"},
                                    {"beta1", adamw.beta1},
                                    {"beta2", adamw.beta2},
                                    {"eps", adamw.eps},
                                    {"weight_decay", adamw.weight_decay}};
  return {{"format", "trident.gpt2"},
          {"step", std::to_string(progress.step)},
          {"tokens_consumed", std::to_string(progress.tokens_consumed)},
          {"seed", std::to_string(progress.seed)},
          {"config", config_to_json(config).dump()},
          {"optimizer", optimizer.dump()}};
}

namespace detail {
using train::metadata_entry;
}  // namespace detail

// GPT-2's tensors in Hugging Face order, as the checkpoint holds them.
inline std::vector<train::GlobalTensor> gpt2_global_tensors(const Gpt2Config& config) {
  ParameterStore<float, Kokkos::HostSpace> order;  // declared, not allocated
  declare_gpt2_parameters(order, config);
  std::vector<train::GlobalTensor> tensors;
  for (const auto& t : order.tensors()) tensors.push_back({t.name, t.global_shape});
  return tensors;
}

// Reads the config a checkpoint was saved with (before building a model for it).
inline Gpt2Config checkpoint_config(const io::Metadata& metadata, const std::string& path) {
  try {
    const auto json = nlohmann::json::parse(detail::metadata_entry(metadata, "config", path));
    return {json.at("layers").get<int>(), json.at("heads").get<int>(), json.at("hidden").get<int>(),
            json.at("seq").get<int>(), json.at("vocab").get<int>()};
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("trident::gpt2: checkpoint '") + path + "' has a malformed config: " + e.what());
  }
}

template <class Scalar, class MemorySpace>
using Gpt2StatePart = train::StatePart<Scalar, MemorySpace>;
using train::with_fresh_buffers;

// The tensors a rank of a tensor-parallel group saves: its shards, and a tensor every rank of
// the group holds whole only on the group's rank 0, so that each is written once.
inline std::function<bool(const ParameterInfo&)> saved_by(bool tensor_parallel_root) {
  return [tensor_parallel_root](const ParameterInfo& t) { return tensor_parallel_root || !t.replicated; };
}

// All of a store this rank holds, with its optimizer. A tensor every rank of the tensor-
// parallel group holds whole is written by the group's rank 0 only.
template <class Scalar, class MemorySpace>
Gpt2StatePart<Scalar, MemorySpace> whole_store_part(const ParameterStore<Scalar, MemorySpace>& store,
                                                    const optim::AdamW<Scalar, MemorySpace>& adamw,
                                                    bool tensor_parallel_root) {
  return {&store, 0, store.size(), store.values(), adamw.exp_avg(), adamw.exp_avg_sq(), saved_by(tensor_parallel_root)};
}

// Collective over `comm`, the ranks that together hold the model: writes the one-rank
// checkpoint (every tensor under its global name, in Hugging Face order, then the moments)
// with the parallel writer, each rank its own parts, nothing gathered.
template <class Scalar, class MemorySpace>
void save_gpt2_checkpoint(const std::string& path, const Gpt2Config& config, const optim::AdamWSettings& adamw,
                          const TrainingProgress& progress,
                          const std::vector<Gpt2StatePart<Scalar, MemorySpace>>& parts,
                          const comm::Communicator& comm) {
  train::save_state(path, gpt2_global_tensors(config), gpt2_checkpoint_metadata(config, adamw, progress), parts, comm);
}

// One store and its optimizer: on one rank, or sharded over a tensor-parallel `group`.
template <class Scalar, class MemorySpace>
void save_gpt2_checkpoint(const std::string& path, const Gpt2Config& config,
                          const ParameterStore<Scalar, MemorySpace>& store,
                          const optim::AdamW<Scalar, MemorySpace>& adamw, const TrainingProgress& progress,
                          const comm::Communicator* group = nullptr) {
  const comm::Communicator self(MPI_COMM_SELF, "self");
  const comm::Communicator& comm = group != nullptr ? *group : self;
  save_gpt2_checkpoint(
      path, config, adamw.settings(), progress,
      std::vector<Gpt2StatePart<Scalar, MemorySpace>>{whole_store_part(store, adamw, comm.rank() == 0)}, comm);
}

namespace detail {

// The training progress a checkpoint's metadata records.
inline TrainingProgress checkpoint_progress(const io::Metadata& metadata, const std::string& path) {
  TrainingProgress progress;
  try {
    progress.step = std::stoll(metadata_entry(metadata, "step", path));
    progress.tokens_consumed = std::stoll(metadata_entry(metadata, "tokens_consumed", path));
    progress.seed = std::stoull(metadata_entry(metadata, "seed", path));
  } catch (const std::logic_error& e) {
    throw Error("trident::gpt2: checkpoint '" + path + "' has a malformed step, data position or seed");
  }
  return progress;
}

}  // namespace detail

// Reads this rank's parts of a checkpoint saved in any layout into the parts' views: every
// tensor a part holds, over its range. The checkpoint's config must equal `config`, its
// checksums must hold, and everything is read before any view changes, so a bad file leaves
// the model untouched. Collective over `comm`, the ranks that together hold the model: they
// verify the checksums together, each over the elements it saves (`writes`), so no rank
// reads more of the file than its own part twice (`verify_together` false: each rank verifies
// the whole file); one failure fails every rank (comm::agree_on_failure).
template <class Scalar, class MemorySpace>
TrainingProgress load_gpt2_checkpoint(const std::string& path, const Gpt2Config& config,
                                      const std::vector<Gpt2StatePart<Scalar, MemorySpace>>& parts,
                                      const comm::Communicator& comm, bool verify_together = true) {
  const auto metadata = train::load_state(
      path, gpt2_global_tensors(config), parts, comm,
      [&](const io::Metadata& found) {
        const Gpt2Config saved = checkpoint_config(found, path);
        require_argument(saved == config, "trident::gpt2: checkpoint '", path, "' holds a model with ",
                         saved.describe(), " but the model asked for has ", config.describe());
      },
      verify_together);
  return detail::checkpoint_progress(metadata, path);
}

// One store and its optimizer, all of it: on one rank, a pipeline stage, or a tensor-parallel
// shard (collective over `group`, which must hold the whole model, when given; without it a
// rank that holds less than the whole model verifies the whole file).
template <class Scalar, class MemorySpace>
TrainingProgress load_gpt2_checkpoint(const std::string& path, const Gpt2Config& config,
                                      const ParameterStore<Scalar, MemorySpace>& store,
                                      const optim::AdamW<Scalar, MemorySpace>& adamw,
                                      const comm::Communicator* group = nullptr) {
  const comm::Communicator self(MPI_COMM_SELF, "self");
  const comm::Communicator& comm = group != nullptr ? *group : self;
  // Alone, a rank verifies the checksums from its own reads only if it holds the whole model.
  ParameterStore<Scalar, Kokkos::HostSpace> model;
  declare_gpt2_parameters(model, config);
  bool whole = store.tensors().size() == model.tensors().size();
  for (const auto& t : store.tensors()) whole = whole && t.local_shape == t.global_shape;
  return load_gpt2_checkpoint(
      path, config, std::vector<Gpt2StatePart<Scalar, MemorySpace>>{whole_store_part(store, adamw, comm.rank() == 0)},
      comm, group != nullptr || whole);
}

}  // namespace trident::gpt2
