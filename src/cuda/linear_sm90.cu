// Launcher and checked layer of linear on sm_90a (contract in linear_sm90.h, kernels in
// linear_sm90.cuh). linear_sm90_decode_config is the one place that sizes the decode grid.
#include <algorithm>

#include "cuda/check.h"
#include "cuda/cublas_check.h"
#include "cuda/device_buffer.h"
#include "cuda/linear_sm90.cuh"
#include "cuda/linear_sm90.h"
#include "cuda/prefill_gemm_sm90.h"

namespace dsv4::cuda {
namespace {

// The workspace opens with split-K's arrival counters, one per row block of up to
// kMaxCounterRowBlocks, then the prefill GEMM's tile scheduler (two ints, in a slot of its own);
// zeroed once (linear_sm90_prepare_workspace) and left zero by every call. Each path's own
// buffers follow them, so no path overwrites them.
constexpr int kMaxCounterRowBlocks = 1024;
constexpr size_t kSchedulerOffset = kMaxCounterRowBlocks * sizeof(int);  // a multiple of kWorkspaceAlign
constexpr size_t kCounterBytes = kSchedulerOffset + kWorkspaceAlign;
// The last split of a row block adds n_tokens · splits partials per thread; above this many a
// second kernel spreads the reduction over the GPU instead of one SM.
constexpr int64_t kLastBlockMaxLoads = 64;
bool is_quantized(WeightFormat f) {
  return f == WeightFormat::kNVFP4 || f == WeightFormat::kMXFP4 || f == WeightFormat::kFP8Block128;
}

struct DecodeConfig {
  int token_tiles;  // 1, 2, 4 or 8 (tiles of 8 tokens)
  int k_split;      // columns per split, multiple of 128
  int splits;
  int row_blocks;  // per group
  int n_groups;
  size_t smem;
  sm90::SplitReduce reduce;
};

// Decode grid: row blocks of 256 rows × K splits of ≥ 256 columns, about 2 blocks per SM so
// each SM keeps 16 warps × 2-4 chunks × 2 tiles × 512 B in flight. Each split costs n_tokens ×
// rows partial sums (stored, then added in split order) and re-reads x, so splits stop at 2 per
// SM; the x slice (BF16) stays ≤ 48 KB so blocks share an SM.
DecodeConfig linear_sm90_decode_config(const PackedWeightView& w, int64_t n_tokens, int64_t n_groups) {
  DecodeConfig c{};
  const int tiles8 = int((n_tokens + 7) / 8);
  c.token_tiles = tiles8 <= 1 ? 1 : tiles8 <= 2 ? 2 : tiles8 <= 4 ? 4 : 8;
  c.n_groups = int(n_groups);
  c.row_blocks = int((w.rows_pad / n_groups + sm90::kRowsPerBlock - 1) / sm90::kRowsPerBlock);
  const int all_row_blocks = c.row_blocks * c.n_groups;
  const int k_blocks = int(w.cols_pad / 128);
  const int max_k = std::max(1, (49152 / (16 * c.token_tiles) - 8) / 128);  // in 128-column units
  const int min_k = std::min(max_k, 2);
  const int want_splits = std::max(1, (2 * sm_count() + all_row_blocks - 1) / all_row_blocks);
  int k_units = std::clamp((k_blocks + want_splits - 1) / want_splits, min_k, max_k);
  k_units = std::min(k_units, k_blocks);
  c.k_split = k_units * 128;
  c.splits = (k_blocks + k_units - 1) / k_units;
  c.smem = size_t(c.token_tiles) * 8 * size_t(c.k_split + 8) * 2;
  if (c.splits == 1)
    c.reduce = sm90::SplitReduce::kNone;
  else if (all_row_blocks <= kMaxCounterRowBlocks && c.splits * n_tokens <= kLastBlockMaxLoads)
    c.reduce = sm90::SplitReduce::kLastBlock;
  else
    c.reduce = sm90::SplitReduce::kKernel;
  return c;
}

template <WeightFormat F, int kTokenTiles>
Status launch_decode(const sm90::DecodeArgs& args, const DecodeConfig& c, cudaStream_t stream) {
  auto kernel = sm90::linear_decode_sm90_kernel<F, kTokenTiles>;
  static const cudaError_t attr =  // once per instantiation: the largest slice this path stages
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 102400);
  DSV4_CUDA_TRY(attr);
  kernel<<<dim3(c.row_blocks, c.splits, c.n_groups), sm90::kThreads, c.smem, stream>>>(args);
  DSV4_CUDA_LAUNCH_CHECK();
  return {};
}

template <WeightFormat F>
Status launch_decode_format(const sm90::DecodeArgs& args, const DecodeConfig& c, cudaStream_t stream) {
  switch (c.token_tiles) {
    case 1:
      return launch_decode<F, 1>(args, c, stream);
    case 2:
      return launch_decode<F, 2>(args, c, stream);
    case 4:
      return launch_decode<F, 4>(args, c, stream);
    default:
      return launch_decode<F, 8>(args, c, stream);
  }
}

Status launch_dequantize_packed(const PackedWeightView& w, __nv_bfloat16* out, cudaStream_t stream) {
  const int64_t warps = (w.rows_pad / 16) * (w.cols_pad / packed_chunk_k(w.format));
  const unsigned blocks = unsigned((warps * 32 + 255) / 256);
  const int rp = int(w.rows_pad), cp = int(w.cols_pad);
  switch (w.format) {
    case WeightFormat::kNVFP4:
      sm90::dequantize_packed_sm90_kernel<WeightFormat::kNVFP4>
          <<<blocks, 256, 0, stream>>>(w.data, w.scales, rp, cp, out);
      break;
    case WeightFormat::kMXFP4:
      sm90::dequantize_packed_sm90_kernel<WeightFormat::kMXFP4>
          <<<blocks, 256, 0, stream>>>(w.data, w.scales, rp, cp, out);
      break;
    default:
      sm90::dequantize_packed_sm90_kernel<WeightFormat::kFP8Block128>
          <<<blocks, 256, 0, stream>>>(w.data, w.scales, rp, cp, out);
      break;
  }
  DSV4_CUDA_LAUNCH_CHECK();
  return {};
}

}  // namespace

