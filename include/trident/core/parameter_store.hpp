#pragma once
// A model's parameters as one flat allocation with named slices (as llm.c does): optimizers,
// gradient buckets and ZeRO shards work on contiguous ranges, while checkpoints, clipping
// and initialisation see named tensors with their global shapes.

#include <trident/core/error.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace trident {

// A rectangle of a local tensor and where it sits in the global tensor: local rows
// [local_row, local_row + rows) and columns [local_col, local_col + cols) are global rows
// [global_row, ...) and columns [global_col, ...). A shard is a list of such blocks: one for
// a row or column slice, three for a fused [Q | K | V] projection split by heads.
// Rank-1 tensors use rows only (cols = 1).
struct ShardBlock {
  std::int64_t local_row = 0, local_col = 0;
  std::int64_t global_row = 0, global_col = 0;
  std::int64_t rows = 0, cols = 1;
};

struct ParameterInfo {
  std::string name;                        // global name, e.g. "block.0.attn.weight"
  std::vector<std::int64_t> global_shape;  // shape of the one-rank tensor
  std::vector<std::int64_t> local_shape;   // shape held by this rank
  std::int64_t offset = 0;                 // first element in the flat buffer
  bool weight_decay = false;               // AdamW decays matrices and embeddings only
  // True when every rank of the tensor-parallel group holds the same values (LayerNorm,
  // row-parallel biases): the global gradient norm must count it once, not tp times.
  bool replicated = true;
  std::vector<ShardBlock> blocks;  // where the local tensor sits in the global one

  std::int64_t size() const {
    std::int64_t n = 1;
    for (auto e : local_shape) n *= e;
    return n;
  }
};

template <class Scalar, class MemorySpace>
class ParameterStore {
 public:
  using flat_view = Kokkos::View<Scalar*, Kokkos::LayoutRight, MemorySpace>;
  using vector_view = Kokkos::View<Scalar*, Kokkos::LayoutRight, MemorySpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  using matrix_view = Kokkos::View<Scalar**, Kokkos::LayoutRight, MemorySpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;

  // Declare a shard of a global tensor, made of `blocks`; call allocate() once all are declared.
  void declare(std::string name, std::vector<std::int64_t> global_shape, std::vector<std::int64_t> local_shape,
               std::vector<ShardBlock> blocks, bool weight_decay, bool replicated) {
    const char* op = "trident::ParameterStore::declare";
    require_argument(!m_values.data(), op, ": '", name, "' declared after allocate()");
    require_argument(m_index.count(name) == 0, op, ": '", name, "' declared twice");
    require_argument(local_shape.size() == global_shape.size() && !local_shape.empty() && local_shape.size() <= 2, op,
                     ": '", name, "' must be rank 1 or 2");
    ParameterInfo info{std::move(name), std::move(global_shape), std::move(local_shape), m_size, weight_decay,
                       replicated,      std::move(blocks)};
    const std::int64_t local_cols = info.local_shape.size() == 2 ? info.local_shape[1] : 1;
    const std::int64_t global_cols = info.global_shape.size() == 2 ? info.global_shape[1] : 1;
    std::int64_t covered = 0;
    for (const auto& b : info.blocks) {
      require_argument(b.rows >= 0 && b.cols >= 0 && b.local_row >= 0 && b.local_col >= 0 && b.global_row >= 0 &&
                           b.global_col >= 0 && b.local_row + b.rows <= info.local_shape[0] &&
                           b.local_col + b.cols <= local_cols && b.global_row + b.rows <= info.global_shape[0] &&
                           b.global_col + b.cols <= global_cols,
                       op, ": a block of '", info.name, "' lies outside its local or global shape");
      covered += b.rows * b.cols;
    }
    require_argument(covered == info.size(), op, ": the blocks of '", info.name, "' cover ", covered, " of its ",
                     info.size(), " local elements");
    m_size += info.size();
    m_index.emplace(info.name, m_tensors.size());
    m_tensors.push_back(std::move(info));
  }

  // Declare a whole (unsharded) tensor.
  void declare(const std::string& name, const std::vector<std::int64_t>& shape, bool weight_decay) {
    require_argument(!shape.empty(), "trident::ParameterStore::declare: '", name, "' has no shape");
    ShardBlock whole;
    whole.rows = shape[0];
    whole.cols = shape.size() == 2 ? shape[1] : 1;
    declare(name, shape, shape, {whole}, weight_decay, true);
  }

  // One allocation each for values and gradients, zero-initialised.
  void allocate(const std::string& label = "trident::parameters") {
    m_values = flat_view(label + "::values", static_cast<std::size_t>(m_size));
    m_grads = flat_view(label + "::grads", static_cast<std::size_t>(m_size));
  }

  std::int64_t size() const { return m_size; }
  const std::vector<ParameterInfo>& tensors() const { return m_tensors; }
  bool contains(const std::string& name) const { return m_index.count(name) != 0; }
  const ParameterInfo& info(const std::string& name) const { return m_tensors[index_of(name)]; }

  flat_view values() const { return m_values; }
  flat_view grads() const { return m_grads; }

