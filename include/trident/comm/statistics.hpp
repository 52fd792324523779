#pragma once
// Exact traffic counters of one communicator. Later layers prove their communication volume
// with them (a ZeRO step reduce-scatters exactly the gradient bytes, ...), so every operation
// records one call and a payload size defined per kind:
//   barrier           0 bytes
//   allreduce         the view's bytes
//   allgather(v)      the bytes of the gathered result (every rank's block, this rank's included)
//   reduce_scatter(v) the bytes of the send view (every rank's block, this rank's included)
//   broadcast         the view's bytes, on the root and on the receivers
//   alltoall          the bytes of the send view
//   send / recv       the bytes sent / received (sendrecv records one of each)
// Nonblocking variants record the kind of their blocking twin when they are posted.
// Beside the payload, the copies that made it reach MPI: bytes packed into or unpacked from
// contiguous temporaries (non-contiguous views) and bytes copied to or from host staging
// buffers (device memory with an MPI that cannot read it).

#include <array>
#include <cstdint>

namespace trident {
namespace comm {

enum class Operation : int {
  barrier,
  allreduce,
  allgather,
  allgatherv,
  reduce_scatter,
  reduce_scatter_v,
  broadcast,
  alltoall,
  send,
  recv
};
inline constexpr int operation_count = 10;

inline const char* operation_name(Operation operation) {
  switch (operation) {
    case Operation::barrier:
      return "barrier";
    case Operation::allreduce:
      return "allreduce";
    case Operation::allgather:
      return "allgather";
    case Operation::allgatherv:
      return "allgatherv";
    case Operation::reduce_scatter:
      return "reduce_scatter";
    case Operation::reduce_scatter_v:
      return "reduce_scatter_v";
    case Operation::broadcast:
      return "broadcast";
    case Operation::alltoall:
      return "alltoall";
    case Operation::send:
      return "send";
    case Operation::recv:
      return "recv";
  }
  return "unknown";
}

struct Traffic {
  std::int64_t calls = 0;
  std::int64_t bytes = 0;
};

class TrafficStatistics {
 public:
  const Traffic& operator[](Operation operation) const { return m_traffic[static_cast<std::size_t>(operation)]; }

  std::int64_t total_calls() const {
    std::int64_t calls = 0;
    for (const auto& traffic : m_traffic) calls += traffic.calls;
    return calls;
  }
  std::int64_t total_bytes() const {
    std::int64_t bytes = 0;
    for (const auto& traffic : m_traffic) bytes += traffic.bytes;
    return bytes;
  }
  std::int64_t packed_bytes() const { return m_packed_bytes; }
  std::int64_t staged_bytes() const { return m_staged_bytes; }

  void record(Operation operation, std::int64_t bytes) {
    auto& traffic = m_traffic[static_cast<std::size_t>(operation)];
    ++traffic.calls;
    traffic.bytes += bytes;
  }
  void record_packing(std::int64_t bytes) { m_packed_bytes += bytes; }
  void record_staging(std::int64_t bytes) { m_staged_bytes += bytes; }
  void reset() { *this = TrafficStatistics(); }

 private:
  std::array<Traffic, operation_count> m_traffic{};
  std::int64_t m_packed_bytes = 0;
  std::int64_t m_staged_bytes = 0;
};

}  // namespace comm
}  // namespace trident
