// Every way a safetensors file can be malformed is refused with a message that names the file,
// the tensor and the offending values. The files are built by hand, byte by byte.

#include "temporary_directory.hpp"
#include "trident_test.hpp"

#include <trident/io/safetensors.hpp>

#include <cstdint>
#include <string>

namespace {

using namespace trident::io;
using Catch::Matchers::Contains;
using trident_test::TemporaryDirectory;

std::string u64_le(std::uint64_t value) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[static_cast<std::size_t>(i)] = static_cast<char>((value >> (8 * i)) & 0xff);
  return bytes;
}

// A file with this header JSON (padded to 8 bytes) followed by `data_bytes` zero bytes.
std::string file_with(const TemporaryDirectory& dir, const std::string& json, std::size_t data_bytes) {
  std::string padded = json;
  padded.append((8 - padded.size() % 8) % 8, ' ');
  const std::string path = dir.file("malformed.safetensors");
  trident_test::write_bytes(path, u64_le(padded.size()) + padded + std::string(data_bytes, '\0'));
  return path;
}

std::string entry(const std::string& dtype, const std::string& shape, std::uint64_t begin, std::uint64_t end) {
  return R"({"dtype":")" + dtype + R"(","shape":)" + shape + R"(,"data_offsets":[)" + std::to_string(begin) + "," +
         std::to_string(end) + "]}";
}

}  // namespace

TEST_CASE("a well-formed hand-built file is accepted", "[io][safetensors]") {
  TemporaryDirectory dir;
  const auto path = file_with(dir,
                              R"({"__metadata__":{"k":"v"},"b":)" + entry("F32", "[2]", 8, 16) + R"(,"a":)" +
                                  entry("F32", "[2]", 0, 8) + R"(,"e":)" + entry("I64", "[0,3]", 16, 16) + "}",
                              16);
  SafetensorsFile file(path);
  REQUIRE(file.tensors().size() == 3);
  CHECK(file.tensors()[0].name == "a");  // file order is data order, not header order
  CHECK(file.tensors()[1].name == "b");
  CHECK(file.tensors()[2].name == "e");
  CHECK(file.metadata() == Metadata{{"k", "v"}});
  CHECK(file.read<float>("b", {2}) == std::vector<float>{0.0f, 0.0f});

  SafetensorsFile empty(file_with(dir, "{}", 0));
  CHECK(empty.tensors().empty());
  CHECK(empty.metadata().empty());
}

TEST_CASE("malformed lengths are refused", "[io][safetensors]") {
  TemporaryDirectory dir;
  const std::string path = dir.file("short.safetensors");
  trident_test::write_bytes(path, "12345");
  CHECK_THROWS_WITH(SafetensorsFile(path), Contains(path) && Contains("is 5 bytes long, shorter than the 8-byte"));

  trident_test::write_bytes(path, u64_le(1000) + "{}      ");
  CHECK_THROWS_WITH(SafetensorsFile(path),
                    Contains(path) && Contains("header length 1000 runs past the end of the file "
                                               "(16 bytes, so at most 8 bytes of header)"));

  trident_test::write_bytes(path, u64_le(std::uint64_t(1) << 40) + "{}      ");
  CHECK_THROWS_WITH(SafetensorsFile(path), Contains("header length 1099511627776 is absurdly large"));

  CHECK_THROWS_WITH(SafetensorsFile(dir.file("absent.safetensors")), Contains("cannot open") && Contains("absent"));
}

TEST_CASE("a header that is not a JSON object is refused", "[io][safetensors]") {
  TemporaryDirectory dir;
  CHECK_THROWS_WITH(SafetensorsFile(file_with(dir, R"({"a": {"dtype": "F32",)", 0)),
                    Contains("malformed.safetensors") && Contains("header is not valid JSON"));
  CHECK_THROWS_WITH(SafetensorsFile(file_with(dir, R"({"a": 1} trailing)", 0)), Contains("not valid JSON"));
  CHECK_THROWS_WITH(SafetensorsFile(file_with(dir, R"([1, 2])", 0)), Contains("does not start with '{'"));
  CHECK_THROWS_WITH(SafetensorsFile(file_with(dir, "", 0)), Contains("does not start with '{'"));
}

