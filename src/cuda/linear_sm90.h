// linear on Hopper (sm_90a): y[t, n] = out_scale · Σ_k bf16(x[t, k]) · W'[n, k], fp32 accumulation,
// W' the weight dequantized exactly to BF16 in registers (W4A16 / W8A16; hopper-kernels.md §3).
// Layers, FlashInfer style: pack_linear_weight_sm90 (host, at load) → linear_sm90_launch (raw
// device pointers, chooses the path, returns Status) → linear_sm90 (checks everything, then
// launches). BF16 weights go through cuBLAS unpacked.
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "core/quant.h"
#include "core/status.h"

namespace dsv4::cuda {

// Kernel layout (see linear_sm90.cuh for the nibble order; the prefill GEMM reads the same bytes): rows
// padded to 16, cols to 128; one "chunk" is a 16-row tile × kChunkK columns stored as 32 lanes × 16 bytes, so
// each lane's 16-byte load is exactly its mma.sync A fragments for the chunk. Scales are re-encoded so one
// integer multiply-add turns them into pre-biased BF16 pairs; the bias is undone by out_scale.
struct PackedLinearWeight {
  WeightFormat format = WeightFormat::kBF16;
  int64_t rows = 0, cols = 0;          // the logical [N, K]
  int64_t rows_pad = 0, cols_pad = 0;  // [ceil16(N), ceil128(K)] (BF16: = rows, cols)
  std::vector<uint8_t> data;           // FP4/FP8: [rows_pad/16][cols_pad/chunk_k][32][16 B]; BF16: canonical
  std::vector<uint8_t> scales;         // NVFP4 [tiles][chunks][8][8 B], MXFP4 [tiles][chunks][8][4 B],
                                       // FP8 bf16 bits [ceil(N/128)][cols_pad/128]; BF16 none
  float out_scale = 1.0f;              // applied to the fp32 accumulator (weight_scale_2 · 2^-bias)
};

// Where the e2m1 codes sit in a packed 32-bit word (k16 step j of a lane's 16 bytes). The word holds
// the A-fragment pairs a0..a3 of mma.m16n8k16 (rows g | g+8, columns +0 | +8), each pair's lower
// and upper column a code of four bits (sign, e1, e0, m). The decoder wants a pair as a BF16 pair:
// signs at bits 15 and 31, e1 e0 m at 8:6 and 24:22. Code bit b of pair j is stored at that place
// rotated left by pair j's rotation (pair 3's m bits by their own), so pair j comes out of the word
// with one rotate and one mask (pair 0 with the mask alone, pair 3 with two of each). No four
// rotations of one pattern tile the 32 bits, so one pair needs two.
constexpr int kE2m1Pair1Rotation = 4;
constexpr int kE2m1Pair2Rotation = 10;
constexpr int kE2m1Pair3Rotation = 6;
constexpr int kE2m1Pair3MantissaRotation = 14;

// Columns one 16-byte lane load covers: 64 for e2m1 codes, 32 for E4M3 bytes.
int64_t packed_chunk_k(WeightFormat f);

// Repacks a host weight (canonical layout, src/core/quant.h) into the kernel layout. Errors for
// F32 weights, NaN scales, and E8M0 scale ranges wider than BF16 can hold exactly (> 2^124 apart).
Result<PackedLinearWeight> pack_linear_weight_sm90(const WeightView& w);

// A packed weight in device memory.
struct PackedWeightView {
  WeightFormat format = WeightFormat::kBF16;
  int64_t rows = 0, cols = 0, rows_pad = 0, cols_pad = 0;
  const uint8_t* data = nullptr;
  const uint8_t* scales = nullptr;
  float out_scale = 1.0f;
};

// The ways a linear runs (chosen by linear_sm90_path below, or forced through LinearSm90Params).
enum class LinearPath { kDecode, kPrefill, kDequantCublas, kCublas, kAuto };
const char* linear_path_name(LinearPath p);  // "decode", "prefill", "dequant+cublas", "cublas", "auto"
// Whether path can run a weight of format f over n_tokens in n_groups: decode (≤ kDecodeMaxTokens
// tokens), prefill (one group) and dequant+cublas take quantized weights, cublas the others.
bool linear_path_runs(LinearPath path, WeightFormat f, int64_t n_tokens, int64_t n_groups);

struct LinearSm90Params {
  const float* x = nullptr;  // [n_tokens, n_groups, w.cols] fp32, device
  PackedWeightView w;        // [w.rows, w.cols], device
  float* y = nullptr;        // [n_tokens, w.rows] fp32, device
  int64_t n_tokens = 0;
  // linear_sm90_workspace_bytes(w, n_tokens) bytes, device, prepared once when allocated
  // (linear_sm90_prepare_workspace; every call leaves it prepared). One call at a time per workspace.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  cublasHandle_t cublas = nullptr;  // used by the cuBLAS paths; bound to `stream` here if it is not
  // grouped_linear: the rows form n_groups equal blocks (of whole 16-row tiles when quantized) and
  // block g multiplies x[t, g, :]: y[t, g·R + r] = Σ_k x[t, g, k] · W[g·R + r, k]. 1: plain linear.
  int64_t n_groups = 1;
  // kAuto: linear_sm90_path chooses. Another path forces it (benchmarks measure each path the
  // heuristic chooses between); the workspace must then be sized for that path.
  LinearPath path = LinearPath::kAuto;
};

// The one heuristic that picks the path (linear_sm90_path): quantized weights run the decode
// kernel (mma.sync, register dequant, linear_sm90.cuh) up to kDecodeMaxTokens tokens; above, a
// cost model fitted to measurements (linear_sm90.cu, docs/performance.md) picks the prefill GEMM
// (wgmma + TMA, prefill_gemm_sm90.cuh) or dequantize-to-BF16 + cuBLAS (always, with groups:
// one strided-batched GEMM). BF16 weights run cuBLAS.
constexpr int64_t kDecodeMaxTokens = 64;
LinearPath linear_sm90_path(const PackedWeightView& w, int64_t n_tokens, int64_t n_groups = 1);
size_t linear_sm90_workspace_bytes(const PackedWeightView& w, int64_t n_tokens, int64_t n_groups = 1,
                                   LinearPath path = LinearPath::kAuto);
// Zeroes the split-K arrival counters at the start of a new workspace (enqueued on stream). The
// decode path is deterministic: split-K partials are added in split order, never with atomics.
Status linear_sm90_prepare_workspace(void* workspace, size_t bytes, cudaStream_t stream);

// y = alpha · x · Wᵀ through cuBLAS: W BF16 [rows, ld] (rows of it read; more may be allocated),
// x BF16 [n_tokens, n_groups, ld], y fp32 [n_tokens, rows]; with groups, one strided-batched GEMM
// whose batch g is group g's rows and x. Binds h to `stream` when it is not.
Status cublas_linear(cublasHandle_t h, const __nv_bfloat16* w, const __nv_bfloat16* x, float* y, int64_t rows,
                     int64_t ld, int64_t n_tokens, int64_t n_groups, float alpha, cudaStream_t stream);

// Raw launcher: no argument checks beyond what a launch reports. No host synchronisation.
Status linear_sm90_launch(const LinearSm90Params& p, cudaStream_t stream);
// Checked layer: validates shapes, pointers and workspace, then launches.
Status linear_sm90(const LinearSm90Params& p, cudaStream_t stream);

}  // namespace dsv4::cuda
