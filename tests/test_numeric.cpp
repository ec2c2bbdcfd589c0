// Exhaustive checks of the scalar codecs (src/core/numeric.h) against independent definitions.
#include <gtest/gtest.h>

#include <cmath>

#include "core/numeric.h"

namespace dsv4 {
namespace {

// E4M3fn decoded from its definition with integer arithmetic only.
double e4m3_reference(uint8_t b) {
  const int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
  const double mag = e == 0 ? m / 8.0 * std::pow(2.0, -6) : (1 + m / 8.0) * std::pow(2.0, e - 7);
  return s ? -mag : mag;
}

TEST(Numeric, E4M3DecodesEveryByte) {
  for (int b = 0; b < 256; ++b) {
    const float v = e4m3_to_f32(uint8_t(b));
    if ((b & 0x7F) == 0x7F) {
      EXPECT_TRUE(std::isnan(v)) << b;
      continue;
    }
    EXPECT_EQ(double(v), e4m3_reference(uint8_t(b))) << "byte " << b;
  }
  EXPECT_TRUE(std::signbit(e4m3_to_f32(0x80)));  // negative zero survives
  EXPECT_EQ(e4m3_to_f32(0x7E), 448.0f);
}

TEST(Numeric, E4M3EncodeRoundTripsEveryValue) {
  for (int b = 0; b < 256; ++b) {
    if ((b & 0x7F) == 0x7F) continue;
    EXPECT_EQ(f32_to_e4m3(e4m3_to_f32(uint8_t(b))), b) << "byte " << b;
  }
}

TEST(Numeric, E4M3EncodeRoundsToNearestEvenAndSaturates) {
  // Midpoint between 1.0 (mantissa 0) and 1.125 (mantissa 1): ties to even -> 1.0.
  EXPECT_EQ(e4m3_to_f32(f32_to_e4m3(1.0625f)), 1.0f);
  // Midpoint between 1.125 and 1.25: ties to even mantissa 2 -> 1.25.
  EXPECT_EQ(e4m3_to_f32(f32_to_e4m3(1.1875f)), 1.25f);
  EXPECT_EQ(e4m3_to_f32(f32_to_e4m3(1.07f)), 1.125f);
  EXPECT_EQ(e4m3_to_f32(f32_to_e4m3(1e6f)), 448.0f);
  EXPECT_EQ(e4m3_to_f32(f32_to_e4m3(-1e6f)), -448.0f);
  EXPECT_EQ(e4m3_to_f32(f32_to_e4m3(std::numeric_limits<float>::infinity())), 448.0f);
  EXPECT_EQ(f32_to_e4m3(std::nanf("")), 0x7F);
  // Below half the smallest subnormal (2^-9) rounds to zero; above it to 2^-9.
  EXPECT_EQ(e4m3_to_f32(f32_to_e4m3(std::ldexp(1.0f, -11))), 0.0f);
  EXPECT_EQ(e4m3_to_f32(f32_to_e4m3(std::ldexp(1.1f, -10))), std::ldexp(1.0f, -9));
  // Every value between neighbours goes to the nearer one (brute force over a fine grid).
  for (int b = 1; b < 0x7E; ++b) {
    const float lo = e4m3_to_f32(uint8_t(b)), hi = e4m3_to_f32(uint8_t(b + 1));
    for (int i = 1; i < 16; ++i) {
      const float x = lo + (hi - lo) * float(i) / 16.0f;
      const float got = e4m3_to_f32(f32_to_e4m3(x));
      const float want = (x - lo < hi - x) ? lo : (x - lo > hi - x) ? hi : ((b & 1) ? hi : lo);
      ASSERT_EQ(got, want) << "x=" << x;
    }
  }
}

TEST(Numeric, E8M0DecodesEveryExponent) {
  for (int e = 0; e < 255; ++e) EXPECT_EQ(double(e8m0_to_f32(uint8_t(e))), std::pow(2.0, e - 127)) << e;
  EXPECT_TRUE(std::isnan(e8m0_to_f32(0xFF)));
}

TEST(Numeric, E2M1CodesAndRounding) {
  const float mags[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
  for (int c = 0; c < 16; ++c) {
    const float want = (c & 8) ? -mags[c & 7] : mags[c & 7];
    EXPECT_EQ(e2m1_to_f32(uint8_t(c)), want);
    EXPECT_EQ(std::signbit(e2m1_to_f32(uint8_t(c))), bool(c & 8));
    EXPECT_EQ(f32_to_e2m1(e2m1_to_f32(uint8_t(c))), c) << c;  // exact round trip, -0 included
  }
  // Ties go to the even code: 0.25->0, 0.75->1.0, 1.25->1.0, 1.75->2, 2.5->2, 3.5->4, 5->4.
  const float ties[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
  const float want[] = {0.0f, 1.0f, 1.0f, 2.0f, 2.0f, 4.0f, 4.0f};
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(e2m1_to_f32(f32_to_e2m1(ties[i])), want[i]) << ties[i];
    EXPECT_EQ(e2m1_to_f32(f32_to_e2m1(-ties[i])), -want[i]) << -ties[i];
  }
  EXPECT_EQ(e2m1_to_f32(f32_to_e2m1(100.0f)), 6.0f);
  EXPECT_EQ(e2m1_to_f32(f32_to_e2m1(-100.0f)), -6.0f);
}

TEST(Numeric, Bf16RoundTripAndRounding) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const float f = bf16_to_f32(uint16_t(b));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f))));
      continue;
    }
    ASSERT_EQ(f32_to_bf16(f), b);
  }
  EXPECT_EQ(round_to_bf16(1.0f + std::ldexp(1.0f, -8)), 1.0f);  // tie to even
  EXPECT_EQ(round_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 1.0f + std::ldexp(1.0f, -6));
}

TEST(Numeric, F16DecodesSpecials) {
  EXPECT_EQ(f16_to_f32(0x3C00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::isinf(f16_to_f32(0x7C00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7E00)));
  EXPECT_TRUE(std::signbit(f16_to_f32(0x8000)));
  EXPECT_EQ(f16_to_f32(0xC000), -2.0f);
}

}  // namespace
}  // namespace dsv4
