#pragma once
// GPT-2 training checkpoints: Hugging Face tensor names, AdamW moments as
// optimizer.exp_avg.<name> / optimizer.exp_avg_sq.<name>, and in __metadata__ the step, the
// model config, the optimizer settings and the data position. The file is the one-rank file
// in every layout: each rank writes its own shards into it, and reads its own back.

#include <trident/comm/communicator.hpp>
#include <trident/core/parameter_store.hpp>
#include <trident/core/profiling.hpp>
#include <trident/io/checkpoint.hpp>
#include <trident/io/shard_pieces.hpp>
#include <trident/io/sharded_checkpoint.hpp>
#include <trident/model/gpt2_config.hpp>
#include <trident/model/gpt2_parameters.hpp>
#include <trident/optim/adamw.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace trident::model {

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
inline const std::string& metadata_entry(const io::Metadata& metadata, const std::string& key,
                                         const std::string& path) {
  auto it = metadata.find(key);
  require(it != metadata.end(), "trident::model: checkpoint '", path, "' has no '", key, "' in its metadata");
  return it->second;
}
}  // namespace detail

// Reads the config a checkpoint was saved with (before building a model for it).
inline Gpt2Config checkpoint_config(const io::Metadata& metadata, const std::string& path) {
  try {
    const auto json = nlohmann::json::parse(detail::metadata_entry(metadata, "config", path));
    return {json.at("layers").get<int>(), json.at("heads").get<int>(), json.at("hidden").get<int>(),
            json.at("seq").get<int>(), json.at("vocab").get<int>()};
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("trident::model: checkpoint '") + path + "' has a malformed config: " + e.what());
  }
}

template <class Scalar, class MemorySpace>
std::vector<io::StateBuffer<Scalar, MemorySpace>> adamw_state_buffers(const optim::AdamW<Scalar, MemorySpace>& adamw) {
  return {{"optimizer.exp_avg.", adamw.exp_avg()}, {"optimizer.exp_avg_sq.", adamw.exp_avg_sq()}};
}

// This rank's part of one parameter store's training state, for saving: the range [begin, end)
// of the store's flat buffers it writes, its parameter values and AdamW moments over that
// range (views of end - begin elements), and which of the store's tensors it writes at all.
template <class Scalar, class MemorySpace>
struct Gpt2StatePart {
  const ParameterStore<Scalar, MemorySpace>* store = nullptr;
  std::int64_t begin = 0, end = 0;
  Kokkos::View<Scalar*, Kokkos::LayoutRight, MemorySpace> values, exp_avg, exp_avg_sq;
  std::function<bool(const ParameterInfo&)> writes;
};

// All of a store this rank holds, with its optimizer. A tensor every rank of the tensor-
// parallel group holds whole is written by the group's rank 0 only.
template <class Scalar, class MemorySpace>
Gpt2StatePart<Scalar, MemorySpace> whole_store_part(const ParameterStore<Scalar, MemorySpace>& store,
                                                    const optim::AdamW<Scalar, MemorySpace>& adamw,
                                                    bool tensor_parallel_root) {
  return {&store,
          0,
          store.size(),
          store.values(),
          adamw.exp_avg(),
          adamw.exp_avg_sq(),
          [tensor_parallel_root](const ParameterInfo& t) { return tensor_parallel_root || !t.replicated; }};
}

// Collective over `comm`, the ranks that together hold the model: writes the one-rank
// checkpoint (every tensor under its global name, in Hugging Face order, then the moments)
// with the parallel writer, each rank its own parts, nothing gathered.
template <class Scalar, class MemorySpace>
void save_gpt2_checkpoint(const std::string& path, const Gpt2Config& config, const optim::AdamWSettings& adamw,
                          const TrainingProgress& progress, const std::vector<Gpt2StatePart<Scalar, MemorySpace>>& parts,
                          const comm::Communicator& comm) {
  ScopedRegion region("trident::model::save_gpt2_checkpoint");
  ParameterStore<Scalar, Kokkos::HostSpace> order;  // the one-rank model's tensors (declared, not allocated)
  declare_gpt2_parameters(order, config);
  const char* prefixes[] = {"", "optimizer.exp_avg.", "optimizer.exp_avg_sq."};
  std::vector<io::TensorSpec> specs;
  std::map<std::string, long> position;
  for (const char* prefix : prefixes)
    for (const auto& t : order.tensors()) {
      position[prefix + t.name] = static_cast<long>(specs.size());
      specs.push_back({prefix + t.name, io::dtype_of_v<Scalar>, t.global_shape});
    }
  std::vector<Kokkos::View<Scalar*, Kokkos::HostSpace>> host;  // keeps the pieces' data alive
  std::vector<io::TensorPiece> pieces;
  for (const auto& part : parts)
    for (int k = 0; k < 3; ++k) {
      const auto& values = k == 0 ? part.values : k == 1 ? part.exp_avg : part.exp_avg_sq;
      host.push_back(Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), values));
      io::append_shard_pieces(pieces, *part.store, part.begin, part.end, host.back().data(),
                              [&](const ParameterInfo& t) {
                                const auto it = position.find(prefixes[k] + t.name);
                                return it == position.end() || !part.writes(t) ? -1L : it->second;
                              });
    }
  io::write_safetensors_parallel(path, specs, pieces, gpt2_checkpoint_metadata(config, adamw, progress), comm);
}

// One store and its optimizer: on one rank, or sharded over a tensor-parallel `group`.
template <class Scalar, class MemorySpace>
void save_gpt2_checkpoint(const std::string& path, const Gpt2Config& config,
                          const ParameterStore<Scalar, MemorySpace>& store,
                          const optim::AdamW<Scalar, MemorySpace>& adamw, const TrainingProgress& progress,
                          const comm::Communicator* group = nullptr) {
  const comm::Communicator self(MPI_COMM_SELF, "self");
  const comm::Communicator& comm = group != nullptr ? *group : self;
  save_gpt2_checkpoint(path, config, adamw.settings(), progress,
                       std::vector<Gpt2StatePart<Scalar, MemorySpace>>{whole_store_part(store, adamw, comm.rank() == 0)},
                       comm);
}

// Loads parameters and AdamW moments (this rank's shard of them); the checkpoint's config
// must equal `config`.
template <class Scalar, class MemorySpace>
TrainingProgress load_gpt2_checkpoint(const std::string& path, const Gpt2Config& config,
                                      const ParameterStore<Scalar, MemorySpace>& store,
                                      const optim::AdamW<Scalar, MemorySpace>& adamw) {
  const io::SafetensorsFile header(path);
  const Gpt2Config saved = checkpoint_config(header.metadata(), path);
  require_argument(saved == config, "trident::model: checkpoint '", path, "' holds a model with ", saved.describe(),
                   " but the model asked for has ", config.describe());
  // Each rank reads its own blocks: any file loads in any tensor-parallel layout.
  const auto metadata = io::load_sharded_checkpoint(path, store, adamw_state_buffers(adamw));
  TrainingProgress progress;
  try {
    progress.step = std::stoll(detail::metadata_entry(metadata, "step", path));
    progress.tokens_consumed = std::stoll(detail::metadata_entry(metadata, "tokens_consumed", path));
    progress.seed = std::stoull(detail::metadata_entry(metadata, "seed", path));
  } catch (const std::logic_error& e) {
    throw Error("trident::model: checkpoint '" + path + "' has a malformed step, data position or seed");
  }
  return progress;
}

}  // namespace trident::model
