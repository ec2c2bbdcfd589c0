// Launchers of the prefill GEMM (contract in prefill_gemm_sm90.h, kernels in prefill_gemm_sm90.cuh).
// TMA tensor maps are encoded on the host per launch (a few µs of CPU, no device work) through
// the driver entry point that the runtime hands out, so nothing links libcuda directly.
#include <cudaTypedefs.h>

#include <algorithm>

#include "core/round_up.h"
#include "cuda/check.h"
#include "cuda/prefill_gemm_sm90.cuh"
#include "cuda/prefill_gemm_sm90.h"

namespace dsv4::cuda {
namespace {

Result<PFN_cuTensorMapEncodeTiled_v12000> encode_fn() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) !=
            cudaSuccess ||
        q != cudaDriverEntryPointSuccess) {
      cudaGetLastError();
      return PFN_cuTensorMapEncodeTiled_v12000(nullptr);
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
  }();
  if (!fn)
    return Status::error("prefill_gemm_sm90: the driver has no cuTensorMapEncodeTiled; expected CUDA ≥ 12");
  return fn;
}

// B operand rows: BF16 [rows, ld] row-major (ld a multiple of 64), boxes of 64 columns × kBoxRows rows
// with the 128-byte swizzle the wgmma descriptor expects; rows past `rows` read as zero.
Result<CUtensorMap> b_map(const __nv_bfloat16* base, int64_t rows, int64_t ld) {
  DSV4_ASSIGN_OR_RETURN(auto encode, encode_fn());
  CUtensorMap map;
  const cuuint64_t dims[2] = {cuuint64_t(ld), cuuint64_t(rows)};
  const cuuint64_t strides[1] = {cuuint64_t(ld) * 2};
  const cuuint32_t box[2] = {64, cuuint32_t(prefill::kBoxRows)};
  const cuuint32_t elem_strides[2] = {1, 1};
  const CUresult r =
      encode(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<__nv_bfloat16*>(base), dims, strides, box,
             elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
             CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    return Status::errorf("prefill_gemm_sm90: cuTensorMapEncodeTiled [{}, {}] failed with CUresult {}", rows,
                          ld, int(r));
  return map;
}

// One CTA per SM walks the tiles (a.max_tiles of them at most).
template <WeightFormat F, prefill::Kind K>
Status launch(const CUtensorMap& map, const prefill::GemmArgs& a, cudaStream_t stream) {
  auto kernel = prefill::prefill_gemm_sm90_kernel<F, K>;
  constexpr int smem = prefill::smem_bytes<F>();
  static const cudaError_t attr =  // once per instantiation
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  DSV4_CUDA_TRY(attr);
  kernel<<<unsigned(std::min(a.max_tiles, sm_count())), prefill::kThreads, smem, stream>>>(map, a);
  DSV4_CUDA_LAUNCH_CHECK();
  return {};
}

template <prefill::Kind K>
Status launch_format(WeightFormat f, const CUtensorMap& map, const prefill::GemmArgs& a,
                     cudaStream_t stream) {
  switch (f) {
    case WeightFormat::kNVFP4:
      return launch<WeightFormat::kNVFP4, K>(map, a, stream);
    case WeightFormat::kMXFP4:
      return launch<WeightFormat::kMXFP4, K>(map, a, stream);
    case WeightFormat::kFP8Block128:
      return launch<WeightFormat::kFP8Block128, K>(map, a, stream);
    default:
      return Status::errorf("prefill_gemm_sm90: weight format {}; expected NVFP4, MXFP4 or FP8 block-128",
                            weight_format_name(f));
  }
}

}  // namespace

int64_t prefill_rows_per_cta() {
  return prefill::kRowsPerCta;
}
int64_t prefill_tokens_per_cta() {
  return prefill::kTokensPerCta;
}

Status prefill_linear_sm90(const PackedWeightView& w, const __nv_bfloat16* x_bf16, int64_t n_tokens, float* y,
                           int* tile_counter, cudaStream_t stream) {
  if (n_tokens == 0) return {};
  DSV4_ASSIGN_OR_RETURN(const CUtensorMap map, b_map(x_bf16, n_tokens, w.cols_pad));
  prefill::GemmArgs a{};
  a.w_data = w.data;
  a.w_scales = w.scales;
  a.out_scale = w.out_scale;
  a.n_tokens = int(n_tokens);
  a.rows = int(w.rows);
  a.rows_pad = int(w.rows_pad);
  a.cols_pad = int(w.cols_pad);
  a.out = y;
  a.tile_counter = tile_counter;
  a.row_blocks = int((w.rows_pad + prefill::kRowsPerCta - 1) / prefill::kRowsPerCta);
  a.max_tiles = a.row_blocks * int((n_tokens + prefill::kTokensPerCta - 1) / prefill::kTokensPerCta);
  return launch_format<prefill::Kind::kLinear>(w.format, map, a, stream);
}

Status moe_prefill_gemms_sm90(const MoePrefillArgs& p, cudaStream_t stream) {
  static_assert(kMoePrefillTokensPerItem == prefill::kTokensPerCta &&
                kMoePrefillSmallItemTokens == prefill::kSmallTileTokens);
  const int64_t slots = p.n_tokens * p.top_k;
  const int64_t ld_x = round_up(p.d_model, 128), ld_act = round_up(p.d_ff, 128);

  const dim3 grid_g(unsigned(p.n_tokens), unsigned((ld_x + prefill::kGatherCols - 1) / prefill::kGatherCols));
  prefill::moe_gather_x_bf16_kernel<<<grid_g, prefill::kGatherThreads, 0, stream>>>(
      p.x, p.slot_pos, int(p.top_k), int(p.d_model), int(ld_x), p.x_perm);
  DSV4_CUDA_LAUNCH_CHECK();

  prefill::GemmArgs a{};
  a.table = p.table;
  a.items = p.items;
  a.n_items = p.n_items;
  a.perm = p.perm;
  a.route_w = p.weights;
  a.ld_act = int(ld_act);
  a.swiglu_limit = p.swiglu_limit;
  a.tile_counter = p.tile_counter;

  // Gate+up: W1 and W3 [d_ff, d_model]; a CTA covers 128 act rows of both.
  DSV4_ASSIGN_OR_RETURN(const CUtensorMap map_x, b_map(p.x_perm, slots, ld_x));
  a.rows = int(p.d_ff);
  a.rows_pad = int(round_up(p.d_ff, 16));
  a.cols_pad = int(ld_x);
  a.act_out = p.act;
  a.row_blocks = int(ld_act / (prefill::kRowsPerCta / 2));
  a.max_tiles = a.row_blocks * int(p.max_items);
  DSV4_RETURN_IF_ERROR(launch_format<prefill::Kind::kGateUp>(p.format, map_x, a, stream));

  // Down: W2 [d_model, d_ff]; K = ld_act (act's columns past d_ff are zero).
  DSV4_ASSIGN_OR_RETURN(const CUtensorMap map_act, b_map(p.act, slots, ld_act));
  a.rows = int(p.d_model);
  a.rows_pad = int(round_up(p.d_model, 16));
  a.cols_pad = int(ld_act);
  a.act_out = nullptr;
  a.slot_out = p.slot_out;
  a.row_blocks = int((a.rows_pad + prefill::kRowsPerCta - 1) / prefill::kRowsPerCta);
  a.max_tiles = a.row_blocks * int(p.max_items);
  return launch_format<prefill::Kind::kDown>(p.format, map_act, a, stream);
}

}  // namespace dsv4::cuda
