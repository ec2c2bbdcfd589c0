// make_cuda_backend: forwards each op to its launcher in src/cuda/ on its stream (inside a branch,
// the branch's), and owns the device memory the model asks for: activations and caches
// (allocate), canonical weights (upload_weight) and linear weights packed for linear_sm90
// (upload_linear_weight), looked up by their device address when linear or grouped_linear runs.
#include "cuda/cuda_backend.h"

#include <cublas_v2.h>

#include <unordered_map>
#include <vector>

#include "cuda/attention.h"
#include "cuda/check.h"
#include "cuda/compressor.h"
#include "cuda/compressor_decode.h"
#include "cuda/cublas_check.h"
#include "cuda/device_buffer.h"
#include "cuda/embedding.h"
#include "cuda/hyper_head.h"
#include "cuda/indexer.h"
#include "cuda/kv_cache_decode.h"
#include "cuda/linear_sm90.h"
#include "cuda/mhc_post.h"
#include "cuda/mhc_pre.h"
#include "cuda/moe_experts_sm90.h"
#include "cuda/moe_router.h"
#include "cuda/rms_norm.h"
#include "cuda/rope.h"
#include "cuda/stream_priority.h"

namespace dsv4 {
namespace {

class DeviceAllocation final : public BackendBuffer {
 public:
  explicit DeviceAllocation(cuda::DeviceBuffer<uint8_t> b) : buf_(std::move(b)) {
    data_ = buf_.get();
    bytes_ = buf_.size();
  }

 private:
  cuda::DeviceBuffer<uint8_t> buf_;  // cudaFree waits for the work that may still use it
};

class CudaGraph final : public BackendGraph {
 public:
  explicit CudaGraph(cudaGraphExec_t exec) : exec(exec) {}
  ~CudaGraph() override { cudaGraphExecDestroy(exec); }
  cudaGraphExec_t exec;
};

// cuBLAS's workspace, given explicitly so that captured GEMMs allocate nothing (32 MiB covers
// Hopper's largest kernels, per the cuBLAS documentation).
constexpr size_t kCublasWorkspaceBytes = size_t(32) << 20;

// A weight made resident for linear and grouped_linear: packed for linear_sm90, or F32 for
// cuBLAS SGEMM.
struct LinearWeightEntry {
  bool f32 = false;
  cuda::PackedWeightView packed;  // when !f32
  int64_t rows = 0, cols = 0;     // when f32: data is [rows, cols] fp32
  const float* data = nullptr;
};

// What one stream's ops need for themselves: a branch (Backend::begin_branch) runs on a lane of
// its own, so that ops running side by side never share a workspace.
struct Lane {
  cudaStream_t stream = nullptr;
  bool owns_stream = false;
  cublasHandle_t cublas = nullptr;
  cuda::DeviceBuffer<uint8_t> cublas_workspace;
  cuda::DeviceBuffer<uint8_t> linear_workspace;     // linear_sm90's, grown to the largest call
  cuda::DeviceBuffer<uint8_t> attention_workspace;  // attention's, grown to the largest call
  cuda::MoeRouterRunner moe_router;                 // scores and counters, reused across calls
  cuda::MoeExpertsSm90Runner moe_experts;           // expert tables and workspace, reused across calls

  Lane() = default;
  Lane(const Lane&) = delete;
  Lane& operator=(const Lane&) = delete;
  ~Lane() {
    if (cublas) cublasDestroy(cublas);
    if (owns_stream) cudaStreamDestroy(stream);
  }
  // The handle is bound to the lane's stream once: cublasSetStream resets the workspace to
  // cuBLAS's default pool, so the workspace is set after it and the stream is never set again
  // (linear_sm90 sets it only when it differs).
  Status ensure_cublas() {
    if (cublas) return {};
    DSV4_CUBLAS_TRY(cublasCreate(&cublas));
    DSV4_CUBLAS_TRY(cublasSetStream(cublas, stream));
    DSV4_ASSIGN_OR_RETURN(cublas_workspace, cuda::DeviceBuffer<uint8_t>::create(kCublasWorkspaceBytes));
    DSV4_CUBLAS_TRY(cublasSetWorkspace(cublas, cublas_workspace.get(), kCublasWorkspaceBytes));
    return {};
  }
};

class CudaBackend final : public Backend {
 public:
  // Without a stream of the caller's, the backend makes its own: graphs cannot be captured on the
  // legacy default stream. Its own main stream has the critical path's priority, the branch lane's
  // stream (always the backend's own) the default: a branch fills in around the main chain.
  explicit CudaBackend(cudaStream_t stream) {
    main_.stream = stream;
    if (!main_.stream && cudaStreamCreateWithPriority(&main_.stream, cudaStreamNonBlocking,
                                                      cuda::critical_stream_priority()) == cudaSuccess)
      main_.owns_stream = true;
    if (cudaStreamCreateWithFlags(&branch_.stream, cudaStreamNonBlocking) == cudaSuccess)
      branch_.owns_stream = true;
    for (cudaEvent_t* e : {&fork_, &join_}) cudaEventCreateWithFlags(e, cudaEventDisableTiming);
  }
  ~CudaBackend() override {
    for (cudaEvent_t e : {fork_, join_})
      if (e) cudaEventDestroy(e);
  }
  std::string name() const override { return "cuda"; }
  Result<BackendMemoryInfo> memory_info() const override {
    size_t free = 0, total = 0;
    DSV4_CUDA_TRY(cudaMemGetInfo(&free, &total));
    return BackendMemoryInfo{int64_t(free), int64_t(total), true};
  }

