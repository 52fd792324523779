#pragma once
// Saving a pipeline-parallel GPT-2 in the one-rank format: each stage's shards are gathered
// over its tensor-parallel group, every pipeline rank's tensors are sent to pipeline rank 0,
// which writes every global tensor once (wte from the first stage) in Hugging Face order.
// Loading needs nothing special: every stage reads its own tensors (load_gpt2_checkpoint).

#include <trident/comm/point_to_point.hpp>
#include <trident/io/sharded_checkpoint.hpp>
#include <trident/model/gpt2_checkpoint.hpp>
#include <trident/model/gpt2_pipeline.hpp>

#include <map>
#include <string>
#include <vector>

namespace trident::model {

// With `stores[c]` holding chunk c's parameter values (data parallelism gathers them apart from
// the chunk's own store), and adamw[c] its optimizer state.
template <class Scalar, class ExecutionSpace>
void save_gpt2_pipeline_checkpoint(
    const std::string& path, const Gpt2Config& config, Gpt2Pipeline<Scalar, ExecutionSpace>& pipe,
    const std::vector<const ParameterStore<Scalar, typename ExecutionSpace::memory_space>*>& stores,
    const std::vector<optim::AdamW<Scalar, typename ExecutionSpace::memory_space>>& adamw,
    const TrainingProgress& progress) {
  ScopedRegion region("trident::model::save_gpt2_pipeline_checkpoint");
  using Memory = typename ExecutionSpace::memory_space;
  using HostValues = Kokkos::View<Scalar*, Kokkos::HostSpace>;
  const auto& pp = pipe.communicator();
  const auto& tp = pipe.chunk(0).tensor_parallel_group();
  const Kokkos::DefaultHostExecutionSpace host;
  constexpr int parts = 3;  // values, exp_avg, exp_avg_sq
  // This pipeline rank's global tensors (on tensor-parallel rank 0): name -> 3 x values.
  std::vector<std::string> names;
  std::vector<Scalar> flat;
  for (int c = 0; c < pipe.chunk_count(); ++c) {
    const auto& chunk = pipe.chunk(c);
    const auto& store = *stores.at(static_cast<std::size_t>(c));
    std::vector<Kokkos::View<Scalar*, Kokkos::LayoutRight, Memory>> buffers{
        store.values(), adamw[static_cast<std::size_t>(c)].exp_avg(), adamw[static_cast<std::size_t>(c)].exp_avg_sq()};
    const auto global = tp.active() ? io::gather_global_tensors(store, buffers, tp.comm)
                                    : io::gather_global_tensors(store, buffers, comm::Communicator(MPI_COMM_SELF));
    if (tp.rank() != 0) continue;
    const bool tied_copy = chunk.stage().holds_head && !chunk.stage().holds_embedding;
    for (std::size_t i = 0; i < store.tensors().size(); ++i) {
      if (tied_copy && store.tensors()[i].name == "wte.weight") continue;  // the first stage writes wte
      names.push_back(store.tensors()[i].name);
      for (int k = 0; k < parts; ++k)
        flat.insert(flat.end(), global[static_cast<std::size_t>(k)][i].begin(),
                    global[static_cast<std::size_t>(k)][i].end());
    }
  }
  // Pipeline rank 0 collects the names (newline-separated) and values of every rank.
  std::string error;
  if (tp.rank() == 0) {
    ParameterStore<Scalar, Kokkos::HostSpace> order;  // the one-rank model's tensors, in order
    declare_gpt2_parameters(order, config);
    std::map<std::string, std::vector<Scalar>> tensors;  // name -> parts concatenated
    auto adopt = [&](const std::string& joined, const Scalar* values) {
      std::size_t start = 0;
      while (start < joined.size()) {
        const auto end = joined.find('\n', start);
        const std::string name = joined.substr(start, end - start);
        start = end + 1;
        const std::int64_t n = order.info(name).size();
        tensors[name].assign(values, values + parts * n);
        values += parts * n;
      }
    };
    std::string joined;
    for (const auto& n : names) joined += n + "\n";
    Kokkos::View<std::int64_t*, Kokkos::HostSpace> sizes("trident::checkpoint::sizes", 2);
    if (pp.rank() != 0) {
      sizes(0) = static_cast<std::int64_t>(joined.size());
      sizes(1) = static_cast<std::int64_t>(flat.size());
      comm::send(host, pp, sizes, 0, 1);
      comm::send(
          host, pp,
          Kokkos::View<char*, Kokkos::HostSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>>(joined.data(), joined.size()),
          0, 2);
      comm::send(
          host, pp,
          Kokkos::View<Scalar*, Kokkos::HostSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>>(flat.data(), flat.size()),
          0, 3);
    } else {
      adopt(joined, flat.data());
      for (int r = 1; r < pp.size(); ++r) {
        comm::recv(host, pp, sizes, r, 1);
        std::string other(static_cast<std::size_t>(sizes(0)), '\0');
        HostValues values("trident::checkpoint::values", static_cast<std::size_t>(sizes(1)));
        comm::recv(
            host, pp,
            Kokkos::View<char*, Kokkos::HostSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>>(other.data(), other.size()),
            r, 2);
        comm::recv(host, pp, values, r, 3);
        adopt(other, values.data());
      }
      try {
        std::vector<io::HostTensor> entries;
        const char* prefixes[parts] = {"", "optimizer.exp_avg.", "optimizer.exp_avg_sq."};
        for (int k = 0; k < parts; ++k)
          for (const auto& t : order.tensors()) {
            const auto it = tensors.find(t.name);
            require(it != tensors.end(), "trident::model::save_gpt2_pipeline_checkpoint: no stage holds '", t.name,
                    "'");
            entries.push_back(io::host_tensor(prefixes[k] + t.name, t.global_shape, it->second.data() + k * t.size()));
          }
        io::write_safetensors(path, entries, gpt2_checkpoint_metadata(config, adamw.front().settings(), progress));
      } catch (const std::exception& e) {
        error = e.what();
      }
    }
  }
  // The writer's verdict reaches every rank: pipeline rank 0 tells its pipeline, each
  // tensor-parallel rank 0 its group.
  Kokkos::View<int*, Kokkos::HostSpace> failed("trident::checkpoint::failed", 1);
  failed(0) = error.empty() ? 0 : 1;
  if (tp.rank() == 0) comm::broadcast(host, pp, failed, 0);
  if (tp.active()) comm::broadcast(host, tp.comm, failed, 0);
  if (failed(0) != 0)
    throw Error(error.empty() ? "trident::model::save_gpt2_pipeline_checkpoint: writing '" + path + "' failed on rank 0"
                              : error);
}

// The pipeline's own chunks and optimizers.
template <class Scalar, class ExecutionSpace>
void save_gpt2_pipeline_checkpoint(
    const std::string& path, const Gpt2Config& config, Gpt2Pipeline<Scalar, ExecutionSpace>& pipe,
    const std::vector<optim::AdamW<Scalar, typename ExecutionSpace::memory_space>>& adamw,
    const TrainingProgress& progress) {
  std::vector<const ParameterStore<Scalar, typename ExecutionSpace::memory_space>*> stores;
  for (int c = 0; c < pipe.chunk_count(); ++c) stores.push_back(&pipe.chunk(c).parameters());
  save_gpt2_pipeline_checkpoint(path, config, pipe, stores, adamw, progress);
}

}  // namespace trident::model
