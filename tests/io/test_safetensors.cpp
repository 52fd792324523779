// safetensors: exact bytes of a tiny file, round trips, conversions, slices and atomic writes.

#include "temporary_directory.hpp"
#include "trident_test.hpp"

#include <trident/io/header_checksum.hpp>
#include <trident/io/safetensors.hpp>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

using namespace trident::io;
using Catch::Matchers::Contains;
using trident_test::TemporaryDirectory;

std::vector<float> iota_floats(std::size_t n, float scale) {
  std::vector<float> values(n);
  for (std::size_t i = 0; i < n; ++i) values[i] = scale * static_cast<float>(i) - 1.5f;
  return values;
}

// The file of the tiny test, built by hand: tensors b (F32 [2]) and a (I32 [1, 2]), metadata
// format = pt, the checksums `checksum` gives their bytes and, as trident writes it, the
// header's checksum (files of earlier versions have none).
template <class Checksum>
std::string tiny_file(const std::string& b_bytes, const std::string& a_bytes, Checksum&& checksum,
                      bool header_checksum_too = true) {
  const Metadata metadata{
      {"format", "pt"}, {"trident.checksum.a", checksum(a_bytes)}, {"trident.checksum.b", checksum(b_bytes)}};
  const std::vector<TensorSpec> specs{{"b", DType::F32, {2}}, {"a", DType::I32, {1, 2}}};
  std::string json =
      R"({"__metadata__":{"format":"pt","trident.checksum.a":")" + checksum(a_bytes) + R"(","trident.checksum.b":")" +
      checksum(b_bytes) +
      (header_checksum_too ? R"(","trident.header_checksum":")" + header_checksum(specs, metadata) : "") +
      R"("},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("a":{"dtype":"I32","shape":[1,2],"data_offsets":[8,16]}})";
  json.append((8 - json.size() % 8) % 8, ' ');  // padded with spaces to a multiple of 8
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[static_cast<std::size_t>(i)] = static_cast<char>((json.size() >> (8 * i)) & 0xff);
  return file + json + b_bytes + a_bytes;
}

}  // namespace

TEST_CASE("a tiny file has the bytes the format defines", "[io][safetensors]") {
  TemporaryDirectory dir;
  const std::vector<float> b{1.0f, -2.5f};
  const std::vector<std::int32_t> a{7, -1};
  write_safetensors(dir.file("tiny.safetensors"), {host_tensor("b", {2}, b), host_tensor("a", {1, 2}, a)},
                    {{"format", "pt"}});

  // Built by hand. Data: 1.0f = 0x3f800000, -2.5f = 0xc0200000, 7, -1, all little-endian.
  const std::string b_bytes("\x00\x00\x80\x3f\x00\x00\x20\xc0", 8);
  const std::string a_bytes("\x07\x00\x00\x00\xff\xff\xff\xff", 8);
  // Each tensor's checksum, from its definition (checksum.hpp): the sum of its little-endian
  // 4-byte words, each times splitmix64(word index) | 1, modulo 2^64.
  const auto wsum64 = [](const std::string& bytes) {
    std::uint64_t sum = 0;
    for (std::size_t k = 0; 4 * k < bytes.size(); ++k) {
      std::uint64_t z = k + 0x9e3779b97f4a7c15ull;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      std::uint64_t word = 0;
      for (std::size_t i = 0; i < 4 && 4 * k + i < bytes.size(); ++i)
        word |= std::uint64_t(static_cast<unsigned char>(bytes[4 * k + i])) << (8 * i);
      sum += ((z ^ (z >> 31)) | 1u) * word;
    }
    char text[32];
    std::snprintf(text, sizeof text, "wsum64:%016llx", static_cast<unsigned long long>(sum));
    return std::string(text);
  };
  CHECK(trident_test::read_bytes(dir.file("tiny.safetensors")) == tiny_file(b_bytes, a_bytes, wsum64));
}