  // A tensor's values and gradient: a slice of the flat buffer, or of the storage that backs it.
  vector_view vector(const std::string& name) const { return tensor_vector(m_values, m_value_backing, name); }
  matrix_view matrix(const std::string& name) const { return tensor_matrix(m_values, m_value_backing, name); }
  vector_view grad_vector(const std::string& name) const { return tensor_vector(m_grads, m_grad_backing, name); }
  matrix_view grad_matrix(const std::string& name) const { return tensor_matrix(m_grads, m_grad_backing, name); }

  // Storage other than the two flat buffers, for ZeRO: stage 2 holds no full gradients between
  // steps, stage 3 no full parameters, only the unit it is computing.
  //
  // Replaces the flat values / gradients: a view of size() elements, or an empty view to hold none.
  void set_values(flat_view values) { m_values = checked_flat(std::move(values), "set_values"); }
  void set_grads(flat_view grads) { m_grads = checked_flat(std::move(grads), "set_grads"); }

  // Backs tensors [first, last) (store order, so contiguous in the flat layout) by `storage`,
  // which holds exactly their elements laid out as in the flat buffer. An empty view returns
  // them to the flat buffer. The store keeps `storage` alive while it backs them.
  void back_values(std::size_t first, std::size_t last, flat_view storage) {
    back_range(m_value_backing, first, last, std::move(storage), "back_values");
  }
  void back_grads(std::size_t first, std::size_t last, flat_view storage) {
    back_range(m_grad_backing, first, last, std::move(storage), "back_grads");
  }

  // The flat slice of any buffer laid out like the parameters (gradients, AdamW moments).
  static vector_view vector_of(const flat_view& flat, const ParameterInfo& t) {
    return vector_view(flat.data() + t.offset, static_cast<std::size_t>(t.size()));
  }
  static matrix_view matrix_of(const flat_view& flat, const ParameterInfo& t) {
    require_argument(t.local_shape.size() == 2, "trident::ParameterStore: '", t.name, "' is not a matrix");
    return matrix_view(flat.data() + t.offset, static_cast<std::size_t>(t.local_shape[0]),
                       static_cast<std::size_t>(t.local_shape[1]));
  }

 private:
  // Where a backed tensor's elements are: `storage` holds the flat range starting at `base`.
  struct Backing {
    flat_view storage;
    std::int64_t base = 0;
  };

  flat_view checked_flat(flat_view view, const char* operation) const {
    require_argument(view.extent(0) == 0 || static_cast<std::int64_t>(view.extent(0)) == m_size,
                     "trident::ParameterStore::", operation, ": a view of ", view.extent(0),
                     " elements cannot hold the ", m_size, " elements of the store");
    return view;
  }

  void back_range(std::vector<Backing>& backing, std::size_t first, std::size_t last, flat_view storage,
                  const char* operation) {
    require_argument(first < last && last <= m_tensors.size(), "trident::ParameterStore::", operation, ": tensors [",
                     first, ", ", last, ") are not a range of the ", m_tensors.size(), " tensors");
    const std::int64_t base = m_tensors[first].offset;
    const std::int64_t count = m_tensors[last - 1].offset + m_tensors[last - 1].size() - base;
    require_argument(storage.extent(0) == 0 || static_cast<std::int64_t>(storage.extent(0)) == count,
                     "trident::ParameterStore::", operation, ": tensors '", m_tensors[first].name, "' to '",
                     m_tensors[last - 1].name, "' hold ", count, " elements but the storage has ", storage.extent(0));
    backing.resize(m_tensors.size());
    for (std::size_t i = first; i < last; ++i) backing[i] = storage.extent(0) == 0 ? Backing{} : Backing{storage, base};
  }

  Scalar* tensor_data(const flat_view& flat, const std::vector<Backing>& backing, std::size_t index) const {
    const auto& t = m_tensors[index];
    if (index < backing.size() && backing[index].storage.extent(0) != 0)
      return backing[index].storage.data() + (t.offset - backing[index].base);
    require_argument(static_cast<std::int64_t>(flat.extent(0)) == m_size || t.size() == 0, "trident::ParameterStore: '",
                     t.name, "' has no storage (its flat buffer is not held and nothing ", "backs it)");
    return flat.data() + t.offset;
  }

  vector_view tensor_vector(const flat_view& flat, const std::vector<Backing>& backing, const std::string& name) const {
    const auto index = index_of(name);
    return vector_view(tensor_data(flat, backing, index), static_cast<std::size_t>(m_tensors[index].size()));
  }

  matrix_view tensor_matrix(const flat_view& flat, const std::vector<Backing>& backing, const std::string& name) const {
    const auto index = index_of(name);
    const auto& t = m_tensors[index];
    require_argument(t.local_shape.size() == 2, "trident::ParameterStore: '", t.name, "' is not a matrix");
    return matrix_view(tensor_data(flat, backing, index), static_cast<std::size_t>(t.local_shape[0]),
                       static_cast<std::size_t>(t.local_shape[1]));
  }

  std::size_t index_of(const std::string& name) const {
    auto it = m_index.find(name);
    if (it == m_index.end()) throw InvalidArgument("trident::ParameterStore: no parameter named '" + name + "'");
    return it->second;
  }

  std::vector<ParameterInfo> m_tensors;
  std::unordered_map<std::string, std::size_t> m_index;
  std::int64_t m_size = 0;
  flat_view m_values, m_grads;
  std::vector<Backing> m_value_backing, m_grad_backing;  // empty, or one entry per tensor
};

}  // namespace trident
