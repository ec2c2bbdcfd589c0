// `dsv4 encode-chat`: renders an OpenAI-style conversation as the DeepSeek-V4 prompt string
// (src/chat/chat_format.h), for testing and scripting.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "chat/chat_format.h"
#include "commands.h"

namespace dsv4::cli {
namespace {

// FILE.json is {"messages": [...]}, tools attached to the system (or developer) message.
Result<nlohmann::ordered_json> read_messages_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::errorf("{}: cannot open the messages file", path);
  std::stringstream buf;
  buf << in.rdbuf();
  nlohmann::ordered_json doc;
  try {
    doc = nlohmann::ordered_json::parse(buf.str());
  } catch (const nlohmann::json::parse_error& e) {
    return Status::errorf("{}: malformed JSON: {}", path, e.what());
  }
  if (!doc.is_object() || !doc.contains("messages"))
    return Status::errorf("{}: expected an object {{\"messages\": [...]}}, got {}", path,
                          doc.is_object() ? "an object without \"messages\"" : doc.type_name());
  return doc["messages"];
}

}  // namespace

void register_encode_chat(CLI::App& app, Action& run) {
  auto* cmd = app.add_subcommand("encode-chat", "Render chat messages as the DeepSeek-V4 prompt string");
  static std::string messages_path;
  static std::string thinking_mode = "chat";
  static std::string reasoning_effort;
  static bool keep_reasoning = false;
  static bool no_bos = false;
  cmd->add_option("--messages", messages_path, "JSON file {\"messages\": [...]} in OpenAI form")->required();
  cmd->add_option("--thinking-mode", thinking_mode, "chat or thinking")
      ->check(CLI::IsMember({"chat", "thinking"}));
  cmd->add_option("--reasoning-effort", reasoning_effort, "high or max (max adds the think-max preamble)")
      ->check(CLI::IsMember({"high", "max"}));
  cmd->add_flag("--keep-reasoning", keep_reasoning, "Keep the reasoning of earlier assistant turns");
  cmd->add_flag("--no-bos", no_bos, "Do not start the prompt with the BOS token");
  cmd->callback([&run] {
    run = [] {
      auto messages = read_messages_file(messages_path);
      if (!messages.ok()) return fail(messages.status().message());
      chat::EncodeOptions options;
      options.thinking_mode =
          thinking_mode == "thinking" ? chat::ThinkingMode::kThinking : chat::ThinkingMode::kChat;
      options.reasoning_effort = reasoning_effort == "max"    ? chat::ReasoningEffort::kMax
                                 : reasoning_effort == "high" ? chat::ReasoningEffort::kHigh
                                                              : chat::ReasoningEffort::kNone;
      options.drop_thinking = !keep_reasoning;
      options.add_default_bos_token = !no_bos;
      const auto prompt = chat::encode_chat(*messages, options);
      if (!prompt.ok()) return fail(prompt.status().with_context(messages_path).message());
      std::fwrite(prompt->data(), 1, prompt->size(), stdout);
      return 0;
    };
  });
}

}  // namespace dsv4::cli
