// trident::comm against the raw MPI call, side by side in one run.
//
// For each operation, message size and layout it prints one JSON line:
//   {"op", "ranks", "bytes", "layout", "raw_method", "trident_us", "raw_us", "trident_algbw_GBps",
//    "trident_busbw_GBps", "raw_busbw_GBps", "ratio"}
// Sizes follow nccl-tests: allreduce and broadcast the buffer, allgather the gathered result,
// reduce_scatter the send buffer, sendrecv one message. algbw = bytes / time and
// busbw = algbw * 2(n-1)/n (allreduce), (n-1)/n (allgather, reduce_scatter), 1 (broadcast,
// sendrecv). ratio = trident busbw / raw busbw.
//
// Layouts: "contiguous" hands trident and MPI the same rank-1 Views. "strided" hands trident
// every other column of a (rows, 2 * cols) matrix (a LayoutStride View, which it packs); raw MPI
// gets the same strided memory as an MPI vector datatype where MPI allows it
// (raw_method "derived_datatype") and, for reductions, which MPI does not define on derived
// datatypes, a contiguous buffer of the same element count ("contiguous_buffers").
//
// Timing: warm-up calls, then `--reps` repetitions, each timing trident and raw MPI in turn
// (which goes first alternates, so drifting machine noise hits both); a repetition's time is
// the slowest rank's mean over a batch of calls; the reported time is the median repetition.

#include <trident/comm/comm.hpp>

#include <mpi.h>
#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using Space = Kokkos::DefaultExecutionSpace;
using Memory = Space::memory_space;
using Vector = Kokkos::View<float*, Memory>;
using Strided = Kokkos::View<float**, Kokkos::LayoutStride, Memory>;

struct Options {
  std::int64_t min_bytes = 8;
  std::int64_t max_bytes = std::int64_t(64) << 20;
  int factor = 2;
  int reps = 15;
  std::vector<std::string> ops = {"allreduce", "allgather", "reduce_scatter", "broadcast", "sendrecv"};
  std::vector<std::string> layouts = {"contiguous", "strided"};
};

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) items.push_back(item);
  return items;
}

Options parse(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) throw std::invalid_argument("bench_comm: " + flag + " needs a value");
    const std::string value = argv[++i];
    if (flag == "--min-bytes") {
      options.min_bytes = std::stoll(value);
    } else if (flag == "--max-bytes") {
      options.max_bytes = std::stoll(value);
    } else if (flag == "--factor") {
      options.factor = std::stoi(value);
    } else if (flag == "--reps") {
      options.reps = std::stoi(value);
    } else if (flag == "--ops") {
      options.ops = split_list(value);
    } else if (flag == "--layouts") {
      options.layouts = split_list(value);
    } else {
      throw std::invalid_argument("bench_comm: unknown flag " + flag +
                                  " (known: --min-bytes --max-bytes --factor --reps --ops --layouts)");
    }
  }
  if (options.factor < 2 || options.reps < 1 || options.min_bytes < 1) {
    throw std::invalid_argument("bench_comm: --factor must be >= 2, --reps >= 1, --min-bytes >= 1");
  }
  return options;
}

// A (rows, 2 * cols) matrix and the LayoutStride View of its even columns, holding n floats.
struct StridedBuffer {
  Kokkos::View<float**, Memory> base;
  Strided view;
  explicit StridedBuffer(std::int64_t n) {
    const std::int64_t cols = std::min<std::int64_t>(n, 1024), rows = n / cols;
    base = Kokkos::View<float**, Memory>("base", rows, 2 * cols);
    Kokkos::deep_copy(base, 1.0f);
    view = Strided(base.data(), Kokkos::LayoutStride(rows, 2 * cols, cols, 2));
  }
};

Vector vector(std::int64_t n) {
  Vector view("vector", n);
  Kokkos::deep_copy(view, 1.0f);
  return view;
}

// The MPI datatype of n floats at every other position; its extent is 2n floats, so that
// consecutive blocks of it (allgather) tile consecutive strided matrices.
MPI_Datatype every_other(std::int64_t n) {
  MPI_Datatype vector_type = MPI_DATATYPE_NULL, resized = MPI_DATATYPE_NULL;
  MPI_Type_vector(static_cast<int>(n), 1, 2, MPI_FLOAT, &vector_type);
  MPI_Type_create_resized(vector_type, 0, static_cast<MPI_Aint>(2 * n * sizeof(float)), &resized);
  MPI_Type_commit(&resized);
  MPI_Type_free(&vector_type);
  return resized;
}

