// The backend interface the model is written against: one method per op (the op names of
// src/ops/), each taking that op's params struct. The model owns the sequence logic (positions,
// caches, which keys each query sees); a backend owns the math and its memory. Pointers in the
// params are in the backend's memory: host memory for the CPU backend, device memory for CUDA.
// Ops and the memory methods run in call order; only download() and synchronize() wait for them.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "core/status.h"
#include "ops/attention.h"
#include "ops/compressor.h"
#include "ops/compressor_decode.h"
#include "ops/embedding.h"
#include "ops/grouped_linear.h"
#include "ops/hyper_head.h"
#include "ops/indexer.h"
#include "ops/kv_cache_decode.h"
#include "ops/linear.h"
#include "ops/mhc_post.h"
#include "ops/mhc_pre.h"
#include "ops/moe_experts.h"
#include "ops/moe_router.h"
#include "ops/rms_norm.h"
#include "ops/rope.h"

namespace dsv4 {

// An allocation in a backend's memory, freed when destroyed.
class BackendBuffer {
 public:
  virtual ~BackendBuffer() = default;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }

 protected:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// A recorded sequence of a backend's ops (a CUDA graph), replayed with the same pointers.
class BackendGraph {
 public:
  virtual ~BackendGraph() = default;
};

// What the memory plan (runtime/loading.h) checks a model against.
struct BackendMemoryInfo {
  int64_t free_bytes = 0;   // allocatable now: device memory (CUDA) or the host's available RAM (CPU)
  int64_t total_bytes = 0;  // device memory / physical RAM
  // Model::load copies the weights into this memory (CUDA); otherwise the ops read the mapped
  // checkpoint (CPU) and only the caches and activations come out of free_bytes.
  bool holds_weights = false;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual Result<BackendMemoryInfo> memory_info() const = 0;

  // Memory. upload's source may be reused as soon as it returns; download returns once the data
  // (and everything enqueued before it) is complete. copy/copy_2d regions must not overlap.
  virtual Result<std::unique_ptr<BackendBuffer>> allocate(size_t bytes) = 0;
  virtual Status upload(void* dst, const void* host_src, size_t bytes) = 0;
  virtual Status download(void* host_dst, const void* src, size_t bytes) = 0;
  virtual Status copy(void* dst, const void* src, size_t bytes) = 0;
  // rows × row_bytes from src (rows src_pitch bytes apart) to dst (dst_pitch apart).
  virtual Status copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t row_bytes,
                         size_t rows) = 0;
  virtual Status synchronize() = 0;
  // Counts the allocations that ops' recorded pointers may depend on: allocate() and every
  // workspace the backend grows for its ops. A graph recorded at one count is stale at another.
  virtual uint64_t memory_epoch() const = 0;

  // Branches: the ops issued between begin_branch() and end_branch() may run beside the ops issued
  // after end_branch(), until join_branch(); the branch starts after every op issued before
  // begin_branch(), and the ops issued after join_branch() start after the branch. A branch has
  // workspaces of its own, so any op may run in it; its outputs are read only after the join (or,
  // between end_branch and the join, as MoeExpertsParams::addend, which waits for the branch), and
  // a branch is joined before download, synchronize or end_capture. One branch at a time. A
  // backend without concurrency (CPU) runs everything in call order, a valid schedule of the same
  // dependencies.
  virtual Status begin_branch() { return {}; }
  virtual Status end_branch() { return {}; }
  virtual Status join_branch() { return {}; }
  // Graphs (CUDA): the ops and copies issued between begin_capture and end_capture are recorded,
  // not run; replay runs them. Only ops whose arguments are all device data may be recorded
  // (the model's decode step). Backends without graphs say so and the model runs eagerly.
  virtual bool supports_graphs() const { return false; }
  virtual Status begin_capture() { return Status::errorf("{} backend: no graphs", name()); }
  virtual Result<std::unique_ptr<BackendGraph>> end_capture() {
    return Status::errorf("{} backend: no graphs", name());
  }
  virtual Status replay(const BackendGraph&) { return Status::errorf("{} backend: no graphs", name()); }

  // Weights, made resident once at load; the backend owns the copies. upload_weight keeps the
  // canonical layout (embedding and moe_router read it). upload_linear_weight returns the view to pass to
  // linear, grouped_linear and moe_experts: the backend may keep its own layout behind it (the
  // CUDA backend packs for linear_sm90), so only those ops may read it. F32 weights stay exact
  // (fp32 activations too). The CPU backend returns the views themselves (the mmapped checkpoint).
  virtual Result<WeightView> upload_weight(const WeightView& w) = 0;
  virtual Result<WeightView> upload_linear_weight(const WeightView& w) = 0;

  // y[i] += x[i] for i < n, in fp32 (the shared expert's output onto the routed ones).
  virtual Status add(float* y, const float* x, int64_t n) = 0;

  virtual Status embedding(const EmbeddingParams& p) = 0;
  virtual Status linear(const LinearParams& p) = 0;
  virtual Status grouped_linear(const GroupedLinearParams& p) = 0;
  virtual Status rms_norm(const RmsNormParams& p) = 0;
  virtual Status rope(const RopeParams& p) = 0;
  virtual Status mhc_pre(const MhcPreParams& p) = 0;
  virtual Status mhc_post(const MhcPostParams& p) = 0;
  virtual Status hyper_head(const HyperHeadParams& p) = 0;
  virtual Status compressor(const CompressorParams& p) = 0;
  virtual Status compressor_decode(const CompressorDecodeParams& p) = 0;
  virtual Status kv_cache_decode(const KvCacheDecodeParams& p) = 0;
  virtual Status indexer(const IndexerParams& p) = 0;
  virtual Status attention(const AttentionParams& p) = 0;
  virtual Status moe_router(const MoeRouterParams& p) = 0;
  virtual Status moe_experts(const MoeExpertsParams& p) = 0;
};

struct CpuBackendOptions {
  // Round activations to BF16 exactly where the CUDA backend's kernels do (the "GPU contract" of
  // each op header: the inputs of linear, unless its weight is F32, the inputs and SwiGLU outputs
  // of moe_experts, and attention's q and kv). The CPU then computes the function the GPU
  // promises, independently: the oracle of the whole-model GPU tests (docs/numerics.md).
  // Off: fp32 everywhere, the reference that matches HF transformers.
  bool bf16_activations = false;
};

// The CPU reference backend (src/cpu/): checks each call's params, then runs the op.
std::unique_ptr<Backend> make_cpu_backend(const CpuBackendOptions& options = {});

}  // namespace dsv4
