#pragma once
// Gradients reduced in a 16-bit type (GradientPrecision bf16 or fp16): a range of the
// gradients is rounded into a buffer of its own, reduced there (an all-reduce in place, or a
// reduce-scatter into a second buffer), and, once the reduction has finished, widened back
// into the gradients or added onto them. The buffers are on the ledger as communication.

#include <trident/comm/allreduce.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/comm/hierarchical_allreduce.hpp>
#include <trident/comm/reduce_scatter.hpp>
#include <trident/comm/request.hpp>
#include <trident/core/error.hpp>
#include <trident/core/half_precision.hpp>
#include <trident/core/memory_accounting.hpp>
#include <trident/data_parallel/settings.hpp>
#include <trident/ops/convert.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

namespace trident::data_parallel {

template <class ExecutionSpace>
class PackedGradients {
 public:
  using memory_space = typename ExecutionSpace::memory_space;

  PackedGradients() = default;
  // Rounds `gradients` (rank 1) to `precision`, which must be bf16 or fp16.
  template <class View>
  PackedGradients(const ExecutionSpace& space, GradientPrecision precision, const View& gradients, MemoryLedger& ledger)
      : m_space(space), m_ledger(&ledger) {
    if (precision == GradientPrecision::bf16) {
      m_buffers = pack<bfloat16>(gradients);
    } else {
      require_argument(precision == GradientPrecision::fp16,
                       "trident::data_parallel::PackedGradients: ", gradient_precision_name(precision),
                       " gradients are reduced as they are");
      m_buffers = pack<float16>(gradients);
    }
  }

  // Posts the sum over `group` (a Communicator, or NodeGroups for two levels), in place.
  template <class Group>
  [[nodiscard]] comm::Request allreduce(const Group& group) {
    return std::visit(
        [&](auto& buffers) -> comm::Request {
          if constexpr (has_buffers<decltype(buffers)>) {
            return comm::iallreduce(m_space, group, buffers.sent.view());
          } else {
            return {};
          }
        },
        m_buffers);
  }

  // Posts the reduce-scatter: rank r receives the sum of its counts[r] elements.
  [[nodiscard]] comm::Request reduce_scatter(const comm::Communicator& comm, const std::vector<int>& counts) {
    return std::visit(
        [&](auto& buffers) -> comm::Request {
          if constexpr (has_buffers<decltype(buffers)>) {
            using view = std::decay_t<decltype(buffers.sent.view())>;
            buffers.received = TrackedView<view>(
                *m_ledger, MemoryCategory::communication,
                view(Kokkos::view_alloc(Kokkos::WithoutInitializing, "trident::data_parallel::packed_reduced"),
                     static_cast<std::size_t>(counts[static_cast<std::size_t>(comm.rank())])));
            m_scattered = true;
            return comm::ireduce_scatter_v(m_space, comm, buffers.sent.view(), buffers.received.view(), counts);
          } else {
            return {};
          }
        },
        m_buffers);
  }

  // Whether it holds gradients (not yet unpacked).
  bool packed() const { return m_buffers.index() != 0; }

  // Once the reduction has finished: target = (or +=) the reduced values, this rank's part
  // after a reduce-scatter. Then the buffers go.
  template <class Target>
  void copy_into(const Target& target) {
    unpack<false>(target);
  }
  template <class Target>
  void add_into(const Target& target) {
    unpack<true>(target);
  }

 private:
  template <class Half>
  struct Buffers {
    using view = Kokkos::View<Half*, memory_space>;
    TrackedView<view> sent, received;  // received: a reduce-scatter's part
  };
  template <class B>
  static constexpr bool has_buffers = !std::is_same<std::decay_t<B>, std::monostate>::value;

  template <class Half, class View>
  Buffers<Half> pack(const View& gradients) {
    using view = typename Buffers<Half>::view;
    Buffers<Half> buffers;
    buffers.sent = TrackedView<view>(
        *m_ledger, MemoryCategory::communication,
        view(Kokkos::view_alloc(Kokkos::WithoutInitializing, "trident::data_parallel::packed_gradients"),
             gradients.extent(0)));
    ops::convert(m_space, buffers.sent.view(), gradients);
    return buffers;
  }

  template <bool Add, class Target>
  void unpack(const Target& target) {
    std::visit(
        [&](auto& buffers) {
          if constexpr (has_buffers<decltype(buffers)>) {
            const auto& reduced = m_scattered ? buffers.received.view() : buffers.sent.view();
            if constexpr (Add) {
              ops::add_converted(m_space, target, reduced);
            } else {
              ops::convert(m_space, target, reduced);
            }
          }
        },
        m_buffers);
    m_buffers = std::monostate();
  }

  ExecutionSpace m_space;
  MemoryLedger* m_ledger = nullptr;
  bool m_scattered = false;
  std::variant<std::monostate, Buffers<bfloat16>, Buffers<float16>> m_buffers;
};

}  // namespace trident::data_parallel
