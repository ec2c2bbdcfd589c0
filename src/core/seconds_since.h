// Wall-clock seconds elapsed since t0 on the steady clock: load, prefill and decode timings.
#pragma once

#include <chrono>

namespace dsv4 {

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace dsv4
