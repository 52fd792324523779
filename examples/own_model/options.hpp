#pragma once
// own_model's flags: which model, the layout, how long, where to save and load. They are parsed
// with CLI11 in options.cpp, a translation unit of its own, so that the training program
// (own_model.cpp) compiles without it.

#include <cstdint>
#include <exception>
#include <string>

struct Options {
  std::string model = "mlp", save, load;
  std::string dtype = "fp32";  // of the activations: fp32, bf16 or fp16
  int dp = 1, tp = 1, pp = 1, zero = 0;
  std::int64_t steps = 20, micro_batch = 0;
  double lr = 1e-2;
};

// Reads the command line into `options`; false when --help was asked (rank 0 prints the usage).
// A bad flag throws an error every rank holds alike (is_usage_error).
bool parse_options(int argc, char** argv, Options& options);
bool is_usage_error(const std::exception& error);
