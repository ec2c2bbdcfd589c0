// Element types as they appear in safetensors headers, and their sizes.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace dsv4 {

enum class DType {
  kBF16,
  kF16,
  kF32,
  kF8_E4M3,  // OCP E4M3 "fn": no infinities, max 448
  kF8_E8M0,  // power-of-two scale byte: 2^(e-127), 255 = NaN
  kU8,
  kI8,
  kI32,
  kI64,
};

// Safetensors spelling ("BF16", "F8_E4M3", ...).
std::string_view dtype_name(DType t);
std::optional<DType> dtype_from_name(std::string_view name);
std::size_t dtype_size(DType t);
// Comma-separated list of accepted names, for error messages.
std::string_view known_dtype_names();

}  // namespace dsv4
