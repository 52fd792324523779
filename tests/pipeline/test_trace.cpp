// Chrome trace files: written atomically and read back with nlohmann::json.

#include "pipeline_test_helpers.hpp"
#include "trident_test.hpp"

#include <trident/pipeline/schedules.hpp>
#include <trident/pipeline/simulate.hpp>
#include <trident/pipeline/trace.hpp>

#include <nlohmann/json.hpp>

#include <unistd.h>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

using namespace trident::pipeline;

namespace {

std::string temporary_path(const std::string& name) {
  return "/tmp/trident_test_pipeline_" + std::to_string(::getpid()) + "_" + name;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

// The "X" events of a trace, in file order.
std::vector<nlohmann::json> complete_events(const nlohmann::json& trace) {
  std::vector<nlohmann::json> events;
  for (const auto& e : trace.at("traceEvents")) {
    if (e.at("ph") == "X") events.push_back(e);
  }
  return events;
}

}  // namespace

TEST_CASE("a Chrome trace holds each event with its times in microseconds", "[pipeline][trace]") {
  const std::string path = temporary_path("events.json");
  const std::vector<TraceEvent> events = {{"F0", 0, 0.0, 12.5, "forward"},
                                          {"B0 \"quoted\"", 1, 20.0, 45.0, "backward"},
                                          {"W3", 1, 45.0, 50.25, "backward_weight"}};
  write_chrome_trace(path, events);
  const nlohmann::json trace = read_json(path);
  const auto x = complete_events(trace);
  REQUIRE(x.size() == 3);
  CHECK(x[0].at("name") == "F0");
  CHECK(x[0].at("cat") == "forward");
  CHECK(x[0].at("ts").get<double>() == 0.0);
  CHECK(x[0].at("dur").get<double>() == 12.5);
  CHECK(x[0].at("pid") == 0);
  CHECK(x[1].at("name") == "B0 \"quoted\"");
  CHECK(x[1].at("pid") == 1);
  CHECK(x[1].at("ts").get<double>() == 20.0);
  CHECK(x[1].at("dur").get<double>() == 25.0);
  CHECK(x[2].at("dur").get<double>() == 5.25);
  // One "rank <r>" name per process, so the viewer labels the rows.
  int names = 0;
  for (const auto& e : trace.at("traceEvents")) {
    if (e.at("ph") == "M" && e.at("name") == "process_name") {
      CHECK(e.at("args").at("name") == "rank " + std::to_string(e.at("pid").get<int>()));
      ++names;
    }
  }
  CHECK(names == 2);

  // Rewriting replaces the file whole; no temporary is left behind.
  write_chrome_trace(path, {{"F1", 0, 1.0, 2.0, "forward"}});
  CHECK(complete_events(read_json(path)).size() == 1);
  std::vector<std::string> leftovers;
  for (int i = 0; i < 4; ++i) {
    const std::string guess = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(i);
    if (std::ifstream(guess).good()) leftovers.push_back(guess);
  }
  CHECK(leftovers.empty());
  std::remove(path.c_str());

  CHECK_THROWS_AS(write_chrome_trace(path, {{"bad", 0, 5.0, 4.0, "forward"}}), trident::InvalidArgument);
  CHECK_FALSE(std::ifstream(path).good());
  CHECK_THROWS_AS(write_chrome_trace("/nonexistent-directory/trace.json", events), trident::Error);
}

TEST_CASE("the simulated 1F1B timeline as a trace", "[pipeline][trace]") {
  const Schedule s = one_f_one_b(2, 3);
  const Simulation sim = simulate(s, 1.0, 1.5, 0.5, 0.25);
  const std::vector<TraceEvent> compute_only = trace_events(s, sim, 1000.0);
  REQUIRE(compute_only.size() == 12);
  // Rank 1's first forward waits for the activation: 1 unit of compute plus 0.25 of transfer.
  const TraceEvent& first = compute_only[6];
  CHECK(first.name == "F0");
  CHECK(first.rank == 1);
  CHECK(first.category == "forward");
  CHECK(first.start_us == 1250.0);
  CHECK(first.end_us == 2250.0);

  const std::vector<TraceEvent> with_waits = trace_events(s, sim, 1000.0, true);
  CHECK(with_waits.size() > compute_only.size());
  const std::string path = temporary_path("simulated.json");
  write_chrome_trace(path, with_waits);
  const auto x = complete_events(read_json(path));
  CHECK(x.size() == with_waits.size());
  int receives = 0;
  for (const auto& e : x) receives += e.at("cat") == "recv_forward" || e.at("cat") == "recv_backward";
  CHECK(receives == static_cast<int>(with_waits.size() - compute_only.size()));
  std::remove(path.c_str());
}
