#include "core/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/numeric.h"

namespace dsv4 {
namespace {

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

float row_block_amax(const float* x, int64_t n) {
  float m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

void set_nibble(uint8_t* packed, int64_t k, uint8_t code) {
  uint8_t& byte = packed[k / 2];
  byte = (k % 2 == 0) ? uint8_t((byte & 0xF0) | code) : uint8_t((byte & 0x0F) | (code << 4));
}

uint8_t get_nibble(const uint8_t* packed, int64_t k) {
  const uint8_t byte = packed[k / 2];
  return (k % 2 == 0) ? (byte & 0xF) : (byte >> 4);
}

// Shared by the NVFP4 weight and activation quantizers: block scales relative to `global`.
void quantize_nvfp4_rows(const float* x, int64_t rows, int64_t cols, float global, float min_block_scale,
                         uint8_t* codes, uint8_t* scales) {
  const int64_t n_blocks = cols / kNvfp4Block;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < n_blocks; ++b) {
      const float* src = x + r * cols + b * kNvfp4Block;
      const float amax = row_block_amax(src, kNvfp4Block);
      float block = global > 0 ? std::max(amax / (kE2M1Max * global), min_block_scale) : 0.0f;
      const uint8_t scale_byte = f32_to_e4m3(block);
      scales[r * n_blocks + b] = scale_byte;
      const float step = e4m3_to_f32(scale_byte) * global;
      for (int i = 0; i < kNvfp4Block; ++i) {
        const uint8_t code = step > 0 ? f32_to_e2m1(src[i] / step) : 0;
        set_nibble(codes + r * (cols / 2), b * kNvfp4Block + i, code);
      }
    }
  }
}

}  // namespace

std::string_view weight_format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::kF32:
      return "F32";
    case WeightFormat::kBF16:
      return "BF16";
    case WeightFormat::kFP8Block128:
      return "FP8-block128";
    case WeightFormat::kMXFP4:
      return "MXFP4";
    case WeightFormat::kNVFP4:
      return "NVFP4";
  }
  return "?";
}

int64_t weight_data_bytes(WeightFormat format, int64_t rows, int64_t cols) {
  switch (format) {
    case WeightFormat::kF32:
      return rows * cols * 4;
    case WeightFormat::kBF16:
      return rows * cols * 2;
    case WeightFormat::kFP8Block128:
      return rows * cols;
    case WeightFormat::kMXFP4:
    case WeightFormat::kNVFP4:
      return rows * cols / 2;
  }
  return 0;
}

int64_t weight_scale_bytes(WeightFormat format, int64_t rows, int64_t cols) {
  switch (format) {
    case WeightFormat::kF32:
    case WeightFormat::kBF16:
      return 0;
    case WeightFormat::kFP8Block128:
      return ceil_div(rows, kFp8Block) * ceil_div(cols, kFp8Block);
    case WeightFormat::kMXFP4:
      return rows * (cols / kMxfp4Block);
    case WeightFormat::kNVFP4:
      return rows * (cols / kNvfp4Block);
  }
  return 0;
}

void dequantize_row(const WeightView& w, int64_t r, float* out) {
  const int64_t K = w.cols;
  switch (w.format) {
    case WeightFormat::kF32:
      std::memcpy(out, static_cast<const float*>(w.data) + r * K, K * sizeof(float));
      return;
    case WeightFormat::kBF16: {
      const uint16_t* src = static_cast<const uint16_t*>(w.data) + r * K;
      for (int64_t k = 0; k < K; ++k) out[k] = bf16_to_f32(src[k]);
      return;
    }
    case WeightFormat::kFP8Block128: {
      const uint8_t* src = static_cast<const uint8_t*>(w.data) + r * K;
      const uint8_t* srow = w.scales + (r / kFp8Block) * ceil_div(K, kFp8Block);
      for (int64_t k = 0; k < K; ++k) out[k] = e4m3_to_f32(src[k]) * e8m0_to_f32(srow[k / kFp8Block]);
      return;
    }
    case WeightFormat::kMXFP4: {
      const uint8_t* src = static_cast<const uint8_t*>(w.data) + r * (K / 2);
      const uint8_t* srow = w.scales + r * (K / kMxfp4Block);
      for (int64_t k = 0; k < K; ++k)
        out[k] = e2m1_to_f32(get_nibble(src, k)) * e8m0_to_f32(srow[k / kMxfp4Block]);
      return;
    }
    case WeightFormat::kNVFP4: {
      const uint8_t* src = static_cast<const uint8_t*>(w.data) + r * (K / 2);
      const uint8_t* srow = w.scales + r * (K / kNvfp4Block);
      for (int64_t k = 0; k < K; ++k)
        out[k] = e2m1_to_f32(get_nibble(src, k)) * e4m3_to_f32(srow[k / kNvfp4Block]) * w.global_scale;
      return;
    }
  }
}

void dequantize_row_bf16(const WeightView& w, int64_t r, uint16_t* out) {
  std::vector<float> row(w.cols);
  WeightView unscaled = w;
  unscaled.global_scale = 1.0f;
  dequantize_row(unscaled, r, row.data());
  for (int64_t k = 0; k < w.cols; ++k) out[k] = f32_to_bf16(row[k]);
}