Status cublas_linear(cublasHandle_t h, const __nv_bfloat16* w, const __nv_bfloat16* x, float* y, int64_t rows,
                     int64_t ld, int64_t n_tokens, int64_t n_groups, float alpha, cudaStream_t stream) {
  const float beta = 0.0f;
  cudaStream_t current = nullptr;
  DSV4_CUBLAS_TRY(cublasGetStream(h, &current));
  // Setting the stream also drops a workspace the caller gave the handle (cublasSetWorkspace).
  if (current != stream) DSV4_CUBLAS_TRY(cublasSetStream(h, stream));
  if (n_groups == 1) {
    DSV4_CUBLAS_TRY(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(rows), int(n_tokens), int(ld), &alpha, w,
                                 CUDA_R_16BF, int(ld), x, CUDA_R_16BF, int(ld), &beta, y, CUDA_R_32F,
                                 int(rows), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return {};
  }
  const int64_t group_rows = rows / n_groups;
  DSV4_CUBLAS_TRY(cublasGemmStridedBatchedEx(
      h, CUBLAS_OP_T, CUBLAS_OP_N, int(group_rows), int(n_tokens), int(ld), &alpha, w, CUDA_R_16BF, int(ld),
      group_rows * ld, x, CUDA_R_16BF, int(n_groups * ld), ld, &beta, y, CUDA_R_32F, int(rows), group_rows,
      int(n_groups), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return {};
}

// Many tokens, quantized weights: the cost model below, fitted to `dsv4 bench linear --path
// prefill,dequant` on the H100 (docs/performance.md, "linear, many tokens"), picks the faster of
// the wgmma GEMM and dequantize + cuBLAS; both first convert x, which is left out. wgmma: every CTA
// (256 rows × 128 tokens) runs cols_pad/128 K stages of prefill_stage_us, in waves over the SMs
// (a CTA's stage at these small grids is latency-bound: FP8's per-stage scale loads make it
// longer). Dequantize + cuBLAS: the packed weight is read and written as BF16 and cuBLAS reads it
// again (kDequantBytesPerElement at kDequantBandwidth), then the GEMM at kCublasFlops. Session 6's
// table (NVFP4 and FP8, V4 expert shapes × 128/512/4096 tokens): it picks the measured winner in
// 23 of 24 cases, wgmma where the weight has many rows and its grid is about one wave (pro.w2 at
// 128/512 tokens: 1.2-1.8x; NVFP4 flash.w2 at 512: 1.06x), dequantize + cuBLAS elsewhere; the
// 24th (NVFP4 pro.w1 at 4096 tokens) is a 1% tie that it gives to dequantize + cuBLAS.
namespace {
double prefill_stage_us(WeightFormat f) {
  return f == WeightFormat::kFP8Block128 ? 2.6 : 2.2;
}
}  // namespace
constexpr double kDequantBytesPerElement = 4.56, kDequantBandwidth = 1.43e12, kCublasFlops = 620e12;

LinearPath linear_sm90_path(const PackedWeightView& w, int64_t n_tokens, int64_t n_groups) {
  if (!is_quantized(w.format)) return LinearPath::kCublas;
  if (n_tokens <= kDecodeMaxTokens) return LinearPath::kDecode;
  if (n_groups > 1) return LinearPath::kDequantCublas;  // the wgmma GEMM has no groups
  const int64_t ctas = (w.rows_pad + prefill_rows_per_cta() - 1) / prefill_rows_per_cta() *
                       ((n_tokens + prefill_tokens_per_cta() - 1) / prefill_tokens_per_cta());
  const double waves = double((ctas + sm_count() - 1) / sm_count());
  const double wgmma_us = waves * double(w.cols_pad / 128) * prefill_stage_us(w.format);
  const double elements = double(w.rows_pad) * double(w.cols_pad);
  const double dequant_us = elements * kDequantBytesPerElement / kDequantBandwidth * 1e6 +
                            2.0 * elements * double(n_tokens) / kCublasFlops * 1e6;
  return wgmma_us < dequant_us ? LinearPath::kPrefill : LinearPath::kDequantCublas;
}

const char* linear_path_name(LinearPath p) {
  switch (p) {
    case LinearPath::kDecode:
      return "decode";
    case LinearPath::kPrefill:
      return "prefill";
    case LinearPath::kDequantCublas:
      return "dequant+cublas";
    case LinearPath::kCublas:
      return "cublas";
    case LinearPath::kAuto:
      break;
  }
  return "auto";
}

bool linear_path_runs(LinearPath path, WeightFormat f, int64_t n_tokens, int64_t n_groups) {
  switch (path) {
    case LinearPath::kDecode:
      return is_quantized(f) && n_tokens <= kDecodeMaxTokens;
    case LinearPath::kPrefill:
      return is_quantized(f) && n_groups == 1;
    case LinearPath::kDequantCublas:
      return is_quantized(f);
    case LinearPath::kCublas:
      return !is_quantized(f);
    case LinearPath::kAuto:
      break;
  }
  return true;
}

namespace {
LinearPath resolve_path(const PackedWeightView& w, int64_t n_tokens, int64_t n_groups, LinearPath path) {
  return path == LinearPath::kAuto ? linear_sm90_path(w, n_tokens, n_groups) : path;
}
}  // namespace

size_t linear_sm90_workspace_bytes(const PackedWeightView& w, int64_t n_tokens, int64_t n_groups,
                                   LinearPath forced) {
  if (n_tokens == 0) return kCounterBytes;
  const LinearPath path = resolve_path(w, n_tokens, n_groups, forced);
  if (path == LinearPath::kDecode) {
    const DecodeConfig c = linear_sm90_decode_config(w, n_tokens, n_groups);
    if (c.splits == 1) return kCounterBytes;
    return kCounterBytes + align_up(size_t(c.splits) * size_t(n_tokens) * size_t(w.rows) * sizeof(float));
  }
  size_t bytes = kCounterBytes + align_up(size_t(n_tokens * n_groups) * size_t(w.cols_pad) * 2);  // x as BF16
  if (path == LinearPath::kDequantCublas) bytes += align_up(size_t(w.rows_pad) * size_t(w.cols_pad) * 2);
  return bytes;
}

Status linear_sm90_prepare_workspace(void* workspace, size_t bytes, cudaStream_t stream) {
  if (!workspace || bytes < kCounterBytes)
    return Status::errorf("linear_sm90_prepare_workspace: {} bytes; expected a workspace of at least {}",
                          workspace ? bytes : 0, kCounterBytes);
  DSV4_CUDA_TRY(cudaMemsetAsync(workspace, 0, kCounterBytes, stream));
  return {};
}

Status linear_sm90_launch(const LinearSm90Params& p, cudaStream_t stream) {
  const PackedWeightView& w = p.w;
  if (p.n_tokens == 0) return {};
  char* const after_counters = static_cast<char*>(p.workspace) + kCounterBytes;
  const LinearPath path = resolve_path(w, p.n_tokens, p.n_groups, p.path);
  if (path == LinearPath::kDecode) {
    const DecodeConfig c = linear_sm90_decode_config(w, p.n_tokens, p.n_groups);
    const sm90::DecodeArgs args{p.x,
                                w.data,
                                w.scales,
                                p.y,
                                reinterpret_cast<float*>(after_counters),
                                static_cast<int*>(p.workspace),
                                int(p.n_tokens),
                                int(w.rows),
                                int(w.cols),
                                int(w.rows_pad),
                                int(w.cols_pad),
                                int(p.n_groups),
                                int(w.rows_pad / p.n_groups / 16),
                                c.k_split,
                                c.splits,
                                w.out_scale,
                                c.reduce};
    switch (w.format) {
      case WeightFormat::kNVFP4:
        DSV4_RETURN_IF_ERROR(launch_decode_format<WeightFormat::kNVFP4>(args, c, stream));
        break;
      case WeightFormat::kMXFP4:
        DSV4_RETURN_IF_ERROR(launch_decode_format<WeightFormat::kMXFP4>(args, c, stream));
        break;
      default:
        DSV4_RETURN_IF_ERROR(launch_decode_format<WeightFormat::kFP8Block128>(args, c, stream));
        break;
    }
    if (c.reduce == sm90::SplitReduce::kKernel) {
      const int64_t n_out = p.n_tokens * w.rows;
      sm90::linear_split_reduce_sm90_kernel<<<unsigned((n_out + 255) / 256), 256, 0, stream>>>(
          args.partials, p.y, n_out, c.splits, w.out_scale);
      DSV4_CUDA_LAUNCH_CHECK();
    }
    return {};
  }
  // Many tokens and BF16: x → BF16 (columns past cols zero; each group's slice of a row padded
  // alike), then the wgmma GEMM or cuBLAS (on the weight dequantized to BF16 when quantized).
  auto* xb = reinterpret_cast<__nv_bfloat16*>(after_counters);
  const int64_t ld = w.cols_pad;
  const int64_t nx = p.n_tokens * p.n_groups * ld;
  sm90::launch_x_to_bf16(p.x, p.n_tokens * p.n_groups, w.cols, ld, xb, stream);
  DSV4_CUDA_LAUNCH_CHECK();
  if (path == LinearPath::kPrefill)
    return prefill_linear_sm90(w, xb, p.n_tokens, p.y,
                               reinterpret_cast<int*>(static_cast<char*>(p.workspace) + kSchedulerOffset),
                               stream);
  const __nv_bfloat16* wb = reinterpret_cast<const __nv_bfloat16*>(w.data);
  if (path == LinearPath::kDequantCublas) {
    auto* wd = reinterpret_cast<__nv_bfloat16*>(after_counters + align_up(size_t(nx) * 2));
    DSV4_RETURN_IF_ERROR(launch_dequantize_packed(w, wd, stream));
    wb = wd;
  }
  return cublas_linear(p.cublas, wb, xb, p.y, w.rows, ld, p.n_tokens, p.n_groups, w.out_scale, stream);
}

Status linear_sm90(const LinearSm90Params& p, cudaStream_t stream) {
  const PackedWeightView& w = p.w;
  auto where_fn = [&] {  // formatted only on error: this runs on every decode launch
    return fmt::format("linear_sm90 [{}, {}·{}] x [{}, {}]ᵀ {}", p.n_tokens, p.n_groups, w.cols, w.rows,
                       w.cols, weight_format_name(w.format));
  };
  if (!is_quantized(w.format) && w.format != WeightFormat::kBF16)
    return Status::errorf("{}: unsupported weight format; expected NVFP4, MXFP4, FP8 block-128 or BF16",
                          where_fn());
  if (!p.x || !p.y || !w.data || (is_quantized(w.format) && !w.scales))
    return Status::error(where_fn() + ": null input, output, weight or scales");
  if (p.n_tokens < 0 || w.rows <= 0 || w.cols <= 0 || w.rows > INT32_MAX || w.cols > INT32_MAX ||
      p.n_tokens > INT32_MAX)
    return Status::error(where_fn() + ": sizes out of range; expected 0 ≤ n_tokens, 0 < rows, cols < 2^31");
  const int64_t want_rp = is_quantized(w.format) ? (w.rows + 15) / 16 * 16 : w.rows;
  const int64_t want_cp = is_quantized(w.format) ? (w.cols + 127) / 128 * 128 : w.cols;
  if (w.rows_pad != want_rp || w.cols_pad != want_cp)
    return Status::errorf("{}: packed shape [{}, {}]; expected [{}, {}]", where_fn(), w.rows_pad, w.cols_pad,
                          want_rp, want_cp);
  // Groups of a quantized weight must be whole 16-row tiles (one group may be ragged).
  if (p.n_groups < 1 || w.rows % p.n_groups != 0 ||
      (p.n_groups > 1 && is_quantized(w.format) && (w.rows / p.n_groups) % 16 != 0))
    return Status::errorf("{}: {} groups; expected a positive count dividing the rows{}", where_fn(),
                          p.n_groups, is_quantized(w.format) ? " into blocks of a multiple of 16 rows" : "");
  const LinearPath path = resolve_path(w, p.n_tokens, p.n_groups, p.path);
  if (!linear_path_runs(path, w.format, p.n_tokens, p.n_groups))
    return Status::errorf(
        "{}: path {} for a {} weight, {} group(s), {} tokens; expected decode (≤ {} tokens), prefill (one "
        "group) or dequant+cublas for quantized weights, cublas otherwise",
        where_fn(), linear_path_name(path), weight_format_name(w.format), p.n_groups, p.n_tokens,
        kDecodeMaxTokens);
  const size_t need = linear_sm90_workspace_bytes(w, p.n_tokens, p.n_groups, path);
  if (!p.workspace || p.workspace_bytes < need)
    return Status::errorf("{}: workspace of {} bytes; expected {}", where_fn(),
                          p.workspace ? p.workspace_bytes : 0, need);
  if (w.cols % 4 == 0 && reinterpret_cast<uintptr_t>(p.x) % 16 != 0)
    return Status::error(where_fn() + ": x is not 16-byte aligned; expected a cudaMalloc'd row-major tensor");
  if ((path == LinearPath::kCublas || path == LinearPath::kDequantCublas) && p.n_tokens > 0 && !p.cublas)
    return Status::error(where_fn() + ": this path needs a cuBLAS handle");
  if (reinterpret_cast<uintptr_t>(p.workspace) % 256 != 0)
    return Status::error(where_fn() + ": workspace not 256-byte aligned; expected a cudaMalloc'd buffer");
  if (is_quantized(w.format) &&
      (reinterpret_cast<uintptr_t>(w.data) % 16 != 0 || reinterpret_cast<uintptr_t>(w.scales) % 16 != 0))
    return Status::error(where_fn() +
                         ": packed data or scales not 16-byte aligned; expected cudaMalloc'd buffers");
  return linear_sm90_launch(p, stream);
}

}  // namespace dsv4::cuda