TEST_CASE("entries with missing fields or wrong JSON types are refused", "[io][safetensors]") {
  TemporaryDirectory dir;
  const auto refuse = [&](const std::string& json, std::size_t data, const std::string& message) {
    INFO(json);
    CHECK_THROWS_WITH(SafetensorsFile(file_with(dir, json, data)),
                      Contains("malformed.safetensors") && Contains(message));
  };
  refuse(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", 8, R"(tensor 'w': entry has no "dtype")");
  refuse(R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", 8, R"(tensor 'w': entry has no "shape")");
  refuse(R"({"w":{"dtype":"F32","shape":[2]}})", 8, R"(tensor 'w': entry has no "data_offsets")");
  refuse(R"({"w":[1,2]})", 8, "tensor 'w': entry is a JSON array, not an object");
  refuse(R"({"w":{"dtype":32,"shape":[2],"data_offsets":[0,8]}})", 8, R"(tensor 'w': "dtype" is a JSON number)");
  refuse(R"({"w":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", 8, R"(tensor 'w': "shape" is a JSON string)");
  refuse(R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", 8,
         "tensor 'w': shape [2.5] has extent 2.5 at dimension 0");
  refuse(R"({"w":{"dtype":"F32","shape":[2,-4],"data_offsets":[0,8]}})", 8,
         "tensor 'w': shape [2,-4] has extent -4 at dimension 1");
  refuse(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8]}})", 8, "tensor 'w': \"data_offsets\" must be");
  refuse(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":["0","8"]}})", 8, R"(not ["0","8"])");
  refuse(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,-8]}})", 8, "not [0,-8]");
  refuse(R"({"w":{"dtype":"F128","shape":[2],"data_offsets":[0,8]}})", 8, R"(tensor 'w': unknown dtype "F128")");
  refuse(R"({"__metadata__":"v1","w":)" + entry("F32", "[2]", 0, 8) + "}", 8,
         R"("__metadata__" is a JSON string, not an object)");
  refuse(R"({"__metadata__":{"step":42},"w":)" + entry("F32", "[2]", 0, 8) + "}", 8,
         R"("__metadata__" entry 'step' is a JSON number, not a string: 42)");
}

TEST_CASE("offsets that do not match the shape or the data section are refused", "[io][safetensors]") {
  TemporaryDirectory dir;
  const auto refuse = [&](const std::string& json, std::size_t data, const std::string& message) {
    INFO(json);
    CHECK_THROWS_WITH(SafetensorsFile(file_with(dir, json, data)),
                      Contains("malformed.safetensors") && Contains(message));
  };
  refuse(R"({"w":)" + entry("F32", "[2]", 8, 0) + "}", 8, "tensor 'w': data_offsets [8, 0] begin after they end");
  refuse(R"({"w":)" + entry("F32", "[3]", 0, 8) + "}", 8,
         "tensor 'w': data_offsets [0, 8] hold 8 bytes but dtype F32 and shape [3] need 12");
  refuse(R"({"w":)" + entry("BF16", "[2,3]", 0, 8) + "}", 8, "need 12");
  // Truncated: the header promises 8 bytes, the file has 4.
  refuse(R"({"w":)" + entry("F32", "[2]", 0, 8) + "}", 4,
         "tensor 'w': data_offsets [0, 8] run past the end of the data section, which has 4 bytes");
  refuse(R"({"a":)" + entry("F32", "[2]", 0, 8) + R"(,"b":)" + entry("F32", "[2]", 4, 12) + "}", 12,
         "tensor 'b' [4, 12) overlaps tensor 'a' [0, 8)");
  refuse(R"({"a":)" + entry("F32", "[2]", 0, 8) + R"(,"b":)" + entry("F32", "[2]", 12, 20) + "}", 20,
         "a gap of 4 bytes in the data section at offset 8 after tensor 'a' [0, 8) before tensor 'b' [12, 20)");
  refuse(R"({"b":)" + entry("F32", "[2]", 4, 12) + "}", 12, "a gap of 4 bytes in the data section at offset 0");
  refuse(R"({"a":)" + entry("F32", "[2]", 0, 8) + "}", 12,
         "the data section has 12 bytes but the tensors cover only [0, 8): 4 bytes at offset 8 belong to no tensor");
}

TEST_CASE("duplicate names are refused although JSON parsers keep only one", "[io][safetensors]") {
  TemporaryDirectory dir;
  CHECK_THROWS_WITH(
      SafetensorsFile(
          file_with(dir, R"({"a":)" + entry("F32", "[2]", 0, 8) + R"(,"a":)" + entry("F32", "[2]", 8, 16) + "}", 16)),
      Contains("malformed.safetensors") && Contains("tensor name 'a' appears more than once"));
  CHECK_THROWS_WITH(
      SafetensorsFile(file_with(dir, R"({"a":{"dtype":"F32","dtype":"F64","shape":[2],"data_offsets":[0,8]}})", 8)),
      Contains("key 'dtype' appears more than once in the entry of 'a'"));
  CHECK_THROWS_WITH(
      SafetensorsFile(file_with(dir, R"({"__metadata__":{"k":"1","k":"2"},"a":)" + entry("F32", "[2]", 0, 8) + "}", 8)),
      Contains("key 'k' appears more than once in the entry of '__metadata__'"));
}