QuantizedWeight quantize_nvfp4_weight(const float* w, int64_t rows, int64_t cols) {
  QuantizedWeight q{WeightFormat::kNVFP4, rows, cols};
  q.data.assign(weight_data_bytes(q.format, rows, cols), 0);
  q.scales.assign(weight_scale_bytes(q.format, rows, cols), 0);
  const float amax = row_block_amax(w, rows * cols);
  q.global_scale = amax > 0 ? amax / (kE2M1Max * kE4M3Max) : 1.0f;
  quantize_nvfp4_rows(w, rows, cols, q.global_scale, std::ldexp(1.0f, -9), q.data.data(), q.scales.data());
  return q;
}

QuantizedWeight quantize_mxfp4(const float* w, int64_t rows, int64_t cols) {
  QuantizedWeight q{WeightFormat::kMXFP4, rows, cols};
  q.data.assign(weight_data_bytes(q.format, rows, cols), 0);
  q.scales.assign(weight_scale_bytes(q.format, rows, cols), 0);
  const int64_t n_blocks = cols / kMxfp4Block;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < n_blocks; ++b) {
      const float* src = w + r * cols + b * kMxfp4Block;
      // DeepSeek's floor on amax keeps the exponent in E8M0's range for all-zero blocks.
      const float amax = std::max(row_block_amax(src, kMxfp4Block), kE2M1Max * std::ldexp(1.0f, -126));
      const uint8_t e = pow2_scale_e8m0(amax, kE2M1Max);
      q.scales[r * n_blocks + b] = e;
      const float scale = e8m0_to_f32(e);
      for (int i = 0; i < kMxfp4Block; ++i)
        set_nibble(q.data.data() + r * (cols / 2), b * kMxfp4Block + i, f32_to_e2m1(src[i] / scale));
    }
  }
  return q;
}

QuantizedWeight quantize_fp8_block128(const float* w, int64_t rows, int64_t cols) {
  QuantizedWeight q{WeightFormat::kFP8Block128, rows, cols};
  q.data.assign(weight_data_bytes(q.format, rows, cols), 0);
  const int64_t sr = ceil_div(rows, kFp8Block), sc = ceil_div(cols, kFp8Block);
  q.scales.assign(sr * sc, 0);
  for (int64_t br = 0; br < sr; ++br) {
    for (int64_t bc = 0; bc < sc; ++bc) {
      const int64_t r0 = br * kFp8Block, r1 = std::min(rows, r0 + kFp8Block);
      const int64_t c0 = bc * kFp8Block, c1 = std::min(cols, c0 + kFp8Block);
      float amax = 1e-4f;  // DeepSeek's floor (act_quant); keeps zero blocks finite
      for (int64_t r = r0; r < r1; ++r) amax = std::max(amax, row_block_amax(w + r * cols + c0, c1 - c0));
      const uint8_t e = pow2_scale_e8m0(amax, kE4M3Max);
      q.scales[br * sc + bc] = e;
      const float scale = e8m0_to_f32(e);
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) q.data[r * cols + c] = f32_to_e4m3(w[r * cols + c] / scale);
    }
  }
  return q;
}

QuantizedWeight quantize_bf16(const float* w, int64_t rows, int64_t cols) {
  QuantizedWeight q{WeightFormat::kBF16, rows, cols};
  q.data.resize(rows * cols * 2);
  auto* dst = reinterpret_cast<uint16_t*>(q.data.data());
  for (int64_t i = 0; i < rows * cols; ++i) dst[i] = f32_to_bf16(w[i]);
  return q;
}

QuantizedWeight quantize_f32(const float* w, int64_t rows, int64_t cols) {
  QuantizedWeight q{WeightFormat::kF32, rows, cols};
  q.data.resize(rows * cols * 4);
  std::memcpy(q.data.data(), w, q.data.size());
  return q;
}

QuantizedWeight quantize_weight(WeightFormat format, const float* w, int64_t rows, int64_t cols) {
  switch (format) {
    case WeightFormat::kF32:
      return quantize_f32(w, rows, cols);
    case WeightFormat::kBF16:
      return quantize_bf16(w, rows, cols);
    case WeightFormat::kFP8Block128:
      return quantize_fp8_block128(w, rows, cols);
    case WeightFormat::kMXFP4:
      return quantize_mxfp4(w, rows, cols);
    case WeightFormat::kNVFP4:
      return quantize_nvfp4_weight(w, rows, cols);
  }
  return {};
}

Nvfp4Activation quantize_nvfp4_activation(const float* x, int64_t rows, int64_t cols) {
  Nvfp4Activation a{rows, cols};
  a.codes.assign(rows * cols / 2, 0);
  a.block_scales.assign(rows * (cols / kNvfp4Block), 0);
  const float amax = row_block_amax(x, rows * cols);
  a.global_scale = amax / (kE2M1Max * kE4M3Max);
  quantize_nvfp4_rows(x, rows, cols, a.global_scale, 0.0f, a.codes.data(), a.block_scales.data());
  return a;
}

}  // namespace dsv4
