#pragma once
// The debug consistency check: before a collective, the ranks exchange a fingerprint of the
// call they are about to make (kind, element count and type, root, reduction, and the
// communicator's call number). If any rank differs, every rank throws the same trident::Error
// naming both calls, so a desynchronised program fails with a message instead of hanging or
// silently reducing the wrong buffers.

#include <trident/comm/mpi_datatype.hpp>
#include <trident/comm/reduce_op.hpp>
#include <trident/comm/statistics.hpp>
#include <trident/comm/watchdog.hpp>
#include <trident/core/error.hpp>

#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace trident {
namespace comm {

// Fixed-size and all 64-bit, so ranks compare it as plain bytes-on-the-wire without padding.
struct Fingerprint {
  std::int64_t sequence = 0;  // 1 for the communicator's first collective, 2 for the next, ...
  std::int64_t operation = 0;
  std::int64_t element_type = 0;
  std::int64_t count = 0;
  std::int64_t root = -1;       // broadcast only
  std::int64_t reduce_op = -1;  // reductions only

  friend bool operator==(const Fingerprint& a, const Fingerprint& b) {
    return a.sequence == b.sequence && a.operation == b.operation && a.element_type == b.element_type &&
           a.count == b.count && a.root == b.root && a.reduce_op == b.reduce_op;
  }
  friend bool operator!=(const Fingerprint& a, const Fingerprint& b) { return !(a == b); }
};

inline Fingerprint make_fingerprint(Operation operation, ElementType type, std::int64_t count, int root = -1) {
  Fingerprint fingerprint;
  fingerprint.operation = static_cast<std::int64_t>(operation);
  fingerprint.element_type = static_cast<std::int64_t>(type);
  fingerprint.count = count;
  fingerprint.root = root;
  return fingerprint;
}

inline Fingerprint make_fingerprint(Operation operation, ElementType type, std::int64_t count, ReduceOp op) {
  Fingerprint fingerprint = make_fingerprint(operation, type, count);
  fingerprint.reduce_op = static_cast<std::int64_t>(op);
  return fingerprint;
}

// "allreduce(12 x float, sum)", "broadcast(5 x int32, root 0)", "barrier()".
inline std::string describe(const Fingerprint& fingerprint) {
  std::string text = operation_name(static_cast<Operation>(fingerprint.operation));
  text += "(";
  if (static_cast<ElementType>(fingerprint.element_type) != ElementType::none) {
    text += std::to_string(fingerprint.count) + " x " +
            element_type_name(static_cast<ElementType>(fingerprint.element_type));
  }
  if (fingerprint.reduce_op >= 0)
    text += std::string(", ") + reduce_op_name(static_cast<ReduceOp>(fingerprint.reduce_op));
  if (fingerprint.root >= 0) text += ", root " + std::to_string(fingerprint.root);
  return text + ")";
}

namespace Impl {

// The message every rank throws when fingerprints `a` (on rank_a) and `b` (on rank_b) differ.
inline std::string mismatch_message(const std::string& communicator_name, const Fingerprint& a, int rank_a,
                                    const Fingerprint& b, int rank_b) {
  const std::string where = "trident::comm: collective mismatch on communicator '" + communicator_name + "'";
  if (a.sequence == b.sequence) {
    return where + " at call #" + std::to_string(a.sequence) + ": rank " + std::to_string(rank_a) + " called " +
           describe(a) + " but rank " + std::to_string(rank_b) + " called " + describe(b);
  }
  return where + ": rank " + std::to_string(rank_a) + " called " + describe(a) + " as call #" +
         std::to_string(a.sequence) + " but rank " + std::to_string(rank_b) + " called " + describe(b) + " as call #" +
         std::to_string(b.sequence);
}

// Collective over `comm`: throws the same trident::Error on every rank when any rank's
// fingerprint differs from rank 0's.
inline void verify_fingerprints(MPI_Comm comm, const std::string& communicator_name, const Fingerprint& mine) {
  int size = 0;
  MPI_Comm_size(comm, &size);
  std::vector<Fingerprint> all(static_cast<std::size_t>(size));
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  const WaitGuard guard(WaitLabel{"trident::comm consistency check", communicator_name, mine.sequence, -1, -1, rank});
  const int result = MPI_Allgather(&mine, static_cast<int>(sizeof(Fingerprint)), MPI_BYTE, all.data(),
                                   static_cast<int>(sizeof(Fingerprint)), MPI_BYTE, comm);
  require(result == MPI_SUCCESS, "trident::comm: the consistency check's exchange on communicator '", communicator_name,
          "' failed with MPI error ", result);
  for (int other_rank = 1; other_rank < size; ++other_rank) {
    const auto& other = all[static_cast<std::size_t>(other_rank)];
    if (other != all[0]) throw Error(mismatch_message(communicator_name, all[0], 0, other, other_rank));
  }
}

}  // namespace Impl
}  // namespace comm
}  // namespace trident