TEST_CASE("files with the FNV-1a checksums of earlier versions are still verified", "[io][safetensors]") {
  TemporaryDirectory dir;
  const std::string b_bytes("\x00\x00\x80\x3f\x00\x00\x20\xc0", 8);
  const std::string a_bytes("\x07\x00\x00\x00\xff\xff\xff\xff", 8);
  const auto fnv1a64 = [](const std::string& bytes) {
    std::uint64_t h = 14695981039346656037ull;
    for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
    char text[32];
    std::snprintf(text, sizeof text, "fnv1a64:%016llx", static_cast<unsigned long long>(h));
    return std::string(text);
  };
  std::string bytes = tiny_file(b_bytes, a_bytes, fnv1a64, false);
  trident_test::write_bytes(dir.file("old.safetensors"), bytes);
  CHECK(SafetensorsFile(dir.file("old.safetensors")).verify_checksums() == 2);
  bytes[bytes.size() - 1] = static_cast<char>(bytes[bytes.size() - 1] ^ 0x10);
  trident_test::write_bytes(dir.file("old.safetensors"), bytes);
  CHECK_THROWS_WITH(SafetensorsFile(dir.file("old.safetensors")).verify_checksums(),
                    Catch::Contains("tensor 'a' is corrupt"));
}

TEST_CASE("every dtype has its header name and element size", "[io][safetensors]") {
  const std::vector<std::pair<std::string, std::size_t>> expected{
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"U16", 2}, {"I16", 2}, {"F16", 2},
      {"BF16", 2}, {"U32", 4}, {"I32", 4}, {"F32", 4},     {"U64", 8},     {"I64", 8}, {"F64", 8}};
  for (const auto& [name, size] : expected) {
    INFO(name);
    DType dtype = DType::U8;
    REQUIRE(parse_dtype(name, dtype));
    CHECK(dtype_name(dtype) == name);
    CHECK(dtype_size(dtype) == size);
  }
  DType unchanged = DType::F32;
  CHECK_FALSE(parse_dtype("f32", unchanged));
  CHECK(unchanged == DType::F32);
  CHECK(dtype_of_v<float> == DType::F32);
  CHECK(dtype_of_v<double> == DType::F64);
  CHECK(dtype_of_v<std::int32_t> == DType::I32);
  CHECK(dtype_of_v<std::int64_t> == DType::I64);
  CHECK(dtype_of_v<std::uint16_t> == DType::U16);
  CHECK(dtype_of_v<std::uint8_t> == DType::U8);
}

TEST_CASE("the layout is planned before any data is written", "[io][safetensors]") {
  const auto layout = plan_safetensors({{"x", DType::F64, {3}}, {"y", DType::BF16, {2, 5}}, {"z", DType::U8, {0}}});
  // {"x":{"dtype":"F64","shape":[3],"data_offsets":[0,24]},"y":{...[24,44]},"z":{...[44,44]}}
  const std::string json = R"({"x":{"dtype":"F64","shape":[3],"data_offsets":[0,24]},)"
                           R"("y":{"dtype":"BF16","shape":[2,5],"data_offsets":[24,44]},)"
                           R"("z":{"dtype":"U8","shape":[0],"data_offsets":[44,44]}})";
  const std::size_t padded = (json.size() + 7) / 8 * 8;
  CHECK(layout.header.size() == 8 + padded);
  CHECK(layout.header.substr(8, json.size()) == json);
  CHECK(layout.header.substr(8 + json.size()) == std::string(padded - json.size(), ' '));
  CHECK(static_cast<unsigned char>(layout.header[0]) == padded);
  CHECK(layout.data_start() == 8 + padded);
  CHECK(layout.file_size == 8 + padded + 44);
  REQUIRE(layout.tensors.size() == 3);
  CHECK(layout.tensor("y").data_begin == 24);
  CHECK(layout.tensor("y").data_end == 44);
  CHECK(layout.file_offset(layout.tensor("y")) == 8 + padded + 24);

  CHECK_THROWS_WITH(plan_safetensors({{"a", DType::F32, {1}}, {"a", DType::F32, {2}}}),
                    Contains("tensor name 'a' is given more than once"));
  CHECK_THROWS_WITH(plan_safetensors({{"__metadata__", DType::F32, {1}}}), Contains("reserved"));
  CHECK_THROWS_WITH(plan_safetensors({{"w", DType::F32, {2, -3}}}), Contains("'w' has shape [2, -3]"));
  CHECK_THROWS_AS(plan_safetensors({{"", DType::F32, {1}}}), trident::InvalidArgument);
}