// One benchmark case: the two calls to compare and how to turn time into bandwidth.
struct Case {
  std::int64_t bytes = 0;
  double bus_factor = 1;
  std::string raw_method;
  std::function<void()> trident_call, raw_call;
  std::vector<MPI_Datatype> datatypes;  // freed after the case
};

Case make_case(const std::string& op, const std::string& layout, std::int64_t bytes,
               const trident::comm::Communicator& comm) {
  const std::int64_t n = comm.size();
  const bool strided = layout == "strided";
  const MPI_Comm mpi = comm.mpi();
  Case c;
  if (op == "allreduce") {
    const std::int64_t count = std::max<std::int64_t>(1, bytes / 4);
    c.bytes = count * 4;
    c.bus_factor = 2.0 * double(n - 1) / double(n);
    Vector raw_send = vector(count), raw_recv = vector(count);
    c.raw_call = [=] { MPI_Allreduce(raw_send.data(), raw_recv.data(), int(count), MPI_FLOAT, MPI_SUM, mpi); };
    if (strided) {
      StridedBuffer send(count), recv(count);
      c.trident_call = [=] { trident::comm::allreduce(Space(), comm, send.view, recv.view); };
      c.raw_method = "contiguous_buffers";
    } else {
      c.trident_call = [=] { trident::comm::allreduce(Space(), comm, raw_send, raw_recv); };
      c.raw_method = "same_buffers";
    }
  } else if (op == "allgather" || op == "reduce_scatter") {
    const std::int64_t block = std::max<std::int64_t>(1, bytes / (4 * n));
    c.bytes = block * n * 4;
    c.bus_factor = double(n - 1) / double(n);
    const bool gather = op == "allgather";
    if (strided) {
      StridedBuffer small(block), large(block * n);
      if (gather) {
        const MPI_Datatype type = every_other(block);
        c.datatypes.push_back(type);
        c.trident_call = [=] { trident::comm::allgather(Space(), comm, small.view, large.view); };
        c.raw_call = [=] { MPI_Allgather(small.base.data(), 1, type, large.base.data(), 1, type, mpi); };
        c.raw_method = "derived_datatype";
      } else {
        Vector raw_send = vector(block * n), raw_recv = vector(block);
        c.trident_call = [=] { trident::comm::reduce_scatter(Space(), comm, large.view, small.view); };
        c.raw_call = [=] {
          MPI_Reduce_scatter_block(raw_send.data(), raw_recv.data(), int(block), MPI_FLOAT, MPI_SUM, mpi);
        };
        c.raw_method = "contiguous_buffers";
      }
    } else {
      Vector small = vector(block), large = vector(block * n);
      if (gather) {
        c.trident_call = [=] { trident::comm::allgather(Space(), comm, small, large); };
        c.raw_call = [=] {
          MPI_Allgather(small.data(), int(block), MPI_FLOAT, large.data(), int(block), MPI_FLOAT, mpi);
        };
      } else {
        c.trident_call = [=] { trident::comm::reduce_scatter(Space(), comm, large, small); };
        c.raw_call = [=] { MPI_Reduce_scatter_block(large.data(), small.data(), int(block), MPI_FLOAT, MPI_SUM, mpi); };
      }
      c.raw_method = "same_buffers";
    }
  } else if (op == "broadcast" || op == "sendrecv") {
    const std::int64_t count = std::max<std::int64_t>(1, bytes / 4);
    c.bytes = count * 4;
    c.bus_factor = 1;
    const int right = (comm.rank() + 1) % comm.size(), left = (comm.rank() + comm.size() - 1) % comm.size();
    if (strided) {
      StridedBuffer a(count), b(count);
      const MPI_Datatype type = every_other(count);
      c.datatypes.push_back(type);
      if (op == "broadcast") {
        c.trident_call = [=] { trident::comm::broadcast(Space(), comm, a.view, 0); };
        c.raw_call = [=] { MPI_Bcast(a.base.data(), 1, type, 0, mpi); };
      } else {
        c.trident_call = [=] { trident::comm::sendrecv(Space(), comm, a.view, right, b.view, left); };
        c.raw_call = [=] {
          MPI_Sendrecv(a.base.data(), 1, type, right, 0, b.base.data(), 1, type, left, 0, mpi, MPI_STATUS_IGNORE);
        };
      }
      c.raw_method = "derived_datatype";
    } else {
      Vector a = vector(count), b = vector(count);
      if (op == "broadcast") {
        c.trident_call = [=] { trident::comm::broadcast(Space(), comm, a, 0); };
        c.raw_call = [=] { MPI_Bcast(a.data(), int(count), MPI_FLOAT, 0, mpi); };
      } else {
        c.trident_call = [=] { trident::comm::sendrecv(Space(), comm, a, right, b, left); };
        c.raw_call = [=] {
          MPI_Sendrecv(a.data(), int(count), MPI_FLOAT, right, 0, b.data(), int(count), MPI_FLOAT, left, 0, mpi,
                       MPI_STATUS_IGNORE);
        };
      }
      c.raw_method = "same_buffers";
    }
  } else {
    throw std::invalid_argument("bench_comm: unknown op " + op);
  }
  return c;
}

