#pragma once
// Training batches from a token stream, in llm.c's order and positioned by the step number
// alone, so a run resumed from a checkpoint at step k sees the same data as one that never
// stopped, whatever the number of ranks.
//
// Step k's window is the B*T + 1 tokens starting at stream position k*B*T. Row r of the
// batch has inputs window[r*T, r*T + T) and targets window[r*T + 1, r*T + T + 1): the next
// token of every input. Nothing is shuffled.
//
// Wrap-around: positions are taken modulo the stream length L, so window token j of step k
// is stream[(k*B*T + j) mod L], and a window that crosses the end continues at the start.
// (llm.c instead skips to the next shard; here no tokens are dropped, and the one target
// that pairs the last token with the first is the price.)

#include <trident/core/error.hpp>
#include <trident/data/token_stream.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace trident::data {

// Rows of one batch, row-major (rows, T).
struct Batch {
  std::int64_t rows = 0;
  std::int64_t sequence_length = 0;
  std::vector<std::int32_t> inputs;
  std::vector<std::int32_t> targets;
};

class BatchLoader {
 public:
  // B = batch_size rows of T = sequence_length tokens per step. The stream must hold at least
  // B*T + 1 tokens, all inside [0, vocab_size).
  BatchLoader(TokenStream stream, std::int64_t batch_size, std::int64_t sequence_length)
      : m_tokens(std::move(stream.tokens)),
        m_vocab_size(stream.vocab_size),
        m_batch_size(batch_size),
        m_sequence_length(sequence_length) {
    const char* operation = "trident::data::BatchLoader";
    require_argument(batch_size > 0 && sequence_length > 0, operation, ": batch size ", batch_size,
                     " and sequence length ", sequence_length, " must be positive");
    require_argument(batch_size <= std::numeric_limits<std::int64_t>::max() / sequence_length - 1, operation,
                     ": batch size ", batch_size, " times sequence length ", sequence_length, " overflows");
    require_argument(m_vocab_size > 0, operation, ": vocabulary size ", m_vocab_size, " must be positive");
    require_argument(static_cast<std::int64_t>(m_tokens.size()) >= tokens_per_step() + 1, operation,
                     ": the stream has ", m_tokens.size(), " tokens, fewer than the B*T + 1 = ", batch_size, "*",
                     sequence_length, " + 1 = ", tokens_per_step() + 1, " that one step reads");
    const std::size_t bad = find_token_outside_vocabulary(m_tokens, m_vocab_size);
    require_argument(bad == m_tokens.size(), operation, ": token ", bad < m_tokens.size() ? m_tokens[bad] : 0,
                     " at position ", bad, " of the stream is outside the vocabulary [0, ", m_vocab_size, ")");
  }

  std::int64_t batch_size() const { return m_batch_size; }
  std::int64_t sequence_length() const { return m_sequence_length; }
  std::int32_t vocab_size() const { return m_vocab_size; }
  std::int64_t stream_length() const { return static_cast<std::int64_t>(m_tokens.size()); }
  std::int64_t tokens_per_step() const { return m_batch_size * m_sequence_length; }

  // Where step k's window starts in the stream: (k*B*T) mod L.
  std::int64_t window_start(std::int64_t step) const {
    require_argument(step >= 0, "trident::data::BatchLoader: negative step ", step);
    const auto length = static_cast<std::uint64_t>(stream_length());
    return static_cast<std::int64_t>(multiply_modulo(static_cast<std::uint64_t>(step) % length,
                                                     static_cast<std::uint64_t>(tokens_per_step()) % length, length));
  }

  // Rows [first_row, first_row + row_count) of step `step`'s batch: a data-parallel rank or a
  // gradient-accumulation micro-batch takes its slice of the global batch this way.
  Batch batch(std::int64_t step, std::int64_t first_row, std::int64_t row_count) const {
    require_argument(
        first_row >= 0 && row_count >= 0 && first_row <= m_batch_size && row_count <= m_batch_size - first_row,
        "trident::data::BatchLoader::batch: rows [", first_row, ", ", first_row + row_count,
        ") are outside the batch's rows [0, ", m_batch_size, ")");
    const std::int64_t length = stream_length();
    const std::int64_t T = m_sequence_length;
    std::int64_t position = window_start(step) + first_row * T;
    position %= length;
    Batch result;
    result.rows = row_count;
    result.sequence_length = T;
    result.inputs.resize(static_cast<std::size_t>(row_count * T));
    result.targets.resize(static_cast<std::size_t>(row_count * T));
    // One walk over the row_count*T + 1 tokens: the input at i is the target at i - 1.
    std::int32_t current = m_tokens[static_cast<std::size_t>(position)];
    for (std::int64_t i = 0; i < row_count * T; ++i) {
      position = position + 1 == length ? 0 : position + 1;
      const std::int32_t next = m_tokens[static_cast<std::size_t>(position)];
      result.inputs[static_cast<std::size_t>(i)] = current;
      result.targets[static_cast<std::size_t>(i)] = next;
      current = next;
    }
    return result;
  }

  // The whole batch of step `step`: B rows.
  Batch batch(std::int64_t step) const { return batch(step, 0, m_batch_size); }

 private:
  // (a * b) mod m without overflow, for a, b < m < 2^63.
  static std::uint64_t multiply_modulo(std::uint64_t a, std::uint64_t b, std::uint64_t m) {
    if (a == 0 || b <= std::numeric_limits<std::uint64_t>::max() / a) return (a * b) % m;
    std::uint64_t result = 0;
    for (a %= m; b > 0; b >>= 1) {
      if (b & 1) result = result >= m - a ? result - (m - a) : result + a;
      a = a >= m - a ? a - (m - a) : a + a;
    }
    return result;
  }

  std::vector<std::int32_t> m_tokens;
  std::int32_t m_vocab_size;
  std::int64_t m_batch_size;
  std::int64_t m_sequence_length;
};

}  // namespace trident::data
