// llm.c token files: the exact bytes, round trips and every malformed case.

#include "temporary_directory.hpp"
#include "trident_test.hpp"

#include <trident/io/token_file.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace {

using Catch::Matchers::Contains;
using trident_test::TemporaryDirectory;

std::string i32_le(std::int32_t value) {
  const auto bits = static_cast<std::uint32_t>(value);
  std::string bytes(4, '\0');
  for (int i = 0; i < 4; ++i) bytes[static_cast<std::size_t>(i)] = static_cast<char>((bits >> (8 * i)) & 0xff);
  return bytes;
}

// A token file built by hand: header ints, zero padding to 256 ints, then uint16 tokens.
std::string token_file_bytes(std::int32_t magic, std::int32_t version, std::int32_t count,
                             const std::vector<std::uint16_t>& tokens) {
  std::string bytes = i32_le(magic) + i32_le(version) + i32_le(count) + std::string(253 * 4, '\0');
  for (std::uint16_t token : tokens) {
    bytes += static_cast<char>(token & 0xff);
    bytes += static_cast<char>(token >> 8);
  }
  return bytes;
}

}  // namespace

TEST_CASE("token files have llm.c's bytes and round-trip", "[io][tokens]") {
  TemporaryDirectory dir;
  const std::string path = dir.file("train.bin");
  const std::vector<std::int32_t> tokens{50256, 0, 1, 65535, 258, 13};
  trident::io::write_token_file(path, tokens);
  CHECK(dir.entries() == std::vector<std::string>{"train.bin"});
  CHECK(trident_test::read_bytes(path) == token_file_bytes(20240520, 1, 6, {50256, 0, 1, 65535, 258, 13}));
  CHECK(trident::io::read_token_file(path) == tokens);

  trident_test::write_bytes(path, token_file_bytes(20240520, 1, 3, {7, 300, 40000}));
  CHECK(trident::io::read_token_file(path) == std::vector<std::int32_t>{7, 300, 40000});

  trident::io::write_token_file(path, {});
  CHECK(std::filesystem::file_size(path) == 1024);
  CHECK(trident::io::read_token_file(path).empty());
}

TEST_CASE("malformed token files are refused with the file and the values", "[io][tokens]") {
  TemporaryDirectory dir;
  const std::string path = dir.file("bad.bin");
  trident_test::write_bytes(path, std::string(100, '\0'));
  CHECK_THROWS_WITH(trident::io::read_token_file(path),
                    Contains(path) && Contains("is 100 bytes long, shorter than the 1024-byte header"));
  trident_test::write_bytes(path, token_file_bytes(20240519, 1, 2, {1, 2}));
  CHECK_THROWS_WITH(trident::io::read_token_file(path), Contains(path) && Contains("bad magic number 20240519"));
  trident_test::write_bytes(path, token_file_bytes(20240520, 2, 2, {1, 2}));
  CHECK_THROWS_WITH(trident::io::read_token_file(path), Contains(path) && Contains("unsupported version 2"));
  trident_test::write_bytes(path, token_file_bytes(20240520, 1, 10, {1, 2, 3, 4, 5, 6, 7, 8}));
  CHECK_THROWS_WITH(trident::io::read_token_file(path),
                    Contains("announces 10 tokens, so 1044 bytes, but the file has 1040 bytes (truncated)"));
  trident_test::write_bytes(path, token_file_bytes(20240520, 1, 1, {1, 2}));
  CHECK_THROWS_WITH(trident::io::read_token_file(path), Contains("announces 1 tokens") && Contains("trailing bytes"));
  trident_test::write_bytes(path, token_file_bytes(20240520, 1, -3, {}));
  CHECK_THROWS_WITH(trident::io::read_token_file(path), Contains("negative token count -3"));
  CHECK_THROWS_WITH(trident::io::read_token_file(dir.file("absent.bin")),
                    Contains("absent.bin") && Contains("cannot open"));
}

TEST_CASE("writing token files fails cleanly", "[io][tokens]") {
  TemporaryDirectory dir;
  CHECK_THROWS_WITH(trident::io::write_token_file(dir.file("big.bin"), {1, 2, 70000}),
                    Contains("token 70000 at position 2 does not fit uint16"));
  CHECK_THROWS_WITH(trident::io::write_token_file(dir.file("neg.bin"), {-1}), Contains("token -1 at position 0"));
  CHECK_THROWS_WITH(trident::io::write_token_file(dir.file("missing/x.bin"), {1}), Contains("missing/x.bin"));
  CHECK(dir.entries().empty());
}