  Result<std::unique_ptr<BackendBuffer>> allocate(size_t bytes) override {
    ++memory_epoch_;
    DSV4_ASSIGN_OR_RETURN(cuda::DeviceBuffer<uint8_t> b, cuda::DeviceBuffer<uint8_t>::create(bytes));
    return std::unique_ptr<BackendBuffer>(std::make_unique<DeviceAllocation>(std::move(b)));
  }
  // From pageable memory cudaMemcpyAsync returns once the source is staged, so it may be reused.
  Status upload(void* dst, const void* src, size_t bytes) override {
    DSV4_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, lane().stream));
    return {};
  }
  Status download(void* dst, const void* src, size_t bytes) override {
    DSV4_RETURN_IF_ERROR(expect_no_branch("download"));
    DSV4_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, main_.stream));
    DSV4_CUDA_TRY(cudaStreamSynchronize(main_.stream));
    return {};
  }
  Status copy(void* dst, const void* src, size_t bytes) override {
    if (bytes) DSV4_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, lane().stream));
    return {};
  }
  Status copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t row_bytes,
                 size_t rows) override {
    if (rows && row_bytes)
      DSV4_CUDA_TRY(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, row_bytes, rows,
                                      cudaMemcpyDeviceToDevice, lane().stream));
    return {};
  }
  Status synchronize() override {
    DSV4_RETURN_IF_ERROR(expect_no_branch("synchronize"));
    DSV4_CUDA_TRY(cudaStreamSynchronize(main_.stream));
    return {};
  }
  uint64_t memory_epoch() const override {
    uint64_t epoch = memory_epoch_;
    for (const Lane* l : {&main_, &branch_})
      epoch += l->moe_router.memory_epoch() + l->moe_experts.memory_epoch();
    return epoch;
  }

  // A branch: an event recorded on the main stream forks the branch stream off it, one recorded
  // on the branch stream joins it back; stream capture follows both, so a recorded graph holds
  // the branch as a parallel path.
  Status begin_branch() override {
    DSV4_RETURN_IF_ERROR(expect_no_branch("begin_branch"));
    if (!branch_.stream || !fork_ || !join_)
      return Status::errorf("cuda backend: no branch stream or events");
    DSV4_CUDA_TRY(cudaEventRecord(fork_, main_.stream));
    DSV4_CUDA_TRY(cudaStreamWaitEvent(branch_.stream, fork_, 0));
    state_ = BranchState::kOpen;
    return {};
  }
  Status end_branch() override {
    if (state_ != BranchState::kOpen) return Status::errorf("cuda backend: end_branch without begin_branch");
    DSV4_CUDA_TRY(cudaEventRecord(join_, branch_.stream));
    state_ = BranchState::kEnded;
    return {};
  }
  Status join_branch() override {
    if (state_ != BranchState::kEnded) return Status::errorf("cuda backend: join_branch without end_branch");
    DSV4_CUDA_TRY(cudaStreamWaitEvent(main_.stream, join_, 0));
    state_ = BranchState::kNone;
    return {};
  }

  bool supports_graphs() const override { return main_.stream != nullptr; }
  Status begin_capture() override {
    DSV4_RETURN_IF_ERROR(expect_no_branch("begin_capture"));
    for (Lane* l : {&main_, &branch_})
      DSV4_RETURN_IF_ERROR(l->ensure_cublas());  // created outside the capture
    DSV4_CUDA_TRY(cudaStreamBeginCapture(main_.stream, cudaStreamCaptureModeThreadLocal));
    return {};
  }
  Result<std::unique_ptr<BackendGraph>> end_capture() override {
    cudaGraph_t graph = nullptr;
    const Status branch = expect_no_branch("end_capture");
    DSV4_CUDA_TRY(cudaStreamEndCapture(main_.stream, &graph));
    if (!branch.ok()) {
      cudaGraphDestroy(graph);
      return branch;
    }
    cudaGraphExec_t exec = nullptr;
    const cudaError_t e = cudaGraphInstantiate(&exec, graph, cuda::kGraphInstantiateFlags);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) return Status::errorf("cudaGraphInstantiate: {}", cudaGetErrorString(e));
    return std::unique_ptr<BackendGraph>(std::make_unique<CudaGraph>(exec));
  }
  Status replay(const BackendGraph& g) override {
    DSV4_RETURN_IF_ERROR(expect_no_branch("replay"));
    DSV4_CUDA_TRY(cudaGraphLaunch(static_cast<const CudaGraph&>(g).exec, main_.stream));
    return {};
  }

  Result<WeightView> upload_weight(const WeightView& w) override {
    WeightView d = w;
    DSV4_ASSIGN_OR_RETURN(d.data, keep(w.data, size_t(weight_data_bytes(w.format, w.rows, w.cols))));
    if (w.scales) {
      DSV4_ASSIGN_OR_RETURN(const void* scales,
                            keep(w.scales, size_t(weight_scale_bytes(w.format, w.rows, w.cols))));
      d.scales = static_cast<const uint8_t*>(scales);
    }
    return d;
  }

  Result<WeightView> upload_linear_weight(const WeightView& w) override {
    LinearWeightEntry e;
    WeightView d = w;
    if (w.format == WeightFormat::kF32) {
      DSV4_ASSIGN_OR_RETURN(const void* data, keep(w.data, size_t(w.rows * w.cols) * sizeof(float)));
      e = {true, {}, w.rows, w.cols, static_cast<const float*>(data)};
      d = WeightView{WeightFormat::kF32, w.rows, w.cols, data, nullptr, 1.0f};
    } else {
      DSV4_ASSIGN_OR_RETURN(cuda::PackedLinearWeight p, cuda::pack_linear_weight_sm90(w));
      DSV4_ASSIGN_OR_RETURN(const void* data, keep(p.data.data(), p.data.size()));
      const void* scales = nullptr;
      if (!p.scales.empty()) {
        DSV4_ASSIGN_OR_RETURN(scales, keep(p.scales.data(), p.scales.size()));
      }
      e.packed = {p.format,
                  p.rows,
                  p.cols,
                  p.rows_pad,
                  p.cols_pad,
                  static_cast<const uint8_t*>(data),
                  static_cast<const uint8_t*>(scales),
                  p.out_scale};
      // The view moe_experts reads (cuda::packed_expert_view): packed bits, out_scale as global_scale.
      d = cuda::packed_expert_view(p, static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(scales));
    }
    linear_weights_[d.data] = e;
    return d;
  }

  Status add(float* y, const float* x, int64_t n) override {
    Lane& l = lane();
    DSV4_RETURN_IF_ERROR(l.ensure_cublas());
    const float one = 1.0f;
    DSV4_CUBLAS_TRY(cublasSaxpy(l.cublas, int(n), &one, x, 1, y, 1));
    return {};
  }

  Status embedding(const EmbeddingParams& p) override { return cuda::embedding(p, lane().stream); }
  Status linear(const LinearParams& p) override {
    DSV4_RETURN_IF_ERROR(check_linear(p));
    return linear_groups(p.x, p.w, p.y, p.n_tokens, 1);
  }
  Status grouped_linear(const GroupedLinearParams& p) override {
    DSV4_RETURN_IF_ERROR(check_grouped_linear(p));
    return linear_groups(p.x, p.w, p.y, p.n_tokens, p.n_groups);
  }
  Status rms_norm(const RmsNormParams& p) override { return cuda::rms_norm(p, lane().stream); }
  Status rope(const RopeParams& p) override { return cuda::rope(p, lane().stream); }
  Status mhc_pre(const MhcPreParams& p) override { return cuda::mhc_pre(p, lane().stream); }
  Status mhc_post(const MhcPostParams& p) override { return cuda::mhc_post(p, lane().stream); }
  Status hyper_head(const HyperHeadParams& p) override { return cuda::hyper_head(p, lane().stream); }
  Status compressor(const CompressorParams& p) override { return cuda::compressor(p, lane().stream); }
  Status compressor_decode(const CompressorDecodeParams& p) override {
    return cuda::compressor_decode(p, lane().stream);
  }
  Status kv_cache_decode(const KvCacheDecodeParams& p) override {
    return cuda::kv_cache_decode(p, lane().stream);
  }
  Status indexer(const IndexerParams& p) override { return cuda::indexer(p, lane().stream); }
  Status attention(const AttentionParams& p) override {
    Lane& l = lane();
    DSV4_ASSIGN_OR_RETURN(const cuda::AttentionPlan plan, cuda::attention_plan(p));
    DSV4_RETURN_IF_ERROR(cuda::grow(l.attention_workspace, plan.workspace_bytes, memory_epoch_).status());
    return cuda::attention(p, l.attention_workspace.get(), l.attention_workspace.size(), l.stream);
  }
  Status moe_router(const MoeRouterParams& p) override { return lane().moe_router.run(p, lane().stream); }
  // Expert views must be packed device views (upload_linear_weight makes them).
  // An addend issued after end_branch may be the branch's output: the op waits for the branch's
  // join event before it reads it, so the ops before that point still run beside the branch.
  Status moe_experts(const MoeExpertsParams& p) override {
    Lane& l = lane();
    DSV4_RETURN_IF_ERROR(l.ensure_cublas());  // dense mode (the shared expert in prefill) runs cuBLAS
    const cudaEvent_t addend_ready = p.addend && state_ == BranchState::kEnded ? join_ : nullptr;
    return l.moe_experts.run(p, l.stream, l.cublas, addend_ready);
  }

 private:
  enum class BranchState { kNone, kOpen, kEnded };
  // The lane the next op runs on: the branch's between begin_branch and end_branch.
  Lane& lane() { return state_ == BranchState::kOpen ? branch_ : main_; }
  Status expect_no_branch(const char* what) const {
    if (state_ == BranchState::kNone) return {};
    return Status::errorf("cuda backend: {} while a branch is {}; expected it joined first", what,
                          state_ == BranchState::kOpen ? "open" : "not joined");
  }

  // linear (one group) and grouped_linear: y[t, g·R + r] = Σ_k x[t, g, k] · W[g·R + r, k] with W a
  // view upload_linear_weight returned.
  Status linear_groups(const float* x, const WeightView& w, float* y, int64_t n_tokens, int64_t n_groups) {
    const auto it = linear_weights_.find(w.data);
    if (it == linear_weights_.end())
      return Status::errorf(
          "cuda backend: linear weight [{}, {}] is not resident; expected a view returned by "
          "upload_linear_weight",
          w.rows, w.cols);
    const LinearWeightEntry& e = it->second;
    Lane& l = lane();
    DSV4_RETURN_IF_ERROR(l.ensure_cublas());
    if (e.f32) {
      // Column-major: yᵀ [rows, n] = Wᵀᵀ · xᵀ, W row-major [rows, cols] read as cols × rows; with
      // groups, batch g is group g's rows and x slice.
      const float one = 1.0f, zero = 0.0f;
      const int64_t group_rows = e.rows / n_groups;
      DSV4_CUBLAS_TRY(cublasSgemmStridedBatched(l.cublas, CUBLAS_OP_T, CUBLAS_OP_N, int(group_rows),
                                                int(n_tokens), int(e.cols), &one, e.data, int(e.cols),
                                                group_rows * e.cols, x, int(n_groups * e.cols), e.cols, &zero,
                                                y, int(e.rows), group_rows, int(n_groups)));
      return {};
    }
    cuda::LinearSm90Params lp;
    lp.x = x;
    lp.w = e.packed;
    lp.y = y;
    lp.n_tokens = n_tokens;
    lp.n_groups = n_groups;
    const size_t need = cuda::linear_sm90_workspace_bytes(e.packed, n_tokens, n_groups);
    DSV4_ASSIGN_OR_RETURN(const bool grew, cuda::grow(l.linear_workspace, need, memory_epoch_));
    if (grew)
      DSV4_RETURN_IF_ERROR(
          cuda::linear_sm90_prepare_workspace(l.linear_workspace.get(), l.linear_workspace.size(), l.stream));
    lp.workspace = l.linear_workspace.get();
    lp.workspace_bytes = l.linear_workspace.size();
    lp.cublas = l.cublas;
    return cuda::linear_sm90(lp, l.stream);
  }
  // A device copy of bytes host bytes, owned by the backend for its lifetime.
  Result<const void*> keep(const void* host, size_t bytes) {
    DSV4_ASSIGN_OR_RETURN(cuda::DeviceBuffer<uint8_t> b, cuda::DeviceBuffer<uint8_t>::create(bytes));
    DSV4_RETURN_IF_ERROR(b.upload(static_cast<const uint8_t*>(host), bytes));
    weights_.push_back(std::move(b));
    return static_cast<const void*>(weights_.back().get());
  }

  uint64_t memory_epoch_ = 0;
  std::vector<cuda::DeviceBuffer<uint8_t>> weights_;
  std::unordered_map<const void*, LinearWeightEntry> linear_weights_;  // by device data address
  Lane main_, branch_;
  cudaEvent_t fork_ = nullptr, join_ = nullptr;
  BranchState state_ = BranchState::kNone;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(cudaStream_t stream) {
  return std::make_unique<CudaBackend>(stream);
}

}  // namespace dsv4
