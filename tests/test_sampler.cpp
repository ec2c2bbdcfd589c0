// Sampling (src/runtime/sampler.h): each filter against its definition, the distribution against
// its probabilities, and seeds that reproduce.
#include <gtest/gtest.h>

#include <unistd.h>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "runtime/sampler.h"

namespace dsv4 {
namespace {

std::vector<int> counts(SamplingParams p, const std::vector<float>& logits, int n,
                        std::vector<int32_t> history = {}) {
  Sampler s(p);
  std::vector<int> c(logits.size(), 0);
  for (int i = 0; i < n; ++i) ++c[size_t(s.sample(logits, history))];
  return c;
}

TEST(Sampler, GreedyPicksTheArgmaxWithTiesToTheLowerId) {
  SamplingParams p;
  p.temperature = 0;
  Sampler s(p);
  EXPECT_EQ(s.sample(std::vector<float>{0.1f, 2.0f, -1.0f, 2.0f}, {}), 1);
  EXPECT_EQ(s.sample(std::vector<float>{-5.0f, -7.0f}, {}), 0);
}

TEST(Sampler, FollowsTheSoftmaxDistribution) {
  const std::vector<float> logits = {1.0f, 0.0f, 2.0f, -1.0f};
  SamplingParams p;
  p.temperature = 0.7f;
  p.seed = 42;
  const int n = 40000;
  const auto c = counts(p, logits, n);
  double z = 0;
  for (float l : logits) z += std::exp(l / 0.7);
  for (size_t i = 0; i < logits.size(); ++i) {
    const double pi = std::exp(logits[i] / 0.7) / z;
    const double sigma = std::sqrt(n * pi * (1 - pi));
    EXPECT_NEAR(c[i], n * pi, 4 * sigma) << "token " << i;
  }
}

TEST(Sampler, TopKTopPAndMinPKeepTheRightSets) {
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  SamplingParams p;
  p.seed = 7;
  p.top_k = 2;
  auto c = counts(p, logits, 5000);
  EXPECT_GT(c[0], 0);
  EXPECT_GT(c[1], 0);
  EXPECT_EQ(c[2] + c[3], 0);
  p = {};
  p.top_p = 0.79f;  // 0.5 + 0.3 reaches 0.79: tokens 0 and 1
  c = counts(p, logits, 5000);
  EXPECT_GT(c[1], 0);
  EXPECT_EQ(c[2] + c[3], 0);
  p = {};
  p.top_p = 0.81f;  // needs token 2 as well
  c = counts(p, logits, 5000);
  EXPECT_GT(c[2], 0);
  EXPECT_EQ(c[3], 0);
  p = {};
  p.min_p = 0.35f;  // keep p >= 0.175: tokens 0 and 1
  c = counts(p, logits, 5000);
  EXPECT_GT(c[1], 0);
  EXPECT_EQ(c[2] + c[3], 0);
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegativeOncePerToken) {
  SamplingParams p;
  p.temperature = 0;
  p.repetition_penalty = 2.0f;
  Sampler s(p);
  // Token 0 (3.0) seen twice -> 1.5 (not 0.75), below token 1 (2.0).
  EXPECT_EQ(s.sample(std::vector<float>{3.0f, 2.0f, -1.0f}, std::vector<int32_t>{0, 0}), 1);
  // Negative logits get more negative: token 0 (-1 -> -2) loses to token 1 (-1.5).
  EXPECT_EQ(s.sample(std::vector<float>{-1.0f, -1.5f}, std::vector<int32_t>{0}), 1);
  // 1.2 / 2 = 0.6 still beats 0.5 only if penalised once.
  EXPECT_EQ(s.sample(std::vector<float>{1.2f, 0.5f}, std::vector<int32_t>{0, 0, 0}), 0);
}

TEST(Sampler, SameSeedSameTokens) {
  const std::vector<float> logits = {0.3f, 0.1f, 0.2f, 0.0f, 0.25f};
  SamplingParams p;
  p.seed = 123;
  Sampler a(p), b(p);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.sample(logits, {}), b.sample(logits, {}));
}

TEST(Sampler, ParamsAndGenerationConfigAreValidated) {
  SamplingParams p;
  p.top_p = 0;
  EXPECT_FALSE(p.validate().ok());
  p = {};
  p.temperature = -1;
  EXPECT_FALSE(p.validate().ok());
  const auto dir = std::filesystem::temp_directory_path() / ("dsv4_gencfg_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "generation_config.json")
      << R"({"temperature": 0.6, "top_p": 0.95, "do_sample": true})";
  SamplingParams q;
  ASSERT_TRUE(apply_generation_config(dir.string(), &q).ok());
  EXPECT_FLOAT_EQ(q.temperature, 0.6f);
  EXPECT_FLOAT_EQ(q.top_p, 0.95f);
  std::ofstream(dir / "generation_config.json") << R"({"top_p": "high"})";
  const Status s = apply_generation_config(dir.string(), &q);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("field 'top_p'"), std::string::npos);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace dsv4
