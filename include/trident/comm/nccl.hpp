#pragma once
// The NCCL backend (backend.hpp) of a CUDA build configured with TRIDENT_ENABLE_NCCL. A
// communicator whose backend is NCCL makes, on its first collective over device memory, an NCCL
// communicator of the same ranks (rank 0's unique id broadcast through MPI) with a stream of its
// own. Each operation then waits for the work queued on the caller's execution space so far,
// runs on that stream, so that kernels queued afterwards overlap with it, and finishes as the MPI
// one does: a blocking call returns with the result in place, a nonblocking one when its Request
// is waited on. Views in host-accessible memory, element types NCCL lacks (16-bit integers),
// point-to-point transfers and all-to-all stay on MPI.
//
// Every collective asks nccl_may_carry<...>() at compile time and the communicator's backend at
// run time; in a build without NCCL the first is false and nothing below is compiled.

#include <trident/comm/backend.hpp>
#include <trident/comm/block_counts.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/comm/reduce_op.hpp>
#include <trident/comm/request.hpp>
#include <trident/comm/view_buffer.hpp>
#include <trident/core/error.hpp>
#include <trident/core/half_precision.hpp>

#include <Kokkos_Core.hpp>

#if defined(TRIDENT_ENABLE_NCCL)
#if !defined(KOKKOS_ENABLE_CUDA)
#error "TRIDENT_ENABLE_NCCL needs Kokkos built with CUDA"
#endif
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>
#endif

#include <cstddef>
#include <type_traits>

namespace trident {
namespace comm {
namespace Impl {

// Whether NCCL can carry an operation of ExecutionSpace over Views of T in these memory spaces.
template <class ExecutionSpace, class T, class... Views>
constexpr bool nccl_may_carry() {
#if defined(TRIDENT_ENABLE_NCCL)
  constexpr bool type = std::is_same<T, float>::value || std::is_same<T, double>::value || is_half_precision_v<T> ||
                        (std::is_integral<T>::value && !std::is_same<T, bool>::value &&
                         (sizeof(T) == 1 || sizeof(T) == 4 || sizeof(T) == 8));
  return type && std::is_same<ExecutionSpace, Kokkos::Cuda>::value &&
         (!Kokkos::SpaceAccessibility<Kokkos::HostSpace, typename Views::memory_space>::accessible && ...);
#else
  return false;
#endif
}

#if defined(TRIDENT_ENABLE_NCCL)

inline void check_nccl(ncclResult_t result, const char* operation) {
  if (result == ncclSuccess) return;
  throw Error(detail::concat(operation, ": NCCL error ", static_cast<int>(result), ": ", ncclGetErrorString(result)));
}

inline void check_cuda(cudaError_t result, const char* operation) {
  if (result == cudaSuccess) return;
  throw Error(detail::concat(operation, ": CUDA error ", static_cast<int>(result), ": ", cudaGetErrorString(result)));
}

template <class T>
ncclDataType_t nccl_datatype() {
  if constexpr (std::is_same<T, float>::value) {
    return ncclFloat32;
  } else if constexpr (std::is_same<T, double>::value) {
    return ncclFloat64;
  } else if constexpr (std::is_same<T, bfloat16>::value) {
    return ncclBfloat16;
  } else if constexpr (std::is_same<T, float16>::value) {
    return ncclFloat16;
  } else if constexpr (sizeof(T) == 1) {
    return std::is_signed<T>::value ? ncclInt8 : ncclUint8;
  } else if constexpr (sizeof(T) == 4) {
    return std::is_signed<T>::value ? ncclInt32 : ncclUint32;
  } else {
    return std::is_signed<T>::value ? ncclInt64 : ncclUint64;
  }
}

inline ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::max:
      return ncclMax;
    case ReduceOp::min:
      return ncclMin;
    case ReduceOp::sum:
      break;
  }
  return ncclSum;
}

// The first two ranks of `comm` that use one GPU, and which GPU, in words ("" where every rank
// has its own). NCCL cannot join such ranks: it fails with "invalid usage" on every rank, so
// the NCCL communicator names them instead, on every rank, before NCCL is asked.
inline std::string shared_gpu(const Communicator& comm, const char* operation) {
  struct Place {
    char host[MPI_MAX_PROCESSOR_NAME];
    char bus[32];
  };
  Place mine{};
  int length = 0, device = 0;
  check_mpi(MPI_Get_processor_name(mine.host, &length), operation);
  check_cuda(cudaGetDevice(&device), operation);
  check_cuda(cudaDeviceGetPCIBusId(mine.bus, static_cast<int>(sizeof mine.bus), device), operation);
  std::vector<Place> all(static_cast<std::size_t>(comm.size()));
  check_mpi(MPI_Allgather(&mine, static_cast<int>(sizeof mine), MPI_BYTE, all.data(), static_cast<int>(sizeof mine),
                          MPI_BYTE, comm.mpi()),
            operation);
  for (std::size_t i = 0; i < all.size(); ++i)
    for (std::size_t j = i + 1; j < all.size(); ++j)
      if (std::strcmp(all[i].host, all[j].host) == 0 && std::strcmp(all[i].bus, all[j].bus) == 0)
        return detail::concat("ranks ", i, " and ", j, " of ", all.size(), " both use the GPU at PCI ", all[i].bus,
                              " on ", all[i].host);
  return "";
}

// An NCCL communicator over the ranks of an MPI one, and the stream its operations run on.
class NcclCommunicator final : public DeviceCommunicator {
 public:
  explicit NcclCommunicator(const Communicator& comm) {
    const char* operation = "trident::comm: making the NCCL communicator";
    // Rank 0's result travels with the id, so a failure there is an error on every rank, not a
    // hang in the broadcast.
    struct {
      int result = ncclSuccess;
      ncclUniqueId id{};
    } root;
    if (comm.rank() == 0) root.result = ncclGetUniqueId(&root.id);
    check_mpi(MPI_Bcast(&root, static_cast<int>(sizeof root), MPI_BYTE, 0, comm.mpi()), operation);
    check_nccl(static_cast<ncclResult_t>(root.result), operation);
    const std::string shared = shared_gpu(comm, operation);
    if (!shared.empty())
      throw Error(detail::concat(operation, ": ", shared,
                                 "; NCCL needs a GPU of its own for every rank (give each rank its own device, or use "
                                 "the MPI backend)"));
    check_nccl(ncclCommInitRank(&m_comm, comm.size(), root.id, comm.rank()), operation);
    const cudaError_t created = cudaStreamCreateWithFlags(&m_stream, cudaStreamNonBlocking);
    if (created != cudaSuccess) ncclCommDestroy(m_comm);
    check_cuda(created, operation);
  }
  ~NcclCommunicator() override {
    cudaStreamDestroy(m_stream);
    ncclCommDestroy(m_comm);
  }

