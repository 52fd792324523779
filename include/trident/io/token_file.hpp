#pragma once
// llm.c token files (the .bin shards its data scripts write): a header of 256 little-endian
// int32 (header[0] = magic 20240520, header[1] = version 1, header[2] = token count), then
// the tokens as little-endian uint16.

#include <trident/core/error.hpp>
#include <trident/io/atomic_file.hpp>
#include <trident/io/endian.hpp>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

namespace trident::io {

inline constexpr std::int32_t token_file_magic = 20240520;
inline constexpr std::int32_t token_file_version = 1;
inline constexpr std::size_t token_file_header_ints = 256;
inline constexpr std::uint64_t token_file_header_bytes = token_file_header_ints * sizeof(std::int32_t);

inline std::vector<std::int32_t> read_token_file(const std::string& path) {
  const std::string where = "trident::io::read_token_file: '" + path + "'";
  std::ifstream stream(path, std::ios::binary);
  require(stream.is_open(), where, ": cannot open: ", std::strerror(errno));
  stream.seekg(0, std::ios::end);
  const auto end = stream.tellg();
  require(end >= 0, where, ": cannot determine the file size");
  const auto file_size = static_cast<std::uint64_t>(end);
  require(file_size >= token_file_header_bytes, where, " is ", file_size, " bytes long, shorter than the ",
          token_file_header_bytes, "-byte header");

  std::int32_t header[token_file_header_ints];
  stream.seekg(0);
  stream.read(reinterpret_cast<char*>(header), static_cast<std::streamsize>(token_file_header_bytes));
  require(static_cast<std::uint64_t>(stream.gcount()) == token_file_header_bytes, where, ": cannot read the header");
  to_or_from_little_endian(header, sizeof(std::int32_t), token_file_header_ints);
  require(header[0] == token_file_magic, where, ": bad magic number ", header[0], " (expected ", token_file_magic,
          "; is this an llm.c token file?)");
  require(header[1] == token_file_version, where, ": unsupported version ", header[1], " (expected ",
          token_file_version, ")");
  const std::int64_t count = header[2];
  require(count >= 0, where, ": negative token count ", count);
  const std::uint64_t expected_size = token_file_header_bytes + static_cast<std::uint64_t>(count) * 2;
  require(file_size == expected_size, where, ": the header announces ", count, " tokens, so ", expected_size,
          " bytes, but the file has ", file_size, " bytes (",
          file_size < expected_size ? "truncated" : "trailing bytes", ")");

  std::vector<std::uint16_t> stored(static_cast<std::size_t>(count));
  stream.read(reinterpret_cast<char*>(stored.data()), static_cast<std::streamsize>(count * 2));
  require(stream.gcount() == static_cast<std::streamsize>(count * 2), where, ": reading ", count,
          " tokens stopped after ", stream.gcount(), " bytes");
  to_or_from_little_endian(stored.data(), sizeof(std::uint16_t), stored.size());
  return std::vector<std::int32_t>(stored.begin(), stored.end());
}

// Writes atomically (see AtomicFileWriter). Tokens must fit uint16: [0, 65535].
inline void write_token_file(const std::string& path, const std::vector<std::int32_t>& tokens) {
  const char* operation = "trident::io::write_token_file";
  require_argument(tokens.size() <= static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()), operation, ": ",
                   tokens.size(), " tokens do not fit the header's int32 count");
  std::vector<std::uint16_t> stored(tokens.size());
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    require_argument(tokens[i] >= 0 && tokens[i] <= 65535, operation, ": token ", tokens[i], " at position ", i,
                     " does not fit uint16 (file '", path, "')");
    stored[i] = static_cast<std::uint16_t>(tokens[i]);
  }
  std::int32_t header[token_file_header_ints] = {};
  header[0] = token_file_magic;
  header[1] = token_file_version;
  header[2] = static_cast<std::int32_t>(tokens.size());
  to_or_from_little_endian(header, sizeof(std::int32_t), token_file_header_ints);
  to_or_from_little_endian(stored.data(), sizeof(std::uint16_t), stored.size());

  AtomicFileWriter file(path, operation);
  file.write(header, token_file_header_bytes);
  file.write(stored.data(), stored.size() * sizeof(std::uint16_t));
  file.commit();
}

}  // namespace trident::io
