// pack_linear_weight_sm90: canonical quantized weight → the decode kernel's layout (linear_sm90.h).
// Runs once at load on the host, over the CPU threads (parallel_for); the CPU keeps the canonical
// layout. The lane/nibble order here
// and the decoders in linear_sm90.cuh are one contract: change both or neither.
#include <bit>
#include <cmath>
#include <cstring>

#include "core/numeric.h"
#include "core/parallel.h"
#include "core/round_up.h"
#include "cuda/linear_sm90.h"

namespace dsv4::cuda {
namespace {

// Rows one thread packs at least: a V4 expert matrix (2048–7168 rows) spreads over every core
// (a layer holds ~800 of them, packed at load), a small one stays on the calling thread.
constexpr int64_t kRowsPerThread = 128;

// Code bits (m, e0, e1, sign) of pair j's lower (h = 0) or upper (h = 1) column, placed in a
// packed word (linear_sm90.h): the decoder's targets 6, 7, 8, 15 (+16 for the upper column)
// rotated left by the pair's rotation.
uint32_t place_e2m1(uint8_t code, int j, int h) {
  constexpr int kTarget[4] = {6, 7, 8, 15};
  constexpr int kRotation[4] = {0, kE2m1Pair1Rotation, kE2m1Pair2Rotation, kE2m1Pair3Rotation};
  uint32_t bits = 0;
  for (int b = 0; b < 4; ++b)
    if (code >> b & 1) {
      const int d = j == 3 && b == 0 ? kE2m1Pair3MantissaRotation : kRotation[j];
      bits |= 1u << ((kTarget[b] + 16 * h + d) % 32);
    }
  return bits;
}

// E4M3 block scale s > 0 → the byte whose decode (byte·16 + 0x7000, as BF16 bits) is s·2^118.
// s·2^118 has a BF16 exponent field in [236, 253] (s in [2^-9, 448]): its top three bits are
// 111, so the byte keeps the low five exponent bits and the three mantissa bits.
uint8_t encode_nvfp4_scale(float s) {
  const uint32_t bits = std::bit_cast<uint32_t>(std::ldexp(s, 118)) >> 16;
  return uint8_t((bits >> 4) & 0xFF);
}

// Smallest and largest E8M0 exponent in `scales` (first `n`), or an error for the NaN code.
Status e8m0_range(const uint8_t* scales, int64_t n, int& lo, int& hi) {
  lo = 255, hi = -1;
  for (int64_t i = 0; i < n; ++i) {
    if (scales[i] == 0xFF) return Status::errorf("scale {} is the E8M0 NaN code", i);
    lo = std::min(lo, int(scales[i]));
    hi = std::max(hi, int(scales[i]));
  }
  return {};
}

}  // namespace

int64_t packed_chunk_k(WeightFormat f) {
  return f == WeightFormat::kFP8Block128 ? 32 : 64;
}

Result<PackedLinearWeight> pack_linear_weight_sm90(const WeightView& w) {
  const std::string where =
      fmt::format("pack_linear_weight_sm90 [{}, {}] {}", w.rows, w.cols, weight_format_name(w.format));
  PackedLinearWeight p;
  p.format = w.format;
  p.rows = w.rows;
  p.cols = w.cols;
  const int64_t N = w.rows, K = w.cols;
  const auto* src = static_cast<const uint8_t*>(w.data);
  switch (w.format) {
    case WeightFormat::kF32:
      return Status::error(where + ": F32 weights have no GPU linear; expected BF16 or a quantized format");
    case WeightFormat::kBF16:
      p.rows_pad = N, p.cols_pad = K;
      p.data.assign(src, src + N * K * 2);
      return p;
    default:
      break;
  }
  const bool fp4 = w.format != WeightFormat::kFP8Block128;
  const int64_t kc = packed_chunk_k(w.format);
  p.rows_pad = round_up(N, 16);
  p.cols_pad = round_up(K, 128);
  const int64_t n_tiles = p.rows_pad / 16, n_chunks = p.cols_pad / kc;
  p.data.assign(size_t(n_tiles * n_chunks * 512), 0);

  // Per-format code lookup (0 outside the logical matrix) and scale encoding.
  std::vector<uint8_t> flip;  // NVFP4: per block, XOR applied to codes (sign of a negative scale, or zeroing)
  if (w.format == WeightFormat::kNVFP4) {
    const int64_t nb = K / kNvfp4Block;
    p.scales.assign(size_t(n_tiles * n_chunks * 64), 0);
    flip.assign(size_t(N * nb), 0);
    for (int64_t i = 0; i < N * nb; ++i)
      if (std::isnan(e4m3_to_f32(w.scales[i])))
        return Status::errorf("{}: block scale [{}, {}] is NaN", where, i / nb, i % nb);
    parallel_for(
        N,
        [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r)
            for (int64_t b = 0; b < nb; ++b) {
              const float s = e4m3_to_f32(w.scales[r * nb + b]);
              flip[size_t(r * nb + b)] = s < 0 ? 0x8 : s == 0 ? 0xFF : 0;  // 0xFF: zero the block's codes
              const int64_t tile = r / 16, h = (r % 16) / 8, g = r % 8, c = b / 4, j = b % 4;
              p.scales[size_t(((tile * n_chunks + c) * 8 + g) * 8 + 2 * j + h)] =
                  s == 0 ? 0 : encode_nvfp4_scale(std::fabs(s));
            }
        },
        kRowsPerThread);
    p.out_scale = w.global_scale * 256.0f;  // codes decode as v·2^-126, scales as s·2^118
  } else if (w.format == WeightFormat::kMXFP4) {
    const int64_t nb = K / kMxfp4Block;
    int lo, hi;
    DSV4_RETURN_IF_ERROR(e8m0_range(w.scales, N * nb, lo, hi).with_context(where));
    const int bias = 254 - hi;  // scale' = 2^(e - 127 + bias), largest at BF16's top exponent
    if (lo + bias < 128)
      return Status::errorf("{}: E8M0 scales span 2^{}..2^{}; expected at most 126 binades apart", where,
                            lo - 127, hi - 127);
    p.scales.assign(size_t(n_tiles * n_chunks * 32), 0);
    for (int64_t r = 0; r < N; ++r)
      for (int64_t b = 0; b < nb; ++b) {
        const int64_t tile = r / 16, h = (r % 16) / 8, g = r % 8, c = b / 2, j = b % 2;
        p.scales[size_t(((tile * n_chunks + c) * 8 + g) * 4 + 2 * j + h)] =
            uint8_t(w.scales[r * nb + b] + bias - 128);
      }
    p.out_scale = std::ldexp(1.0f, 126 - bias);
  } else {
    const int64_t nsr = (N + 127) / 128, nsc = (K + 127) / 128;
    int lo, hi;
    DSV4_RETURN_IF_ERROR(e8m0_range(w.scales, nsr * nsc, lo, hi).with_context(where));
    const int bias = 254 - hi;
    if (lo + bias < 130)
      return Status::errorf("{}: E8M0 scales span 2^{}..2^{}; expected at most 124 binades apart", where,
                            lo - 127, hi - 127);
    p.scales.assign(size_t(nsr * nsc * 2), 0);
    for (int64_t i = 0; i < nsr * nsc; ++i) {
      const uint16_t bits = uint16_t((w.scales[i] + bias) << 7);
      std::memcpy(&p.scales[size_t(i * 2)], &bits, 2);
    }
    p.out_scale = std::ldexp(1.0f, 120 - bias);  // codes decode as v·2^-120
  }