// Seconds per call of `call`, the slowest rank's mean over `iterations` calls.
double time_per_call(const std::function<void()>& call, int iterations, MPI_Comm comm) {
  MPI_Barrier(comm);
  const double start = MPI_Wtime();
  for (int i = 0; i < iterations; ++i) call();
  double elapsed = (MPI_Wtime() - start) / iterations;
  MPI_Allreduce(MPI_IN_PLACE, &elapsed, 1, MPI_DOUBLE, MPI_MAX, comm);
  return elapsed;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  Kokkos::initialize(argc, argv);
  int status = 0;
  {
    const trident::comm::Communicator world(MPI_COMM_WORLD, "world");
    try {
      const Options options = parse(argc, argv);
      // Raw MPI is handed the Views' pointers: it must be able to read their memory.
      const bool host_memory = Kokkos::SpaceAccessibility<Kokkos::HostSpace, Memory>::accessible;
      if (!host_memory && !trident::comm::mpi_is_gpu_aware()) {
        throw std::runtime_error("bench_comm: device memory needs a GPU-aware MPI for the raw baseline");
      }
      for (const auto& op : options.ops) {
        for (std::int64_t bytes = options.min_bytes; bytes <= options.max_bytes; bytes *= options.factor) {
          for (const auto& layout : options.layouts) {
            Case c = make_case(op, layout, bytes, world);
            // About 32 MiB of payload per timed batch, at least two calls: short batches, many
            // repetitions, so a burst of load from elsewhere spoils few of them.
            const int iterations = int(std::clamp<std::int64_t>((std::int64_t(32) << 20) / c.bytes, 2, 200));
            for (int warmup = 0; warmup < 2; ++warmup) {
              time_per_call(c.trident_call, std::min(iterations, 20), world.mpi());
              time_per_call(c.raw_call, std::min(iterations, 20), world.mpi());
            }
            std::vector<double> trident_times, raw_times;
            for (int rep = 0; rep < options.reps; ++rep) {
              if (rep % 2 == 0) {
                trident_times.push_back(time_per_call(c.trident_call, iterations, world.mpi()));
                raw_times.push_back(time_per_call(c.raw_call, iterations, world.mpi()));
              } else {
                raw_times.push_back(time_per_call(c.raw_call, iterations, world.mpi()));
                trident_times.push_back(time_per_call(c.trident_call, iterations, world.mpi()));
              }
            }
            for (auto& type : c.datatypes) MPI_Type_free(&type);
            const double trident_s = median(trident_times), raw_s = median(raw_times);
            const double trident_algbw = double(c.bytes) / trident_s / 1e9, raw_algbw = double(c.bytes) / raw_s / 1e9;
            if (world.rank() == 0) {
              std::printf(
                  "{\"op\":\"%s\",\"ranks\":%d,\"bytes\":%lld,\"layout\":\"%s\",\"raw_method\":\"%s\","
                  "\"trident_us\":%.3f,\"raw_us\":%.3f,\"trident_algbw_GBps\":%.4f,\"trident_busbw_GBps\":%.4f,"
                  "\"raw_busbw_GBps\":%.4f,\"ratio\":%.4f}\n",
                  op.c_str(), world.size(), static_cast<long long>(c.bytes), layout.c_str(), c.raw_method.c_str(),
                  trident_s * 1e6, raw_s * 1e6, trident_algbw, trident_algbw * c.bus_factor, raw_algbw * c.bus_factor,
                  raw_s / trident_s);
              std::fflush(stdout);
            }
          }
        }
      }
    } catch (const std::exception& error) {
      if (world.rank() == 0) std::fprintf(stderr, "%s\n", error.what());
      status = 1;
    }
  }
  Kokkos::finalize();
  MPI_Finalize();
  return status;
}
