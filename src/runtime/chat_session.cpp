#include "runtime/chat_session.h"

namespace dsv4 {

ChatSession::ChatSession(Model& model, const Tokenizer& tokenizer, chat::ThinkingMode mode,
                         chat::ReasoningEffort effort)
    : model_(model), tokenizer_(tokenizer), generator_(model, &tokenizer) {
  encode_options_.thinking_mode = mode;
  encode_options_.reasoning_effort = effort;
  encode_options_.drop_thinking = false;  // keeps the history a prefix of the next prompt
}

void ChatSession::set_system(const std::string& system_prompt) {
  reset();
  messages_.push_back({{"role", "system"}, {"content", system_prompt}});
}

void ChatSession::reset() {
  nlohmann::ordered_json kept = nlohmann::ordered_json::array();
  for (const auto& m : messages_)
    if (m["role"] == "system") kept.push_back(m);
  messages_ = kept;
  generator_.reset();
  fed_text_.clear();
}

Result<ChatTurn> ChatSession::send(const std::string& user_text, const GenerationOptions& options,
                                   const std::function<void(const chat::StreamDelta&)>& on_delta) {
  nlohmann::ordered_json next = messages_;
  next.push_back({{"role", "user"}, {"content", user_text}});
  DSV4_ASSIGN_OR_RETURN(std::string prompt, chat::encode_chat(next, encode_options_));

  ChatTurn turn;
  std::string to_feed;
  if (prompt.compare(0, fed_text_.size(), fed_text_) == 0) {
    to_feed = prompt.substr(fed_text_.size());
  } else {
    generator_.reset();
    turn.reprefilled = true;
    to_feed = prompt;
  }
  // As DeepSeek's reference and HF's chat templates do, the rendered prompt is tokenized as a
  // whole: a user message that spells a chat marker (e.g. "<｜Assistant｜>") is read as that marker.
  DSV4_ASSIGN_OR_RETURN(std::vector<int32_t> ids, tokenizer_.encode(to_feed));
  turn.fed_tokens = int64_t(ids.size());

  chat::CompletionStreamParser parser(encode_options_.thinking_mode);
  Status stream_error;
  const auto on_text = [&](std::string_view text) {
    if (!stream_error.ok()) return;
    Result<chat::StreamDelta> d = parser.feed(text);
    if (!d.ok()) {
      stream_error = d.status();
    } else if (on_delta && (!d->content.empty() || !d->reasoning_content.empty())) {
      on_delta(*d);
    }
  };
  DSV4_ASSIGN_OR_RETURN(turn.generation, generator_.generate(ids, options, on_text));
  std::vector<int32_t> turn_tokens = turn.generation.tokens;
  if (turn.generation.stop_reason != "eos") {
    // A turn cut short (token limit, stop string) is closed with EOS in the model's sequence too,
    // so the next prompt, which renders every assistant turn with its EOS, extends it.
    const std::optional<int32_t> eos = tokenizer_.token_to_id(chat::kEosToken);
    if (!eos)
      return Status::errorf("tokenizer: no '{}' token; expected a DeepSeek-V4 tokenizer", chat::kEosToken);
    const int32_t eos_id = *eos;
    DSV4_RETURN_IF_ERROR(generator_.feed(std::span<const int32_t>(&eos_id, 1)));
    turn_tokens.push_back(*eos);
  }
  DSV4_ASSIGN_OR_RETURN(std::string completion, tokenizer_.decode(turn_tokens));
  fed_text_ = prompt + completion;

  if (stream_error.ok()) {
    Result<chat::StreamDelta> d = parser.feed(chat::kEosToken);
    if (!d.ok()) stream_error = d.status();
  }
  Result<chat::ParsedMessage> parsed =
      stream_error.ok() ? parser.finish() : Result<chat::ParsedMessage>(stream_error);
  nlohmann::ordered_json assistant = {{"role", "assistant"}};
  if (parsed.ok()) {
    turn.message = *parsed;
    assistant = parsed->to_json();
  } else {
    // Keep the raw text so the conversation can go on; the next prompt will then differ from
    // what the model holds and the session re-prefills.
    turn.parse_error = parsed.status().message();
    assistant["content"] = turn.generation.text;
  }
  messages_ = std::move(next);
  messages_.push_back(std::move(assistant));
  return turn;
}

}  // namespace dsv4
