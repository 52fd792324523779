// Corpus sources: any file as bytes, and llm.c token shards with a vocabulary check.

#include "../io/temporary_directory.hpp"
#include "trident_test.hpp"

#include <trident/data/text.hpp>
#include <trident/data/token_files.hpp>
#include <trident/io/token_file.hpp>

#include <cstdint>
#include <string>
#include <vector>

using Catch::Matchers::Contains;
using trident_test::TemporaryDirectory;

TEST_CASE("a file is a byte-level corpus of 256 tokens", "[data][sources]") {
  TemporaryDirectory dir;
  const std::string path = dir.file("text.txt");
  trident_test::write_bytes(path, std::string("Hi\n\0\xff\x80", 6));
  const auto text = trident::data::read_text_bytes(path);
  CHECK(text.vocab_size == 256);
  CHECK(text.tokens == std::vector<std::int32_t>{72, 105, 10, 0, 255, 128});
  trident_test::write_bytes(path, "");
  CHECK(trident::data::read_text_bytes(path).tokens.empty());
  CHECK_THROWS_WITH(trident::data::read_text_bytes(dir.file("absent.txt")),
                    Contains("cannot open") && Contains("absent.txt"));
}

TEST_CASE("token shards are read in order and checked against the vocabulary", "[data][sources]") {
  TemporaryDirectory dir;
  trident::io::write_token_file(dir.file("a.bin"), {5, 50256, 0});
  trident::io::write_token_file(dir.file("b.bin"), {1, 2});
  const auto corpus = trident::data::read_token_files({dir.file("a.bin"), dir.file("b.bin")}, 50257);
  CHECK(corpus.vocab_size == 50257);
  CHECK(corpus.tokens == std::vector<std::int32_t>{5, 50256, 0, 1, 2});
  CHECK(trident::data::read_token_files({dir.file("b.bin"), dir.file("a.bin")}, 50257).tokens ==
        std::vector<std::int32_t>{1, 2, 5, 50256, 0});

  CHECK_THROWS_WITH(trident::data::read_token_files({dir.file("b.bin"), dir.file("a.bin")}, 50000),
                    Contains("token 50256 at position 1 of '" + dir.file("a.bin") + "'") && Contains("[0, 50000)"));
  CHECK_THROWS_WITH(trident::data::read_token_files({}, 10), Contains("no files"));
  CHECK_THROWS_WITH(trident::data::read_token_files({dir.file("a.bin")}, 0), Contains("vocabulary size 0"));
  CHECK_THROWS_WITH(trident::data::read_token_files({dir.file("c.bin")}, 10), Contains("c.bin"));
}
