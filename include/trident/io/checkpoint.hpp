#pragma once
// Checkpoints of any model held in a ParameterStore: every parameter under its global name
// and shape, plus any buffers laid out like the parameters (AdamW moments) under a prefix,
// in one safetensors file, fp32 little-endian, written atomically.

#include <trident/core/error.hpp>
#include <trident/core/parameter_store.hpp>
#include <trident/core/profiling.hpp>
#include <trident/io/safetensors_reader.hpp>
#include <trident/io/safetensors_writer.hpp>

#include <Kokkos_Core.hpp>

#include <string>
#include <utility>
#include <vector>

namespace trident::io {

// A buffer laid out like the parameters, saved as "<prefix><parameter name>".
template <class Scalar, class MemorySpace>
struct StateBuffer {
  std::string prefix;  // e.g. "optimizer.exp_avg."
  Kokkos::View<Scalar*, Kokkos::LayoutRight, MemorySpace> values;
};

namespace detail {

template <class Scalar, class MemorySpace>
void require_unsharded(const ParameterStore<Scalar, MemorySpace>& store, const char* operation) {
  for (const auto& t : store.tensors())
    require_argument(t.local_shape == t.global_shape, operation, ": tensor '", t.name,
                     "' is a shard; one-file checkpoints of sharded stores go through the parallel checkpoint");
}

}  // namespace detail

template <class Scalar, class MemorySpace>
void save_checkpoint(const std::string& path, const ParameterStore<Scalar, MemorySpace>& store,
                     const std::vector<StateBuffer<Scalar, MemorySpace>>& state, const Metadata& metadata) {
  ScopedRegion region("trident::io::save_checkpoint");
  detail::require_unsharded(store, "trident::io::save_checkpoint");
  std::vector<Kokkos::View<Scalar*, Kokkos::HostSpace>> host_buffers;
  host_buffers.push_back(Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), store.values()));
  for (const auto& buffer : state) {
    require_argument(static_cast<std::int64_t>(buffer.values.extent(0)) == store.size(),
                     "trident::io::save_checkpoint: state buffer '", buffer.prefix, "' has ", buffer.values.extent(0),
                     " elements but the parameters have ", store.size());
    host_buffers.push_back(Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), buffer.values));
  }
  std::vector<HostTensor> tensors;
  for (std::size_t b = 0; b < host_buffers.size(); ++b) {
    const std::string prefix = b == 0 ? "" : state[b - 1].prefix;
    for (const auto& t : store.tensors())
      tensors.push_back(host_tensor(prefix + t.name, t.global_shape, host_buffers[b].data() + t.offset));
  }
  write_safetensors(path, tensors, metadata);
}

// Reads every parameter (and state buffer) of `store` from `path`; a missing tensor or a shape
// that differs from the model's is an error naming the tensor. Returns the file's metadata.
template <class Scalar, class MemorySpace>
Metadata load_checkpoint(const std::string& path, const ParameterStore<Scalar, MemorySpace>& store,
                         const std::vector<StateBuffer<Scalar, MemorySpace>>& state) {
  ScopedRegion region("trident::io::load_checkpoint");
  detail::require_unsharded(store, "trident::io::load_checkpoint");
  SafetensorsFile file(path);
  file.verify_checksums();  // a corrupt file is refused before anything is read
  // Everything is read into host buffers first: a bad file leaves the model untouched.
  using Device = Kokkos::View<Scalar*, Kokkos::LayoutRight, MemorySpace>;
  std::vector<std::pair<std::string, Device>> targets{{"", store.values()}};
  for (const auto& buffer : state) targets.emplace_back(buffer.prefix, buffer.values);
  std::vector<Kokkos::View<Scalar*, Kokkos::LayoutRight, Kokkos::HostSpace>> hosts;
  for (const auto& [prefix, device] : targets) {
    hosts.emplace_back("trident::io::load_checkpoint::host", device.extent(0));
    for (const auto& t : store.tensors()) file.read(prefix + t.name, t.global_shape, hosts.back().data() + t.offset);
  }
  for (std::size_t i = 0; i < targets.size(); ++i) Kokkos::deep_copy(targets[i].second, hosts[i]);
  return file.metadata();
}

}  // namespace trident::io
