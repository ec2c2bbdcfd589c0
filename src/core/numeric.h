// Scalar codecs for every number format dsv4 reads: BF16, F16, FP8 E4M3 (fn), E8M0, E2M1.
// Decoders are exact; encoders round to nearest, ties to even, and saturate where the format
// has no infinity (E4M3, E2M1). Header-only so CPU loops and tests inline them.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace dsv4 {

inline float bf16_to_f32(uint16_t b) {
  return std::bit_cast<float>(uint32_t(b) << 16);
}

inline uint16_t f32_to_bf16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if (std::isnan(f)) return uint16_t((u >> 16) | 0x40);  // keep sign, force a quiet NaN
  uint32_t rounding = 0x7FFF + ((u >> 16) & 1);
  return uint16_t((u + rounding) >> 16);
}

// Rounds an fp32 value to the nearest BF16 value, returned as fp32.
inline float round_to_bf16(float f) {
  return bf16_to_f32(f32_to_bf16(f));
}

inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h >> 15) << 31;
  const int exp = (h >> 10) & 0x1F;
  const uint32_t mant = h & 0x3FF;
  float mag;
  if (exp == 0) {
    mag = std::ldexp(float(mant), -24);
  } else if (exp == 31) {
    mag = mant ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  } else {
    mag = std::ldexp(float(mant | 0x400), exp - 25);
  }
  return std::bit_cast<float>(std::bit_cast<uint32_t>(mag) | sign);
}

// E4M3 "fn": 1 sign, 4 exponent (bias 7), 3 mantissa; S.1111.111 is NaN, no infinities.
inline float e4m3_to_f32(uint8_t b) {
  const bool neg = b & 0x80;
  const int exp = (b >> 3) & 0xF;
  const int mant = b & 0x7;
  float mag;
  if (exp == 0xF && mant == 0x7) return std::numeric_limits<float>::quiet_NaN();
  if (exp == 0) {
    mag = std::ldexp(float(mant), -9);  // subnormal: mant/8 * 2^-6
  } else {
    mag = std::ldexp(float(8 + mant), exp - 10);
  }
  return neg ? -mag : mag;
}

constexpr float kE4M3Max = 448.0f;

// Round to nearest even, saturating to ±448; NaN maps to 0x7F.
inline uint8_t f32_to_e4m3(float f) {
  if (std::isnan(f)) return 0x7F;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0x00;
  float a = std::fabs(f);
  if (a >= kE4M3Max) return sign | 0x7E;
  // Quantum: subnormals and the first binade share 2^-9; binade e (a in [2^e, 2^(e+1))) has 2^(e-3).
  int e = a > 0 ? std::ilogb(a) : -7;
  if (e < -6) e = -6;
  const float quantum = std::ldexp(1.0f, e - 3);
  const float q = std::nearbyint(a / quantum);  // default FP environment rounds ties to even
  const float r = q * quantum;
  // Encode r exactly (it is representable, possibly one binade up after rounding).
  if (r == 0) return sign;
  int re = std::ilogb(r);
  if (re < -6) {  // subnormal
    return sign | uint8_t(std::lround(r / std::ldexp(1.0f, -9)));
  }
  const int mant = int(std::lround(std::ldexp(r, -re) * 8)) - 8;
  return sign | uint8_t(((re + 7) << 3) | mant);
}

// E8M0: an exponent byte. 2^(e-127); 255 is NaN.
inline float e8m0_to_f32(uint8_t e) {
  if (e == 0xFF) return std::numeric_limits<float>::quiet_NaN();
  return std::ldexp(1.0f, int(e) - 127);
}

// E2M1 (FP4): bit 3 sign, bits 0-2 index the magnitudes {0, .5, 1, 1.5, 2, 3, 4, 6}.
inline constexpr float kE2M1Values[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                          -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
constexpr float kE2M1Max = 6.0f;

inline float e2m1_to_f32(uint8_t code) {
  return kE2M1Values[code & 0xF];
}

// Nearest E2M1 code, ties to the even code (even mantissa bit), saturating at ±6; NaN -> +0.
inline uint8_t f32_to_e2m1(float f) {
  if (std::isnan(f)) return 0;
  const uint8_t sign = std::signbit(f) ? 0x8 : 0x0;
  const float a = std::fabs(f);
  // Midpoints between consecutive magnitudes; at a tie the even code wins (<= vs <).
  uint8_t m;
  if (a <= 0.25f)
    m = 0;
  else if (a < 0.75f)
    m = 1;
  else if (a <= 1.25f)
    m = 2;
  else if (a < 1.75f)
    m = 3;
  else if (a <= 2.5f)
    m = 4;
  else if (a < 3.5f)
    m = 5;
  else if (a <= 5.0f)
    m = 6;
  else
    m = 7;
  return sign | m;
}

// Smallest power-of-two exponent e with amax / 2^e <= limit (DeepSeek's ue8m0 scales):
// 2^ceil(log2(amax / limit)), as an E8M0 byte. amax must be positive and finite.
inline uint8_t pow2_scale_e8m0(float amax, float limit) {
  int e = int(std::ceil(std::log2(double(amax) / double(limit))));
  if (e < -127) e = -127;
  if (e > 127) e = 127;
  return uint8_t(e + 127);
}

}  // namespace dsv4
