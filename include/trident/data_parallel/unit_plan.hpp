#pragma once
// How a model's parameters group into the units its hooks name (GPT-2: embedding, blocks,
// head). A unit OWNS the tensors whose gradients its backward finishes; they must be
// contiguous in store order, so a unit's gradients are one range of the flat buffer. A unit
// may also READ tensors it does not own (a tied head reads its embedding's table).
// Forward visits units 0, 1, ..., U-1 and backward U-1, ..., 0.

#include <trident/core/error.hpp>
#include <trident/core/parameter_store.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace trident::data_parallel {

// Tensors [first, last) of a store, which occupy the flat range [begin, end).
struct TensorRange {
  std::size_t first = 0, last = 0;
  std::int64_t begin = 0, end = 0;

  bool empty() const { return first == last; }
  std::int64_t size() const { return end - begin; }
};

class UnitPlan {
 public:
  UnitPlan() = default;

  // `unit_of(name)` gives the unit owning each tensor, in [0, unit_count); `extra_reads` lists
  // (unit, tensor name) pairs of tensors a unit reads beyond those it owns.
  template <class Scalar, class MemorySpace, class UnitOf>
  UnitPlan(const ParameterStore<Scalar, MemorySpace>& store, int unit_count, UnitOf&& unit_of,
           const std::vector<std::pair<int, std::string>>& extra_reads = {})
      : m_owned(static_cast<std::size_t>(unit_count)), m_reads(static_cast<std::size_t>(unit_count)) {
    const char* op = "trident::data_parallel::UnitPlan";
    require_argument(unit_count >= 1, op, ": a model needs at least one unit, got ", unit_count);
    const auto& tensors = store.tensors();
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const int unit = unit_of(tensors[i].name);
      require_argument(unit >= 0 && unit < unit_count, op, ": tensor '", tensors[i].name, "' is in unit ", unit,
                       ", outside [0, ", unit_count, ")");
      auto& own = m_owned[static_cast<std::size_t>(unit)];
      if (own.empty()) {
        own = {i, i, tensors[i].offset, tensors[i].offset};
      } else {
        require_argument(own.last == i, op, ": the tensors of unit ", unit, " are not contiguous in the store ('",
                         tensors[i].name, "' follows '", tensors[i - 1].name, "' of another unit)");
      }
      own.last = i + 1;
      own.end = tensors[i].offset + tensors[i].size();
      m_unit_of_tensor.push_back(unit);
    }
    for (int u = 0; u < unit_count; ++u)
      if (!owned(u).empty()) m_reads[static_cast<std::size_t>(u)].push_back(owned(u));
    for (const auto& [unit, name] : extra_reads) {
      require_argument(unit >= 0 && unit < unit_count, op, ": unit ", unit, " reading '", name, "' is outside [0, ",
                       unit_count, ")");
      require_argument(store.contains(name), op, ": unit ", unit, " reads '", name, "', which the store lacks");
      const auto& t = store.info(name);
      std::size_t index = 0;
      while (tensors[index].name != name) ++index;
      m_reads[static_cast<std::size_t>(unit)].push_back({index, index + 1, t.offset, t.offset + t.size()});
    }
  }

  int unit_count() const { return static_cast<int>(m_owned.size()); }
  // The tensors whose gradients the unit's backward finishes (empty for a unit without any).
  const TensorRange& owned(int unit) const { return m_owned[static_cast<std::size_t>(unit)]; }
  // What the unit's forward and backward read: its own range first, then the extra tensors.
  const std::vector<TensorRange>& reads(int unit) const { return m_reads[static_cast<std::size_t>(unit)]; }
  int unit_of_tensor(std::size_t tensor) const { return m_unit_of_tensor[tensor]; }

 private:
  std::vector<TensorRange> m_owned;
  std::vector<std::vector<TensorRange>> m_reads;
  std::vector<int> m_unit_of_tensor;
};

}  // namespace trident::data_parallel
