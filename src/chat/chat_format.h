// DeepSeek-V4 chat prompt format: a C++ port of the encoder and completion parser that ship with
// the checkpoint (encoding/encoding_dsv4.py: encode_messages, parse_message_from_completion_text),
// restated in spec/chat/format.md and pinned byte for byte by spec/chat/golden.json.
// Messages are OpenAI-style JSON; everything a user controls is validated and reported as a
// Status naming the message index and field, never asserted.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace dsv4::chat {

// Special strings of the format (U+FF5C full-width bars, U+2581 in BOS/EOS).
inline constexpr std::string_view kBosToken = "<｜begin▁of▁sentence｜>";
inline constexpr std::string_view kEosToken = "<｜end▁of▁sentence｜>";
inline constexpr std::string_view kUserToken = "<｜User｜>";
inline constexpr std::string_view kAssistantToken = "<｜Assistant｜>";
inline constexpr std::string_view kLatestReminderToken = "<｜latest_reminder｜>";
inline constexpr std::string_view kThinkStart = "<think>";
inline constexpr std::string_view kThinkEnd = "</think>";
inline constexpr std::string_view kDsmlToken = "｜DSML｜";
// What opens a tool-call block in a completion; the two newlines belong to it, not to content.
inline constexpr std::string_view kToolCallsStart = "\n\n<｜DSML｜tool_calls";

enum class ThinkingMode { kChat, kThinking };
enum class ReasoningEffort { kNone, kHigh, kMax };

struct EncodeOptions {
  ThinkingMode thinking_mode = ThinkingMode::kChat;
  ReasoningEffort reasoning_effort = ReasoningEffort::kNone;
  // Drop reasoning of assistant turns before the last user/developer message (ignored, i.e.
  // reasoning kept, when any message carries tools).
  bool drop_thinking = true;
  bool add_default_bos_token = true;
};

// Renders `messages` (a JSON array of OpenAI-style messages) as the prompt string.
// `context`, when non-empty, is an already-encoded conversation prefix: it shapes the rendering
// (tool-result order, reasoning dropping) but is not itself rendered, and suppresses BOS.
Result<std::string> encode_chat(const nlohmann::ordered_json& messages, const EncodeOptions& options,
                                const nlohmann::ordered_json& context = nlohmann::ordered_json::array());

struct ToolCall {
  std::string name;
  std::string arguments;  // a JSON object as text, e.g. {"location": "Beijing", "days": 3}
};

struct ParsedMessage {
  std::string content;
  std::string reasoning_content;
  std::vector<ToolCall> tool_calls;

  // {"role": "assistant", "content", "reasoning_content", "tool_calls": [{"type": "function",
  // "function": {"name", "arguments"}}]} — the OpenAI form the reference returns.
  nlohmann::ordered_json to_json() const;
};

// Parses a full completion (the model's text after the prompt, through EOS).
Result<ParsedMessage> parse_completion(std::string_view text, ThinkingMode mode);

// Text that became safe to show after one chunk.
struct StreamDelta {
  std::string reasoning_content;
  std::string content;
};

// Incremental parse_completion: feed the completion chunk by chunk (any split, even inside a
// UTF-8 character or a special token); deltas never contain a special token or a prefix of one
// (those bytes are held back until they are known to be text), and finish() returns exactly what
// parse_completion returns on the whole text. Errors surface as early as they are certain.
class CompletionStreamParser {
 public:
  explicit CompletionStreamParser(ThinkingMode mode);

  Result<StreamDelta> feed(std::string_view chunk);
  // Ends the stream: the parsed message with its tool calls, or the error.
  Result<ParsedMessage> finish();

 private:
  enum class Phase { kReasoning, kContent, kToolCalls, kDone };

  Status advance(StreamDelta& delta);

  ThinkingMode mode_;
  Phase phase_;
  std::string text_;
  size_t pos_ = 0;  // start of what has not been emitted or consumed yet
  Status error_;
};

}  // namespace dsv4::chat