TEST_CASE("tensors and metadata survive a round trip", "[io][safetensors]") {
  TemporaryDirectory dir;
  const std::string path = dir.file("model.safetensors");
  const auto weight = iota_floats(15, 0.25f);
  const std::vector<double> bias{0.1, -1e300, 3.0};
  const std::vector<std::int32_t> ids{-7, 0, 2147483647, 5};
  const std::vector<std::int64_t> step{1234567890123LL};
  const std::vector<std::uint16_t> half_bits{0x3c00, 0xbc00};  // F16 1.0, -1.0 stored raw
  const Metadata metadata{{"step", "42"}, {"layout", "dp=2,tp=1"}, {"note", "ünïcode"}};
  HostTensor half{{"half", DType::F16, {2}}, half_bits.data()};
  const auto layout = write_safetensors(
      path,
      {host_tensor("wte.weight", {3, 5}, weight), host_tensor("bias", {3}, bias), host_tensor("ids", {2, 2}, ids),
       host_tensor("step", {}, step), half, host_tensor<float>("empty", {0, 4}, nullptr)},
      metadata);

  SafetensorsFile file(path);
  Metadata user_metadata;  // what the caller wrote; the writer adds a checksum per tensor and the header's
  for (const auto& [key, value] : file.metadata())
    if (key.rfind("trident.checksum.", 0) != 0 && key != header_checksum_key()) user_metadata[key] = value;
  CHECK(user_metadata == metadata);
  CHECK(file.metadata().size() == metadata.size() + 6 + 1);
  CHECK(file.verify_checksums() == 6);
  CHECK(file.data_start() == layout.data_start());
  CHECK(std::filesystem::file_size(path) == layout.file_size);
  std::vector<std::string> names;
  for (const auto& info : file.tensors()) names.push_back(info.name);
  CHECK(names == std::vector<std::string>{"wte.weight", "bias", "ids", "step", "half", "empty"});
  CHECK(file.tensor("half").dtype == DType::F16);
  CHECK(file.tensor("half").byte_size() == 4);
  CHECK(file.contains("bias"));
  CHECK_FALSE(file.contains("lm_head.weight"));

  CHECK(file.read<float>("wte.weight", {3, 5}) == weight);
  CHECK(file.read<double>("bias", {3}) == bias);
  CHECK(file.read<std::int32_t>("ids", {2, 2}) == ids);
  CHECK(file.read<std::int64_t>("step", {}) == step);
  CHECK(file.read<float>("empty", {0, 4}).empty());
  std::vector<float> into(15, 0.0f);
  file.read("wte.weight", {3, 5}, into.data());
  CHECK(into == weight);
}

TEST_CASE("reads convert between float widths and between integer widths", "[io][safetensors]") {
  TemporaryDirectory dir;
  const std::string path = dir.file("convert.safetensors");
  const std::vector<float> f32{0.1f, -3.25f, 1e30f};
  const std::vector<double> f64{0.1, -3.25, 1e-40};
  const std::vector<std::int32_t> i32{-5, 2000000000};
  const std::vector<std::int64_t> i64{-5, 2000000000, 3000000000LL};
  write_safetensors(path, {host_tensor("f32", {3}, f32), host_tensor("f64", {3}, f64), host_tensor("i32", {2}, i32),
                           host_tensor("i64", {3}, i64)});
  SafetensorsFile file(path);

  const auto widened = file.read<double>("f32", {3});
  for (std::size_t i = 0; i < 3; ++i) CHECK(widened[i] == static_cast<double>(f32[i]));
  const auto narrowed = file.read<float>("f64", {3});
  for (std::size_t i = 0; i < 3; ++i) CHECK(narrowed[i] == static_cast<float>(f64[i]));
  CHECK(file.read<std::int64_t>("i32", {2}) == std::vector<std::int64_t>{-5, 2000000000});
  std::int32_t small[2];
  file.read_slice("i64", {3}, {0, 2}, small);
  CHECK(small[0] == -5);
  CHECK(small[1] == 2000000000);
  CHECK_THROWS_WITH(file.read<std::int32_t>("i64", {3}),
                    Contains("element 2 of tensor 'i64'") && Contains("3000000000"));
  CHECK_THROWS_WITH(file.read<std::int32_t>("f32", {3}), Contains("tensor 'f32'") && Contains("has dtype F32"));
  CHECK_THROWS_WITH(file.read<double>("i32", {2}), Contains("tensor 'i32'") && Contains("has dtype I32"));
}

