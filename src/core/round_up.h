// v rounded up to a multiple of m (m > 0): padded tensor shapes and aligned workspace offsets.
#pragma once

#include <cstdint>

namespace dsv4 {

constexpr int64_t round_up(int64_t v, int64_t m) {
  return (v + m - 1) / m * m;
}

}  // namespace dsv4
