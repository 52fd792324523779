// Pipeline schedules compared on the simulator, one JSON line each:
//   {"bench":"schedule","schedule":"1f1b","p":4,"m":8,"v":1,"bubble_simulated":...,
//    "bubble_analytic":...,"makespan":...,"peak_activations":[...]}
// for p in {2, 4, 8}, m in {4, 8, 16, 32}, GPipe, 1F1B, interleaved (v = 2) and ZB-H1, with
// unit passes (F = Bi = W = 1, a full backward 2) and free transfers. A schedule the
// arguments do not allow prints "valid":false and the reason. peak_activations counts
// (chunk, micro-batch) pairs per rank; with interleaving one chunk is 1/v of a rank's layers.
//
// With --trace PATH it also writes the simulated timeline of one schedule as a Chrome trace
// (one unit = 1 ms), e.g. for bench/pipeline/plot_timeline.py:
//   bench_schedules --trace /tmp/1f1b.json --schedule 1f1b --p 4 --m 8 [--v 1] [--comm 0.1]

#include <trident/pipeline/pipeline.hpp>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

namespace {

using namespace trident::pipeline;

struct Options {
  std::string trace_path;
  std::string schedule = "1f1b";
  int p = 4, m = 8, v = 1;
  double comm = 0;
};

Options parse(int argc, char* argv[]) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i], value = argv[i + 1];
    if (key == "--trace")
      o.trace_path = value;
    else if (key == "--schedule")
      o.schedule = value;
    else if (key == "--p")
      o.p = std::atoi(value.c_str());
    else if (key == "--m")
      o.m = std::atoi(value.c_str());
    else if (key == "--v")
      o.v = std::atoi(value.c_str());
    else if (key == "--comm")
      o.comm = std::atof(value.c_str());
    else
      throw trident::InvalidArgument("bench_schedules: unknown option " + key);
  }
  return o;
}

double analytic_bubble(const std::string& name, int p, int m, int v) {
  if (name == "interleaved") return interleaved_bubble_fraction(p, m, v);
  if (name == "zb") return zero_bubble_h1_bubble_fraction(p, m, 1, 1, 1);
  if (name == "1f1b") return one_f_one_b_bubble_fraction(p, m);
  return gpipe_bubble_fraction(p, m);
}

}  // namespace

int main(int argc, char* argv[]) {
  try {
    const Options options = parse(argc, argv);
    for (int p : {2, 4, 8}) {
      for (int m : {4, 8, 16, 32}) {
        for (const std::string name : {"gpipe", "1f1b", "interleaved", "zb"}) {
          const int v = name == "interleaved" ? 2 : 1;
          nlohmann::json line = {{"bench", "schedule"}, {"schedule", name}, {"p", p}, {"m", m}, {"v", v}};
          try {
            const Schedule s = make_schedule(name, p, m, v);
            const Simulation sim = simulate(s, 1, 1, 1);
            line["valid"] = true;
            line["bubble_simulated"] = sim.bubble_fraction();
            line["bubble_analytic"] = analytic_bubble(name, p, m, v);
            line["makespan"] = sim.makespan;
            line["peak_activations"] = peak_activations(s);
            if (name == "zb")
              line["peak_until_weight_gradient"] = peak_activations(s, ActivationsFreedBy::backward_weight);
          } catch (const trident::InvalidArgument& e) {
            line["valid"] = false;
            line["reason"] = e.what();
          }
          std::cout << line.dump() << "\n";
        }
      }
    }
    if (!options.trace_path.empty()) {
      const Schedule s = make_schedule(options.schedule, options.p, options.m, options.v);
      const Simulation sim = simulate(s, 1, 1, 1, options.comm);
      write_chrome_trace(options.trace_path, trace_events(s, sim, 1000.0, options.comm > 0));
      std::cout << nlohmann::json{{"bench", "trace"},
                                  {"path", options.trace_path},
                                  {"schedule", s.name},
                                  {"p", s.ranks},
                                  {"m", s.micro_batches},
                                  {"v", s.chunks},
                                  {"bubble_simulated", sim.bubble_fraction()}}
                       .dump()
                << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
  return 0;
}
