#pragma once
// layout = auto: the Trainer plans its own layout. It calibrates the machine from inside the
// run (plan/calibrate.hpp, cached), searches every layout of the world (plan/search.hpp) and
// takes the fastest predicted one that fits the memory cap:
//
//   train::AutoLayout automatic;
//   automatic.global_batch = 64;  // the samples each step() will be given
//   train::Trainer<float> trainer(world, spec, automatic);
//
// Every rank calibrates with the others and averages the measurements, so every rank plans
// the same layout. This header holds the settings only; train/choose_layout.hpp plans
// (choose_layout() without building a trainer, and plans_report(): predicted step time,
// memory per rank and why the winner wins).

#include <trident/data_parallel/settings.hpp>
#include <trident/plan/search_space.hpp>

#include <cstdint>
#include <string>

namespace trident::train {

struct AutoLayout {
  std::int64_t global_batch = 0;  // samples per step, what step() will be given
  double memory_bytes = 0;        // per rank; 0: no cap
  std::string calibration_cache;  // a JSON file of measurements to reuse ("" measures every time)
  // The collectives are timed over at least this long: a minute where the host's communication
  // changes pace over tens of seconds (plan::CalibrationRequest).
  double communication_seconds = 0;
  plan::SearchSpace space;  // what the search may choose from
  // The type gradients are reduced in between replicas (the chosen layout keeps it; the plans
  // price its bytes).
  data_parallel::GradientPrecision gradient_precision = data_parallel::GradientPrecision::full;
  // The gradient bucket cap (MiB): the chosen layout keeps it, the plans price it.
  double bucket_mb = data_parallel::DataParallelSettings{}.bucket_mb;
  int show = 5;       // plans the report lists
  bool print = true;  // rank 0 prints the report when a Trainer plans
};

}  // namespace trident::train
