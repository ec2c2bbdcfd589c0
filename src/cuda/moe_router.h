// moe_router on the GPU: the contract of src/ops/moe_router.h with device pointers, one launch,
// no host synchronisation, CUDA-graph safe. Differences forced by device memory: token ids (hash
// mode) and tid2eid entries cannot be checked on the host, so a token whose id or table entry is
// out of range gets expert id -1 and weight 0 for that slot (not counted; moe_experts skips it).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/device_buffer.h"
#include "ops/moe_router.h"

namespace dsv4::cuda {

// Largest n_experts / top_k the kernel holds (scores in shared memory, ids one per lane).
constexpr int64_t kMoeRouterMaxExperts = 1024;
constexpr int64_t kMoeRouterMaxTopK = 32;

// A call's device scratch. The counters must be zero before the first call (allocate them zeroed);
// every call leaves them zero again, so a call can be replayed from a CUDA graph.
struct MoeRouterWorkspace {
  float* scores = nullptr;       // [n_tokens, n_experts] σ
  uint32_t* counters = nullptr;  // [moe_router_counters(n_tokens)]
};
int64_t moe_router_counters(int64_t n_tokens);

// From this many tokens a BF16 gate's logits run on the tensor cores (x split exactly into three
// BF16 terms, fp32 accumulation): fp32-level error but not the router order's bits, so an expert
// choice may differ from the CPU's at a near-tie (docs/numerics.md). Below it, or with an F32
// gate, the logits follow the router order and ids, weights and counts equal the CPU's bit for bit.
// H100, V4-Flash: 4096 tokens 80 µs against 458 in the router order; below ~512 tokens the
// tensor-core kernel's blocks are too few (70 µs from 256 to 1024 tokens) and the router order wins
// (42.5 µs at 255 tokens; V4-Pro 90 against 115 at 255/256).
constexpr int64_t kMoeRouterTensorCoreMinTokens = 512;
bool moe_router_bit_exact(int64_t n_tokens, WeightFormat gate_format);

Status moe_router(const MoeRouterParams& p, const MoeRouterWorkspace& w, cudaStream_t stream);

// The op as the backend calls it: owns a workspace that grows on demand (zeroed when it does), so a
// call whose shape was seen before allocates nothing and can be captured in a graph.
class MoeRouterRunner {
 public:
  Status run(const MoeRouterParams& p, cudaStream_t stream);
  // Counts the workspace allocations run() made: recorded graphs hold their addresses.
  uint64_t memory_epoch() const { return memory_epoch_; }

 private:
  DeviceBuffer<float> scores_;
  DeviceBuffer<uint32_t> counters_;
  uint64_t memory_epoch_ = 0;
};

}  // namespace dsv4::cuda
