// compressor_decode, one block per token: store the token's rows in its slot's tail; if its
// position closes a window, pool the window (compressor_slot, the same serial max / denominator /
// weighted-sum passes as compressor_kernel) into shared memory, rms_norm it (block_sum), rotate the
// last rope_dim channels at the window's first position (rope_kernel's rounding), write the entry
// and, for CSA, replace prev with this window's Ca once every thread has read the old one.
#pragma once

#include <cstdint>

#include "cuda/compressor.cuh"
#include "cuda/reduce.cuh"

namespace dsv4::cuda {

constexpr int kCompressorDecodeThreads = 128;

struct CompressorDecodeArgs {
  const float *kv, *gate, *ape, *norm, *inv_freq;
  const int32_t* slots;
  const int64_t* positions;
  float *tail_kv, *tail_gate, *prev_kv, *prev_gate, *entries;
  int64_t entry_stride, entry_offset, max_entries, ratio, width, n_series, rope_dim;
  float eps;
};

// Dynamic shared memory: width floats (the entry being built).
__global__ void compressor_decode_kernel(CompressorDecodeArgs a) {
  extern __shared__ float s_entry[];
  __shared__ float scratch[32];
  const int64_t t = blockIdx.x, s = a.slots[t], pos = a.positions[t];
  const int64_t m = a.ratio, w = a.width, row = a.n_series * w, b = pos / m;
  float* tail_kv = a.tail_kv + s * m * row;
  float* tail_gate = a.tail_gate + s * m * row;
  for (int64_t i = threadIdx.x; i < row; i += blockDim.x) {
    tail_kv[(pos % m) * row + i] = a.kv[t * row + i];
    tail_gate[(pos % m) * row + i] = a.gate[t * row + i];
  }
  if ((pos + 1) % m != 0 || b >= a.max_entries) return;  // uniform across the block
  __syncthreads();                                       // the whole window is in the tail
  const bool csa = a.n_series == 2;
  float* prev_kv = csa && b > 0 ? a.prev_kv + s * m * w : nullptr;
  float* prev_gate = csa && b > 0 ? a.prev_gate + s * m * w : nullptr;
  const int64_t n_slots = a.n_series * m;
  float sum_sq = 0.0f;
  for (int64_t c = threadIdx.x; c < w; c += blockDim.x) {
    float mx = -INFINITY;
    for (int64_t k = 0; k < n_slots; ++k)
      mx = fmaxf(
          mx, compressor_slot(tail_kv, tail_gate, a.ape, prev_kv, prev_gate, 0, k, c, m, w, a.n_series).gate);
    float den = 0.0f;
    for (int64_t k = 0; k < n_slots; ++k)
      den += expf(
          compressor_slot(tail_kv, tail_gate, a.ape, prev_kv, prev_gate, 0, k, c, m, w, a.n_series).gate -
          mx);
    float acc = 0.0f;
    for (int64_t k = 0; k < n_slots; ++k) {
      const CompressorSlot v =
          compressor_slot(tail_kv, tail_gate, a.ape, prev_kv, prev_gate, 0, k, c, m, w, a.n_series);
      acc += v.kv * (expf(v.gate - mx) / den);
    }
    s_entry[c] = acc;
    sum_sq += acc * acc;
  }
  sum_sq = block_sum(sum_sq, scratch);  // its barriers also order every prev read before the update
  const float inv_rms = 1.0f / sqrtf(sum_sq / float(w) + a.eps);
  for (int64_t c = threadIdx.x; c < w; c += blockDim.x) s_entry[c] = a.norm[c] * (s_entry[c] * inv_rms);
  if (csa) {
    float* next_kv = a.prev_kv + s * m * w;
    float* next_gate = a.prev_gate + s * m * w;
    for (int64_t i = threadIdx.x; i < m * w; i += blockDim.x) {
      const int64_t k = i / w, c = i % w;
      next_kv[i] = tail_kv[k * row + c];
      next_gate[i] = tail_gate[k * row + c] + a.ape[k * row + c];
    }
  }
  __syncthreads();
  const int64_t half = a.rope_dim / 2, offset = w - a.rope_dim;
  const float entry_position = float(b * m);
  for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
    const float angle = __fmul_rn(a.inv_freq[i], entry_position);
    const float cos_a = cosf(angle), sin_a = sinf(angle);
    float* pair = s_entry + offset + 2 * i;
    const float x0 = pair[0], x1 = pair[1];
    pair[0] = __fsub_rn(__fmul_rn(x0, cos_a), __fmul_rn(x1, sin_a));
    pair[1] = __fadd_rn(__fmul_rn(x1, cos_a), __fmul_rn(x0, sin_a));
  }
  __syncthreads();
  float* entry = a.entries + (s * a.entry_stride + a.entry_offset + b) * w;
  for (int64_t c = threadIdx.x; c < w; c += blockDim.x) entry[c] = s_entry[c];
}

}  // namespace dsv4::cuda
