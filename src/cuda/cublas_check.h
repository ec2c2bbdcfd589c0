// DSV4_CUBLAS_TRY: return a Status naming the call and cuBLAS's status when a cuBLAS call fails
// (the cuBLAS counterpart of DSV4_CUDA_TRY in check.h).
#pragma once

#include <cublas_v2.h>

#include "core/status.h"

#define DSV4_CUBLAS_TRY(expr)                                                  \
  do {                                                                         \
    const cublasStatus_t dsv4_st_ = (expr);                                    \
    if (dsv4_st_ != CUBLAS_STATUS_SUCCESS)                                     \
      return Status::errorf("{}:{}: {} failed: {}", __FILE__, __LINE__, #expr, \
                            cublasGetStatusString(dsv4_st_));                  \
  } while (0)
