// moe_experts on Hopper (sm_90a): the contract of src/ops/moe_experts.h with device pointers,
// CUDA-graph safe (no host synchronisation, no allocation, fixed-size workspace).
//
// Weights: each expert matrix is packed at load with pack_linear_weight_sm90 and uploaded; the
// ExpertWeights handed to the op hold device views made by packed_expert_view():
//   {format, rows, cols (logical), data = packed data, scales = packed scales,
//    global_scale = PackedLinearWeight::out_scale (weight_scale_2 and the packing's power of two)}.
// Formats: NVFP4, MXFP4 or FP8 block-128 (the shared expert), one format for all matrices of a call.
//
// Launches, grouped mode: plan (offsets of the per-expert counts — the router's, or counted
// there — token permutation, work items; one block) → grouped gate+up GEMM with the clamped SwiGLU
// in its epilogue (act, BF16) → grouped down GEMM with the routing weight in its epilogue (one
// BF16 row per (token, slot)) → combine (each token's slots summed in ascending expert id order,
// as the CPU reference, then + addend). Per-slot mode (a few tokens, moe_gemm_config decides): one
// work item per slot, so no plan; gate+up → down, whose last block per (token, row block) does the
// combine (then an add kernel for the addend).
// Prefill mode (many tokens per expert, moe_gemm_config decides): plan → x gathered to BF16 by
// position (each token's row read once, written to its slots' positions) → wgmma + TMA gate+up
// and down GEMMs (prefill_gemm_sm90.cuh) → combine.
// Dense mode (one expert, top_k 1, a prefill's many tokens: the shared expert): x → BF16, the
// expert's three matrices dequantized to BF16, cuBLAS gate|up GEMM (fp32) → clamped SwiGLU (act,
// BF16) → cuBLAS down GEMM into y → routing weight, rounded to BF16 as a slot output (0 for a
// skipped slot), + addend. At 4096 tokens cuBLAS on BF16 copies beats the wgmma GEMMs on FP8
// weights (docs/performance.md).
// Deterministic: every sum has a fixed order.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "cuda/linear_sm90.h"
#include "ops/moe_experts.h"

namespace dsv4::cuda {

// One expert's three packed matrices (0 = w1 gate, 1 = w3 up, 2 = w2 down) as the kernels read
// them: a device array of these, indexed by expert id, is the expert table. Every pointer 16-byte
// aligned (the prefill GEMM copies them with TMA).
struct MoeExpertSm90 {
  const uint8_t* data[3];
  const uint8_t* scales[3];
  float out_scale[3];
};

constexpr int64_t kMoeMaxExperts = 1024;  // the plan kernel holds one counter per expert
constexpr int64_t kMoeMaxTopK = 32;

// The device view of a packed matrix whose data and scales were uploaded to d_data / d_scales.
WeightView packed_expert_view(const PackedLinearWeight& p, const uint8_t* d_data, const uint8_t* d_scales);

// Which GEMMs run: kAuto lets moe_gemm_config choose from the shape; kPrefill runs the wgmma GEMMs
// and kDense (one expert, top_k 1) dense mode whatever the shape (how the tests cover them at
// shapes too small for the automatic choice, and the benchmark compares them).
enum class MoeGemmRegime { kAuto, kPrefill, kDense };

struct MoeExpertsSm90Params {
  const float* x = nullptr;              // [n_tokens, d_model]
  const int32_t* expert_ids = nullptr;   // [n_tokens, top_k]; ids outside [0, n_experts) are skipped
  const float* weights = nullptr;        // [n_tokens, top_k]
  const int32_t* counts = nullptr;       // [n_experts] the ids' histogram (moe_router's), or null
  const MoeExpertSm90* table = nullptr;  // [n_experts], device
  WeightFormat format = WeightFormat::kNVFP4;
  float* y = nullptr;  // [n_tokens, d_model], overwritten
  // [n_tokens, d_model] or null: y = Σ slots + addend, added by the combine (ops/moe_experts.h).
  // addend_ready, when set, is waited for on the launch's stream just before addend is read, so
  // that everything before that point may run beside the work that writes it.
  const float* addend = nullptr;
  cudaEvent_t addend_ready = nullptr;
  int64_t n_tokens = 0, d_model = 0, d_ff = 0, n_experts = 0, top_k = 0;
  float swiglu_limit = 0.0f;
  MoeGemmRegime regime = MoeGemmRegime::kAuto;
  // Dense mode's GEMMs run on it (bound to the launch's stream when it is not); needed when
  // moe_experts_sm90_dense(...) says dense mode runs.
  cublasHandle_t cublas = nullptr;
  // moe_experts_sm90_workspace_bytes(...) bytes, device, zeroed once when allocated: it holds
  // arrival counters that every call leaves zero again.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

size_t moe_experts_sm90_workspace_bytes(int64_t n_tokens, int64_t d_model, int64_t d_ff, int64_t n_experts,
                                        int64_t top_k, MoeGemmRegime regime = MoeGemmRegime::kAuto);

// Whether a call of this shape runs dense mode (and so needs a cuBLAS handle).
bool moe_experts_sm90_dense(int64_t n_tokens, int64_t d_model, int64_t d_ff, int64_t n_experts, int64_t top_k,
                            MoeGemmRegime regime = MoeGemmRegime::kAuto);

// Raw launcher (no checks beyond launch errors) and the checked layer.
Status moe_experts_sm90_launch(const MoeExpertsSm90Params& p, cudaStream_t stream);
Status moe_experts_sm90(const MoeExpertsSm90Params& p, cudaStream_t stream);

// The op as the backend calls it: `p.experts` is a host array of device views
// (packed_expert_view). Keeps, per expert array, the device table (rebuilt only when the views
// change) and a workspace that grows on demand: a call whose shapes and views were seen before
// allocates and copies nothing, so it can be captured in a CUDA graph after one warm-up call.
class MoeExpertsSm90Runner {
 public:
  MoeExpertsSm90Runner();
  ~MoeExpertsSm90Runner();
  // cublas: dense mode's handle (see MoeExpertsSm90Params::cublas); addend_ready: see
  // MoeExpertsSm90Params.
  Status run(const MoeExpertsParams& p, cudaStream_t stream, cublasHandle_t cublas,
             cudaEvent_t addend_ready = nullptr, MoeGemmRegime regime = MoeGemmRegime::kAuto);
  // Counts the device allocations run() made (tables, workspace growth): recorded graphs hold
  // their addresses.
  uint64_t memory_epoch() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace dsv4::cuda
