#include "runtime/generator.h"

#include <algorithm>
#include <chrono>

#include "core/seconds_since.h"

namespace dsv4 {

std::string StopStringMatcher::push(std::string_view text) {
  if (stopped_) return {};
  pending_.append(text);
  size_t cut = std::string::npos;
  for (const std::string& s : stops_) {
    const size_t at = s.empty() ? std::string::npos : pending_.find(s);
    if (at != std::string::npos) cut = std::min(cut, at);
  }
  if (cut != std::string::npos) {
    stopped_ = true;
    std::string out = pending_.substr(0, cut);
    pending_.clear();
    return out;
  }
  // Keep the longest suffix that is a proper prefix of some stop string.
  size_t keep = 0;
  for (const std::string& s : stops_)
    for (size_t len = std::min(s.size() - (s.empty() ? 0 : 1), pending_.size()); len > keep; --len)
      if (pending_.compare(pending_.size() - len, len, s, 0, len) == 0) {
        keep = len;
        break;
      }
  std::string out = pending_.substr(0, pending_.size() - keep);
  pending_.erase(0, pending_.size() - keep);
  return out;
}

std::string StopStringMatcher::flush() {
  std::string out;
  if (!stopped_) out.swap(pending_);
  return out;
}

Generator::Generator(Model& model, const Tokenizer* tokenizer)
    : model_(model), tokenizer_(tokenizer), state_(model.new_state()) {}

void Generator::reset() {
  state_.reset();
  history_.clear();
  pending_.clear();
}

Result<std::vector<float>> Generator::forward_pending(std::span<const int32_t> tokens) {
  std::vector<int32_t> input = std::move(pending_);
  pending_.clear();
  input.insert(input.end(), tokens.begin(), tokens.end());
  const SequenceChunk chunk{&state_, input, /*last_logits_only=*/true};
  DSV4_ASSIGN_OR_RETURN(std::vector<float> logits, model_.forward(std::span<const SequenceChunk>(&chunk, 1)));
  history_.insert(history_.end(), input.begin(), input.end());
  return logits;
}

Status Generator::feed(std::span<const int32_t> tokens) {
  if (tokens.empty() && pending_.empty()) return {};
  return forward_pending(tokens).status();
}

Result<GenerationResult> Generator::generate(std::span<const int32_t> prompt,
                                             const GenerationOptions& options,
                                             const std::function<void(std::string_view)>& on_text) {
  DSV4_RETURN_IF_ERROR(options.sampling.validate());
  if (prompt.empty() && pending_.empty())
    return Status::error("generate: empty prompt; expected at least one token");
  if (options.max_tokens <= 0)
    return Status::errorf("--max-tokens: {}; expected at least 1", options.max_tokens);
  GenerationResult r;
  r.prompt_tokens = int64_t(prompt.size());
  Sampler sampler(options.sampling);
  std::optional<StreamDecoder> decoder;
  if (tokenizer_) decoder.emplace(*tokenizer_);
  StopStringMatcher stops(options.stop_strings);
  const int32_t eos =
      tokenizer_ && tokenizer_->eos_id() ? *tokenizer_->eos_id() : int32_t(model_.config().eos_token_id);
  const int64_t V = model_.config().vocab_size;
  const auto emit = [&](const std::string& text) {
    r.text += text;
    if (on_text && !text.empty()) on_text(text);
  };

  auto t0 = std::chrono::steady_clock::now();
  for (int64_t step = 0; step < options.max_tokens; ++step) {
    // The prompt first, then each sampled token (left pending by the step before).
    DSV4_ASSIGN_OR_RETURN(std::vector<float> logits,
                          forward_pending(step == 0 ? prompt : std::span<const int32_t>()));
    if (step == 0) {
      r.prefill_seconds = seconds_since(t0);
      t0 = std::chrono::steady_clock::now();
    }
    const int32_t next = sampler.sample(std::span<const float>(logits.data(), size_t(V)), history_);
    r.tokens.push_back(next);
    // The sampled token belongs to the sequence; the next step (or call) feeds it.
    pending_ = {next};
    if (options.stop_at_eos && next == eos) {
      r.stop_reason = "eos";
      break;
    }
    if (decoder) {
      DSV4_ASSIGN_OR_RETURN(std::string piece, decoder->push(next));
      emit(stops.push(piece));
    }
    if (stops.stopped()) {
      r.stop_reason = "stop string";
      break;
    }
  }
  if (r.stop_reason.empty()) r.stop_reason = "max tokens";
  if (decoder && !stops.stopped()) emit(stops.push(decoder->finish()) + stops.flush());
  r.decode_seconds = seconds_since(t0);
  return r;
}

}  // namespace dsv4