TEST_CASE("a missing tensor or a different shape names the tensor and the file", "[io][safetensors]") {
  TemporaryDirectory dir;
  const std::string path = dir.file("shapes.safetensors");
  const auto gamma = iota_floats(768, 1.0f);
  write_safetensors(path, {host_tensor("h.0.ln_1.weight", {768}, gamma)});
  SafetensorsFile file(path);
  CHECK_THROWS_WITH(
      file.read<float>("h.0.ln_1.weight", {512}),
      Contains("tensor 'h.0.ln_1.weight' has shape [768] in file '" + path + "' but the model expects [512]"));
  CHECK_THROWS_WITH(file.read<float>("h.0.ln_1.weight", {1, 768}), Contains("[1, 768]"));
  CHECK_THROWS_WITH(file.read<float>("h.0.ln_1.bias", {768}),
                    Contains("tensor 'h.0.ln_1.bias' is not in file '" + path + "'") && Contains("'h.0.ln_1.weight'"));
  CHECK_THROWS_AS(file.tensor("nope"), trident::Error);
}

TEST_CASE("slices are read straight from the file", "[io][safetensors]") {
  TemporaryDirectory dir;
  const std::string path = dir.file("slices.safetensors");
  const std::int64_t rows = 7, cols = 9;
  const auto matrix = iota_floats(rows * cols, 0.5f);
  std::vector<double> matrix64(matrix.begin(), matrix.end());
  const auto vector = iota_floats(11, 2.0f);
  write_safetensors(path, {host_tensor("before", {11}, vector), host_tensor("m", {rows, cols}, matrix),
                           host_tensor("m64", {rows, cols}, matrix64), host_tensor("v", {11}, vector)});
  SafetensorsFile file(path);

  struct Block {
    IndexRange rows, cols;
  };
  for (const Block block : {Block{{2, 3}, {1, 4}}, Block{{0, 7}, {0, 9}}, Block{{3, 4}, {0, 9}}, Block{{6, 1}, {8, 1}},
                            Block{{0, 7}, {4, 5}}, Block{{5, 0}, {2, 3}}}) {
    INFO("rows [" << block.rows.begin << ", +" << block.rows.count << ") cols [" << block.cols.begin << ", +"
                  << block.cols.count << ")");
    std::vector<float> slice(static_cast<std::size_t>(block.rows.count * block.cols.count), -99.0f);
    std::vector<float> slice64(slice.size(), -99.0f);
    file.read_slice("m", {rows, cols}, block.rows, block.cols, slice.data());
    file.read_slice("m64", {rows, cols}, block.rows, block.cols, slice64.data());
    int mismatches = 0;
    for (std::int64_t i = 0; i < block.rows.count; ++i)
      for (std::int64_t j = 0; j < block.cols.count; ++j) {
        const float expected = matrix[static_cast<std::size_t>((block.rows.begin + i) * cols + block.cols.begin + j)];
        mismatches += slice[static_cast<std::size_t>(i * block.cols.count + j)] != expected;
        mismatches += slice64[static_cast<std::size_t>(i * block.cols.count + j)] != expected;
      }
    CHECK(mismatches == 0);
  }

  std::vector<float> part(4, -99.0f);
  file.read_slice("v", {11}, {6, 4}, part.data());
  CHECK(part == std::vector<float>(vector.begin() + 6, vector.begin() + 10));
  file.read_slice("v", {11}, {7, 4}, part.data());
  CHECK(part == std::vector<float>(vector.begin() + 7, vector.end()));

  std::vector<float> sink(100);
  CHECK_THROWS_WITH(file.read_slice("v", {11}, {8, 4}, sink.data()),
                    Contains("range [8, 12) of dimension 0 is outside tensor 'v' of shape [11]"));
  CHECK_THROWS_WITH(file.read_slice("m", {rows, cols}, {0, 2}, {6, 4}, sink.data()),
                    Contains("range [6, 10) of dimension 1 is outside tensor 'm' of shape [7, 9]"));
  CHECK_THROWS_WITH(file.read_slice("m", {rows, cols}, {-1, 2}, {0, 4}, sink.data()), Contains("range [-1, 1)"));
  CHECK_THROWS_WITH(file.read_slice("m", {rows, cols}, {0, 2}, sink.data()), Contains("1-D tensors only"));
  CHECK_THROWS_WITH(file.read_slice("v", {11}, {0, 2}, {0, 2}, sink.data()), Contains("2-D tensors only"));
  CHECK_THROWS_WITH(file.read_slice("m", {cols, rows}, {0, 1}, {0, 1}, sink.data()),
                    Contains("tensor 'm' has shape [7, 9]"));
}

