// `dsv4 parse-completion`: parses a DeepSeek-V4 completion read from stdin (reasoning, content,
// DSML tool calls) and prints the assistant message as JSON (src/chat/chat_format.h).
#include <fmt/format.h>

#include <iostream>
#include <iterator>
#include <string>

#include "chat/chat_format.h"
#include "chat/py_json.h"
#include "commands.h"

namespace dsv4::cli {

void register_parse_completion(CLI::App& app, Action& run) {
  auto* cmd = app.add_subcommand("parse-completion",
                                 "Parse a completion (stdin, through EOS) into an assistant message (JSON)");
  static std::string thinking_mode = "chat";
  cmd->add_option("--thinking-mode", thinking_mode, "chat or thinking (the completion starts with reasoning)")
      ->check(CLI::IsMember({"chat", "thinking"}));
  cmd->callback([&run] {
    run = [] {
      const std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
      const auto mode =
          thinking_mode == "thinking" ? chat::ThinkingMode::kThinking : chat::ThinkingMode::kChat;
      const auto msg = chat::parse_completion(text, mode);
      if (!msg.ok()) return fail(msg.status().with_context("stdin").message());
      fmt::print("{}\n", chat::py_json_dumps(msg->to_json()));
      return 0;
    };
  });
}

}  // namespace dsv4::cli
