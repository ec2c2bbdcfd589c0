// How reasoning and answer text are shown while they stream: on a terminal the reasoning is dim,
// elsewhere it is framed by "[reasoning]" / "[answer]" lines, so the two never run together.
#pragma once

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <cstdio>

#include "chat/chat_format.h"
#include "runtime/chat_session.h"

namespace dsv4::cli {

class ChatDisplay {
 public:
  explicit ChatDisplay(bool terminal) : terminal_(terminal) {}

  void show(const chat::StreamDelta& d) {
    if (!d.reasoning_content.empty()) {
      if (!in_reasoning_) fmt::print("{}", terminal_ ? "\x1b[2m" : "[reasoning]\n");
      in_reasoning_ = true;
      fmt::print("{}", d.reasoning_content);
    }
    if (!d.content.empty()) {
      end_reasoning(/*answer_follows=*/true);
      fmt::print("{}", d.content);
    }
    std::fflush(stdout);
  }

  // Closes the turn: tool calls (as JSON) and a note if the completion was not well formed.
  void finish(const ChatTurn& turn) {
    end_reasoning(/*answer_follows=*/false);
    for (const chat::ToolCall& c : turn.message.tool_calls)
      fmt::print("\n[tool call] {} {}", c.name, c.arguments);
    fmt::print("\n");
    std::fflush(stdout);
    if (!turn.parse_error.empty())
      fmt::print(stderr, "warning: the completion is not a well-formed DeepSeek-V4 message: {}\n",
                 turn.parse_error);
    in_reasoning_ = false;
  }

 private:
  void end_reasoning(bool answer_follows) {
    if (in_reasoning_) fmt::print("{}", terminal_ ? "\x1b[0m\n" : answer_follows ? "\n[answer]\n" : "\n");
    in_reasoning_ = false;
  }

  bool terminal_;
  bool in_reasoning_ = false;
};

struct ChatModeArgs {
  bool thinking = false;
  std::string reasoning_effort = "none";
  std::string system;

  void add(CLI::App* cmd) {
    cmd->add_flag("--thinking", thinking, "Thinking mode: the model reasons before answering");
    cmd->add_option("--reasoning-effort", reasoning_effort, "none, high or max (max: think-max prompt)")
        ->check(CLI::IsMember({"none", "high", "max"}));
    cmd->add_option("--system", system, "System prompt");
  }
  chat::ThinkingMode mode() const {
    return thinking ? chat::ThinkingMode::kThinking : chat::ThinkingMode::kChat;
  }
  chat::ReasoningEffort effort() const {
    return reasoning_effort == "max"    ? chat::ReasoningEffort::kMax
           : reasoning_effort == "high" ? chat::ReasoningEffort::kHigh
                                        : chat::ReasoningEffort::kNone;
  }
};

}  // namespace dsv4::cli
