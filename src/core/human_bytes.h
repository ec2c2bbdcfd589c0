// Byte counts for people: "5.72 MB", "139.1 MB", "1.23 GB" (decimal units, as disks and
// bandwidth figures use).
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <string>

namespace dsv4 {

inline std::string human_bytes(int64_t bytes) {
  const double b = double(bytes);
  if (b >= 1e9) return fmt::format("{:.2f} GB", b / 1e9);
  if (b >= 1e6) return fmt::format("{:.2f} MB", b / 1e6);
  if (b >= 1e3) return fmt::format("{:.2f} kB", b / 1e3);
  return fmt::format("{} B", bytes);
}

}  // namespace dsv4
