// dequantize_bf16 on the GPU: a stored weight matrix → the BF16 operand its GEMM feeds the tensor
// cores (for NVFP4 without weight_scale_2, which the epilogue applies). Same contract as the
// CPU's dequantize_row_bf16 (src/core/quant.h), bit-exact.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "core/quant.h"
#include "core/status.h"

namespace dsv4::cuda {

// `w` points to device memory; out is [w.rows, w.cols] BF16 on the device.
Status dequantize_bf16(const WeightView& w, uint16_t* out, cudaStream_t stream);

}  // namespace dsv4::cuda
