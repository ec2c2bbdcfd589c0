// A multi-turn conversation with the model in DeepSeek-V4's chat format that keeps the sequence
// state between turns: each turn encodes the whole conversation (chat::encode_chat) and feeds the
// model only the text past what it already holds. That needs the rendered history to be a prefix
// of the next prompt, so reasoning is kept in the history (drop_thinking off) — the model sees its
// earlier reasoning, which is what a re-prefill without dropping would give. If the prefix ever
// differs (say, a stop string cut a turn), the session re-prefills the whole prompt and says so.
#pragma once

#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "chat/chat_format.h"
#include "runtime/generator.h"

namespace dsv4 {

struct ChatTurn {
  GenerationResult generation;
  chat::ParsedMessage message;  // the assistant turn as parsed from the completion
  std::string parse_error;      // non-empty when the completion is not a well-formed message
  bool reprefilled = false;     // the history had to be fed again
  int64_t fed_tokens = 0;       // prompt tokens fed this turn
};

class ChatSession {
 public:
  ChatSession(Model& model, const Tokenizer& tokenizer, chat::ThinkingMode mode,
              chat::ReasoningEffort effort = chat::ReasoningEffort::kNone);

  void set_system(const std::string& system_prompt);
  // Sends one user message and generates the reply; on_delta receives reasoning and content text
  // as it becomes safe to show (never a partial special token).
  Result<ChatTurn> send(const std::string& user_text, const GenerationOptions& options,
                        const std::function<void(const chat::StreamDelta&)>& on_delta = {});
  void reset();
  const nlohmann::ordered_json& messages() const { return messages_; }

 private:
  Model& model_;
  const Tokenizer& tokenizer_;
  chat::EncodeOptions encode_options_;
  Generator generator_;
  nlohmann::ordered_json messages_ = nlohmann::ordered_json::array();
  std::string fed_text_;  // exactly the text of every token the sequence holds
};

}  // namespace dsv4