  ncclComm_t get() const { return m_comm; }
  cudaStream_t stream() const { return m_stream; }

 private:
  ncclComm_t m_comm = nullptr;
  cudaStream_t m_stream = nullptr;
};

class CudaEvent {
 public:
  CudaEvent() { check_cuda(cudaEventCreateWithFlags(&m_event, cudaEventDisableTiming), "trident::comm: cudaEvent"); }
  ~CudaEvent() { cudaEventDestroy(m_event); }
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  cudaEvent_t get() const { return m_event; }

 private:
  cudaEvent_t m_event = nullptr;
};

// `comm`'s NCCL communicator, made on first use (a collective call, so every rank makes it).
inline NcclCommunicator& nccl_communicator(const Communicator& comm) {
  auto& device = CommunicatorAccess::device(comm);
  if (!device) device = std::make_shared<NcclCommunicator>(comm);
  return static_cast<NcclCommunicator&>(*device);  // NCCL is the only device backend
}

// Queues `enqueue(nccl_comm, stream)` behind the work queued on `space`, then finishes it like
// an MPI call: `finish` (copying results out of packed temporaries, which it also keeps alive)
// runs once NCCL is done, before a blocking call returns or when the Request is waited on.
template <class Enqueue, class Finish>
Request run_on_nccl(Mode mode, const Kokkos::Cuda& space, const Communicator& comm, const char* name,
                    const Enqueue& enqueue, Finish finish) {
  NcclCommunicator& nccl = nccl_communicator(comm);
  const CudaEvent inputs_written;
  auto done = std::make_shared<CudaEvent>();
  check_cuda(cudaEventRecord(inputs_written.get(), space.cuda_stream()), name);
  check_cuda(cudaStreamWaitEvent(nccl.stream(), inputs_written.get(), 0), name);
  check_nccl(enqueue(nccl.get(), nccl.stream()), name);
  check_cuda(cudaEventRecord(done->get(), nccl.stream()), name);
  auto complete = [done, finish = std::move(finish), name]() {
    check_cuda(cudaEventSynchronize(done->get()), name);
    finish();
  };
  if (mode == Mode::blocking) {
    const WaitGuard guard(CommunicatorAccess::wait_label(comm, name, 0));
    complete();
    return Request();
  }
  auto finished = [done, name]() {
    const cudaError_t state = cudaEventQuery(done->get());
    if (state == cudaErrorNotReady) return false;
    check_cuda(state, name);
    return true;
  };
  return Request(Request::Ready(std::move(finished)), CommunicatorAccess::wait_label(comm, name, 0),
                 [complete = std::move(complete)](const MPI_Status&) { complete(); });
}

// NCCL calls of one group (allgatherv, reduce_scatter_v as one broadcast or reduce per rank).
template <class Each>
ncclResult_t nccl_group(int ranks, const Each& each) {
  ncclResult_t result = ncclGroupStart();
  for (int r = 0; r < ranks && result == ncclSuccess; ++r) result = each(r);
  const ncclResult_t ended = ncclGroupEnd();
  return result != ncclSuccess ? result : ended;
}

template <class T>
T* element_pointer(void* data, std::ptrdiff_t offset) {
  return static_cast<T*>(data) + offset;
}

// An operation from `send` into `recv`: call(in, out, nccl_comm, stream) gets their contiguous
// device memory (packed where the Views are strided, never staged through the host).
template <class ExecutionSpace, class SendView, class RecvView, class Call>
Request nccl_send_receive(Mode mode, const ExecutionSpace& space, const Communicator& comm, const SendView& send,
                          const RecvView& recv, const char* name, const Call& call) {
  auto in = make_buffer(space, comm, send, Direction::send, name, Staging::never);
  auto out = make_buffer(space, comm, recv, Direction::receive, name, Staging::never);
  return run_on_nccl(
      mode, space, comm, name,
      [&](ncclComm_t nccl, cudaStream_t stream) { return call(in.data(), out.data(), nccl, stream); },
      [in, out] { out.finish(); });
}

// An operation on one View: call(data, nccl_comm, stream).
template <class ExecutionSpace, class ViewType, class Call>
Request nccl_on_view(Mode mode, const ExecutionSpace& space, const Communicator& comm, const ViewType& view,
                     Direction direction, const char* name, const Call& call) {
  auto buffer = make_buffer(space, comm, view, direction, name, Staging::never);
  return run_on_nccl(
      mode, space, comm, name, [&](ncclComm_t nccl, cudaStream_t stream) { return call(buffer.data(), nccl, stream); },
      [buffer] { buffer.finish(); });
}

template <class ExecutionSpace, class SendView, class RecvView>
Request nccl_allreduce(Mode mode, const ExecutionSpace& space, const Communicator& comm, const SendView& send,
                       const RecvView& recv, ReduceOp op, const char* name) {
  using T = typename RecvView::non_const_value_type;
  return nccl_send_receive(mode, space, comm, send, recv, name, [&](void* in, void* out, ncclComm_t c, cudaStream_t s) {
    return ncclAllReduce(in, out, recv.size(), nccl_datatype<T>(), nccl_op(op), c, s);
  });
}

template <class ExecutionSpace, class ViewType>
Request nccl_allreduce_in_place(Mode mode, const ExecutionSpace& space, const Communicator& comm, const ViewType& view,
                                ReduceOp op, const char* name) {
  using T = typename ViewType::non_const_value_type;
  return nccl_on_view(mode, space, comm, view, Direction::send_receive, name,
                      [&](void* data, ncclComm_t c, cudaStream_t s) {
                        return ncclAllReduce(data, data, view.size(), nccl_datatype<T>(), nccl_op(op), c, s);
                      });
}

template <class ExecutionSpace, class SendView, class RecvView>
Request nccl_allgather(Mode mode, const ExecutionSpace& space, const Communicator& comm, const SendView& send,
                       const RecvView& recv, const char* name) {
  using T = typename RecvView::non_const_value_type;
  return nccl_send_receive(mode, space, comm, send, recv, name, [&](void* in, void* out, ncclComm_t c, cudaStream_t s) {
    return ncclAllGather(in, out, send.size(), nccl_datatype<T>(), c, s);
  });
}

// In place: rank r's block already lies at r * block of the gathered view, as NCCL wants it.
template <class ExecutionSpace, class ViewType>
Request nccl_allgather_in_place(Mode mode, const ExecutionSpace& space, const Communicator& comm, const ViewType& view,
                                std::size_t block, const char* name) {
  using T = typename ViewType::non_const_value_type;
  const auto own = static_cast<std::ptrdiff_t>(static_cast<std::size_t>(comm.rank()) * block);
  return nccl_on_view(mode, space, comm, view, Direction::send_receive, name,
                      [&](void* data, ncclComm_t c, cudaStream_t s) {
                        return ncclAllGather(element_pointer<T>(data, own), data, block, nccl_datatype<T>(), c, s);
                      });
}

// Uneven blocks: every rank broadcasts its own block into place.
template <class ExecutionSpace, class SendView, class RecvView>
Request nccl_allgatherv(Mode mode, const ExecutionSpace& space, const Communicator& comm, const SendView& send,
                        const RecvView& recv, const BlockCounts& blocks, const char* name) {
  using T = typename RecvView::non_const_value_type;
  return nccl_send_receive(mode, space, comm, send, recv, name, [&](void* in, void* out, ncclComm_t c, cudaStream_t s) {
    return nccl_group(comm.size(), [&](int r) {
      const auto rank = static_cast<std::size_t>(r);
      return ncclBroadcast(in, element_pointer<T>(out, blocks.displacements[rank]),
                           static_cast<std::size_t>(blocks.counts[rank]), nccl_datatype<T>(), r, c, s);
    });
  });
}

template <class ExecutionSpace, class SendView, class RecvView>
Request nccl_reduce_scatter(Mode mode, const ExecutionSpace& space, const Communicator& comm, const SendView& send,
                            const RecvView& recv, ReduceOp op, const char* name) {
  using T = typename RecvView::non_const_value_type;
  return nccl_send_receive(mode, space, comm, send, recv, name, [&](void* in, void* out, ncclComm_t c, cudaStream_t s) {
    return ncclReduceScatter(in, out, recv.size(), nccl_datatype<T>(), nccl_op(op), c, s);
  });
}

// Uneven blocks: block r is reduced onto rank r (only the root writes its receive buffer).
template <class ExecutionSpace, class SendView, class RecvView>
Request nccl_reduce_scatter_v(Mode mode, const ExecutionSpace& space, const Communicator& comm, const SendView& send,
                              const RecvView& recv, const BlockCounts& blocks, ReduceOp op, const char* name) {
  using T = typename RecvView::non_const_value_type;
  return nccl_send_receive(mode, space, comm, send, recv, name, [&](void* in, void* out, ncclComm_t c, cudaStream_t s) {
    return nccl_group(comm.size(), [&](int r) {
      const auto rank = static_cast<std::size_t>(r);
      return ncclReduce(element_pointer<T>(in, blocks.displacements[rank]), out,
                        static_cast<std::size_t>(blocks.counts[rank]), nccl_datatype<T>(), nccl_op(op), r, c, s);
    });
  });
}

template <class ExecutionSpace, class ViewType>
Request nccl_broadcast(Mode mode, const ExecutionSpace& space, const Communicator& comm, const ViewType& view, int root,
                       const char* name) {
  using T = typename ViewType::non_const_value_type;
  const Direction direction = comm.rank() == root ? Direction::send : Direction::receive;
  return nccl_on_view(mode, space, comm, view, direction, name, [&](void* data, ncclComm_t c, cudaStream_t s) {
    return ncclBroadcast(data, data, view.size(), nccl_datatype<T>(), root, c, s);
  });
}

#endif  // TRIDENT_ENABLE_NCCL

}  // namespace Impl
}  // namespace comm
}  // namespace trident