TEST_CASE("writes are atomic: a temporary renamed into place, nothing left on failure", "[io][safetensors]") {
  TemporaryDirectory dir;
  const std::vector<float> first{1.0f, 2.0f}, second{3.0f, 4.0f, 5.0f};

  write_safetensors(dir.file("ckpt.safetensors"), {host_tensor("w", {2}, first)});
  CHECK(dir.entries() == std::vector<std::string>{"ckpt.safetensors"});

  // Overwriting replaces the file as a whole.
  write_safetensors(dir.file("ckpt.safetensors"), {host_tensor("w", {3}, second)});
  CHECK(dir.entries() == std::vector<std::string>{"ckpt.safetensors"});
  CHECK(SafetensorsFile(dir.file("ckpt.safetensors")).read<float>("w", {3}) == second);

  // The temporary cannot be created: nothing appears.
  const std::string missing = dir.file("no-such-directory/ckpt.safetensors");
  CHECK_THROWS_WITH(write_safetensors(missing, {host_tensor("w", {2}, first)}),
                    Contains("cannot create the temporary file") && Contains(missing));
  CHECK_FALSE(std::filesystem::exists(dir.path() / "no-such-directory"));

  // The rename fails after all data was written (the name is taken by a directory): the
  // temporary is removed and the directory is untouched.
  std::filesystem::create_directory(dir.path() / "taken");
  CHECK_THROWS_WITH(write_safetensors(dir.file("taken"), {host_tensor("w", {2}, first)}),
                    Contains("renaming") && Contains(dir.file("taken")));
  CHECK(dir.entries() == std::vector<std::string>{"ckpt.safetensors", "taken"});
  CHECK(std::filesystem::is_empty(dir.path() / "taken"));

  // A tensor without data is refused before any file is created.
  CHECK_THROWS_WITH(write_safetensors(dir.file("bad.safetensors"), {host_tensor<float>("w", {2}, nullptr)}),
                    Contains("tensor 'w'") && Contains("no data"));
  CHECK(dir.entries() == std::vector<std::string>{"ckpt.safetensors", "taken"});
}

TEST_CASE("a header changed after writing is refused: an edited entry, a deleted checksum", "[io][safetensors]") {
  TemporaryDirectory dir;
  const std::vector<float> values{1.0f, -2.5f, 3.0f};
  write_safetensors(dir.file("run.safetensors"), {host_tensor("w", {3}, values)}, {{"step", "12"}, {"seed", "7"}});
  const std::string good = trident_test::read_bytes(dir.file("run.safetensors"));
  CHECK(SafetensorsFile(dir.file("run.safetensors")).has_header_checksum());
  CHECK(SafetensorsFile(dir.file("run.safetensors")).verify_checksums() == 1);

  // The same length: "step":"12" becomes "step":"13".
  std::string edited = good;
  const auto at = edited.find(R"("step":"12")");
  REQUIRE(at != std::string::npos);
  edited[at + 9] = '3';
  trident_test::write_bytes(dir.file("edited.safetensors"), edited);
  CHECK_THROWS_WITH(SafetensorsFile(dir.file("edited.safetensors")),
                    Contains("the header was changed after it was written"));

  // A tensor's checksum entry removed, the header rewritten with its new length.
  std::uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i)
    header_length = header_length << 8 | static_cast<unsigned char>(good[static_cast<std::size_t>(i)]);
  std::string header = good.substr(8, header_length);
  const auto entry = header.find(R"("trident.checksum.w":")");
  REQUIRE(entry != std::string::npos);
  header.erase(entry, header.find('"', entry + 22) + 2 - entry);  // the entry and its comma
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string shorter(8, '\0');
  for (int i = 0; i < 8; ++i)
    shorter[static_cast<std::size_t>(i)] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  shorter += header + good.substr(8 + header_length);
  trident_test::write_bytes(dir.file("deleted.safetensors"), shorter);
  CHECK_THROWS_WITH(SafetensorsFile(dir.file("deleted.safetensors")),
                    Contains("the header was changed after it was written"));
}
