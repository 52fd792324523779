// The main of every trident test executable: MPI, then Kokkos, then Catch2 on every rank.
// Each rank's report is captured; ranks that pass stay quiet, a rank that fails prints its
// report under its rank number, and every rank exits with the same status.

#define CATCH_CONFIG_RUNNER
#include "trident_test.hpp"

#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

// Collects each failing rank's report on rank 0 and prints them in rank order.
void print_failures(const std::string& report, bool failed, int rank, int size) {
  const int length = failed ? static_cast<int>(report.size()) : 0;
  std::vector<int> lengths(static_cast<std::size_t>(size));
  MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  std::vector<int> displacements(static_cast<std::size_t>(size), 0);
  int total = 0;
  for (int r = 0; r < size; ++r) {
    displacements[static_cast<std::size_t>(r)] = total;
    total += lengths[static_cast<std::size_t>(r)];
  }
  std::string all(static_cast<std::size_t>(rank == 0 ? total : 0), '\0');
  MPI_Gatherv(report.data(), length, MPI_CHAR, all.data(), lengths.data(), displacements.data(), MPI_CHAR, 0,
              MPI_COMM_WORLD);
  if (rank != 0) return;
  for (int r = 0; r < size; ++r) {
    const auto n = static_cast<std::size_t>(lengths[static_cast<std::size_t>(r)]);
    if (n == 0) continue;
    std::cout << "==== rank " << r << " of " << size << " FAILED ====\n"
              << all.substr(static_cast<std::size_t>(displacements[static_cast<std::size_t>(r)]), n) << "\n";
  }
  std::cout.flush();
}

}  // namespace

int main(int argc, char* argv[]) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  Kokkos::initialize(argc, argv);
  int failed_tests = 0;
  {
    std::ostringstream captured;
    std::streambuf* original = std::cout.rdbuf(captured.rdbuf());
    Catch::Session session;
    int status = session.applyCommandLine(argc, argv);
    if (status == 0) {
      status = session.run();
      failed_tests = status;
    } else {
      failed_tests = 1;
    }
    std::cout.rdbuf(original);

    int failed_ranks = 0, any_failed = failed_tests != 0 ? 1 : 0;
    MPI_Allreduce(&any_failed, &failed_ranks, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    print_failures(captured.str(), failed_tests != 0, rank, size);
    if (rank == 0) {
      // Rank 0 always shows its summary line so the log says what ran.
      const std::string text = captured.str();
      const auto last = text.find_last_not_of('\n');
      const auto line_start = text.rfind('\n', last == std::string::npos ? 0 : last);
      if (failed_tests == 0) std::cout << text.substr(line_start == std::string::npos ? 0 : line_start + 1);
      std::cout << "[" << size << " rank" << (size > 1 ? "s" : "") << "] "
                << (failed_ranks == 0 ? "all ranks passed" : std::to_string(failed_ranks) + " rank(s) failed")
                << std::endl;
    }
    failed_tests = failed_ranks;
  }
  Kokkos::finalize();
  MPI_Finalize();
  return failed_tests == 0 ? 0 : 1;
}
