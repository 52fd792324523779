#pragma once
// AdamW on one contiguous range [begin, end) of the flat parameter buffer: the moments of a
// ZeRO shard (or, for plain data parallelism, of the whole buffer). The range may cut through
// tensors; each piece is updated with its tensor's weight decay, so the result is the
// one-rank AdamW's, element for element. The pieces are fixed with the store, so their
// chunks are made once and each step is one launch.

#include <trident/core/memory_accounting.hpp>
#include <trident/core/parameter_store.hpp>
#include <trident/core/profiling.hpp>
#include <trident/optim/adamw.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <vector>

namespace trident::data_parallel {

template <class Scalar, class MemorySpace>
class ShardedAdamW {
 public:
  using flat_view = Kokkos::View<Scalar*, Kokkos::LayoutRight, MemorySpace>;

  ShardedAdamW(const std::vector<ParameterInfo>& tensors, std::int64_t begin, std::int64_t end,
               optim::AdamWSettings settings, MemoryLedger& ledger)
      : m_begin(begin),
        m_end(end),
        m_settings(settings),
        m_chunks(tensors, begin, end),
        m_exp_avg(ledger, MemoryCategory::optimizer_state,
                  flat_view("trident::data_parallel::exp_avg", static_cast<std::size_t>(end - begin))),
        m_exp_avg_sq(ledger, MemoryCategory::optimizer_state,
                     flat_view("trident::data_parallel::exp_avg_sq", static_cast<std::size_t>(end - begin))) {}

  std::int64_t begin() const { return m_begin; }
  std::int64_t end() const { return m_end; }
  const optim::AdamWSettings& settings() const { return m_settings; }
  // Moments of elements [begin, end) of the flat buffer.
  const flat_view& exp_avg() const { return m_exp_avg.view(); }
  const flat_view& exp_avg_sq() const { return m_exp_avg_sq.view(); }

  // Step `step` (from 1): `values` and `grads` hold elements [begin, end) of the flat buffer.
  template <class ExecutionSpace, class ValueView, class GradView>
  void step(const ExecutionSpace& space, const ValueView& values, const GradView& grads, std::int64_t step, double lr) {
    ScopedRegion region("trident::data_parallel::adamw");
    optim::adamw_update(space, values, grads, exp_avg(), exp_avg_sq(), m_chunks, m_settings, step, lr);
  }

 private:
  std::int64_t m_begin, m_end;
  optim::AdamWSettings m_settings;
  optim::AdamWChunks<MemorySpace> m_chunks;
  TrackedView<flat_view> m_exp_avg, m_exp_avg_sq;
};

}  // namespace trident::data_parallel
