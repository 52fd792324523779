#pragma once
// Turning a View of any rank, layout and memory space into the one contiguous buffer MPI
// reads or writes. The elements travel in row-major (LayoutRight) order of the View's
// indices, whatever its layout:
//   - a View whose elements already lie in that order goes to MPI as it is, with no copy;
//   - any other View (a strided subview, a LayoutLeft matrix) is packed by a deep copy into a
//     contiguous LayoutRight temporary in the same memory space, and unpacked afterwards;
//   - memory that MPI cannot read (device memory with an MPI that is not GPU-aware, or any
//     memory when the communicator forces host staging) is copied through a host buffer,
//     pinned where the backend allows and reused from a pool.
// A ViewBuffer owns those temporaries; a Request keeps it alive until the transfer completes.

#include <trident/comm/communicator.hpp>
#include <trident/comm/gpu_aware.hpp>
#include <trident/comm/mpi_datatype.hpp>
#include <trident/comm/staging_pool.hpp>
#include <trident/core/compat.hpp>
#include <trident/core/error.hpp>

#include <Kokkos_Core.hpp>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

namespace trident {
namespace comm {
namespace Impl {

// Compile-time requirements on every (execution space, View) pair handed to trident::comm.
template <class ExecutionSpace, class ViewType>
constexpr void check_view_types() {
  static_assert(Kokkos::is_execution_space<ExecutionSpace>::value,
                "trident::comm: the first argument must be a Kokkos execution space");
  static_assert(Kokkos::is_view<ViewType>::value, "trident::comm: buffers must be Kokkos::Views");
  static_assert(Kokkos::SpaceAccessibility<ExecutionSpace, typename ViewType::memory_space>::accessible,
                "trident::comm: the execution space cannot access the view's memory");
  static_assert(is_supported_element_v<typename ViewType::non_const_value_type>,
                "trident::comm: this element type has no MPI datatype (use float, double or an 8- to 64-bit integer)");
}

template <class ViewType>
constexpr void check_writable() {
  static_assert(!std::is_const<typename ViewType::value_type>::value,
                "trident::comm: a view that receives data must have non-const elements");
}

// An operation that reads SendView and writes RecvView of the same element type.
template <class ExecutionSpace, class SendView, class RecvView>
constexpr void check_send_recv_types() {
  check_view_types<ExecutionSpace, SendView>();
  check_view_types<ExecutionSpace, RecvView>();
  check_writable<RecvView>();
  static_assert(std::is_same<typename SendView::non_const_value_type, typename RecvView::non_const_value_type>::value,
                "trident::comm: send and recv must hold the same element type");
}

// The element count MPI is given (an int), checked before any MPI call.
template <class ViewType>
int element_count(const char* operation, const char* role, const ViewType& view) {
  require_argument(view.size() <= static_cast<std::size_t>(INT_MAX), operation, ": ", role, " has ", view.size(),
                   " elements, more than an MPI count can hold (", INT_MAX, ")");
  if (view.size() != 0 && view.data() == nullptr) {  // label() builds a string: only on failure
    throw InvalidArgument(detail::concat(operation, ": ", role, " view '", view.label(), "' has ", view.size(),
                                         " elements but no memory"));
  }
  return static_cast<int>(view.size());
}

// Whether the View's elements lie in memory exactly in row-major order of its indices.
template <class ViewType>
bool is_row_major_contiguous(const ViewType& view) {
  std::size_t expected_stride = 1;
  for (int r = static_cast<int>(ViewType::rank) - 1; r >= 0; --r) {
    if (view.extent(r) == 1) continue;  // a length-1 dimension's stride never matters
    if (view.stride(r) != expected_stride) return false;
    expected_stride *= view.extent(r);
  }
  return true;
}

// Out-of-place operations must not read and write the same memory (MPI forbids aliasing).
template <class ViewA, class ViewB>
void require_disjoint(const char* operation, const ViewA& send, const ViewB& recv) {
  if (send.size() == 0 || recv.size() == 0) return;
  const auto* send_begin = reinterpret_cast<const char*>(send.data());
  const auto* recv_begin = reinterpret_cast<const char*>(recv.data());
  const auto* send_end = send_begin + send.span() * sizeof(typename ViewA::value_type);
  const auto* recv_end = recv_begin + recv.span() * sizeof(typename ViewB::value_type);
  require_argument(send_end <= recv_begin || recv_end <= send_begin, operation,
                   ": send and recv share memory; use the in-place form");
}

template <class T, int Rank>
struct DynamicRank {
  using type = typename DynamicRank<T*, Rank - 1>::type;
};
template <class T>
struct DynamicRank<T, 0> {
  using type = T;
};

enum class Direction { send, receive, send_receive };

// Whether a buffer may be copied through host memory: by the communicator's transport (for
// MPI), or never (for a device library that reads device memory itself).
enum class Staging { by_transport, never };

template <class ExecutionSpace, class ViewType>
class ViewBuffer {
 public:
  using value_type = typename ViewType::non_const_value_type;
  using memory_space = typename ViewType::memory_space;
  static constexpr int rank = static_cast<int>(ViewType::rank);

