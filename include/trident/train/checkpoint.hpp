#pragma once
// Training checkpoints of any model, in any layout: the one-rank safetensors file, every
// parameter under its global name and shape (in the spec's order), then the AdamW moments as
// optimizer.exp_avg.<name> / optimizer.exp_avg_sq.<name>, and the caller's metadata. Each rank
// writes its own parts into the one file (parallel writer, atomic) and reads its own back, so
// a run saved in one layout resumes in any other.

#include <trident/comm/agreement.hpp>
#include <trident/comm/allreduce.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/core/parameter_store.hpp>
#include <trident/core/profiling.hpp>
#include <trident/io/safetensors_reader.hpp>
#include <trident/io/shard_pieces.hpp>

#include <Kokkos_Core.hpp>

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace trident::train {

// A global tensor of the one-rank model: its name and shape, in the order of the file.
struct GlobalTensor {
  std::string name;
  std::vector<std::int64_t> shape;
};

// This rank's part of one parameter store's training state: the range [begin, end) of the
// store's flat buffers it saves or loads, its parameter values and AdamW moments over that
// range (views of end - begin elements), and which of the store's tensors it writes when
// saving (every tensor once over all ranks; loading reads all a rank holds).
template <class Scalar, class MemorySpace>
struct StatePart {
  const ParameterStore<Scalar, MemorySpace>* store = nullptr;
  std::int64_t begin = 0, end = 0;
  Kokkos::View<Scalar*, Kokkos::LayoutRight, MemorySpace> values, exp_avg, exp_avg_sq;
  std::function<bool(const ParameterInfo&)> writes;
};

// The same part with buffers of its own (a checkpoint is read into them before anything of
// the model changes).
template <class Scalar, class MemorySpace>
StatePart<Scalar, MemorySpace> with_fresh_buffers(StatePart<Scalar, MemorySpace> part) {
  using View = decltype(part.values);
  const auto n = static_cast<std::size_t>(part.end - part.begin);
  part.values = View("trident::checkpoint::values", n);
  part.exp_avg = View("trident::checkpoint::exp_avg", n);
  part.exp_avg_sq = View("trident::checkpoint::exp_avg_sq", n);
  return part;
}

namespace detail {

// The three buffers of a part, each under the prefix of its tensors in the file.
template <class Part>
auto part_buffers(const Part& part) {
  using View = decltype(part.values);
  return std::array<std::pair<const char*, const View*>, 3>{
      {{"", &part.values}, {"optimizer.exp_avg.", &part.exp_avg}, {"optimizer.exp_avg_sq.", &part.exp_avg_sq}}};
}

inline constexpr std::array<const char*, 3> state_prefixes{"", "optimizer.exp_avg.", "optimizer.exp_avg_sq."};

// Whether every checksum the file records is a word sum, which ranks can verify together.
inline bool checksums_add_up(const io::SafetensorsFile& file) {
  for (const auto& [name, recorded] : file.recorded_checksums())
    if (!io::records_algorithm<io::WordSumChecksum>(recorded)) return false;
  return true;
}

inline std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

// The file holds exactly the model's tensors and their moments, each of the model's shape.
inline void require_same_tensors(const io::SafetensorsFile& file, const std::vector<GlobalTensor>& tensors) {
  std::map<std::string, const std::vector<std::int64_t>*> expected;
  for (const char* prefix : state_prefixes)
    for (const auto& t : tensors) expected[prefix + t.name] = &t.shape;
  for (const auto& info : file.tensors()) {
    const auto found = expected.find(info.name);
    require_argument(found != expected.end(), "trident::train: checkpoint '", file.path(), "' holds tensor '",
                     info.name, "', which the model does not have (a checkpoint of another model?)");
    std::vector<std::int64_t> shape(info.shape.begin(), info.shape.end());
    require_argument(shape == *found->second, "trident::train: tensor '", info.name, "' of checkpoint '", file.path(),
                     "' has shape ", shape_text(shape), " but the model's is ", shape_text(*found->second),
                     " (a checkpoint of another model?)");
    expected.erase(found);
  }
  require_argument(expected.empty(), "trident::train: checkpoint '", file.path(), "' lacks tensor '",
                   expected.empty() ? std::string() : expected.begin()->first, "' of the model (", expected.size(),
                   " missing)");
}

// Every tensor's bytes, and the header itself, are covered by a checksum (a file trident wrote,
// unedited: the reader refuses a header that changed, so only a file stripped of both gets here).
inline void require_checksums(const io::SafetensorsFile& file, const std::vector<GlobalTensor>& tensors) {
  require(file.has_header_checksum(), "trident::train: checkpoint '", file.path(),
          "' has no checksum of its header (written by another program, or edited)");
  const auto recorded = file.recorded_checksums();
  for (const char* prefix : state_prefixes)
    for (const auto& t : tensors)
      require(recorded.count(prefix + t.name) != 0, "trident::train: checkpoint '", file.path(),
              "' has no checksum of tensor '", prefix + t.name, "'");
}

}  // namespace detail

// Collective over `comm`, the ranks that together hold the model: writes the one-rank
// checkpoint (`tensors` in order, then their moments) with the parallel writer, each rank its
// own parts, nothing gathered.
template <class Scalar, class MemorySpace>
void save_state(const std::string& path, const std::vector<GlobalTensor>& tensors, const io::Metadata& metadata,
                const std::vector<StatePart<Scalar, MemorySpace>>& parts, const comm::Communicator& comm) {
  ScopedRegion region("trident::train::save_state");
  std::vector<io::TensorSpec> specs;
  std::map<std::string, long> position;
  for (const char* prefix : detail::state_prefixes)
    for (const auto& t : tensors) {
      position[prefix + t.name] = static_cast<long>(specs.size());
      specs.push_back({prefix + t.name, io::dtype_of_v<Scalar>, t.shape});
    }
  std::vector<Kokkos::View<Scalar*, Kokkos::HostSpace>> host;  // keeps the pieces' data alive
  std::vector<io::TensorPiece> pieces;
  for (const auto& part : parts)
    for (const auto& [prefix, values] : detail::part_buffers(part)) {
      host.push_back(Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), *values));
      io::append_shard_pieces(pieces, *part.store, part.begin, part.end, host.back().data(),
                              [&, prefix = prefix](const ParameterInfo& t) {
                                const auto it = position.find(prefix + t.name);
                                return it == position.end() || !part.writes(t) ? -1L : it->second;
                              });
    }
  io::write_safetensors_parallel(path, specs, pieces, metadata, comm);
}

