#pragma once
// safetensors files: plan a layout, write it atomically, read and validate, read slices.

#include <trident/io/dtype.hpp>
#include <trident/io/safetensors_header.hpp>
#include <trident/io/safetensors_layout.hpp>
#include <trident/io/safetensors_reader.hpp>
#include <trident/io/safetensors_writer.hpp>
#include <trident/io/tensor_info.hpp>
