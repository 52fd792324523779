#pragma once
// GPT-2 training checkpoints: Hugging Face tensor names, AdamW moments as
// optimizer.exp_avg.<name> / optimizer.exp_avg_sq.<name>, and in __metadata__ the step, the
// model config, the optimizer settings and the data position.

#include <trident/io/checkpoint.hpp>
#include <trident/io/sharded_checkpoint.hpp>
#include <trident/model/gpt2_config.hpp>
#include <trident/optim/adamw.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

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

// Writes the one-rank checkpoint; a store sharded over `group` (tensor parallelism) is
// gathered to the group's first rank, which writes.
template <class Scalar, class MemorySpace>
void save_gpt2_checkpoint(const std::string& path, const Gpt2Config& config,
                          const ParameterStore<Scalar, MemorySpace>& store,
                          const optim::AdamW<Scalar, MemorySpace>& adamw, const TrainingProgress& progress,
                          const comm::Communicator* group = nullptr) {
  const auto metadata = gpt2_checkpoint_metadata(config, adamw.settings(), progress);
  if (group != nullptr && group->size() > 1) {
    io::save_sharded_checkpoint(path, store, adamw_state_buffers(adamw), metadata, *group);
  } else {
    io::save_checkpoint(path, store, adamw_state_buffers(adamw), metadata);
  }
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
