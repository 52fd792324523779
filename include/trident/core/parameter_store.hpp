#pragma once
// A model's parameters as one flat allocation with named slices (as llm.c does): optimizers,
// gradient buckets and ZeRO shards work on contiguous ranges, while checkpoints, clipping
// and initialisation see named tensors with their global shapes.

#include <trident/core/error.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace trident {

struct ParameterInfo {
  std::string name;                        // global name, e.g. "h.0.attn.c_attn.weight"
  std::vector<std::int64_t> global_shape;  // shape of the one-rank tensor
  std::vector<std::int64_t> local_shape;   // shape held by this rank
  std::int64_t offset = 0;                 // first element in the flat buffer
  bool weight_decay = false;               // AdamW decays matrices and embeddings only
  // True when every rank of the tensor-parallel group holds the same values (LayerNorm,
  // row-parallel biases): the global gradient norm must count it once, not tp times.
  bool replicated = true;

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

  // Declare a tensor; call allocate() once all are declared.
  void declare(std::string name, std::vector<std::int64_t> global_shape, std::vector<std::int64_t> local_shape,
               bool weight_decay, bool replicated = true) {
    require_argument(!m_values.data(), "trident::ParameterStore::declare: '", name, "' declared after allocate()");
    require_argument(m_index.count(name) == 0, "trident::ParameterStore::declare: '", name, "' declared twice");
    require_argument(local_shape.size() == global_shape.size() && !local_shape.empty() && local_shape.size() <= 2,
                     "trident::ParameterStore::declare: '", name, "' must be rank 1 or 2");
    ParameterInfo info{std::move(name), std::move(global_shape), std::move(local_shape), m_size, weight_decay,
                       replicated};
    m_size += info.size();
    m_index.emplace(info.name, m_tensors.size());
    m_tensors.push_back(std::move(info));
  }

  void declare(const std::string& name, const std::vector<std::int64_t>& shape, bool weight_decay) {
    declare(name, shape, shape, weight_decay, true);
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

  vector_view vector(const std::string& name) const { return vector_of(m_values, info(name)); }
  matrix_view matrix(const std::string& name) const { return matrix_of(m_values, info(name)); }
  vector_view grad_vector(const std::string& name) const { return vector_of(m_grads, info(name)); }
  matrix_view grad_matrix(const std::string& name) const { return matrix_of(m_grads, info(name)); }

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
  std::size_t index_of(const std::string& name) const {
    auto it = m_index.find(name);
    if (it == m_index.end()) throw InvalidArgument("trident::ParameterStore: no parameter named '" + name + "'");
    return it->second;
  }

  std::vector<ParameterInfo> m_tensors;
  std::unordered_map<std::string, std::size_t> m_index;
  std::int64_t m_size = 0;
  flat_view m_values, m_grads;
};

}  // namespace trident