  auto code = [&](int64_t r, int64_t k) -> uint8_t {
    if (r >= N || k >= K) return 0;
    if (!fp4) return src[r * K + k];
    const uint8_t byte = src[r * (K / 2) + k / 2];
    uint8_t v = k % 2 ? byte >> 4 : byte & 0xF;
    if (!flip.empty()) {
      const uint8_t f = flip[size_t(r * (K / kNvfp4Block) + k / kNvfp4Block)];
      v = f == 0xFF ? 0 : v ^ f;
    }
    return v;
  };
  parallel_for(
      n_tiles,
      [&](int64_t tile0, int64_t tile1) {
        for (int64_t tile = tile0; tile < tile1; ++tile)
          for (int64_t c = 0; c < n_chunks; ++c)
            for (int lane = 0; lane < 32; ++lane) {
              const int64_t r0 = tile * 16 + lane / 4, r1 = r0 + 8, t2 = 2 * (lane % 4);
              uint8_t* out = &p.data[size_t(((tile * n_chunks + c) * 32 + lane) * 16)];
              if (fp4) {
                // Word st (k16 step st) holds the A fragments a0..a3: (row, column) pairs (r0, k),
                // (r1, k), (r0, k + 8), (r1, k + 8), each with its column k + 1 in the upper half.
                for (int st = 0; st < 4; ++st) {
                  const int64_t k = c * 64 + 16 * st + t2;
                  const int64_t rows[4] = {r0, r1, r0, r1}, cols[4] = {k, k, k + 8, k + 8};
                  uint32_t word = 0;
                  for (int j = 0; j < 4; ++j)
                    for (int h = 0; h < 2; ++h) word |= place_e2m1(code(rows[j], cols[j] + h), j, h);
                  std::memcpy(out + 4 * st, &word, 4);
                }
              } else {
                // Step s: word 2s = (r0,k) (r0,k+1) (r1,k) (r1,k+1); word 2s+1 the same at k+8.
                for (int s = 0; s < 2; ++s) {
                  const int64_t k = c * 32 + 16 * s + t2;
                  const uint8_t b[8] = {code(r0, k),     code(r0, k + 1), code(r1, k),     code(r1, k + 1),
                                        code(r0, k + 8), code(r0, k + 9), code(r1, k + 8), code(r1, k + 9)};
                  std::memcpy(out + 8 * s, b, 8);
                }
              }
            }
      },
      kRowsPerThread / 16);
  return p;
}

}  // namespace dsv4::cuda