  // Packs and stages as needed (on `space`, not yet fenced) and counts the copies in the
  // communicator's statistics. `operation` names the temporaries.
  ViewBuffer(const ExecutionSpace& space, const Communicator& comm, const ViewType& view, Direction direction,
             const char* operation, Staging staging)
      : m_space(space), m_view(view), m_direction(direction) {
    const std::size_t count = view.size();
    const auto bytes = static_cast<std::int64_t>(count * sizeof(value_type));
    const int copies_per_buffer = direction == Direction::send_receive ? 2 : 1;
    auto& stats = CommunicatorAccess::stats(comm);
    value_type* contiguous = const_cast<value_type*>(view.data());
    if (!is_row_major_contiguous(view)) {
      m_packed = make_packed(std::string(operation) + "::packed", std::make_index_sequence<rank>());
      if (direction != Direction::receive) Kokkos::deep_copy(space, m_packed, view);
      contiguous = m_packed.data();
      m_is_packed = true;
      stats.record_packing(copies_per_buffer * bytes);
    }
    m_contiguous = Contiguous(contiguous, count);
    if (staging == Staging::by_transport && use_host_staging<memory_space>(comm.transport())) {
      m_staging = StagingPool::instance().acquire(count * sizeof(value_type));
      m_host = Host(reinterpret_cast<value_type*>(m_staging.data()), count);
      if (direction != Direction::receive) Kokkos::deep_copy(space, m_host, m_contiguous);
      m_is_staged = true;
      stats.record_staging(copies_per_buffer * bytes);
    }
  }

  // The pointer handed to MPI (or the device library).
  void* data() const { return m_is_staged ? static_cast<void*>(m_host.data()) : m_contiguous.data(); }

  // After MPI wrote the buffer: copies the result back into the View (host staging buffer to
  // the View's memory, then unpacking) and fences, so the View holds it and the temporaries
  // may be freed.
  void finish() const {
    if (m_direction == Direction::send) return;
    if constexpr (!std::is_const<typename ViewType::value_type>::value) {
      if (m_is_staged) Kokkos::deep_copy(m_space, m_contiguous, m_host);
      if (m_is_packed) Kokkos::deep_copy(m_space, m_view, m_packed);
      static const std::string label = "trident::comm::fence_after_copy_back";
      if (m_is_staged || m_is_packed) compat::fence(m_space, label);
    }
  }

 private:
  using Packed = Kokkos::View<typename DynamicRank<value_type, rank>::type, Kokkos::LayoutRight, memory_space>;
  using Contiguous = Kokkos::View<value_type*, memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  using Host = Kokkos::View<value_type*, compat::HostPinnedSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;

  template <std::size_t... Dims>
  Packed make_packed(const std::string& label, std::index_sequence<Dims...>) const {
    return Packed(Kokkos::view_alloc(Kokkos::WithoutInitializing, label), m_view.extent(Dims)...);
  }

  ExecutionSpace m_space;
  ViewType m_view;
  Direction m_direction;
  Packed m_packed;                // empty unless the View is not row-major contiguous
  Contiguous m_contiguous;        // the View's elements in row-major order, in its memory space
  StagingPool::Buffer m_staging;  // held from the pool while the transfer needs it
  Host m_host;                    // empty unless staged through the host: m_staging's bytes
  bool m_is_packed = false;
  bool m_is_staged = false;
};

template <class ExecutionSpace, class ViewType>
ViewBuffer<ExecutionSpace, ViewType> make_buffer(const ExecutionSpace& space, const Communicator& comm,
                                                 const ViewType& view, Direction direction, const char* operation,
                                                 Staging staging = Staging::by_transport) {
  return ViewBuffer<ExecutionSpace, ViewType>(space, comm, view, direction, operation, staging);
}

// Kernels that wrote the send views, and the packing and staging copies, must be done before
// MPI reads the memory. (The enclosing profiling region names the operation; one static label
// keeps small messages free of string building.)
template <class ExecutionSpace>
void fence_before_mpi(const ExecutionSpace& space) {
  static const std::string label = "trident::comm::fence_before_mpi";
  compat::fence(space, label);
}

}  // namespace Impl
}  // namespace comm
}  // namespace trident
