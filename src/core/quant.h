// Quantized weight formats of DeepSeek-V4 checkpoints (dsv4-architecture.md §8.2, §8.4), their
// exact dequantization, and the quantizers tools and fixtures use to produce them.
// Every matrix is row-major [rows = N (output), cols = K (input)]; packed FP4 stores two codes
// per byte with the low nibble holding the even column.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace dsv4 {

enum class WeightFormat {
  kF32,
  kBF16,
  kFP8Block128,  // F8_E4M3 [N, K] + E8M0 scale [ceil(N/128), ceil(K/128)]
  kMXFP4,        // e2m1 [N, K/2] + E8M0 scale [N, K/32]
  kNVFP4,        // e2m1 [N, K/2] + E4M3 scale [N, K/16] + fp32 weight_scale_2
};

std::string_view weight_format_name(WeightFormat f);

constexpr int kNvfp4Block = 16;
constexpr int kMxfp4Block = 32;
constexpr int kFp8Block = 128;

// A non-owning view of one weight matrix in its stored format.
struct WeightView {
  WeightFormat format = WeightFormat::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* data = nullptr;       // F32/BF16/E4M3 elements or packed e2m1 bytes
  const uint8_t* scales = nullptr;  // E8M0 or E4M3 block scales (null for F32/BF16)
  float global_scale = 1.0f;        // NVFP4 weight_scale_2; 1 elsewhere
};

// Bytes of the stored data and of the scales of a [rows, cols] matrix in `format`.
int64_t weight_data_bytes(WeightFormat format, int64_t rows, int64_t cols);
int64_t weight_scale_bytes(WeightFormat format, int64_t rows, int64_t cols);

// out[0..cols) = row r of the matrix in fp32, every scale applied. Exact (the products are
// representable in fp32 except where E8M0 scales push them past its range).
void dequantize_row(const WeightView& w, int64_t r, float* out);

// out[0..cols) = row r as the BF16 operand a W4A16/W8A16 GEMM feeds its tensor cores: exact for
// every format. For NVFP4 this is code × E4M3 block scale; w.global_scale is left for the
// epilogue (dsv4-architecture.md and hopper-kernels.md §3), so it is NOT applied here.
void dequantize_row_bf16(const WeightView& w, int64_t r, uint16_t* out);

// An owned quantized matrix (tools, tests and fixtures make these; the engine reads views).
struct QuantizedWeight {
  WeightFormat format = WeightFormat::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<uint8_t> data;
  std::vector<uint8_t> scales;
  float global_scale = 1.0f;
  WeightView view() const { return {format, rows, cols, data.data(), scales.data(), global_scale}; }
};

// Quantizes w [rows, cols] (fp32). Preconditions (checked by callers): cols divisible by the
// format's block (16 NVFP4, 32 MXFP4; FP8 blocks may be ragged).
// NVFP4, ModelOpt recipe: weight_scale_2 = amax/(6·448), block scale
// e4m3(max(block_amax/(6·weight_scale_2), 2^-9)), codes e2m1(w / (block_scale·weight_scale_2)).
QuantizedWeight quantize_nvfp4_weight(const float* w, int64_t rows, int64_t cols);
// MXFP4 with DeepSeek's power-of-two scales 2^ceil(log2(block_amax/6)).
QuantizedWeight quantize_mxfp4(const float* w, int64_t rows, int64_t cols);
// FP8 E4M3 with one power-of-two scale 2^ceil(log2(amax/448)) per 128×128 block.
QuantizedWeight quantize_fp8_block128(const float* w, int64_t rows, int64_t cols);
QuantizedWeight quantize_bf16(const float* w, int64_t rows, int64_t cols);
QuantizedWeight quantize_f32(const float* w, int64_t rows, int64_t cols);
QuantizedWeight quantize_weight(WeightFormat format, const float* w, int64_t rows, int64_t cols);

// NVFP4 activation quantization with a run-time global scale g = amax/(6·448) over the whole
// tensor, so block scales block_amax/(6·g) never exceed E4M3's 448 (a stale calibrated
// input_scale would saturate them and lose magnitude). x ≈ code · block_scale · g.
struct Nvfp4Activation {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<uint8_t> codes;         // [rows, cols/2]
  std::vector<uint8_t> block_scales;  // E4M3 [rows, cols/16]
  float global_scale = 0.0f;          // amax / (6·448); 0 for an all-zero tensor
  WeightView view() const {
    return {WeightFormat::kNVFP4, rows, cols, codes.data(), block_scales.data(), global_scale};
  }
};
Nvfp4Activation quantize_nvfp4_activation(const float* x, int64_t rows, int64_t cols);

}  // namespace dsv4
