// Self-resetting arrival counters: the block that arrives last does the work that needs every
// block's output (moe_router's selection and counts, moe_experts' folded combine) in the same
// launch, with no host synchronisation and no co-residency requirement (nobody waits).
#pragma once

#include <cstdint>

namespace dsv4::cuda {

// Call after the block's global writes, with the same arguments in every thread. Returns true in
// every thread of the block that brings *counter to `expected`; that block then sees the other
// arrivers' writes (read them with __ldcg) and has set *counter back to 0 for the next launch.
// The counter must start at 0 (workspaces holding counters are zeroed when allocated).
__device__ __forceinline__ bool block_arrive_last(uint32_t* counter, uint32_t expected) {
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    last = atomicAdd(counter, 1u) == expected - 1;
    if (last) *counter = 0;
  }
  __syncthreads();
  if (last) __threadfence();
  return last;
}

}  // namespace dsv4::cuda
