#pragma once
// The whole of trident in one include.

#include <trident/core/compat.hpp>
#include <trident/core/error.hpp>
#include <trident/core/profiling.hpp>
#include <trident/core/random.hpp>
#include <trident/core/version.hpp>
