#pragma once
// Host buffers for staging device memory through the host. They are pinned (page-locked)
// where the backend offers it, so the device-to-host copies run at full bus speed; pinned
// allocations are slow, so buffers are kept and reused: a buffer is free again as soon as the
// last transfer holding it lets go (its reference count drops back to the pool's own).

#include <trident/core/compat.hpp>

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <string>
#include <vector>

namespace trident {
namespace comm {
namespace Impl {

class StagingPool {
 public:
  using Buffer = Kokkos::View<char*, compat::HostPinnedSpace>;

  // At most this many buffers are kept; more at once are allocated and freed per transfer.
  static constexpr std::size_t max_buffers = 16;

  // The process-wide pool, emptied when Kokkos finalizes (Views must not outlive it).
  static StagingPool& instance() {
    static StagingPool* pool = [] {
      auto* created = new StagingPool();
      Kokkos::push_finalize_hook([created] { created->m_buffers.clear(); });
      return created;
    }();
    return *pool;
  }

  // A buffer of at least `bytes` bytes that no transfer in flight holds. Not thread-safe: MPI
  // calls are made from one thread.
  Buffer acquire(std::size_t bytes) {
    Buffer* smallest_free = nullptr;
    for (auto& buffer : m_buffers) {
      if (buffer.use_count() != 1 || buffer.extent(0) < bytes) continue;
      if (smallest_free == nullptr || buffer.extent(0) < smallest_free->extent(0)) smallest_free = &buffer;
    }
    if (smallest_free != nullptr) return *smallest_free;
    // Round up to a power of two (at least 4 KiB) so that varying sizes reuse buffers.
    std::size_t rounded = 4096;
    while (rounded < bytes) rounded *= 2;
    Buffer buffer(Kokkos::view_alloc(Kokkos::WithoutInitializing, std::string("trident::comm::host_staging")), rounded);
    if (m_buffers.size() < max_buffers) m_buffers.push_back(buffer);
    return buffer;
  }

  std::size_t buffers_kept() const { return m_buffers.size(); }

 private:
  StagingPool() = default;
  std::vector<Buffer> m_buffers;
};

}  // namespace Impl
}  // namespace comm
}  // namespace trident
