// test_ops for the model ops of issue 5 (embedding, rms_norm, rope, mhc_pre, mhc_post, hyper_head,
// attention, indexer, compressor, compressor_decode, kv_cache_decode, grouped_linear): each CUDA op against
// its CPU reference on the same seeded random inputs (DSV4_TEST_SEED overrides the seed), at V4-Flash/Pro
// widths and ragged sizes. Tolerances are justified in docs/numerics.md, "GPU ops"; indexer ids are exact.
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <numeric>

#include "core/config.h"
#include "core/quant.h"
#include "cuda/attention.h"
#include "cuda/compressor.h"
#include "cuda/compressor_decode.h"
#include "cuda/cuda_backend.h"
#include "cuda/embedding.h"
#include "cuda/hyper_head.h"
#include "cuda/indexer.h"
#include "cuda/kv_cache_decode.h"
#include "cuda/mhc_post.h"
#include "cuda/mhc_pre.h"
#include "cuda/rms_norm.h"
#include "cuda/rope.h"
#include "gpu_test_util.h"

namespace dsv4 {
namespace {
using namespace gpu_test;

// ---- rms_norm: fp32 sum of squares in another order; |err| ≲ a few ulp of each output.
TEST(GpuOps, RmsNorm) {
  SKIP_WITHOUT_GPU();
  struct Case {
    int64_t n_rows, dim;
    bool weighted, in_place;
  };
  // Rows of one team of 32 (512), several warps (1000, 4096, 7168), the largest team (16384), past
  // the registers' share (20000), scalar loads (1001, 1), and decode's 1–64 rows.
  for (const Case c :
       {Case{1, 4096, true, false}, Case{3, 7168, true, false}, Case{64, 4096, true, true},
        Case{64 * 3, 512, false, false}, Case{128, 512, false, true}, Case{1, 512, true, false},
        Case{7, 1000, true, false}, Case{2, 1, false, false}, Case{5, 16384, false, false},
        Case{2, 20000, true, true}, Case{3, 1001, true, false}, Case{64, 1024, true, false}}) {
    const std::string what = fmt::format("rms_norm n_rows={} dim={} weighted={} in_place={}", c.n_rows, c.dim,
                                         c.weighted, c.in_place);
    const size_t n = size_t(c.n_rows * c.dim);
    const auto x = random_normal(n, seed(1 + uint32_t(n)), 0.3f, 2.0f);
    const auto w = random_normal(size_t(c.dim), seed(2), 1.0f, 0.2f);
    std::vector<float> want(n);
    cpu::rms_norm({x.data(), c.weighted ? w.data() : nullptr, want.data(), c.n_rows, c.dim, 1e-6f});
    auto d_w = to_device(w);
    GuardedOutput<float> out(n, poison_float());
    float* d_x = out.data();
    cuda::DeviceBuffer<float> d_x_sep;
    if (c.in_place) {
      ASSERT_EQ(cudaMemcpy(d_x, x.data(), n * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
    } else {
      d_x_sep = to_device(x);
      d_x = d_x_sep.get();
    }
    const Status s =
        cuda::rms_norm({d_x, c.weighted ? d_w.get() : nullptr, out.data(), c.n_rows, c.dim, 1e-6f}, nullptr);
    ASSERT_TRUE(s.ok()) << what << ": " << s.message();
    expect_close(what, out.download(what), want, 1e-5, 1e-6);
  }
}

// ---- embedding: a copy (BF16 → fp32 is exact): bit-equal.
TEST(GpuOps, Embedding) {
  SKIP_WITHOUT_GPU();
  struct Case {
    WeightFormat format;
    int64_t vocab, d_model, n_tokens;
  };
  for (const Case c : {Case{WeightFormat::kBF16, 1000, 4096, 1}, Case{WeightFormat::kBF16, 777, 7168, 17},
                       Case{WeightFormat::kF32, 300, 4096, 3}, Case{WeightFormat::kF32, 5, 33, 9}}) {
    const std::string what = fmt::format("embedding format={} vocab={} d_model={} n_tokens={}",
                                         weight_format_name(c.format), c.vocab, c.d_model, c.n_tokens);
    const auto table_f32 = random_normal(size_t(c.vocab * c.d_model), seed(10 + uint32_t(c.vocab)));
    const QuantizedWeight table = quantize_weight(c.format, table_f32.data(), c.vocab, c.d_model);
    std::mt19937 rng(seed(11));
    std::vector<int32_t> ids(size_t(c.n_tokens));
    for (auto& id : ids) id = int32_t(rng() % uint32_t(c.vocab));
    ids[0] = int32_t(c.vocab - 1);
    if (c.n_tokens > 1) ids[1] = 0;
    const size_t n = size_t(c.n_tokens * c.d_model);
    std::vector<float> want(n);
    cpu::embedding({ids.data(), table.view(), want.data(), c.n_tokens});
    auto d_ids = to_device(ids);
    auto d_table = to_device(table.data);
    WeightView dv = table.view();
    dv.data = d_table.get();
    GuardedOutput<float> out(n, poison_float());
    const Status s = cuda::embedding({d_ids.get(), dv, out.data(), c.n_tokens}, nullptr);
    ASSERT_TRUE(s.ok()) << what << ": " << s.message();
    expect_close(what, out.download(what), want, 0.0, 0.0);
  }
}

// ---- rope: the CPU's fp32 angle and rounding order; cosf/sinf may differ in the last ulp.
TEST(GpuOps, Rope) {
  SKIP_WITHOUT_GPU();
  struct Case {
    const char* model;
    bool compress;
    int64_t n_rows, n_heads, head_dim;
    bool inverse;
  };
  // Heads in groups of kRopeHeads = 8: whole groups (64, 128), a partial one (3, 13), one head.
  for (const Case c : {Case{"flash", true, 1, 64, 512, false}, Case{"flash", true, 3, 64, 512, true},
                       Case{"flash", false, 5, 1, 512, false}, Case{"pro", true, 17, 128, 512, false},
                       Case{"pro", false, 2, 128, 512, true}, Case{"flash", true, 9, 64, 128, false},
                       Case{"flash", true, 1, 3, 64, true}, Case{"flash", true, 64, 64, 512, false},
                       Case{"flash", false, 2, 13, 512, true}}) {
    const ModelConfig cfg = std::string(c.model) == "pro" ? ModelConfig::pro() : ModelConfig::flash();
    const std::vector<float> inv_freq = rope_inv_freq(cfg, c.compress);
    const std::string what =
        fmt::format("rope model={} compress={} n_rows={} n_heads={} head_dim={} rope_dim={} inverse={}",
                    c.model, c.compress, c.n_rows, c.n_heads, c.head_dim, cfg.rope_dim, c.inverse);
    const size_t n = size_t(c.n_rows * c.n_heads * c.head_dim);
    const auto x = random_normal(n, seed(20 + uint32_t(n)));
    std::mt19937 rng(seed(21));
    std::vector<int64_t> pos(size_t(c.n_rows));
    for (auto& p : pos) p = int64_t(rng() % 1048576u);
    pos[0] = c.n_rows > 1 ? 0 : 65535;
    std::vector<float> want = x;
    cpu::rope(
        {want.data(), pos.data(), inv_freq.data(), c.n_rows, c.n_heads, c.head_dim, cfg.rope_dim, c.inverse});
    auto d_pos = to_device(pos);
    auto d_freq = to_device(inv_freq);
    GuardedOutput<float> out(n, poison_float());
    ASSERT_EQ(cudaMemcpy(out.data(), x.data(), n * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
    const Status s = cuda::rope(
        {out.data(), d_pos.get(), d_freq.get(), c.n_rows, c.n_heads, c.head_dim, cfg.rope_dim, c.inverse},
        nullptr);
    ASSERT_TRUE(s.ok()) << what << ": " << s.message();
    expect_close(what, out.download(what), want, 1e-6, 2e-6);
  }
}

// ---- mHC ops: inputs shaped like the synthetic checkpoints (fn ~ N(0, 1/√(n·D))).
struct MhcInputs {
  std::vector<float> h, fn, base, scale;
};

MhcInputs mhc_inputs(int64_t n_tokens, int64_t hc, int64_t d_model, int64_t n_mix, uint32_t salt) {
  const int64_t width = hc * d_model;
  return {random_normal(size_t(n_tokens * width), seed(salt), 0.0f, 1.0f),
          random_normal(size_t(n_mix * width), seed(salt + 1), 0.0f, 1.0f / std::sqrt(float(width))),
          random_normal(size_t(n_mix), seed(salt + 2), 0.0f, 0.5f),
          random_normal(3, seed(salt + 3), 1.0f, 0.3f)};
}

TEST(GpuOps, MhcPre) {
  SKIP_WITHOUT_GPU();
  struct Case {
    int64_t n_tokens, hc, d_model;
  };
  // Decode's 1, 3 and 64 tokens (clusters of 8 blocks; one token per block below 4 tokens, tiles of
  // 4 from there), a partial last tile (17, 530), clusters of 2 (300) and of 1 (530), scalar loads
  // (d_model 50), and hc_mult 1…3.
  for (const Case c : {Case{1, 4, 4096}, Case{3, 4, 4096}, Case{64, 4, 4096}, Case{3, 4, 7168},
                       Case{17, 4, 4096}, Case{300, 4, 4096}, Case{530, 4, 1024}, Case{2, 4, 100},
                       Case{5, 2, 64}, Case{3, 2, 50}, Case{9, 3, 128}, Case{4, 1, 256}}) {
    const std::string what = fmt::format("mhc_pre n_tokens={} hc_mult={} d_model={} sinkhorn_iters=20",
                                         c.n_tokens, c.hc, c.d_model);
    const int64_t n_mix = (2 + c.hc) * c.hc;
    const MhcInputs in = mhc_inputs(c.n_tokens, c.hc, c.d_model, n_mix, 30 + uint32_t(c.d_model));
    std::vector<float> x(size_t(c.n_tokens * c.d_model)), post(size_t(c.n_tokens * c.hc)),
        comb(size_t(c.n_tokens * c.hc * c.hc));
    cpu::mhc_pre({in.h.data(), in.fn.data(), in.base.data(), in.scale.data(), x.data(), post.data(),
                  comb.data(), c.n_tokens, c.hc, c.d_model, 20, 1e-6f, 1e-6f});
    auto d_h = to_device(in.h), d_fn = to_device(in.fn), d_base = to_device(in.base),
         d_scale = to_device(in.scale);
    GuardedOutput<float> g_x(x.size(), poison_float()), g_post(post.size(), poison_float()),
        g_comb(comb.size(), poison_float());
    const Status s =
        cuda::mhc_pre({d_h.get(), d_fn.get(), d_base.get(), d_scale.get(), g_x.data(), g_post.data(),
                       g_comb.data(), c.n_tokens, c.hc, c.d_model, 20, 1e-6f, 1e-6f},
                      nullptr);
    ASSERT_TRUE(s.ok()) << what << ": " << s.message();
    expect_close(what + " x", g_x.download(what), x, 1e-4, 4e-5);
    expect_close(what + " post", g_post.download(what), post, 1e-4, 4e-5);
    expect_close(what + " comb", g_comb.download(what), comb, 1e-4, 4e-5);
  }
}

TEST(GpuOps, MhcPost) {
  SKIP_WITHOUT_GPU();
  struct Case {
    int64_t n_tokens, hc, d_model;
  };
  for (const Case c : {Case{1, 4, 4096}, Case{3, 4, 7168}, Case{33, 4, 4096}, Case{64, 4, 4096},
                       Case{2, 4, 100}, Case{3, 3, 17}}) {
    const std::string what =
        fmt::format("mhc_post n_tokens={} hc_mult={} d_model={}", c.n_tokens, c.hc, c.d_model);
    const uint32_t salt = 40 + uint32_t(c.d_model);
    const auto y = random_normal(size_t(c.n_tokens * c.d_model), seed(salt));
    const auto h = random_normal(size_t(c.n_tokens * c.hc * c.d_model), seed(salt + 1));
    const auto post = random_normal(size_t(c.n_tokens * c.hc), seed(salt + 2), 1.0f, 0.5f);
    const auto comb = random_normal(size_t(c.n_tokens * c.hc * c.hc), seed(salt + 3), 0.25f, 0.1f);
    std::vector<float> want(h.size());
    cpu::mhc_post({y.data(), h.data(), post.data(), comb.data(), want.data(), c.n_tokens, c.hc, c.d_model});
    auto d_y = to_device(y), d_h = to_device(h), d_post = to_device(post), d_comb = to_device(comb);
    GuardedOutput<float> out(want.size(), poison_float());
    const Status s = cuda::mhc_post(
        {d_y.get(), d_h.get(), d_post.get(), d_comb.get(), out.data(), c.n_tokens, c.hc, c.d_model}, nullptr);
    ASSERT_TRUE(s.ok()) << what << ": " << s.message();
    expect_close(what, out.download(what), want, 1e-6, 4e-6);
  }
}

TEST(GpuOps, HyperHead) {
  SKIP_WITHOUT_GPU();
  struct Case {
    int64_t n_tokens, hc, d_model;
  };
  for (const Case c : {Case{1, 4, 4096}, Case{3, 4, 4096}, Case{64, 4, 4096}, Case{3, 4, 7168},
                       Case{5, 4, 100}, Case{530, 4, 512}, Case{2, 3, 50}}) {
    const std::string what =
        fmt::format("hyper_head n_tokens={} hc_mult={} d_model={}", c.n_tokens, c.hc, c.d_model);
    const MhcInputs in = mhc_inputs(c.n_tokens, c.hc, c.d_model, c.hc, 50 + uint32_t(c.d_model));
    std::vector<float> want(size_t(c.n_tokens * c.d_model));
    cpu::hyper_head({in.h.data(), in.fn.data(), in.base.data(), in.scale.data(), want.data(), c.n_tokens,
                     c.hc, c.d_model, 1e-6f, 1e-6f});
    auto d_h = to_device(in.h), d_fn = to_device(in.fn), d_base = to_device(in.base),
         d_scale = to_device(in.scale);
    GuardedOutput<float> out(want.size(), poison_float());
    const Status s = cuda::hyper_head({d_h.get(), d_fn.get(), d_base.get(), d_scale.get(), out.data(),
                                       c.n_tokens, c.hc, c.d_model, 1e-6f, 1e-6f},
                                      nullptr);
    ASSERT_TRUE(s.ok()) << what << ": " << s.message();
    expect_close(what, out.download(what), want, 1e-4, 4e-5);
  }
}

// ---- attention: rows = a sliding window (the last `window` kv rows before the compressed pool)
// plus distinct random picks among the compressed entries (those past n_valid_picks −1, as an HCA
// decode list past the admissible entries; 1 in 8 −1 at random), −1 for unused slots; `other`
// pool rows belong to no list (a decode pool's other sequences). Against the CPU reference with
// the GPU contract (kBF16: q, kv and the weights rounded to BF16); the cases cover both kv paths (fp32 rows,
// BF16 pool), split-KV with empty splits, lists longer than the kernel's shared list, head_dim tiles 128 and
// 512 with padding, and head groups past 64 heads. Each case runs twice (bitwise equal) over a
// NaN-poisoned workspace.
TEST(GpuOps, Attention) {
  SKIP_WITHOUT_GPU();
  struct Case {
    int64_t n_tokens, n_heads, head_dim, window, n_compressed, n_pick, n_valid_picks, other;
  };
  bool saw_split = false, saw_bf16 = false, saw_rounds = false;
  for (const Case c : {Case{1, 64, 512, 128, 1000, 512, 512, 0},      // V4-Flash decode, CSA
                       Case{3, 128, 512, 128, 2000, 1024, 1024, 0},   // V4-Pro decode batch 3, CSA (top-1024)
                       Case{64, 64, 512, 128, 64, 64, 64, 64 * 192},  // V4-Flash decode batch 64
                       Case{1, 64, 512, 128, 2048, 2048, 40, 0},      // HCA decode, long list, few valid
                       Case{512, 64, 512, 128, 640, 512, 512, 0},     // V4-Flash prefill chunk, CSA
                       Case{48, 128, 512, 128, 300, 300, 300, 0},     // V4-Pro prefill chunk, HCA
                       Case{160, 8, 128, 24, 1500, 1500, 1500, 0},    // > kAttentionListCap valid rows
                       Case{200, 4, 128, 24, 50, 8, 8, 0},            // the fixtures' shape
                       Case{200, 4, 100, 24, 30, 10, 10, 0},          // BF16 pool, row padding
                       Case{3, 3, 100, 5, 7, 4, 4, 0},                // ragged
                       Case{5, 7, 17, 6, 20, 10, 10, 0},              // odd head_dim: scalar loads
                       Case{2, 2, 16, 8, 0, 0, 0, 0}}) {              // tiny config, window only
    const int64_t n_kv = c.window + c.n_compressed + c.other, n_sel = c.window + c.n_pick;
    const float scale = 1.0f / std::sqrt(float(c.head_dim));
    const AttentionParams shape{nullptr,   nullptr,    nullptr, nullptr, nullptr, c.n_tokens,
                                c.n_heads, c.head_dim, n_kv,    n_sel,   scale};
    const Result<cuda::AttentionPlan> plan = cuda::attention_plan(shape);
    ASSERT_TRUE(plan.ok()) << plan.status().message();
    const std::string what = fmt::format(
        "attention n_tokens={} n_heads={} head_dim={} n_kv={} n_sel={} (kv {}, {} splits)", c.n_tokens,
        c.n_heads, c.head_dim, n_kv, n_sel, plan->kv_bf16 ? "bf16" : "fp32", plan->n_splits);
    saw_split |= plan->n_splits > 1;
    saw_bf16 |= plan->kv_bf16;
    saw_rounds |= c.window + c.n_valid_picks > 1024 * 9 / 8 && plan->n_splits == 1;
    const uint32_t salt = 60 + uint32_t(c.n_tokens * 7 + c.n_heads + c.head_dim);
    const auto q = random_normal(size_t(c.n_tokens * c.n_heads * c.head_dim), seed(salt), 0.0f, 1.5f);
    const auto kv = random_normal(size_t(n_kv * c.head_dim), seed(salt + 1));
    const auto sinks = random_normal(size_t(c.n_heads), seed(salt + 2), 0.0f, 2.0f);
    std::mt19937 rng(seed(salt + 3));
    std::vector<int32_t> idx(size_t(c.n_tokens * n_sel));
    std::vector<int32_t> pool(size_t(c.n_compressed));
    std::iota(pool.begin(), pool.end(), int32_t(c.window));
    for (int64_t t = 0; t < c.n_tokens; ++t) {
      int32_t* row = idx.data() + t * n_sel;
      // Early tokens see a shorter window: the unused slots are −1 (the last token sees none).
      const int64_t seen = t + 1 == c.n_tokens && c.n_tokens > 1 ? 0 : c.window - (t % c.window);
      for (int64_t j = 0; j < c.window; ++j) row[j] = j < seen ? int32_t(c.window - 1 - j) : -1;
      std::shuffle(pool.begin(), pool.end(), rng);
      for (int64_t j = 0; j < c.n_pick; ++j)
        row[c.window + j] = j >= c.n_valid_picks || rng() % 8 == 0 ? -1 : pool[size_t(j)];
    }
    std::vector<float> want(q.size());
    cpu::attention({q.data(), kv.data(), idx.data(), sinks.data(), want.data(), c.n_tokens, c.n_heads,
                    c.head_dim, n_kv, n_sel, scale},
                   ActivationPrecision::kBF16);
    auto d_q = to_device(q), d_kv = to_device(kv), d_sinks = to_device(sinks);
    auto d_idx = to_device(idx);
    auto workspace = to_device(std::vector<uint8_t>(std::max<size_t>(plan->workspace_bytes, 1), 0xFF));
    std::vector<float> first;
    for (int run = 0; run < 2; ++run) {
      GuardedOutput<float> out(want.size(), poison_float());
      const Status s = cuda::attention({d_q.get(), d_kv.get(), d_idx.get(), d_sinks.get(), out.data(),
                                        c.n_tokens, c.n_heads, c.head_dim, n_kv, n_sel, scale},
                                       workspace.get(), workspace.size(), nullptr);
      ASSERT_TRUE(s.ok()) << what << ": " << s.message();
      std::vector<float> got = out.download(what);
      if (run == 0) {
        // Both sides round the same weights; fp32 order and exp2 ulps tip one now and then, which
        // moves its row's output by up to 2^-8·max|kv| elementwise (≈ 0.13·rms here); in rms the
        // difference stays fp32-sized (docs/numerics.md, "GPU ops").
        expect_close(what, got, want, 0.0, 0.2);
        double err_sq = 0.0, want_sq = 0.0;
        for (size_t i = 0; i < got.size(); ++i) {
          err_sq += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
          want_sq += double(want[i]) * want[i];
        }
        const double rms_rel = std::sqrt(err_sq / std::max(want_sq, 1e-300));
        std::printf("[ numerics ] %s: rms(err) = %.3g × rms(cpu)\n", what.c_str(), rms_rel);
        EXPECT_LE(rms_rel, 1e-3) << what;
        first = std::move(got);
      } else {
        EXPECT_EQ(std::memcmp(got.data(), first.data(), got.size() * sizeof(float)), 0)
            << what << ": second run differs";
      }
    }
  }
  EXPECT_TRUE(saw_split && saw_bf16 && saw_rounds) << "a kernel path went untested";
}

TEST(GpuOps, AttentionRejectsBadSizes) {
  SKIP_WITHOUT_GPU();
  auto d_q = to_device(std::vector<float>(600, 1.0f));
  auto d_idx = to_device(std::vector<int32_t>{0});
  float* f = d_q.get();
  const Status too_wide =
      cuda::attention({f, f, d_idx.get(), f, f, 1, 1, 513, 1, 1, 1.0f}, nullptr, 0, nullptr);
  EXPECT_EQ(too_wide.message(), "attention: head_dim 513; expected at most 512");
  const AttentionParams decode{f, f, d_idx.get(), f, f, 1, 64, 8, 700, 640, 1.0f};  // split: partials
  const Result<cuda::AttentionPlan> plan = cuda::attention_plan(decode);
  ASSERT_TRUE(plan.ok());
  ASSERT_GT(plan->workspace_bytes, 0u);
  EXPECT_EQ(cuda::attention(decode, nullptr, 0, nullptr).message(),
            fmt::format("attention: workspace of 0 bytes; expected at least {} (attention_plan)",
                        plan->workspace_bytes));
}

// ---- indexer: ids exact. Some key rows are duplicated so that exact ties occur and must go to
// the lower index (with few distinct rows, most scores tie, also at the top-k boundary); positions
// cover "nothing admissible", partial and full admissibility. Past kIndexerSortCapacity (2048)
// admissible entries the selection takes its radix-select path.
TEST(GpuOps, Indexer) {
  SKIP_WITHOUT_GPU();
  struct Case {
    int64_t n_tokens, n_heads, head_dim, n_entries, ratio, topk;
    int64_t distinct_keys;  // 0: a duplicate every 11 rows; else rows repeat this many distinct ones
  };
  for (const Case c : {Case{1, 64, 128, 2048, 4, 512, 0},   // V4-Flash/Pro decode
                       Case{1, 64, 128, 1024, 4, 512, 0},   // decode at context 4096
                       Case{3, 64, 128, 1024, 4, 512, 0},   // small decode batch
                       Case{64, 64, 128, 1024, 4, 512, 0},  // decode batch 64
                       Case{24, 64, 128, 1500, 4, 512, 0},  // prefill chunk, ragged entry count
                       Case{5, 64, 128, 300, 4, 512, 0},    // fewer entries than topk: −1 padding
                       Case{3, 64, 128, 70000, 4, 512, 0},  // radix select
                       Case{3, 64, 128, 9000, 4, 1024, 0},  // radix select, V4-Pro's topk
                       Case{4, 64, 128, 5000, 4, 512, 37},  // radix select, ties at the boundary
                       Case{4, 64, 128, 1024, 4, 512, 5},   // sort, mostly ties
                       Case{2, 100, 64, 500, 4, 64, 0},     // two chunks of heads, one partial
                       Case{3, 8, 128, 37, 4, 8, 0},        // tiny config
                       Case{2, 3, 20, 0, 4, 5, 0}}) {       // no entries yet
    const std::string what = fmt::format(
        "indexer n_tokens={} n_heads={} head_dim={} n_entries={} ratio={} topk={} distinct_keys={}",
        c.n_tokens, c.n_heads, c.head_dim, c.n_entries, c.ratio, c.topk, c.distinct_keys);
    const uint32_t salt = 80 + uint32_t(c.n_entries + c.n_tokens + c.distinct_keys);
    const auto q = random_normal(size_t(c.n_tokens * c.n_heads * c.head_dim), seed(salt));
    const auto w = random_normal(size_t(c.n_tokens * c.n_heads), seed(salt + 1));
    auto keys = random_normal(size_t(c.n_entries * c.head_dim), seed(salt + 2));
    if (c.distinct_keys == 0) {
      for (int64_t s = 3; s + 7 < c.n_entries; s += 11)  // exact duplicates: tied scores
        std::copy_n(keys.begin() + s * c.head_dim, c.head_dim, keys.begin() + (s + 7) * c.head_dim);
    } else {
      for (int64_t s = c.distinct_keys; s < c.n_entries; ++s)
        std::copy_n(keys.begin() + (s * 7919 % c.distinct_keys) * c.head_dim, c.head_dim,
                    keys.begin() + s * c.head_dim);
    }
    std::mt19937 rng(seed(salt + 3));
    std::vector<int64_t> pos(size_t(c.n_tokens));
    const int64_t span = c.n_entries * c.ratio + c.ratio;
    for (auto& p : pos) p = int64_t(rng() % uint32_t(span + 1));
    pos[0] = c.n_tokens <= 4 ? span : 1;  // decode: all admissible; else one with none admissible
    if (c.n_tokens > 2) pos[2] = 4 * c.ratio - 1;
    if (c.n_tokens > 1 && c.n_entries > 2049) pos[1] = 2049 * c.ratio;  // one past the sort's capacity
    std::vector<int32_t> want(size_t(c.n_tokens * c.topk));
    cpu::indexer({q.data(), w.data(), keys.data(), pos.data(), want.data(), c.n_tokens, c.n_heads, c.head_dim,
                  c.n_entries, c.ratio, c.topk});
    auto d_q = to_device(q), d_w = to_device(w), d_keys = to_device(keys);
    auto d_pos = to_device(pos);
    GuardedOutput<int32_t> out(want.size(), kPoisonId);
    const Status s = cuda::indexer({d_q.get(), d_w.get(), d_keys.get(), d_pos.get(), out.data(), c.n_tokens,
                                    c.n_heads, c.head_dim, c.n_entries, c.ratio, c.topk},
                                   nullptr);
    ASSERT_TRUE(s.ok()) << what << ": " << s.message();
    const std::vector<int32_t> got = out.download(what);
    for (size_t i = 0; i < want.size(); ++i)
      ASSERT_EQ(got[i], want[i]) << what << ": first bad index [" << i / size_t(c.topk) << ", "
                                 << i % size_t(c.topk) << "]: gpu " << got[i] << " cpu " << want[i];
  }
}

// ---- compressor: HCA (ratio 128), CSA (ratio 4, overlapping, with and without carried state)
// and the indexer's compressor (width 128).
TEST(GpuOps, Compressor) {
  SKIP_WITHOUT_GPU();
  struct Case {
    int64_t n_windows, ratio, width, n_series;
    bool has_prev;
  };
  for (const Case c : {Case{1, 128, 512, 1, false}, Case{3, 128, 512, 1, false}, Case{1, 4, 512, 2, true},
                       Case{16, 4, 512, 2, false}, Case{5, 4, 128, 2, true}, Case{3, 4, 100, 2, true},
                       Case{2, 3, 17, 1, false}}) {
    const std::string what = fmt::format("compressor n_windows={} ratio={} width={} n_series={} prev={}",
                                         c.n_windows, c.ratio, c.width, c.n_series, c.has_prev);
    const uint32_t salt = 100 + uint32_t(c.n_windows * 13 + c.width + c.ratio);
    const int64_t row = c.n_series * c.width, n_tok = c.n_windows * c.ratio;
    const auto kv = random_normal(size_t(n_tok * row), seed(salt));
    const auto gate = random_normal(size_t(n_tok * row), seed(salt + 1), 0.0f, 2.0f);
    const auto ape = random_normal(size_t(c.ratio * row), seed(salt + 2), 0.0f, 0.5f);
    const auto prev_kv = random_normal(size_t(c.ratio * c.width), seed(salt + 3));
    const auto prev_gate = random_normal(size_t(c.ratio * c.width), seed(salt + 4), 0.0f, 2.0f);
    const bool csa = c.n_series == 2;
    std::vector<float> entries(size_t(c.n_windows * c.width)), last_kv(size_t(c.ratio * c.width)),
        last_gate(last_kv.size());
    cpu::compressor({kv.data(), gate.data(), ape.data(), c.has_prev ? prev_kv.data() : nullptr,
                     c.has_prev ? prev_gate.data() : nullptr, entries.data(), csa ? last_kv.data() : nullptr,
                     csa ? last_gate.data() : nullptr, c.n_windows, c.ratio, c.width, c.n_series});
    auto d_kv = to_device(kv), d_gate = to_device(gate), d_ape = to_device(ape), d_pkv = to_device(prev_kv),
         d_pgate = to_device(prev_gate);
    GuardedOutput<float> g_entries(entries.size(), poison_float()), g_lkv(last_kv.size(), poison_float()),
        g_lgate(last_gate.size(), poison_float());
    const Status s = cuda::compressor(
        {d_kv.get(), d_gate.get(), d_ape.get(), c.has_prev ? d_pkv.get() : nullptr,
         c.has_prev ? d_pgate.get() : nullptr, g_entries.data(), csa ? g_lkv.data() : nullptr,
         csa ? g_lgate.data() : nullptr, c.n_windows, c.ratio, c.width, c.n_series},
        nullptr);
    ASSERT_TRUE(s.ok()) << what << ": " << s.message();
    expect_close(what + " entries", g_entries.download(what), entries, 1e-5, 4e-6);
    if (csa) {
      expect_close(what + " last_kv", g_lkv.download(what), last_kv, 0.0, 0.0);
      expect_close(what + " last_gate", g_lgate.download(what), last_gate, 0.0, 0.0);
    }
  }
}

// ---- compressor_decode: several slots stepping at once, some closing a window (the first one
// of a sequence, CSA without prev, and later ones), some not. Tails, prev and entries of every
// slot are compared; the pool is poisoned so that an entry or row written where it should not be
// shows up. Entries: the compressor's and rms_norm's fp32 sums in other orders (as Compressor
// and RmsNorm above), then rope.
TEST(GpuOps, CompressorDecode) {
  SKIP_WITHOUT_GPU();
  struct Case {
    int64_t ratio, width, n_series, rope_dim;
    std::vector<int64_t> positions;  // one per token; token t uses slot n_slots − 1 − t
  };
  std::vector<Case> cases = {
      {4, 512, 2, 64, {3, 7, 5, 4000}},     // CSA: first window, a later one, mid-window, deep
      {4, 128, 2, 64, {11, 0, 2, 3, 63}},   // the indexer's compressor
      {128, 512, 1, 64, {127, 255, 100}},   // HCA
      {3, 20, 1, 8, {2, 8, 1}},             // ragged
      {4, 36, 2, 16, {0, 1, 2, 3, 7, 11}},  // one token per slot, windows 0…2
      {8, 64, 2, 16, {7, 15, 23, 5}},       // CSA with 16 slots: the streamed passes
      {2, 1500, 1, 64, {1, 3, 4, 7}},       // width > 512: channels strided over the block
  };
  Case batch64{4, 512, 2, 64, {}};  // CSA, a decode batch of 64: half close a window
  for (int64_t t = 0; t < 64; ++t)
    batch64.positions.push_back(t % 2 == 0 ? 4 * (t * 15 % 1000) + 3 : 4 * t + 1);
  cases.push_back(batch64);
  for (const Case& c : cases) {
    const int64_t n = int64_t(c.positions.size()), n_slots = n + 2, row = c.n_series * c.width;
    const int64_t max_entries = 1001, stride = max_entries + 5, offset = 3;
    const std::string what = fmt::format("compressor_decode ratio={} width={} n_series={} n_tokens={}",
                                         c.ratio, c.width, c.n_series, n);
    const uint32_t salt = 400 + uint32_t(c.width + c.ratio + n);
    const auto kv = random_normal(size_t(n * row), seed(salt));
    const auto gate = random_normal(size_t(n * row), seed(salt + 1), 0.0f, 2.0f);
    const auto ape = random_normal(size_t(c.ratio * row), seed(salt + 2), 0.0f, 0.5f);
    const auto norm = random_normal(size_t(c.width), seed(salt + 3), 1.0f, 0.2f);
    std::vector<float> inv_freq(size_t(c.rope_dim / 2));
    for (size_t i = 0; i < inv_freq.size(); ++i)
      inv_freq[i] = std::pow(160000.0f, -2.0f * float(i) / c.rope_dim);
    std::vector<int32_t> slots(static_cast<size_t>(n));
    for (int64_t t = 0; t < n; ++t) slots[size_t(t)] = int32_t(n_slots - 1 - t);
    // Caches start random (earlier rows of each window, previous Ca), entries poisoned.
    auto tail_kv = random_normal(size_t(n_slots * c.ratio * row), seed(salt + 4));
    auto tail_gate = random_normal(tail_kv.size(), seed(salt + 5), 0.0f, 2.0f);
    auto prev_kv = random_normal(size_t(n_slots * c.ratio * c.width), seed(salt + 6));
    auto prev_gate = random_normal(prev_kv.size(), seed(salt + 7), 0.0f, 2.0f);
    std::vector<float> entries(size_t(n_slots * stride * c.width), poison_float());
    const bool csa = c.n_series == 2;
    auto d_kv = to_device(kv), d_gate = to_device(gate), d_ape = to_device(ape), d_norm = to_device(norm),
         d_freq = to_device(inv_freq);
    auto d_slots = to_device(slots);
    auto d_pos = to_device(c.positions);
    auto d_tail_kv = to_device(tail_kv), d_tail_gate = to_device(tail_gate), d_prev_kv = to_device(prev_kv),
         d_prev_gate = to_device(prev_gate);
    GuardedOutput<float> d_entries(entries.size(), poison_float());
    CompressorDecodeParams p{kv.data(),
                             gate.data(),
                             ape.data(),
                             norm.data(),
                             inv_freq.data(),
                             slots.data(),
                             c.positions.data(),
                             tail_kv.data(),
                             tail_gate.data(),
                             csa ? prev_kv.data() : nullptr,
                             csa ? prev_gate.data() : nullptr,
                             entries.data(),
                             stride,
                             offset,
                             max_entries,
                             n,
                             n_slots,
                             c.ratio,
                             c.width,
                             c.n_series,
                             c.rope_dim,
                             1e-6f};
    ASSERT_TRUE(check_compressor_decode(p).ok()) << what;
    cpu::compressor_decode(p);
    // The same call on the device buffers.
    p.kv = d_kv.get(), p.gate = d_gate.get(), p.ape = d_ape.get(), p.norm = d_norm.get();
    p.inv_freq = d_freq.get(), p.slots = d_slots.get(), p.positions = d_pos.get();
    p.tail_kv = d_tail_kv.get(), p.tail_gate = d_tail_gate.get(), p.entries = d_entries.data();
    p.prev_kv = csa ? d_prev_kv.get() : nullptr, p.prev_gate = csa ? d_prev_gate.get() : nullptr;
    const Status s = cuda::compressor_decode(p, nullptr);
    ASSERT_TRUE(s.ok()) << what << ": " << s.message();
    const std::vector<float> got = d_entries.download(what);
    // Rows no token closes must stay poisoned; closed ones must match.
    std::vector<float> got_rows, want_rows;
    for (size_t i = 0; i < entries.size(); ++i) {
      const bool want_poison = std::isnan(entries[i]);
      ASSERT_EQ(std::isnan(got[i]), want_poison) << what << ": entry element " << i << " written wrongly";
      if (!want_poison) got_rows.push_back(got[i]), want_rows.push_back(entries[i]);
    }
    ASSERT_FALSE(want_rows.empty()) << what << ": the case closes no window";
    expect_close(what + " entries", got_rows, want_rows, 1e-5, 4e-6);
    expect_close(what + " tail_kv", d_tail_kv.download().value(), tail_kv, 0.0, 0.0);
    expect_close(what + " tail_gate", d_tail_gate.download().value(), tail_gate, 0.0, 0.0);
    if (csa) {
      expect_close(what + " prev_kv", d_prev_kv.download().value(), prev_kv, 0.0, 0.0);
      expect_close(what + " prev_gate", d_prev_gate.download().value(), prev_gate, 0.0, 0.0);
    }
  }
}

// ---- kv_cache_decode: ring rows and row lists are exact (a copy and integer arithmetic).
TEST(GpuOps, KvCacheDecode) {
  SKIP_WITHOUT_GPU();
  struct Case {
    int64_t head_dim, window, ratio, n_listed;
    bool csa;
    std::vector<int64_t> positions;
  };
  const std::vector<Case> cases = {
      {512, 128, 0, 0, false, {0, 5, 127, 128, 4000}},   // sliding: partial and full windows
      {512, 128, 128, 40, false, {127, 300, 5000, 2}},   // HCA, capacity 40 entries
      {512, 128, 0, 512, true, {3, 1000, 2047}},         // CSA, index_topk 512
      {36, 8, 4, 9, false, {0, 3, 7, 8, 35, 36, 1000}},  // ragged HCA
  };
  for (const Case& c : cases) {
    const int64_t n = int64_t(c.positions.size()), n_slots = n + 1;
    const int64_t rows_per_slot = c.window + (c.csa ? 700 : c.n_listed) + 3;
    const int64_t n_sel = c.window + c.n_listed;
    const std::string what = fmt::format("kv_cache_decode head_dim={} window={} ratio={} n_listed={} csa={}",
                                         c.head_dim, c.window, c.ratio, c.n_listed, c.csa);
    const uint32_t salt = 500 + uint32_t(c.head_dim + n);
    const auto kv = random_normal(size_t(n * c.head_dim), seed(salt));
    auto cache = random_normal(size_t(n_slots * rows_per_slot * c.head_dim), seed(salt + 1));
    std::vector<int32_t> slots(static_cast<size_t>(n));
    for (int64_t t = 0; t < n; ++t) slots[size_t(t)] = int32_t((t * 7 + 1) % n_slots);
    std::mt19937 rng(seed(salt + 2));
    std::vector<int32_t> selected(size_t(n * c.n_listed));
    for (auto& e : selected) e = rng() % 5 == 0 ? -1 : int32_t(rng() % 700);
    std::vector<int32_t> want(size_t(n * n_sel), kPoisonId);
    auto d_kv = to_device(kv), d_cache = to_device(cache);
    auto d_slots = to_device(slots), d_sel = to_device(selected);
    auto d_pos = to_device(c.positions);
    KvCacheDecodeParams p{kv.data(),
                          slots.data(),
                          c.positions.data(),
                          c.csa ? selected.data() : nullptr,
                          cache.data(),
                          want.data(),
                          n,
                          n_slots,
                          rows_per_slot,
                          c.head_dim,
                          c.window,
                          c.ratio,
                          c.n_listed};
    ASSERT_TRUE(check_kv_cache_decode(p).ok()) << what;
    cpu::kv_cache_decode(p);
    GuardedOutput<int32_t> got(want.size(), kPoisonId);
    const Status s = cuda::kv_cache_decode(
        {d_kv.get(), d_slots.get(), d_pos.get(), c.csa ? d_sel.get() : nullptr, d_cache.get(), got.data(), n,
         n_slots, rows_per_slot, c.head_dim, c.window, c.ratio, c.n_listed},
        nullptr);
    ASSERT_TRUE(s.ok()) << what << ": " << s.message();
    const std::vector<int32_t> got_idx = got.download(what);
    for (size_t i = 0; i < want.size(); ++i)
      ASSERT_EQ(got_idx[i], want[i]) << what << ": first bad index [" << i / size_t(n_sel) << ", "
                                     << i % size_t(n_sel) << "]";
    expect_close(what + " cache", d_cache.download().value(), cache, 0.0, 0.0);
  }
}

// ---- indexer over a pool of per-sequence key blocks (decode): ids exact, each token reading
// its own slot's keys up to its admissible count; batches of 5 and 64 sequences.
TEST(GpuOps, IndexerSlots) {
  SKIP_WITHOUT_GPU();
  const int64_t n_heads = 64, head_dim = 128, ratio = 4, topk = 512;
  for (const int64_t n : {int64_t(5), int64_t(64)}) {
    const int64_t capacity = n == 5 ? 700 : 1100, n_slots = n + 2;
    const std::string what = fmt::format("indexer slots n_tokens={} capacity={}", n, capacity);
    std::vector<int64_t> pos = {2799, 3, 1000, 2100, 0};
    std::vector<int32_t> slots = {6, 0, 3, 2, 5};
    std::mt19937 rng(seed(603));
    for (int64_t t = 5; t < n; ++t) {
      pos.push_back(int64_t(rng() % uint32_t(capacity * ratio + ratio)));
      slots.push_back(int32_t(n_slots - 1 - (t - 5)));
    }
    const auto q = random_normal(size_t(n * n_heads * head_dim), seed(600));
    const auto w = random_normal(size_t(n * n_heads), seed(601));
    auto keys = random_normal(size_t(n_slots * capacity * head_dim), seed(602));
    for (int64_t s = 3; s + 7 < n_slots * capacity; s += 11)  // exact duplicates: tied scores
      std::copy_n(keys.begin() + s * head_dim, head_dim, keys.begin() + (s + 7) * head_dim);
    std::vector<int32_t> want(size_t(n * topk));
    IndexerParams p{q.data(), w.data(), keys.data(), pos.data(), want.data(), n,
                    n_heads,  head_dim, capacity,    ratio,      topk};
    p.slots = slots.data();
    cpu::indexer(p);
    auto d_q = to_device(q), d_w = to_device(w), d_keys = to_device(keys);
    auto d_pos = to_device(pos);
    auto d_slots = to_device(slots);
    GuardedOutput<int32_t> out(want.size(), kPoisonId);
    p = {d_q.get(), d_w.get(), d_keys.get(), d_pos.get(), out.data(), n,
         n_heads,   head_dim,  capacity,     ratio,       topk};
    p.slots = d_slots.get();
    const Status s = cuda::indexer(p, nullptr);
    ASSERT_TRUE(s.ok()) << what << ": " << s.message();
    const std::vector<int32_t> got = out.download(what);
    for (size_t i = 0; i < want.size(); ++i)
      ASSERT_EQ(got[i], want[i]) << what << ": first bad index [" << i / size_t(topk) << ", "
                                 << i % size_t(topk) << "]";
  }
}

// ---- grouped_linear through the CUDA backend (linear_sm90 with groups; SGEMM batched for F32):
// V4-Flash/Pro wo_a shapes in FP8 and BF16 (as in the checkpoints) at decode and prefill token
// counts, the fixtures' NVFP4/MXFP4 shape, ragged in-features, and F32. x is rounded to BF16 for
// the CPU as the GPU contract says, so only the summation order differs: linear's per-row bound
// (docs/numerics.md, "GPU linear").
TEST(GpuOps, GroupedLinear) {
  SKIP_WITHOUT_GPU();
  struct Case {
    WeightFormat format;
    int64_t n_tokens, n_groups, in_per_group, out_per_group;
  };
  auto backend = make_cuda_backend();
  for (const Case c : {Case{WeightFormat::kFP8Block128, 1, 8, 4096, 1024},  // V4-Flash decode
                       Case{WeightFormat::kFP8Block128, 9, 8, 4096, 1024},
                       Case{WeightFormat::kFP8Block128, 100, 8, 4096, 1024},  // prefill: batched cuBLAS
                       Case{WeightFormat::kBF16, 3, 8, 4096, 1024},
                       Case{WeightFormat::kFP8Block128, 11, 16, 4096, 1024},  // V4-Pro
                       Case{WeightFormat::kNVFP4, 2, 2, 256, 64},             // the fixtures' shape
                       Case{WeightFormat::kMXFP4, 70, 2, 256, 64},
                       Case{WeightFormat::kFP8Block128, 2, 3, 200, 32},  // ragged in-features
                       Case{WeightFormat::kFP8Block128, 5, 3, 198, 48},  // x rows not 16-byte aligned
                       Case{WeightFormat::kF32, 3, 2, 100, 36}}) {
    const std::string what =
        fmt::format("grouped_linear format={} n_tokens={} n_groups={} in_per_group={} out_per_group={}",
                    weight_format_name(c.format), c.n_tokens, c.n_groups, c.in_per_group, c.out_per_group);
    const uint32_t salt = 120 + uint32_t(c.n_tokens + c.n_groups + c.in_per_group);
    const int64_t rows = c.n_groups * c.out_per_group, K = c.in_per_group;
    const auto x = random_normal(size_t(c.n_tokens * c.n_groups * K), seed(salt));
    const auto w_f32 = random_normal(size_t(rows * K), seed(salt + 1), 0.0f, 0.02f);
    const QuantizedWeight w = quantize_weight(c.format, w_f32.data(), rows, K);
    std::vector<float> want(size_t(c.n_tokens * rows));
    cpu::grouped_linear(
        {x.data(), w.view(), want.data(), c.n_tokens, c.n_groups},
        c.format == WeightFormat::kF32 ? ActivationPrecision::kF32 : ActivationPrecision::kBF16);
    auto d_x = to_device(x);
    const Result<WeightView> dv = backend->upload_linear_weight(w.view());
    ASSERT_TRUE(dv.ok()) << what << ": " << dv.status().message();
    GuardedOutput<float> out(want.size(), poison_float());
    const Status s = backend->grouped_linear({d_x.get(), *dv, out.data(), c.n_tokens, c.n_groups});
    ASSERT_TRUE(s.ok()) << what << ": " << s.message();
    const std::vector<float> got = out.download(what);
    double worst = 0.0;  // max over rows of max|err| / (√K · max|y_cpu|)
    for (int64_t t = 0; t < c.n_tokens; ++t) {
      double row_max = 0.0, err_max = 0.0;
      for (int64_t n = 0; n < rows; ++n) {
        const size_t i = size_t(t * rows + n);
        ASSERT_TRUE(std::isfinite(got[i])) << what << ": not finite at [" << t << ", " << n << "]";
        row_max = std::max(row_max, std::fabs(double(want[i])));
        err_max = std::max(err_max, std::fabs(double(got[i]) - double(want[i])));
      }
      const double bound = 1e-5 * std::sqrt(double(K)) * row_max;
      ASSERT_LE(err_max, bound) << what << ": token " << t << ": max|err| " << err_max << ", row max "
                                << row_max;
      worst = std::max(worst, err_max / (std::sqrt(double(K)) * row_max));
    }
    std::printf("[ numerics ] %s: max|err| / (√K · row max) %.3g (bound 1e-5)\n", what.c_str(), worst);
  }
  // Groups must split the rows into whole 16-row tiles (one line, no launch).
  const auto w_f32 = random_normal(size_t(60 * 128), seed(7), 0.0f, 0.02f);
  const QuantizedWeight w = quantize_weight(WeightFormat::kFP8Block128, w_f32.data(), 60, 128);
  const Result<WeightView> dv = backend->upload_linear_weight(w.view());
  ASSERT_TRUE(dv.ok()) << dv.status().message();
  auto d_x = to_device(random_normal(size_t(3 * 128), seed(8)));
  GuardedOutput<float> out(size_t(60), poison_float());
  const Status s = backend->grouped_linear({d_x.get(), *dv, out.data(), 1, 3});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("multiple of 16 rows"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace dsv4
