// Checked CUDA calls: every runtime call and every launch returns a Status naming the call.
#pragma once

#include <cuda_runtime.h>

#include "core/status.h"

#define DSV4_CUDA_TRY(expr)                                                            \
  do {                                                                                 \
    cudaError_t dsv4_err_ = (expr);                                                    \
    if (dsv4_err_ != cudaSuccess)                                                      \
      return ::dsv4::Status::errorf("{}:{}: {} failed: {}", __FILE__, __LINE__, #expr, \
                                    cudaGetErrorString(dsv4_err_));                    \
  } while (0)

// After a kernel launch: reports configuration errors (bad grid, too much shared memory).
#define DSV4_CUDA_LAUNCH_CHECK() DSV4_CUDA_TRY(cudaGetLastError())

namespace dsv4::cuda {

// Number of usable GPUs (0 when no driver or device; never an error).
int device_count();

// Multiprocessors of the current device, cached per device: launch configurations size their grids
// by it. Never an error: if the query fails (a broken context, which the next launch reports), the
// H100's 132.
int sm_count();

}  // namespace dsv4::cuda
