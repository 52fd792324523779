#pragma once
// train_gpt's --data: "synthetic", one text file (read as bytes, V >= 256), or llm.c token
// files (.bin shards) joined by ','. --data-format auto tells a token file by llm.c's magic
// number (the int32 20240520 in its first 4 bytes); text and tokens insist on one reading.
// Every error names the file, the format expected and what was found, before anything is read
// whole: a directory, a missing file, a text file where tokens were meant.

#include <trident/core/error.hpp>
#include <trident/data/synthetic.hpp>
#include <trident/data/text.hpp>
#include <trident/data/token_files.hpp>
#include <trident/io/token_file.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

namespace train_gpt {

// What a --data path is, read from its first bytes.
struct DataFile {
  std::string path;
  bool exists = false, directory = false;
  std::string cannot_open;  // why it does not open, if it does not
  std::uint64_t size = 0;
  std::string head;  // its first bytes (up to 16)
  bool has_magic = false;
  std::int32_t magic = 0;  // the first 4 bytes as a little-endian int32, when it has 4
};

inline DataFile inspect_data_file(const std::string& path) {
  namespace fs = std::filesystem;
  DataFile f;
  f.path = path;
  std::error_code error;
  const auto status = fs::status(path, error);
  f.exists = fs::exists(status);
  f.directory = fs::is_directory(status);
  if (f.directory) return f;
  std::ifstream in(path, std::ios::binary);
  if (!in.is_open()) {
    f.cannot_open = std::strerror(errno);
    return f;
  }
  f.size = fs::file_size(path, error);
  char bytes[16] = {};
  in.read(bytes, sizeof bytes);
  f.head.assign(bytes, static_cast<std::size_t>(in.gcount()));
  if (f.head.size() >= 4) {
    const auto* b = reinterpret_cast<const unsigned char*>(f.head.data());
    f.magic = static_cast<std::int32_t>(std::uint32_t(b[0]) | std::uint32_t(b[1]) << 8 | std::uint32_t(b[2]) << 16 |
                                        std::uint32_t(b[3]) << 24);
    f.has_magic = f.magic == trident::io::token_file_magic;
  }
  return f;
}

// What the file holds, in words: "an empty file", "magic number 543516788 (it starts "the q...")".
inline std::string found_in(const DataFile& f) {
  if (f.directory) return "a directory";
  if (f.size == 0) return "an empty file";
  std::string shown;
  for (char c : f.head) shown += (c >= 32 && c < 127) ? c : '.';
  if (f.head.size() < 4) return "a file of " + std::to_string(f.size) + " byte(s) (\"" + shown + "\")";
  return "magic number " + std::to_string(f.magic) + " (the file starts \"" + shown + "\"" +
         (f.size > f.head.size() ? "..." : "") + ")";
}

inline const char* token_file_expected() {
  return "an llm.c token file (the int32 magic number 20240520 first, then version 1, a token count and the tokens)";
}

inline std::vector<std::string> split_paths(const std::string& list) {
  std::vector<std::string> paths;
  std::size_t start = 0;
  while (start <= list.size()) {
    const auto comma = list.find(',', start);
    paths.push_back(list.substr(start, comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return paths;
}

struct DataSettings {
  std::string data = "synthetic", format = "auto";
  int vocab = 256, successors = 4, seq = 64;
  std::int64_t batch = 16;
  std::uint64_t seed = 1337;
};

// The paths of --data, each checked to be a file that opens; throws naming the first that is not.
inline std::vector<DataFile> inspect_data(const DataSettings& s) {
  std::vector<DataFile> files;
  const auto paths = split_paths(s.data);
  for (std::size_t i = 0; i < paths.size(); ++i) {
    const std::string which =
        paths.size() > 1 ? " (file " + std::to_string(i + 1) + " of " + std::to_string(paths.size()) + ")" : "";
    trident::require_argument(!paths[i].empty(), "--data '", s.data, "': file ", i + 1, " of ", paths.size(),
                              " is an empty name (a ',' too many?)");
    DataFile f = inspect_data_file(paths[i]);
    const std::string expected = s.format == "tokens" || paths.size() > 1 ? token_file_expected()
                                 : s.format == "text"                     ? "a text file"
                                                                          : "a text file or an llm.c token file";
    trident::require_argument(!f.directory, "--data '", f.path, "'", which, " is a directory; expected ", expected,
                              paths.size() == 1 ? " (several files are joined by ',')" : "");
    trident::require_argument(f.exists, "--data '", f.path, "'", which, ": no such file; expected ", expected);
    trident::require_argument(f.cannot_open.empty(), "--data '", f.path, "'", which, ": cannot open it (",
                              f.cannot_open, "); expected ", expected);
    files.push_back(f);
  }
  return files;
}

// Whether --data names token files (after inspect_data's checks), refusing what fits no format.
inline bool reads_tokens(const DataSettings& s, const std::vector<DataFile>& files) {
  if (s.format == "text") {
    trident::require_argument(files.size() == 1, "--data-format text reads one file, but --data names ", files.size());
    trident::require_argument(s.vocab >= 256, "--data '", files[0].path,
                              "': --data-format text reads one token per byte, which needs --vocab >= 256 (got ",
                              s.vocab, ")");
    return false;
  }
  const bool tokens = s.format == "tokens" || files.size() > 1 || files[0].has_magic;
  if (tokens) {
    for (std::size_t i = 0; i < files.size(); ++i) {
      const std::string why =
          s.format == "tokens" ? " (--data-format tokens)" : " (several --data files are token files)";
      trident::require_argument(
          files[i].has_magic, "--data '", files[i].path, "'",
          files.size() > 1 ? " (file " + std::to_string(i + 1) + " of " + std::to_string(files.size()) + ")" : "",
          ": expected ", token_file_expected(), why, " but found ", found_in(files[i]));
    }
    return true;
  }
  trident::require_argument(s.vocab >= 256, "--data '", files[0].path, "' is no llm.c token file (found ",
                            found_in(files[0]), ", not the magic number 20240520), and read as text, one token per ",
                            "byte, it needs --vocab >= 256 (got ", s.vocab, "); give --vocab 256 for text, or a token ",
                            "file (--data-format tokens)");
  return false;
}

// How many tokens --data holds, read from the files' sizes (for the memory estimate).
inline std::uint64_t data_tokens(const DataSettings& s, const std::vector<DataFile>& files, bool tokens) {
  if (s.data == "synthetic")
    return static_cast<std::uint64_t>(std::max<double>(1 << 20, static_cast<double>(s.batch) * s.seq * 64 + 1));
  std::uint64_t total = 0;
  for (const auto& f : files)
    total +=
        tokens
            ? (f.size > trident::io::token_file_header_bytes ? (f.size - trident::io::token_file_header_bytes) / 2 : 0)
            : f.size;
  return total;
}

// A reader's error (it names the file), as a --data error.
inline trident::InvalidArgument data_error(const std::string& what, int vocab) {
  const bool vocabulary = what.find("outside the vocabulary") != std::string::npos;
  return trident::InvalidArgument("--data: " + what +
                                  (vocabulary ? " (is --vocab " + std::to_string(vocab) + " too small?)" : ""));
}

// The token stream, and the loss floor when it is known (the synthetic language's).
inline trident::data::TokenStream read_data(const DataSettings& s, double& entropy_floor) {
  entropy_floor = NAN;
  trident::data::TokenStream stream;
  std::string described;
  if (s.data == "synthetic") {
    trident::data::SyntheticMarkovLanguage language(s.vocab, s.successors, s.seed);
    entropy_floor = language.entropy_rate();
    stream = language.generate(static_cast<std::int64_t>(data_tokens(s, {}, true)));
    described = "the synthetic language";
  } else {
    const auto files = inspect_data(s);
    const bool tokens = reads_tokens(s, files);
    std::vector<std::string> paths;
    for (const auto& f : files) paths.push_back(f.path);
    try {
      if (tokens) {
        stream = trident::data::read_token_files(paths, s.vocab);
      } else {
        stream = trident::data::read_text_bytes(paths[0]);
        stream.vocab_size = s.vocab;
      }
    } catch (const trident::Error& e) {
      throw data_error(e.what(), s.vocab);
    } catch (const trident::InvalidArgument& e) {
      throw data_error(e.what(), s.vocab);
    }
    described = "--data '" + s.data + "'";
  }
  const double needed = static_cast<double>(s.batch) * s.seq + 1;
  trident::require_argument(static_cast<double>(stream.tokens.size()) >= needed, described, " holds ",
                            stream.tokens.size(), " tokens, fewer than the --batch ", s.batch, " x --seq ", s.seq,
                            " + 1 = ", static_cast<std::int64_t>(needed), " that one step reads");
  return stream;
}

}  // namespace train_gpt
