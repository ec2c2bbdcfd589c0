// Unit tests of the CPU reference ops against hand-computed or independently computed values.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/config.h"
#include "core/numeric.h"
#include "model/backend.h"
#include "ops/quantize_nvfp4_activation.h"

namespace dsv4 {
namespace {

std::vector<float> random_vector(int64_t n, uint64_t seed, float stddev = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

TEST(CpuOps, RmsNormWeightedAndUnweighted) {
  const std::vector<float> x = {3.0f, 4.0f}, w = {2.0f, 0.5f};
  std::vector<float> y(2), yu(2);
  ASSERT_TRUE(check_rms_norm({x.data(), w.data(), y.data(), 1, 2, 0.0f}).ok());
  cpu::rms_norm({x.data(), w.data(), y.data(), 1, 2, 0.0f});
  cpu::rms_norm({x.data(), nullptr, yu.data(), 1, 2, 0.0f});
  const float rms = std::sqrt(12.5f);
  EXPECT_FLOAT_EQ(yu[0], 3.0f / rms);
  EXPECT_FLOAT_EQ(yu[1], 4.0f / rms);
  EXPECT_FLOAT_EQ(y[0], 2.0f * 3.0f / rms);
  EXPECT_FLOAT_EQ(y[1], 0.5f * 4.0f / rms);
}

TEST(CpuOps, MhcPreSinkhornIsDoublyStochastic) {
  const int64_t n = 4, D = 16, T = 3, mix = (2 + n) * n;
  const std::vector<float> h = random_vector(T * n * D, 1), fn = random_vector(mix * n * D, 2, 0.3f),
                           base = random_vector(mix, 3), scale = {1.1f, 0.9f, 1.3f};
  std::vector<float> x(size_t(T * D)), post(size_t(T * n)), comb(size_t(T * n * n));
  MhcPreParams p{h.data(), fn.data(), base.data(), scale.data(), x.data(), post.data(), comb.data(),
                 T,        n,         D,           20,           1e-6f,    1e-6f};
  ASSERT_TRUE(check_mhc_pre(p).ok());
  cpu::mhc_pre(p);
  for (int64_t t = 0; t < T; ++t) {
    const float* C = comb.data() + t * n * n;
    for (int64_t k = 0; k < n; ++k) {  // ends on a column step: columns sum to 1 up to eps
      float col = 0.0f, row = 0.0f;
      for (int64_t j = 0; j < n; ++j) col += C[j * n + k], row += C[k * n + j];
      EXPECT_NEAR(col, 1.0f, 1e-5f);
      EXPECT_NEAR(row, 1.0f, 0.05f);  // 19 row steps leave rows close to, not at, 1
    }
    // The same projection recomputed in double, in the spec's order.
    const float* v = h.data() + t * n * D;
    double ss = 0;
    for (int64_t i = 0; i < n * D; ++i) ss += double(v[i]) * v[i];
    const double inv_rms = 1.0 / std::sqrt(ss / double(n * D) + 1e-6);
    std::vector<double> E(size_t(n * n));
    for (int64_t j = 0; j < n; ++j) {
      double mx = -1e300;
      for (int64_t k = 0; k < n; ++k) {
        double m = 0;
        const int64_t row_id = 2 * n + j * n + k;
        for (int64_t i = 0; i < n * D; ++i) m += double(fn[size_t(row_id * n * D + i)]) * v[i] * inv_rms;
        E[size_t(j * n + k)] = m * scale[2] + base[size_t(row_id)];
        mx = std::max(mx, E[size_t(j * n + k)]);
      }
      double sum = 0;
      for (int64_t k = 0; k < n; ++k) sum += (E[size_t(j * n + k)] = std::exp(E[size_t(j * n + k)] - mx));
      for (int64_t k = 0; k < n; ++k) E[size_t(j * n + k)] = E[size_t(j * n + k)] / sum + 1e-6;
    }
    for (int it = 0; it < 20; ++it) {
      if (it > 0)
        for (int64_t j = 0; j < n; ++j) {
          double sum = 0;
          for (int64_t k = 0; k < n; ++k) sum += E[size_t(j * n + k)];
          for (int64_t k = 0; k < n; ++k) E[size_t(j * n + k)] /= sum + 1e-6;
        }
      for (int64_t k = 0; k < n; ++k) {
        double sum = 0;
        for (int64_t j = 0; j < n; ++j) sum += E[size_t(j * n + k)];
        for (int64_t j = 0; j < n; ++j) E[size_t(j * n + k)] /= sum + 1e-6;
      }
    }
    for (int64_t i = 0; i < n * n; ++i) EXPECT_NEAR(C[i], E[size_t(i)], 1e-5) << i;
    for (int64_t j = 0; j < n; ++j) {
      EXPECT_GT(post[size_t(t * n + j)], 0.0f);
      EXPECT_LT(post[size_t(t * n + j)], 2.0f);
    }
  }
  // Collapse with pre recomputed independently (double precision).
  for (int64_t t = 0; t < T; ++t) {
    const float* v = h.data() + t * n * D;
    double ss = 0;
    for (int64_t i = 0; i < n * D; ++i) ss += double(v[i]) * v[i];
    const double inv_rms = 1.0 / std::sqrt(ss / double(n * D) + 1e-6);
    for (int64_t c = 0; c < D; ++c) {
      double expect = 0;
      for (int64_t j = 0; j < n; ++j) {
        double m = 0;
        for (int64_t i = 0; i < n * D; ++i) m += double(fn[size_t(j * n * D + i)]) * v[i] * inv_rms;
        const double pre = 1.0 / (1.0 + std::exp(-(m * scale[0] + base[size_t(j)]))) + 1e-6;
        expect += pre * v[j * D + c];
      }
      EXPECT_NEAR(x[size_t(t * D + c)], expect, 1e-4);
    }
  }
}

TEST(CpuOps, MhcPostAppliesCombTransposed) {
  // One token, 2 streams, D = 1: h' _k = post_k·y + Σ_j C[j,k]·h_j.
  const std::vector<float> y = {10.0f}, h = {1.0f, 2.0f}, post = {0.5f, 1.5f},
                           comb = {0.1f, 0.2f, 0.3f, 0.4f};
  std::vector<float> out(2);
  cpu::mhc_post({y.data(), h.data(), post.data(), comb.data(), out.data(), 1, 2, 1});
  EXPECT_FLOAT_EQ(out[0], 5.0f + 0.1f * 1 + 0.3f * 2);
  EXPECT_FLOAT_EQ(out[1], 15.0f + 0.2f * 1 + 0.4f * 2);
}

TEST(CpuOps, YarnFrequenciesRampBetween15And25) {
  ModelConfig cfg = ModelConfig::flash();
  const std::vector<float> f = rope_inv_freq(cfg, true), plain = rope_inv_freq(cfg, false);
  ASSERT_EQ(f.size(), 32u);
  for (int i = 0; i < 32; ++i) {
    const double w = std::pow(160000.0, -2.0 * i / 64.0);
    if (i <= 15) EXPECT_NEAR(f[size_t(i)], w, 1e-6 * w) << i;
    if (i >= 25) EXPECT_NEAR(f[size_t(i)], w / 16, 1e-6 * w) << i;
    if (i > 15 && i < 25) {
      const double ramp = (i - 15) / 10.0;
      EXPECT_NEAR(f[size_t(i)], w * (1 - ramp) + w / 16 * ramp, 1e-6 * w) << i;
    }
    EXPECT_NEAR(plain[size_t(i)], std::pow(10000.0, -2.0 * i / 64.0), 1e-6 * plain[size_t(i)]) << i;
  }
}

TEST(CpuOps, RopeRotatesLastChannelsAndInverseIsIdentity) {
  ModelConfig cfg = ModelConfig::flash();
  const std::vector<float> freq = rope_inv_freq(cfg, true);
  const int64_t T = 3, H = 2, d = 128, r = 64;
  const std::vector<float> x0 = random_vector(T * H * d, 5);
  std::vector<float> x = x0;
  const std::vector<int64_t> pos = {0, 7, 300};
  ASSERT_TRUE(check_rope({x.data(), pos.data(), freq.data(), T, H, d, r, false}).ok());
  cpu::rope({x.data(), pos.data(), freq.data(), T, H, d, r, false});
  for (int64_t c = 0; c < d; ++c) EXPECT_EQ(x[size_t(c)], x0[size_t(c)]);  // position 0: identity
  for (int64_t c = 0; c < d - r; ++c)
    EXPECT_EQ(x[size_t(2 * H * d + c)], x0[size_t(2 * H * d + c)]);  // nope part
  // Pair 0 of token 1 (position 7): rotated by 7·ω_0 = 7 radians.
  const float a = x0[size_t(H * d + d - r)], b = x0[size_t(H * d + d - r + 1)];
  EXPECT_NEAR(x[size_t(H * d + d - r)], a * std::cos(7.0f) - b * std::sin(7.0f), 1e-5f);
  EXPECT_NEAR(x[size_t(H * d + d - r + 1)], a * std::sin(7.0f) + b * std::cos(7.0f), 1e-5f);
  cpu::rope({x.data(), pos.data(), freq.data(), T, H, d, r, true});
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(x[i], x0[i], 1e-5f);
}

TEST(CpuOps, CompressorHcaIsChannelSoftmax) {
  // ratio 2, width 1, HCA: entry = Σ softmax(gate + ape)·kv over the two slots.
  const std::vector<float> kv = {1.0f, 3.0f, 5.0f, 7.0f}, gate = {0.0f, 1.0f, 2.0f, 2.0f},
                           ape = {0.5f, -0.5f};
  std::vector<float> entries(2);
  CompressorParams p;
  p.kv = kv.data(), p.gate = gate.data(), p.ape = ape.data(), p.entries = entries.data();
  p.n_windows = 2, p.ratio = 2, p.width = 1, p.n_series = 1;
  ASSERT_TRUE(check_compressor(p).ok());
  cpu::compressor(p);
  // Window 0: gates 0.5, 0.5 → equal weights; window 1: gates 2.5, 1.5.
  EXPECT_FLOAT_EQ(entries[0], 2.0f);
  const float w0 = 1.0f / (1.0f + std::exp(-1.0f));
  EXPECT_NEAR(entries[1], w0 * 5.0f + (1 - w0) * 7.0f, 1e-6f);
}

TEST(CpuOps, CompressorCsaOverlapsPreviousWindow) {
  // ratio 1, width 1, CSA rows [Ca | Cb]: entry b mixes Ca of window b−1 and Cb of window b.
  const std::vector<float> kv = {1.0f, 2.0f, 3.0f, 4.0f}, gate = {0.0f, 0.0f, 0.0f, 0.0f}, ape = {0.0f, 0.0f};
  const std::vector<float> prev_kv = {10.0f}, prev_gate = {0.0f};
  std::vector<float> entries(2), last_kv(1), last_gate(1);
  CompressorParams p;
  p.kv = kv.data(), p.gate = gate.data(), p.ape = ape.data(), p.entries = entries.data();
  p.last_kv = last_kv.data(), p.last_gate = last_gate.data();
  p.n_windows = 2, p.ratio = 1, p.width = 1, p.n_series = 2;
  cpu::compressor(p);
  EXPECT_FLOAT_EQ(entries[0], 2.0f);               // first window of a sequence: only its Cb
  EXPECT_FLOAT_EQ(entries[1], (1.0f + 4.0f) / 2);  // Ca of window 0 and Cb of window 1
  EXPECT_FLOAT_EQ(last_kv[0], 3.0f);
  p.prev_kv = prev_kv.data(), p.prev_gate = prev_gate.data();
  cpu::compressor(p);
  EXPECT_FLOAT_EQ(entries[0], (10.0f + 2.0f) / 2);  // carried Ca of the previous call
}

TEST(CpuOps, IndexerTiesGoToLowerIndexAndPadsWithMinusOne) {
  // One head, head_dim 1; keys chosen so entries 1 and 2 tie, entry 3 is best.
  const std::vector<float> q = {1.0f, 1.0f}, w = {1.0f, 1.0f}, keys = {1.0f, 2.0f, 2.0f, 3.0f, 9.0f};
  const std::vector<int64_t> pos = {19, 6};  // admissible entries: (p+1) div 4 = 5 and 1
  std::vector<int32_t> sel(2 * 3);
  IndexerParams p{q.data(), w.data(), keys.data(), pos.data(), sel.data(), 2, 1, 1, 5, 4, 3};
  ASSERT_TRUE(check_indexer(p).ok());
  cpu::indexer(p);
  EXPECT_EQ(sel[0], 4);
  EXPECT_EQ(sel[1], 3);
  EXPECT_EQ(sel[2], 1);  // tie between 1 and 2: the lower index
  EXPECT_EQ(sel[3], 0);  // only entry 0 is admissible at position 6
  EXPECT_EQ(sel[4], -1);
  EXPECT_EQ(sel[5], -1);
  // topk larger than the number of entries: padded with −1.
  std::vector<int32_t> wide(8);
  IndexerParams pw{q.data(), w.data(), keys.data(), pos.data(), wide.data(), 1, 1, 1, 5, 4, 8};
  cpu::indexer(pw);
  EXPECT_EQ(wide[5], -1);
  EXPECT_EQ(wide[7], -1);
}

// compressor_decode fed one token at a time gives the entries that compressor + rms_norm + rope
// give over the whole sequence at once (bit for bit: the same CPU calls), for CSA and HCA, in a
// slot other than 0; the other slot's caches stay untouched.
TEST(CpuOps, CompressorDecodeStepsMatchPrefill) {
  for (const int64_t n_series : {int64_t(2), int64_t(1)}) {
    const int64_t m = 4, w = 12, rope_dim = 4, row = n_series * w, n_tok = 19, n_win = n_tok / m, slot = 1;
    const std::vector<float> kv = random_vector(n_tok * row, 40), gate = random_vector(n_tok * row, 41, 2.0f),
                             ape = random_vector(m * row, 42, 0.5f), norm = random_vector(w, 43);
    const std::vector<float> inv_freq = {1.0f, 0.01f};
    // Prefill: every window at once.
    std::vector<float> want(size_t(n_win * w));
    cpu::compressor({kv.data(), gate.data(), ape.data(), nullptr, nullptr, want.data(), nullptr, nullptr,
                     n_win, m, w, n_series});
    cpu::rms_norm({want.data(), norm.data(), want.data(), n_win, w, 1e-6f});
    std::vector<int64_t> entry_pos;
    for (int64_t b = 0; b < n_win; ++b) entry_pos.push_back(b * m);
    cpu::rope({want.data(), entry_pos.data(), inv_freq.data(), n_win, 1, w, rope_dim, false});
    // Decode: token by token into slot 1 of two; entries at rows offset 2 of 10 per slot.
    const int64_t stride = 10, offset = 2;
    std::vector<float> tail_kv(size_t(2 * m * row), 7.0f),
        tail_gate = tail_kv, prev_kv(size_t(2 * m * w), 7.0f), prev_gate = prev_kv,
        entries(size_t(2 * stride * w), 7.0f);
    const int32_t slots[] = {int32_t(slot)};
    for (int64_t t = 0; t < n_tok; ++t) {
      const CompressorDecodeParams p{kv.data() + t * row,
                                     gate.data() + t * row,
                                     ape.data(),
                                     norm.data(),
                                     inv_freq.data(),
                                     slots,
                                     &t,
                                     tail_kv.data(),
                                     tail_gate.data(),
                                     n_series == 2 ? prev_kv.data() : nullptr,
                                     n_series == 2 ? prev_gate.data() : nullptr,
                                     entries.data(),
                                     stride,
                                     offset,
                                     stride - offset,
                                     1,
                                     2,
                                     m,
                                     w,
                                     n_series,
                                     rope_dim,
                                     1e-6f};
      ASSERT_TRUE(check_compressor_decode(p).ok());
      cpu::compressor_decode(p);
    }
    for (int64_t b = 0; b < n_win; ++b)
      for (int64_t c = 0; c < w; ++c)
        ASSERT_EQ(entries[size_t((slot * stride + offset + b) * w + c)], want[size_t(b * w + c)])
            << "n_series " << n_series << " entry " << b << " channel " << c;
    for (int64_t i = 0; i < stride * w; ++i) ASSERT_EQ(entries[size_t(i)], 7.0f) << "slot 0 written";
    // The unfinished window's rows sit at tail slots 0…
    for (int64_t i = 0; i < (n_tok % m) * row; ++i)
      ASSERT_EQ(tail_kv[size_t(slot * m * row + i)], kv[size_t(n_win * m * row + i)]);
  }
}

// kv_cache_decode: ring store at position mod window, window rows oldest first, then HCA's
// admissible entries; CSA lists the selection and skips −1.
TEST(CpuOps, KvCacheDecodeListsWindowThenEntries) {
  const int64_t hd = 2, W = 4, rows_per_slot = W + 3;
  const std::vector<float> kv = {1, 2, 3, 4};
  const int32_t slots[] = {1, 0};
  const int64_t pos[] = {9, 2};
  std::vector<float> cache(size_t(2 * rows_per_slot * hd), 0.0f);
  std::vector<int32_t> idx(size_t(2 * (W + 3)), 99);
  KvCacheDecodeParams p{kv.data(), slots, pos, nullptr, cache.data(), idx.data(), 2, 2, rows_per_slot,
                        hd,        W,     4,   3};
  ASSERT_TRUE(check_kv_cache_decode(p).ok());
  cpu::kv_cache_decode(p);
  // Token 0: slot 1 (rows 7…13), position 9 → ring row 1; window 6…9 → rows 2,3,0,1; 2 entries.
  EXPECT_EQ(cache[size_t((7 + 1) * hd)], 1.0f);
  EXPECT_EQ(cache[size_t((7 + 1) * hd + 1)], 2.0f);
  EXPECT_EQ(std::vector<int32_t>(idx.begin(), idx.begin() + 7),
            (std::vector<int32_t>{9, 10, 7, 8, 11, 12, -1}));
  // Token 1: slot 0, position 2 → window 0…2, no entry admissible yet.
  EXPECT_EQ(std::vector<int32_t>(idx.begin() + 7, idx.end()),
            (std::vector<int32_t>{0, 1, 2, -1, -1, -1, -1}));
  const int32_t selected[] = {2, -1, 0, 1, 1, -1};
  p.ratio = 0;
  p.selected = selected;
  cpu::kv_cache_decode(p);
  EXPECT_EQ(std::vector<int32_t>(idx.begin(), idx.begin() + 7),
            (std::vector<int32_t>{9, 10, 7, 8, 13, -1, 11}));
  EXPECT_EQ(std::vector<int32_t>(idx.begin() + 7, idx.end()), (std::vector<int32_t>{0, 1, 2, -1, 5, 5, -1}));
}

TEST(CpuOps, AttentionSinkOnlyEnlargesDenominator) {
  // One head, head_dim 1, two keys with logits 0 and 0, sink 0: each weight 1/3.
  const std::vector<float> q = {0.0f}, kv = {3.0f, 6.0f}, sinks = {0.0f};
  const std::vector<int32_t> idx = {0, 1, -1};
  std::vector<float> out(1);
  AttentionParams p{q.data(), kv.data(), idx.data(), sinks.data(), out.data(), 1, 1, 1, 2, 3, 1.0f};
  ASSERT_TRUE(check_attention(p).ok());
  cpu::attention(p);
  EXPECT_FLOAT_EQ(out[0], 3.0f);
  const std::vector<int32_t> bad = {0, 2, -1};
  p.kv_idx = bad.data();
  EXPECT_FALSE(check_attention(p).ok());
}

TEST(CpuOps, RouterRenormalisesAndScales) {
  // d_model 1 and x = 1: the logits are the gate's column, exactly.
  const std::vector<float> gate = {0.0f, 1.0f, 25.0f, -1.0f};  // 25 > 20: softplus is the identity
  const std::vector<float> bias = {0.0f, 0.0f, 0.0f, 10.0f};   // bias selects expert 3, weight stays unbiased
  const std::vector<float> x = {1.0f};
  std::vector<int32_t> ids(2), counts(4);
  std::vector<float> w(2);
  MoeRouterParams p;
  p.x = x.data(), p.gate = {WeightFormat::kF32, 4, 1, gate.data(), nullptr, 1.0f};
  p.bias = bias.data(), p.expert_ids = ids.data(), p.weights = w.data(), p.counts = counts.data();
  p.n_tokens = 1, p.d_model = 1, p.n_experts = 4, p.top_k = 2, p.routed_scaling_factor = 1.5f;
  ASSERT_TRUE(check_moe_router(p).ok());
  cpu::moe_router(p);
  EXPECT_EQ(ids[0], 3);
  EXPECT_EQ(ids[1], 2);
  EXPECT_EQ(counts, (std::vector<int32_t>{0, 0, 1, 1}));
  const float s3 = std::sqrt(std::log1p(std::exp(-1.0f))), s2 = std::sqrt(25.0f);
  EXPECT_NEAR(w[0], s3 / (s3 + s2) * 1.5f, 1e-6f);
  EXPECT_NEAR(w[1], s2 / (s3 + s2) * 1.5f, 1e-6f);
  EXPECT_NEAR(w[0] + w[1], 1.5f, 1e-6f);
  // Hash mode: the table chooses, the scores still weight.
  const std::vector<int64_t> table = {1, 0, 2, 3};  // vocab 2, k 2
  const std::vector<int32_t> tok = {1};
  MoeRouterParams h = p;
  h.bias = nullptr, h.tid2eid = table.data(), h.token_ids = tok.data(), h.vocab_size = 2;
  ASSERT_TRUE(check_moe_router(h).ok());
  cpu::moe_router(h);
  EXPECT_EQ(ids[0], 2);
  EXPECT_EQ(ids[1], 3);
  EXPECT_EQ(counts, (std::vector<int32_t>{0, 0, 1, 1}));
  EXPECT_NEAR(w[0], s2 / (s3 + s2) * 1.5f, 1e-6f);
  // A table entry out of range and a quantized gate are refused.
  const std::vector<int64_t> bad_table = {1, 0, 2, 4};
  h.tid2eid = bad_table.data();
  EXPECT_FALSE(check_moe_router(h).ok());
  MoeRouterParams q = p;
  q.gate.format = WeightFormat::kNVFP4;
  EXPECT_FALSE(check_moe_router(q).ok());
}

TEST(CpuOps, RouterGateProductIsTheRoutersDot) {
  // BF16 and F32 gates holding the same values give the same logits, hence the same routing.
  const int64_t D = 300, E = 8;
  const std::vector<float> x = random_vector(2 * D, 5), g = random_vector(E * D, 6, 0.1f);
  const QuantizedWeight bf16 = quantize_weight(WeightFormat::kBF16, g.data(), E, D);
  std::vector<float> g_rounded(g.size());
  for (int64_t e = 0; e < E; ++e) dequantize_row(bf16.view(), e, g_rounded.data() + e * D);
  const std::vector<float> bias(size_t(E), 0.0f);
  std::vector<int32_t> ids_a(6), ids_b(6), counts(static_cast<size_t>(E));
  std::vector<float> w_a(6), w_b(6);
  MoeRouterParams p;
  p.x = x.data(), p.gate = bf16.view(), p.bias = bias.data(), p.counts = counts.data();
  p.expert_ids = ids_a.data(), p.weights = w_a.data();
  p.n_tokens = 2, p.d_model = D, p.n_experts = E, p.top_k = 3;
  ASSERT_TRUE(check_moe_router(p).ok());
  cpu::moe_router(p);
  p.gate = {WeightFormat::kF32, E, D, g_rounded.data(), nullptr, 1.0f};
  p.expert_ids = ids_b.data(), p.weights = w_b.data();
  cpu::moe_router(p);
  EXPECT_EQ(ids_a, ids_b);
  EXPECT_EQ(w_a, w_b);
}

// router_sigma (σ from IEEE operations alone) against sqrt(softplus) in double precision.
TEST(CpuOps, RouterSigmaIsAccurate) {
  double worst = 0.0;
  float worst_at = 0.0f;
  for (float l = -110.0f; l < 30.0f; l += 0.00137f) {
    const double exact = l > 20.0f ? std::sqrt(double(l)) : std::sqrt(std::log1p(std::exp(double(l))));
    const float got = router_sigma(l);
    if (l < -87.0f) {  // softplus(l) ≈ exp(l) is an fp32 subnormal: within one of its ulps (2^-149)
      EXPECT_LE(std::fabs(double(got) * got - exact * exact), 2.0 * std::ldexp(1.0, -149)) << l;
      continue;
    }
    const double rel = std::fabs(double(got) - exact) / exact;
    if (rel > worst) worst = rel, worst_at = l;
  }
  EXPECT_LE(worst, 2.5e-7) << "at " << worst_at;  // ~2 ulp
  EXPECT_NEAR(router_sigma(0.0f), std::sqrt(std::log(2.0)), 1e-7);
  EXPECT_TRUE(std::isnan(router_sigma(std::nanf(""))));
  EXPECT_EQ(router_sigma(-1e30f), 0.0f);
  EXPECT_EQ(router_sigma(400.0f), 20.0f);
}

TEST(CpuOps, QuantizeNvfp4ActivationOpIsTheCoreQuantizer) {
  const std::vector<float> x = random_vector(3 * 32, 9);
  const Nvfp4Activation want = quantize_nvfp4_activation(x.data(), 3, 32);
  std::vector<uint8_t> codes(3 * 16), scales(3 * 2);
  float global = -1.0f;
  QuantizeNvfp4ActivationParams p{x.data(), codes.data(), scales.data(), &global, 3, 32};
  ASSERT_TRUE(check_quantize_nvfp4_activation(p).ok());
  cpu::quantize_nvfp4_activation(p);
  EXPECT_EQ(codes, want.codes);
  EXPECT_EQ(scales, want.block_scales);
  EXPECT_EQ(global, want.global_scale);
  p.cols = 24;  // not whole blocks of 16
  EXPECT_FALSE(check_quantize_nvfp4_activation(p).ok());
}

TEST(CpuOps, ExpertClampsGateAboveAndUpBothSides) {
  // d_model 1, d_ff 3: W1 = W3 = [1,1,1]ᵀ scaled per row, x = 1.
  const std::vector<float> w1 = {20.0f, -20.0f, 2.0f}, w3 = {20.0f, -20.0f, 2.0f}, w2 = {1.0f, 1.0f, 1.0f};
  ExpertWeights e{{WeightFormat::kF32, 3, 1, w1.data(), nullptr, 1.0f},
                  {WeightFormat::kF32, 3, 1, w3.data(), nullptr, 1.0f},
                  {WeightFormat::kF32, 1, 3, w2.data(), nullptr, 1.0f}};
  const std::vector<float> x = {1.0f}, weights = {0.5f};
  const std::vector<int32_t> ids = {0};
  std::vector<float> y(1);
  MoeExpertsParams p{x.data(), ids.data(), weights.data(), &e, y.data(), 1, 1, 3, 1, 1, 10.0f};
  ASSERT_TRUE(check_moe_experts(p).ok());
  cpu::moe_experts(p);
  const auto silu = [](double g) { return g / (1 + std::exp(-g)); };
  // Row 0: g = min(20, 10) = 10, u = 10; row 1: g = −20 (no lower clamp), u = −10; row 2: 2, 2.
  const double expect = 0.5 * (silu(10) * 10 + silu(-20) * -10 + silu(2) * 2);
  EXPECT_NEAR(y[0], expect, 1e-5);
}

// ActivationPrecision::kBF16 (the GPU contract, CpuBackendOptions::bf16_activations): linear
// rounds x to BF16 and nothing else; moe_experts rounds x and the SwiGLU output. Checked bitwise
// against the fp32 reference run on operands rounded by hand.
TEST(CpuOps, LinearBf16RoundsOnlyX) {
  const int64_t T = 3, K = 40, N = 5;
  const std::vector<float> x = random_vector(T * K, 11), w = random_vector(N * K, 12);
  std::vector<float> x_rounded(x.size());
  for (size_t i = 0; i < x.size(); ++i) x_rounded[i] = round_to_bf16(x[i]);
  const WeightView wv{WeightFormat::kF32, N, K, w.data(), nullptr, 1.0f};
  std::vector<float> y_bf16(size_t(T * N)), y_rounded(size_t(T * N)), y_fp32(size_t(T * N));
  cpu::linear({x.data(), wv, y_bf16.data(), T}, ActivationPrecision::kBF16);
  cpu::linear({x_rounded.data(), wv, y_rounded.data(), T});
  cpu::linear({x.data(), wv, y_fp32.data(), T});
  EXPECT_EQ(y_bf16, y_rounded);
  EXPECT_NE(y_bf16, y_fp32);  // the option is not a no-op
}

TEST(CpuOps, MoeExpertsBf16RoundsInputSwigluAndSlotOutputs) {
  // One token routed to two experts, listed in descending id order: the contract of
  // ops/moe_experts.h written out, slots summed in ascending id order.
  const int64_t D = 24, I = 16, E = 2;
  std::vector<std::vector<float>> mats;
  std::vector<ExpertWeights> experts;
  for (int64_t e = 0; e < E; ++e) {
    mats.push_back(random_vector(I * D, uint64_t(22 + 3 * e), 0.3f));
    mats.push_back(random_vector(I * D, uint64_t(23 + 3 * e), 0.3f));
    mats.push_back(random_vector(D * I, uint64_t(24 + 3 * e), 0.3f));
  }
  for (int64_t e = 0; e < E; ++e)
    experts.push_back({{WeightFormat::kF32, I, D, mats[size_t(3 * e)].data(), nullptr, 1.0f},
                       {WeightFormat::kF32, I, D, mats[size_t(3 * e + 1)].data(), nullptr, 1.0f},
                       {WeightFormat::kF32, D, I, mats[size_t(3 * e + 2)].data(), nullptr, 1.0f}});
  const std::vector<float> x = random_vector(D, 21);
  const std::vector<float> weights = {0.75f, 0.3f};
  const std::vector<int32_t> ids = {1, 0};
  const float limit = 1.5f;
  std::vector<float> y(static_cast<size_t>(D));
  MoeExpertsParams p{x.data(), ids.data(), weights.data(), experts.data(), y.data(), 1, D, I, E, 2, limit};
  ASSERT_TRUE(check_moe_experts(p).ok());
  cpu::moe_experts(p, ActivationPrecision::kBF16);

  std::vector<float> xr(static_cast<size_t>(D)), want(static_cast<size_t>(D), 0.0f);
  for (int64_t c = 0; c < D; ++c) xr[size_t(c)] = round_to_bf16(x[size_t(c)]);
  for (int64_t e = 0; e < E; ++e) {  // ascending id: expert 0 is slot 1
    const ExpertWeights& w = experts[size_t(e)];
    const float route_w = weights[size_t(e == 0 ? 1 : 0)];
    std::vector<float> g(static_cast<size_t>(I)), u(static_cast<size_t>(I)), act(static_cast<size_t>(I)),
        out(static_cast<size_t>(D));
    cpu::linear({xr.data(), w.w1, g.data(), 1});
    cpu::linear({xr.data(), w.w3, u.data(), 1});
    for (int64_t i = 0; i < I; ++i) {
      const float gc = std::min(g[size_t(i)], limit), uc = std::clamp(u[size_t(i)], -limit, limit);
      act[size_t(i)] = round_to_bf16(gc / (1.0f + std::exp(-gc)) * uc);
    }
    cpu::linear({act.data(), w.w2, out.data(), 1});
    for (int64_t c = 0; c < D; ++c) want[size_t(c)] += round_to_bf16(out[size_t(c)] * route_w);
  }
  for (int64_t c = 0; c < D; ++c) EXPECT_EQ(y[size_t(c)], want[size_t(c)]) << "channel " << c;

  std::vector<float> y_fp32(static_cast<size_t>(D));
  cpu::moe_experts(
      {x.data(), ids.data(), weights.data(), experts.data(), y_fp32.data(), 1, D, I, E, 2, limit});
  EXPECT_NE(y, y_fp32);
}

TEST(CpuOps, AttentionBf16RoundsQKvAndWeights) {
  const int64_t T = 2, H = 3, d = 24, n_kv = 5, n_sel = 4;
  const std::vector<float> q = random_vector(T * H * d, 31, 2.0f), kv = random_vector(n_kv * d, 32),
                           sinks = random_vector(H, 33);
  const std::vector<int32_t> idx = {0, 3, -1, 4, 2, -1, 1, 0};
  const float scale = 0.3f;
  std::vector<float> out(q.size()), out_fp32_rounded(q.size());
  cpu::attention({q.data(), kv.data(), idx.data(), sinks.data(), out.data(), T, H, d, n_kv, n_sel, scale},
                 ActivationPrecision::kBF16);
  // The contract of ops/attention.h written out: x_j from BF16 q and kv, w_j = bf16(2^{x_j − M}).
  const float scale_log2 = scale * 1.4426950408889634f;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h) {
      std::vector<float> x, w;
      for (int64_t j = 0; j < n_sel; ++j) {
        const int32_t r = idx[size_t(t * n_sel + j)];
        if (r < 0) continue;
        float dot = 0.0f;
        for (int64_t c = 0; c < d; ++c)
          dot += round_to_bf16(q[size_t((t * H + h) * d + c)]) * round_to_bf16(kv[size_t(r * d + c)]);
        x.push_back(dot * scale_log2);
      }
      const float m = std::ceil(*std::max_element(x.begin(), x.end()));
      float den = std::exp2(sinks[size_t(h)] * 1.4426950408889634f - m);
      for (float xj : x) den += w.emplace_back(round_to_bf16(std::exp2(xj - m)));
      for (int64_t c = 0; c < d; ++c) {
        float o = 0.0f;
        for (int64_t j = 0, k = 0; j < n_sel; ++j) {
          const int32_t r = idx[size_t(t * n_sel + j)];
          if (r >= 0) o += w[size_t(k++)] / den * round_to_bf16(kv[size_t(r * d + c)]);
        }
        EXPECT_EQ(out[size_t((t * H + h) * d + c)], o) << "token " << t << " head " << h << " channel " << c;
      }
    }
  // Rounding the weights is not a no-op: the fp32 op on BF16-rounded q and kv differs.
  std::vector<float> q_rounded(q.size()), kv_rounded(kv.size());
  for (size_t i = 0; i < q.size(); ++i) q_rounded[i] = round_to_bf16(q[i]);
  for (size_t i = 0; i < kv.size(); ++i) kv_rounded[i] = round_to_bf16(kv[i]);
  cpu::attention({q_rounded.data(), kv_rounded.data(), idx.data(), sinks.data(), out_fp32_rounded.data(), T,
                  H, d, n_kv, n_sel, scale});
  EXPECT_NE(out, out_fp32_rounded);
}

TEST(CpuOps, GroupedLinearUsesEachGroupsRows) {
  // 2 groups, 1 input and 1 output per group: y_g = W[g]·x_g.
  const std::vector<float> w = {2.0f, 3.0f}, x = {5.0f, 7.0f};
  std::vector<float> y(2);
  GroupedLinearParams p{x.data(), {WeightFormat::kF32, 2, 1, w.data(), nullptr, 1.0f}, y.data(), 1, 2};
  ASSERT_TRUE(check_grouped_linear(p).ok());
  cpu::grouped_linear(p);
  EXPECT_FLOAT_EQ(y[0], 10.0f);
  EXPECT_FLOAT_EQ(y[1], 21.0f);
}

}  // namespace
}  // namespace dsv4
