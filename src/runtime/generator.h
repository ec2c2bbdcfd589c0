// Text generation over one sequence: feed prompt tokens (prefill), then sample and decode one
// token at a time, streaming text as complete UTF-8 characters, until EOS, a stop string or the
// token limit. The sequence state persists between calls, so a chat appends each turn without
// re-prefilling the history.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/model.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace dsv4 {

struct GenerationOptions {
  SamplingParams sampling;
  int64_t max_tokens = 256;
  std::vector<std::string> stop_strings;  // generation ends before the first occurrence
  bool stop_at_eos = true;
};

struct GenerationResult {
  std::vector<int32_t> tokens;  // generated ids (EOS included when it ended the generation)
  std::string text;             // decoded text, stop string excluded
  std::string stop_reason;      // "eos", "stop string", "max tokens"
  int64_t prompt_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;
};

// Holds back text that may be the start of a stop string, so a stop string is never emitted.
class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  // Appends text; returns what is now safe to emit. After a stop string is found, stopped() is
  // true and everything from it on is dropped.
  std::string push(std::string_view text);
  // The held-back tail, for when generation ends without a stop string.
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

class Generator {
 public:
  // `tokenizer` may be null: ids are generated but no text is decoded (EOS from config.json).
  Generator(Model& model, const Tokenizer* tokenizer);

  // Feeds `prompt` after what the sequence already holds, then generates. on_text receives the
  // text as it is produced (may be empty).
  Result<GenerationResult> generate(std::span<const int32_t> prompt, const GenerationOptions& options,
                                    const std::function<void(std::string_view)>& on_text = {});
  // Feeds tokens without generating (e.g. a turn's closing EOS the model did not produce).
  Status feed(std::span<const int32_t> tokens);
  // Tokens in the sequence: those fed plus the last sampled one, which the next call feeds.
  int64_t n_tokens() const { return state_.n_past() + int64_t(pending_.size()); }
  void reset();

 private:
  // Feeds the pending token and `tokens`; logits of the last one.
  Result<std::vector<float>> forward_pending(std::span<const int32_t> tokens);

  Model& model_;
  const Tokenizer* tokenizer_;
  SequenceState state_;
  std::vector<int32_t> history_;  // every token fed, for the repetition penalty
  std::vector<int32_t> pending_;  // sampled but not yet fed
};

}  // namespace dsv4
