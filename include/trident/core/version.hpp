#pragma once
// trident's version, kept in step with project(VERSION) in CMakeLists.txt.

#define TRIDENT_VERSION_MAJOR 0
#define TRIDENT_VERSION_MINOR 1
#define TRIDENT_VERSION_PATCH 0

namespace trident {
inline constexpr const char* version_string = "0.1.0";
}  // namespace trident
