// Runs launch(std::integral_constant<int, n>) for the runtime hc_mult n in 1..4: the mHC kernels
// keep one register per stream, so the stream count must be a compile-time constant.
#pragma once

#include <cstdint>
#include <type_traits>

#include "core/status.h"

namespace dsv4::cuda {

template <typename Launch>
Status dispatch_hc_mult(int64_t hc_mult, const char* op, Launch&& launch) {
  switch (hc_mult) {
    case 1:
      return launch(std::integral_constant<int, 1>{});
    case 2:
      return launch(std::integral_constant<int, 2>{});
    case 3:
      return launch(std::integral_constant<int, 3>{});
    case 4:
      return launch(std::integral_constant<int, 4>{});
    default:
      return Status::errorf("{}: hc_mult {}; expected 1 to 4", op, hc_mult);
  }
}

}  // namespace dsv4::cuda
