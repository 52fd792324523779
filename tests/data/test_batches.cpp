// The batch loader: llm.c's order, wrap-around, row slices, resumption and the errors.

#include "trident_test.hpp"

#include <trident/data/batches.hpp>
#include <trident/data/synthetic.hpp>

#include <cstdint>
#include <vector>

namespace {

using Catch::Matchers::Contains;
using trident::data::Batch;
using trident::data::BatchLoader;
using trident::data::TokenStream;

TokenStream counting_stream(std::int32_t length) {
  TokenStream stream;
  stream.vocab_size = length;
  for (std::int32_t i = 0; i < length; ++i) stream.tokens.push_back(i);
  return stream;
}

// llm.c's DataLoader on one shard: a cursor that reads B*T+1 tokens and advances by B*T.
struct LlmcLoader {
  const std::vector<std::int32_t>& tokens;
  std::int64_t B, T, position = 0;
  bool next(std::vector<std::int32_t>& inputs, std::vector<std::int32_t>& targets) {
    if (position + B * T + 1 > static_cast<std::int64_t>(tokens.size())) return false;
    inputs.assign(tokens.begin() + position, tokens.begin() + position + B * T);
    targets.assign(tokens.begin() + position + 1, tokens.begin() + position + B * T + 1);
    position += B * T;
    return true;
  }
};

}  // namespace

TEST_CASE("batches follow llm.c's order, wrapping around at the end", "[data][batches]") {
  // Stream 0..9, B = 2, T = 2: four tokens per step.
  const BatchLoader loader(counting_stream(10), 2, 2);
  using Tokens = std::vector<std::int32_t>;
  const Batch first = loader.batch(0);
  CHECK(first.rows == 2);
  CHECK(first.sequence_length == 2);
  CHECK(first.inputs == Tokens{0, 1, 2, 3});
  CHECK(first.targets == Tokens{1, 2, 3, 4});
  CHECK(loader.batch(1).inputs == Tokens{4, 5, 6, 7});
  CHECK(loader.batch(1).targets == Tokens{5, 6, 7, 8});
  // Step 2 starts at 8 and continues at the start of the stream.
  CHECK(loader.batch(2).inputs == Tokens{8, 9, 0, 1});
  CHECK(loader.batch(2).targets == Tokens{9, 0, 1, 2});
  CHECK(loader.batch(3).inputs == Tokens{2, 3, 4, 5});
  // Step 5 starts at 20 mod 10 = 0 again.
  CHECK(loader.batch(5).inputs == first.inputs);
  CHECK(loader.batch(5).targets == first.targets);
  CHECK(loader.window_start(7) == 8);
  // Far steps: (k * B*T) mod L without overflow. 10^15 * 4 mod 10 = 0; (10^15 + 3) * 4 mod 10 = 2.
  CHECK(loader.window_start(1000000000000000LL) == 0);
  CHECK(loader.window_start(1000000000000003LL) == 2);
  const BatchLoader odd(counting_stream(1000003), 3, 5);
  // 15 * (2^62 + 1) overflows 64 bits; modulo 1000003: 2^62 = 837674 (checked below), so the
  // window starts at 15 * 837675 mod 1000003 = 565089.
  std::int64_t power = 1;
  for (int i = 0; i < 62; ++i) power = power * 2 % 1000003;
  REQUIRE(power == 837674);
  CHECK(odd.window_start((std::int64_t(1) << 62) + 1) == 565089);
}

TEST_CASE("before the end of the stream, steps equal llm.c's sequential loader", "[data][batches]") {
  const trident::data::SyntheticMarkovLanguage language(97, 4, 1);
  const auto stream = language.generate(5000);
  const std::int64_t B = 4, T = 16;
  const BatchLoader loader(stream, B, T);
  LlmcLoader reference{stream.tokens, B, T};
  std::vector<std::int32_t> inputs, targets;
  std::int64_t step = 0;
  while (reference.next(inputs, targets)) {
    const Batch batch = loader.batch(step);
    CHECK(batch.inputs == inputs);
    CHECK(batch.targets == targets);
    ++step;
  }
  CHECK(step == (5000 - 1) / (B * T));
  // After the end: the window is stream[(k*B*T + j) mod L].
  for (std::int64_t k : {step, step + 1, std::int64_t(1000)}) {
    const Batch batch = loader.batch(k);
    int mismatches = 0;
    for (std::int64_t j = 0; j < B * T; ++j) {
      mismatches +=
          batch.inputs[static_cast<std::size_t>(j)] != stream.tokens[static_cast<std::size_t>((k * B * T + j) % 5000)];
      mismatches += batch.targets[static_cast<std::size_t>(j)] !=
                    stream.tokens[static_cast<std::size_t>((k * B * T + j + 1) % 5000)];
    }
    CHECK(mismatches == 0);
  }
}

