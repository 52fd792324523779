#pragma once
// A tensor used by two stages, a tied table: the first stage embeds with it and the last stage
// uses it as the output head. Each stage holds its own copy, equal at the start; after the
// step's backward the two gradients are summed and both copies get the sum, so the optimizer
// updates them identically and they stay equal, bit for bit.

#include <trident/comm/allreduce.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/core/error.hpp>
#include <trident/core/profiling.hpp>
#include <trident/ops/residual.hpp>

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <vector>

namespace trident::pipeline {

class TiedGradients {
 public:
  // Collective over `pp`: the ranks `first_rank` and `last_rank` hold the copies (the same
  // rank when p = 1).
  TiedGradients(const comm::Communicator& pp, int first_rank, int last_rank) : m_first(first_rank), m_last(last_rank) {
    require_argument(first_rank >= 0 && first_rank < pp.size() && last_rank >= 0 && last_rank < pp.size(),
                     "trident::pipeline::TiedGradients: ranks ", first_rank, " and ", last_rank,
                     " are not both ranks of the pipeline communicator '", pp.name(), "' of size ", pp.size());
    m_holds = pp.rank() == first_rank || pp.rank() == last_rank;
    // Every rank takes part in the split; only the two holders use the result.
    m_pair = pp.split(m_holds ? 0 : 1, pp.rank() == first_rank ? 0 : 1, "pp-tied");
  }

  bool holds() const { return m_holds; }

  // Every rank that holds copies passes them, all (1 or 2 on this rank) of the same shape; the
  // others may skip the call. Afterwards each copy holds the sum over all copies.
  template <class ExecutionSpace, class View>
  void sum(const ExecutionSpace& space, const std::vector<View>& copies) const {
    ScopedRegion region("trident::pipeline::TiedGradients::sum");
    if (!m_holds) return;
    const std::size_t expected = m_first == m_last ? 2 : 1;
    require_argument(copies.size() == expected || (m_first == m_last && copies.size() == 1),
                     "trident::pipeline::TiedGradients::sum: this rank holds ", expected, " copies, got ",
                     copies.size());
    for (const auto& copy : copies)
      require_argument(copy.size() == copies[0].size(), "trident::pipeline::TiedGradients::sum: copies of ",
                       copies[0].size(), " and ", copy.size(), " elements");
    for (std::size_t i = 1; i < copies.size(); ++i) ops::add_inplace(space, copies[0], copies[i]);
    if (m_first != m_last) comm::allreduce(space, m_pair, copies[0], comm::ReduceOp::sum);
    for (std::size_t i = 1; i < copies.size(); ++i) Kokkos::deep_copy(space, copies[i], copies[0]);
  }

 private:
  int m_first, m_last;
  bool m_holds = false;
  comm::Communicator m_pair;  // the two holders (meaningless on the other ranks)
};

}  // namespace trident::pipeline
