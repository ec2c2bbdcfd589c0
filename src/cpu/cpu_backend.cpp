// The CPU backend: every Backend method is check_<op>() followed by the reference cpu::<op>(), in
// fp32 or, with bf16_activations, rounding where the GPU contract says (linear, grouped_linear,
// moe_experts, attention).
// Its memory is host memory; weights stay the views into the mmapped checkpoint.
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "model/backend.h"

namespace dsv4 {
namespace {

class HostBuffer final : public BackendBuffer {
 public:
  // 64-byte aligned, like a cache line (and more than any op needs).
  explicit HostBuffer(size_t bytes) {
    bytes_ = bytes;
    data_ = std::aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
  }
  ~HostBuffer() override { std::free(data_); }
};

#define DSV4_CPU_OP(op, Params)          \
  Status op(const Params& p) override {  \
    DSV4_RETURN_IF_ERROR(check_##op(p)); \
    cpu::op(p);                          \
    return {};                           \
  }

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const CpuBackendOptions& options) : options_(options) {}
  std::string name() const override { return options_.bf16_activations ? "cpu (bf16 activations)" : "cpu"; }
  // /proc/meminfo's MemAvailable (what can be allocated without swapping); sysconf elsewhere.
  Result<BackendMemoryInfo> memory_info() const override {
    BackendMemoryInfo m;
    const int64_t page = int64_t(::sysconf(_SC_PAGESIZE));
    m.total_bytes = int64_t(::sysconf(_SC_PHYS_PAGES)) * page;
    m.free_bytes = int64_t(::sysconf(_SC_AVPHYS_PAGES)) * page;
    std::ifstream meminfo("/proc/meminfo");
    for (std::string line; std::getline(meminfo, line);) {
      std::istringstream fields(line);
      std::string key;
      int64_t kib = 0;
      if (fields >> key >> kib && key == "MemAvailable:") m.free_bytes = kib * 1024;
    }
    if (m.total_bytes <= 0) return Status::error("cpu backend: cannot read the physical memory size");
    return m;
  }

  Result<std::unique_ptr<BackendBuffer>> allocate(size_t bytes) override {
    ++memory_epoch_;
    auto b = std::make_unique<HostBuffer>(bytes);
    if (!b->data()) return Status::errorf("cpu backend: allocating {} bytes failed", bytes);
    return std::unique_ptr<BackendBuffer>(std::move(b));
  }
  Status upload(void* dst, const void* src, size_t bytes) override { return copy(dst, src, bytes); }
  Status download(void* dst, const void* src, size_t bytes) override { return copy(dst, src, bytes); }
  Status copy(void* dst, const void* src, size_t bytes) override {
    if (bytes) std::memcpy(dst, src, bytes);
    return {};
  }
  Status copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t row_bytes,
                 size_t rows) override {
    for (size_t r = 0; r < rows; ++r)
      std::memcpy(static_cast<char*>(dst) + r * dst_pitch, static_cast<const char*>(src) + r * src_pitch,
                  row_bytes);
    return {};
  }
  Status synchronize() override { return {}; }
  uint64_t memory_epoch() const override { return memory_epoch_; }
  Result<WeightView> upload_weight(const WeightView& w) override { return w; }
  Result<WeightView> upload_linear_weight(const WeightView& w) override { return w; }
  Status add(float* y, const float* x, int64_t n) override {
    for (int64_t i = 0; i < n; ++i) y[i] += x[i];
    return {};
  }

  Status linear(const LinearParams& p) override {
    DSV4_RETURN_IF_ERROR(check_linear(p));
    cpu::linear(p, x_precision(p.w));
    return {};
  }
  Status grouped_linear(const GroupedLinearParams& p) override {
    DSV4_RETURN_IF_ERROR(check_grouped_linear(p));
    cpu::grouped_linear(p, x_precision(p.w));
    return {};
  }
  Status moe_experts(const MoeExpertsParams& p) override {
    DSV4_RETURN_IF_ERROR(check_moe_experts(p));
    cpu::moe_experts(p, options_.bf16_activations ? ActivationPrecision::kBF16 : ActivationPrecision::kF32);
    return {};
  }
  Status attention(const AttentionParams& p) override {
    DSV4_RETURN_IF_ERROR(check_attention(p));
    cpu::attention(p, options_.bf16_activations ? ActivationPrecision::kBF16 : ActivationPrecision::kF32);
    return {};
  }

  DSV4_CPU_OP(embedding, EmbeddingParams)
  DSV4_CPU_OP(rms_norm, RmsNormParams)
  DSV4_CPU_OP(rope, RopeParams)
  DSV4_CPU_OP(mhc_pre, MhcPreParams)
  DSV4_CPU_OP(mhc_post, MhcPostParams)
  DSV4_CPU_OP(hyper_head, HyperHeadParams)
  DSV4_CPU_OP(compressor, CompressorParams)
  DSV4_CPU_OP(compressor_decode, CompressorDecodeParams)
  DSV4_CPU_OP(kv_cache_decode, KvCacheDecodeParams)
  DSV4_CPU_OP(indexer, IndexerParams)
  DSV4_CPU_OP(moe_router, MoeRouterParams)

 private:
  // linear's and grouped_linear's x, as the CUDA backend takes it: BF16 on the tensor cores, fp32
  // (SGEMM) for F32 weights.
  ActivationPrecision x_precision(const WeightView& w) const {
    const bool fp32_x = !options_.bf16_activations || w.format == WeightFormat::kF32;
    return fp32_x ? ActivationPrecision::kF32 : ActivationPrecision::kBF16;
  }
  CpuBackendOptions options_;
  uint64_t memory_epoch_ = 0;
};

#undef DSV4_CPU_OP

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const CpuBackendOptions& options) {
  return std::make_unique<CpuBackend>(options);
}

}  // namespace dsv4