TEST_CASE("row slices of a step put together give the step's batch", "[data][batches]") {
  const trident::data::SyntheticMarkovLanguage language(31, 3, 2);
  const std::int64_t B = 6, T = 5;
  const BatchLoader loader(language.generate(100), B, T);  // steps wrap around every few steps
  for (std::int64_t step : {0, 1, 3, 7}) {
    const Batch whole = loader.batch(step);
    // Data-parallel ranks (3 x 2 rows), then micro-batches of unequal sizes.
    for (const std::vector<std::int64_t>& split : {std::vector<std::int64_t>{2, 2, 2}, {1, 2, 3}, {6}, {5, 1}}) {
      std::vector<std::int32_t> inputs, targets;
      std::int64_t first_row = 0;
      for (std::int64_t rows : split) {
        const Batch part = loader.batch(step, first_row, rows);
        CHECK(part.rows == rows);
        CHECK(part.inputs.size() == static_cast<std::size_t>(rows * T));
        inputs.insert(inputs.end(), part.inputs.begin(), part.inputs.end());
        targets.insert(targets.end(), part.targets.begin(), part.targets.end());
        first_row += rows;
      }
      CHECK(inputs == whole.inputs);
      CHECK(targets == whole.targets);
    }
  }
  CHECK(loader.batch(2, 3, 0).inputs.empty());
}

TEST_CASE("a loader built at resumption gives the data of the run that never stopped", "[data][batches]") {
  const trident::data::SyntheticMarkovLanguage language(50, 4, 3);
  const auto stream = language.generate(3000);
  const BatchLoader original(stream, 8, 12);
  std::vector<Batch> seen;
  for (std::int64_t step = 0; step < 40; ++step) seen.push_back(original.batch(step));
  const BatchLoader resumed(stream, 8, 12);
  for (std::int64_t step = 25; step < 40; ++step) {
    CHECK(resumed.batch(step).inputs == seen[static_cast<std::size_t>(step)].inputs);
    CHECK(resumed.batch(step).targets == seen[static_cast<std::size_t>(step)].targets);
  }
}

TEST_CASE("the batch loader refuses what cannot work", "[data][batches]") {
  CHECK_NOTHROW(BatchLoader(counting_stream(13), 3, 4));
  CHECK_THROWS_WITH(BatchLoader(counting_stream(12), 3, 4),
                    Contains("the stream has 12 tokens, fewer than the B*T + 1 = 3*4 + 1 = 13"));
  TokenStream bad = counting_stream(20);
  bad.tokens[17] = 20;
  CHECK_THROWS_WITH(BatchLoader(bad, 2, 2), Contains("token 20 at position 17") && Contains("[0, 20)"));
  bad.tokens[17] = 0;
  bad.tokens[3] = -1;
  CHECK_THROWS_WITH(BatchLoader(bad, 2, 2), Contains("token -1 at position 3"));
  CHECK_THROWS_WITH(BatchLoader(counting_stream(20), 0, 2), Contains("batch size 0"));
  CHECK_THROWS_WITH(BatchLoader(counting_stream(20), 2, -1), Contains("sequence length -1"));
  const BatchLoader loader(counting_stream(20), 4, 2);
  CHECK_THROWS_WITH(loader.batch(-1), Contains("negative step -1"));
  CHECK_THROWS_WITH(loader.batch(0, 3, 2), Contains("rows [3, 5) are outside the batch's rows [0, 4)"));
  CHECK_THROWS_WITH(loader.batch(0, -1, 1), Contains("rows [-1, 0)"));
  CHECK_THROWS_AS(loader.batch(0, 0, 5), trident::InvalidArgument);
}
