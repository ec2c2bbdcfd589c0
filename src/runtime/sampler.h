// Next-token sampling: greedy, temperature, top-k, top-p, min-p, repetition penalty, seeded.
// Applied in HF transformers' order (repetition penalty → temperature → top-k → top-p → min-p)
// so the same settings mean the same thing as there. Defaults come from generation_config.json
// when the model ships one (DeepSeek recommends temperature 1.0, top-p 1.0 for V4).
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace dsv4 {

struct SamplingParams {
  float temperature = 1.0f;         // 0: greedy
  float top_p = 1.0f;               // (0, 1]
  int64_t top_k = 0;                // 0: off
  float min_p = 0.0f;               // [0, 1): drop tokens below min_p × the top probability
  float repetition_penalty = 1.0f;  // > 0; 1: off (HF: positive logits ÷ p, negative × p)
  uint64_t seed = 0;

  Status validate() const;
};

// Reads temperature / top_p / top_k / do_sample from DIR/generation_config.json into `params`
// (fields absent from the file keep their values; do_sample false means greedy). A missing file
// is not an error.
Status apply_generation_config(const std::string& model_dir, SamplingParams* params);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

  // Picks the next token from logits [vocab]; `history` are the tokens seen so far (prompt and
  // generated) for the repetition penalty. Greedy breaks ties to the lower id.
  int32_t sample(std::span<const float> logits, std::span<const int32_t> history);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<float> work_;
  std::vector<int32_t> order_;
};

}  // namespace dsv4