// Reads this rank's parts of a checkpoint saved in any layout into the parts' views: every
// tensor a part holds, over its range. The file must hold exactly `tensors` and their moments,
// `check(metadata)` may refuse it (throwing), its checksums must hold, and everything is read
// before any view changes, so a bad file leaves the model untouched. Collective over `comm`,
// the ranks that together hold the model: they verify the checksums together, each over the
// elements it saves (`writes`), so no rank reads more of the file than its own part twice
// (`verify_together` false: each rank verifies the whole file); one failure fails every rank.
// Returns the file's metadata.
template <class Scalar, class MemorySpace>
io::Metadata load_state(const std::string& path, const std::vector<GlobalTensor>& tensors,
                        const std::vector<StatePart<Scalar, MemorySpace>>& parts, const comm::Communicator& comm,
                        const std::function<void(const io::Metadata&)>& check = {}, bool verify_together = true) {
  ScopedRegion region("trident::train::load_state");
  const std::string what = "trident::train: loading checkpoint '" + path + "'";
  std::optional<io::SafetensorsFile> file;
  std::vector<Kokkos::View<Scalar*, Kokkos::HostSpace>> host;
  bool together = false;
  comm::agree_on_failure(comm, what, [&] {
    file.emplace(path);
    if (check) check(file->metadata());
    detail::require_same_tensors(*file, tensors);
    detail::require_checksums(*file, tensors);
    together = verify_together && detail::checksums_add_up(*file);
    if (!together) file->verify_checksums();
    for (const auto& part : parts)
      for (const auto& [prefix, values] : detail::part_buffers(part)) {
        host.emplace_back("trident::train::load_state", values->extent(0));
        io::read_shard_pieces(*file, prefix, *part.store, part.begin, part.end, host.back().data());
      }
  });
  if (together) {
    const auto recorded = file->recorded_checksums();
    std::map<std::string, std::size_t> checked;  // tensors with a checksum -> their place in `sums`
    for (const auto& entry : recorded) checked.emplace(entry.first, checked.size());
    Kokkos::View<std::uint64_t*, Kokkos::HostSpace> sums("trident::train::checksums", checked.size());
    comm::agree_on_failure(comm, what, [&] {
      for (const auto& part : parts)
        for (const auto& [prefix, values] : detail::part_buffers(part))
          io::for_each_shard_run(
              *part.store, part.begin, part.end,
              [&, prefix = prefix](const ParameterInfo& t, std::uint64_t first, std::uint64_t count, std::int64_t) {
                const auto found = checked.find(prefix + t.name);
                if (found == checked.end() || !part.writes(t)) return;
                io::WordSumChecksum checksum;
                file->add_to_checksum(found->first, first, count, checksum);
                sums(found->second) += checksum.value();
              });
    });
    comm::allreduce(Kokkos::DefaultHostExecutionSpace(), comm, sums, comm::ReduceOp::sum);
    comm::agree_on_failure(comm, what, [&] {
      for (const auto& [name, place] : checked)
        file->require_checksum(name, io::WordSumChecksum::format(io::WordSumChecksum::algorithm, sums(place)),
                               recorded.at(name));
    });
  }
  auto next = host.begin();
  for (const auto& part : parts)
    for (const auto& [prefix, values] : detail::part_buffers(part)) Kokkos::deep_copy(*values, *next++);
  return file->metadata();
}

// The metadata entry `key` of checkpoint `path`, or an error naming both.
inline const std::string& metadata_entry(const io::Metadata& metadata, const std::string& key,
                                         const std::string& path) {
  const auto it = metadata.find(key);
  require(it != metadata.end(), "trident::train: checkpoint '", path, "' has no '", key, "' in its metadata");
  return it->second;
}

}  // namespace trident::train
