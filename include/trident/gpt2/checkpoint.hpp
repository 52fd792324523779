#pragma once
// What a GPT-2 checkpoint adds to the one every train::Trainer writes: the model's config in its
// metadata ("config": {"layers", "heads", "hidden", "seq", "vocab"}), read back before a model
// is built for it. Its tensors carry the Hugging Face names through gpt2_spec's named layers.

#include <trident/core/error.hpp>
#include <trident/gpt2/config.hpp>
#include <trident/io/tensor_info.hpp>
#include <trident/train/checkpoint.hpp>

#include <nlohmann/json.hpp>

#include <string>

namespace trident::gpt2 {

inline nlohmann::json config_to_json(const Gpt2Config& c) {
  return {{"layers", c.layers}, {"heads", c.heads}, {"hidden", c.hidden}, {"seq", c.seq}, {"vocab", c.vocab}};
}

// The config a checkpoint was saved with (before building a model for it).
inline Gpt2Config checkpoint_config(const io::Metadata& metadata, const std::string& path) {
  try {
    const auto json = nlohmann::json::parse(train::metadata_entry(metadata, "config", path));
    return {json.at("layers").get<int>(), json.at("heads").get<int>(), json.at("hidden").get<int>(),
            json.at("seq").get<int>(), json.at("vocab").get<int>()};
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("trident::gpt2: checkpoint '") + path + "' has a malformed config: " + e.what());
  }
}

}  // namespace trident::gpt2
