// DeepSeek-V4 prompt encoder and completion parser (see chat_format.h). The structure follows
// encoding_dsv4.py step for step (merge tool messages, sort tool results, drop thinking, render
// each message, then the transition to the assistant) so that a golden mismatch can be traced to
// one rule; where the reference would crash or accept malformed text, this port returns an error
// instead (noted at each place).
#include "chat/chat_format.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <map>
#include <optional>

#include "chat/py_json.h"

namespace dsv4::chat {
namespace {

using Json = nlohmann::ordered_json;

constexpr std::string_view kReasoningEffortMax =
    "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
    "You MUST be very thorough in your thinking and comprehensively decompose the problem to "
    "resolve the root cause, rigorously stress-testing your logic against all potential paths, "
    "edge cases, and adversarial scenarios.\n"
    "Explicitly write out your entire deliberation process, documenting every intermediate step, "
    "considered alternative, and rejected hypothesis to ensure absolutely no assumption is left "
    "unchecked.\n\n";

constexpr std::string_view kToolsPreamble =
    "## Tools\n\n"
    "You have access to a set of tools to help answer the user's question. You can invoke tools by "
    "writing a \"<｜DSML｜tool_calls>\" block like the following:\n\n"
    "<｜DSML｜tool_calls>\n"
    "<｜DSML｜invoke name=\"$TOOL_NAME\">\n"
    "<｜DSML｜parameter name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE</｜DSML｜parameter>\n"
    "...\n"
    "</｜DSML｜invoke>\n"
    "<｜DSML｜invoke name=\"$TOOL_NAME2\">\n"
    "...\n"
    "</｜DSML｜invoke>\n"
    "</｜DSML｜tool_calls>\n\n"
    "String parameters should be specified as is and set `string=\"true\"`. For all other types "
    "(numbers, booleans, arrays, objects), pass the value in JSON format and set `string=\"false\"`.\n\n"
    "If thinking_mode is enabled (triggered by <think>), you MUST output your complete reasoning "
    "inside <think>...</think> BEFORE any tool calls or final response.\n\n"
    "Otherwise, output directly after </think> with tool calls or final response.\n\n"
    "### Available Tool Schemas\n\n";
constexpr std::string_view kToolsEpilogue =
    "\n\nYou MUST strictly follow the above defined tool name and parameter schemas to invoke tool "
    "calls.\n";
constexpr std::string_view kResponseFormatPreamble =
    "## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n";

constexpr std::array<std::pair<std::string_view, std::string_view>, 6> kTaskTokens = {{
    {"action", "<｜action｜>"},
    {"query", "<｜query｜>"},
    {"authority", "<｜authority｜>"},
    {"domain", "<｜domain｜>"},
    {"title", "<｜title｜>"},
    {"read_url", "<｜read_url｜>"},
}};

constexpr std::array<std::string_view, 6> kRoles = {"system", "user",      "assistant",
                                                    "tool",   "developer", "latest_reminder"};

std::optional<std::string_view> task_token(std::string_view task) {
  for (const auto& [name, token] : kTaskTokens)
    if (name == task) return token;
  return std::nullopt;
}

std::string json_type_name(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return "boolean";
    case Json::value_t::string:
      return "string";
    case Json::value_t::array:
      return "array";
    case Json::value_t::object:
      return "object";
    default:
      return "number";
  }
}

// One block of a user message after tool messages were merged into it.
struct Block {
  bool is_tool_result = false;
  std::string text;         // the text, or the tool result's content
  std::string tool_use_id;  // tool results only
};

struct InToolCall {
  std::string id;
  std::string name;
  std::string arguments;
};

// A validated message. `tools` and `response_format` stay JSON (they are rendered as JSON).
struct Message {
  std::string role;
  std::string content;  // missing or null read as "" (the reference's `content or ""`)
  bool has_content = false;
  std::string reasoning_content;
  Json tools;            // array of tool["function"] objects, or null
  Json response_format;  // any JSON; rendered when truthy
  std::vector<InToolCall> tool_calls;
  std::optional<std::string> task;
  bool wo_eos = false;
  std::string tool_call_id;
  std::optional<std::vector<Block>> content_blocks;  // user messages after merging
};

Status type_error(const std::string& where, const std::string& expected, const Json& got) {
  return Status::errorf("{}: expected {}, got {}", where, expected, json_type_name(got));
}

// Reads an optional string field: missing or null → nullopt.
Result<std::optional<std::string>> optional_string(const Json& m, const char* key, const std::string& where) {
  const auto it = m.find(key);
  if (it == m.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string()) return type_error(fmt::format("{}.{}", where, key), "a string", *it);
  return std::optional<std::string>(it->get<std::string>());
}

// Tool content may be a string or a list of content parts ({"type": "text", "text": ...}); the
// reference joins the text parts with blank lines and marks other parts unsupported.
Result<std::string> tool_content_text(const Json& m, const std::string& where) {
  const auto it = m.find("content");
  if (it == m.end()) return std::string();
  if (it->is_string()) return it->get<std::string>();
  if (!it->is_array()) return type_error(where + ".content", "a string or a list of content parts", *it);
  std::string out;
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& part = (*it)[i];
    const std::string pwhere = fmt::format("{}.content[{}]", where, i);
    if (!part.is_object()) return type_error(pwhere, "an object", part);
    DSV4_ASSIGN_OR_RETURN(auto type, optional_string(part, "type", pwhere));
    if (i > 0) out += "\n\n";
    if (type == "text") {
      DSV4_ASSIGN_OR_RETURN(auto text, optional_string(part, "text", pwhere));
      out += text.value_or("");
    } else {
      out += fmt::format("[Unsupported {}]", type.value_or("None"));
    }
  }
  return out;
}

Result<Message> read_message(const Json& m, const std::string& where) {
  if (!m.is_object()) return type_error(where, "an object", m);
  Message msg;
  DSV4_ASSIGN_OR_RETURN(auto role, optional_string(m, "role", where));
  if (!role)
    return Status::errorf(
        "{}.role: missing; expected one of system, user, assistant, tool, developer, latest_reminder", where);
  if (std::find(kRoles.begin(), kRoles.end(), *role) == kRoles.end())
    return Status::errorf(
        "{}.role: unknown role '{}'; expected one of system, user, assistant, tool, developer, "
        "latest_reminder",
        where, *role);
  msg.role = *role;

  if (msg.role == "tool") {
    DSV4_ASSIGN_OR_RETURN(msg.content, tool_content_text(m, where));
    msg.has_content = true;
    DSV4_ASSIGN_OR_RETURN(auto id, optional_string(m, "tool_call_id", where));
    msg.tool_call_id = id.value_or("");
  } else {
    DSV4_ASSIGN_OR_RETURN(auto content, optional_string(m, "content", where));
    msg.has_content = content.has_value();
    msg.content = content.value_or("");
  }
  // The reference would render a missing reminder as "None" and asserts a developer's content.
  if (msg.role == "latest_reminder" && !msg.has_content)
    return Status::errorf("{}.content: missing; expected a string for role latest_reminder", where);
  if (msg.role == "developer" && msg.content.empty())
    return Status::errorf("{}.content: empty; expected non-empty text for role developer", where);

  DSV4_ASSIGN_OR_RETURN(auto reasoning, optional_string(m, "reasoning_content", where));
  msg.reasoning_content = reasoning.value_or("");

  if (const auto it = m.find("tools"); it != m.end() && !it->is_null()) {
    if (!it->is_array()) return type_error(where + ".tools", "an array", *it);
    msg.tools = Json::array();
    for (size_t i = 0; i < it->size(); ++i) {
      const Json& tool = (*it)[i];
      const std::string twhere = fmt::format("{}.tools[{}]", where, i);
      if (!tool.is_object()) return type_error(twhere, "an object", tool);
      const auto fn = tool.find("function");
      if (fn == tool.end())
        return Status::errorf("{}.function: missing; expected the tool's schema object", twhere);
      msg.tools.push_back(*fn);
    }
  }
  if (const auto it = m.find("response_format"); it != m.end()) msg.response_format = *it;

  if (const auto it = m.find("tool_calls"); it != m.end() && !it->is_null()) {
    if (!it->is_array()) return type_error(where + ".tool_calls", "an array", *it);
    for (size_t i = 0; i < it->size(); ++i) {
      const Json& tc = (*it)[i];
      const std::string cwhere = fmt::format("{}.tool_calls[{}]", where, i);
      if (!tc.is_object()) return type_error(cwhere, "an object", tc);
      const auto fn = tc.find("function");
      if (fn == tc.end())
        return Status::errorf("{}.function: missing; expected {{\"name\", \"arguments\"}}", cwhere);
      if (!fn->is_object()) return type_error(cwhere + ".function", "an object", *fn);
      InToolCall call;
      DSV4_ASSIGN_OR_RETURN(auto id, optional_string(tc, "id", cwhere));
      DSV4_ASSIGN_OR_RETURN(auto fn_id, optional_string(*fn, "id", cwhere + ".function"));
      call.id = (id && !id->empty()) ? *id : fn_id.value_or("");
      DSV4_ASSIGN_OR_RETURN(auto name, optional_string(*fn, "name", cwhere + ".function"));
      if (!name) return Status::errorf("{}.function.name: missing; expected the tool name", cwhere);
      call.name = *name;
      const auto args = fn->find("arguments");
      if (args == fn->end())
        return Status::errorf("{}.function.arguments: missing; expected a JSON string", cwhere);
      if (!args->is_string())
        return type_error(cwhere + ".function.arguments", "a string holding a JSON object", *args);
      call.arguments = args->get<std::string>();
      msg.tool_calls.push_back(std::move(call));
    }
  }

  DSV4_ASSIGN_OR_RETURN(msg.task, optional_string(m, "task", where));
  if (msg.task && !task_token(*msg.task))
    return Status::errorf(
        "{}.task: unknown task '{}'; expected one of action, query, authority, domain, title, read_url",
        where, *msg.task);
  if (const auto it = m.find("wo_eos"); it != m.end() && !it->is_null()) {
    if (!it->is_boolean()) return type_error(where + ".wo_eos", "a boolean", *it);
    msg.wo_eos = it->get<bool>();
  }
  return msg;
}

Result<std::vector<Message>> read_messages(const Json& messages, const char* name) {
  if (!messages.is_array()) return type_error(name, "an array of messages", messages);
  std::vector<Message> out;
  for (size_t i = 0; i < messages.size(); ++i) {
    DSV4_ASSIGN_OR_RETURN(auto msg, read_message(messages[i], fmt::format("{}[{}]", name, i)));
    out.push_back(std::move(msg));
  }
  return out;
}

// merge_tool_messages: tool results become blocks of a user message; a tool result or a user
// text joins the previous user message (a user text only if that one has no task).
std::vector<Message> merge_tool_messages(const std::vector<Message>& messages) {
  std::vector<Message> merged;
  for (const Message& msg : messages) {
    const bool prev_user = !merged.empty() && merged.back().role == "user" && merged.back().content_blocks;
    if (msg.role == "tool") {
      Block block{true, msg.content, msg.tool_call_id};
      if (prev_user) {
        merged.back().content_blocks->push_back(std::move(block));
      } else {
        Message user;
        user.role = "user";
        user.content_blocks = std::vector<Block>{std::move(block)};
        merged.push_back(std::move(user));
      }
    } else if (msg.role == "user") {
      Block block{false, msg.content, ""};
      if (prev_user && !merged.back().task) {
        merged.back().content_blocks->push_back(std::move(block));
      } else {
        // Only content, task and wo_eos survive the merge, as in the reference.
        Message user;
        user.role = "user";
        user.content = msg.content;
        user.has_content = msg.has_content;
        user.task = msg.task;
        user.wo_eos = msg.wo_eos;
        user.content_blocks = std::vector<Block>{std::move(block)};
        merged.push_back(std::move(user));
      }
    } else {
      merged.push_back(msg);
    }
  }
  return merged;
}

// sort_tool_results_by_call_order: within a user message, tool results follow the order of the
// latest assistant tool calls (a stable sort; unknown ids sort as position 0).
void sort_tool_results_by_call_order(std::vector<Message>& messages) {
  std::map<std::string, size_t> order;
  for (Message& msg : messages) {
    if (msg.role == "assistant" && !msg.tool_calls.empty()) {
      order.clear();
      for (size_t i = 0; i < msg.tool_calls.size(); ++i)
        if (!msg.tool_calls[i].id.empty()) order[msg.tool_calls[i].id] = i;
    } else if (msg.role == "user" && msg.content_blocks && !msg.content_blocks->empty()) {
      std::vector<Block> results;
      for (const Block& b : *msg.content_blocks)
        if (b.is_tool_result) results.push_back(b);
      if (results.size() <= 1 || order.empty()) continue;
      const auto key = [&](const Block& b) {
        const auto it = order.find(b.tool_use_id);
        return it == order.end() ? size_t(0) : it->second;
      };
      std::stable_sort(results.begin(), results.end(),
                       [&](const Block& a, const Block& b) { return key(a) < key(b); });
      size_t next = 0;
      for (Block& b : *msg.content_blocks)
        if (b.is_tool_result) b = results[next++];
    }
  }
}

int find_last_user_index(const std::vector<Message>& messages) {
  for (int i = int(messages.size()) - 1; i >= 0; --i)
    if (messages[size_t(i)].role == "user" || messages[size_t(i)].role == "developer") return i;
  return -1;
}

// _drop_thinking_messages: before the last user/developer message, assistants lose their
// reasoning and developer messages disappear.
std::vector<Message> drop_thinking_messages(const std::vector<Message>& messages) {
  const int last_user = find_last_user_index(messages);
  std::vector<Message> out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const Message& msg = messages[i];
    const bool keep_role =
        msg.role == "user" || msg.role == "system" || msg.role == "tool" || msg.role == "latest_reminder";
    if (keep_role || int(i) >= last_user) {
      out.push_back(msg);
    } else if (msg.role == "assistant") {
      Message copy = msg;
      copy.reasoning_content.clear();
      out.push_back(std::move(copy));
    }
  }
  return out;
}

std::string render_tools(const Json& tools) {
  std::string out(kToolsPreamble);
  for (size_t i = 0; i < tools.size(); ++i) {
    if (i > 0) out += '\n';
    out += py_json_dumps(tools[i]);
  }
  out += kToolsEpilogue;
  return out;
}

// encode_arguments_to_dsml: one parameter line per argument; strings raw, other values as JSON.
Result<std::string> encode_arguments_to_dsml(const InToolCall& call, const std::string& where) {
  Json args;
  try {
    args = Json::parse(call.arguments);
  } catch (const Json::parse_error&) {
    // The reference passes unparsable arguments through as one string argument.
    args = Json::object({{"arguments", call.arguments}});
  }
  if (!args.is_object()) return type_error(where + ".function.arguments", "a JSON object", args);
  std::string out;
  bool first = true;
  for (const auto& [key, value] : args.items()) {
    if (!first) out += '\n';
    first = false;
    const bool is_str = value.is_string();
    out += fmt::format("<{}parameter name=\"{}\" string=\"{}\">{}</{}parameter>", kDsmlToken, key,
                       is_str ? "true" : "false", is_str ? value.get<std::string>() : py_json_dumps(value),
                       kDsmlToken);
  }
  return out;
}

struct RenderContext {
  const std::vector<Message>& messages;
  ThinkingMode mode;
  bool drop_thinking;
  ReasoningEffort effort;
  int last_user_index;
};

Result<std::string> render_message(size_t index, const RenderContext& ctx) {
  const Message& msg = ctx.messages[index];
  const bool thinking = ctx.mode == ThinkingMode::kThinking;
  std::string prompt;
  if (index == 0 && thinking && ctx.effort == ReasoningEffort::kMax) prompt += kReasoningEffortMax;

  const auto tools_and_format = [&](std::string& out) {
    if (py_truthy(msg.tools)) out += "\n\n" + render_tools(msg.tools);
    if (py_truthy(msg.response_format))
      out += "\n\n" + std::string(kResponseFormatPreamble) + py_json_dumps(msg.response_format);
  };

  if (msg.role == "system") {
    prompt += msg.content;
    tools_and_format(prompt);
  } else if (msg.role == "developer") {
    prompt += kUserToken;
    prompt += msg.content;
    tools_and_format(prompt);
  } else if (msg.role == "user") {
    prompt += kUserToken;
    if (msg.content_blocks && !msg.content_blocks->empty()) {
      for (size_t i = 0; i < msg.content_blocks->size(); ++i) {
        const Block& b = (*msg.content_blocks)[i];
        if (i > 0) prompt += "\n\n";
        prompt += b.is_tool_result ? "<tool_result>" + b.text + "</tool_result>" : b.text;
      }
    } else {
      prompt += msg.content;
    }
  } else if (msg.role == "latest_reminder") {
    prompt += kLatestReminderToken;
    prompt += msg.content;
  } else if (msg.role == "assistant") {
    std::string tc_content;
    if (!msg.tool_calls.empty()) {
      tc_content = fmt::format("\n\n<{}tool_calls>\n", kDsmlToken);
      for (size_t i = 0; i < msg.tool_calls.size(); ++i) {
        const InToolCall& tc = msg.tool_calls[i];
        DSV4_ASSIGN_OR_RETURN(
            auto args, encode_arguments_to_dsml(tc, fmt::format("message {} tool_calls[{}]", index, i)));
        if (i > 0) tc_content += '\n';
        tc_content +=
            fmt::format("<{}invoke name=\"{}\">\n{}\n</{}invoke>", kDsmlToken, tc.name, args, kDsmlToken);
      }
      tc_content += fmt::format("\n</{}tool_calls>", kDsmlToken);
    }
    const bool prev_has_task = index > 0 && ctx.messages[index - 1].task.has_value();
    if (thinking && !prev_has_task && (!ctx.drop_thinking || int(index) > ctx.last_user_index)) {
      prompt += msg.reasoning_content;
      prompt += kThinkEnd;
    }
    prompt += msg.content;
    prompt += tc_content;
    if (!msg.wo_eos) prompt += kEosToken;
  } else {
    // Tool messages were merged into user messages and roles were validated on input.
    return Status::errorf("message {}: role '{}' cannot be rendered here", index, msg.role);
  }

  // The transition to the assistant comes only at the end or before an assistant/reminder.
  if (index + 1 < ctx.messages.size()) {
    const std::string& next = ctx.messages[index + 1].role;
    if (next != "assistant" && next != "latest_reminder") return prompt;
  }
  if (msg.task) {
    const std::string_view token = *task_token(*msg.task);
    if (*msg.task != "action") {
      prompt += token;
    } else {
      prompt += kAssistantToken;
      prompt += thinking ? kThinkStart : kThinkEnd;
      prompt += token;
    }
  } else if (msg.role == "user" || msg.role == "developer") {
    prompt += kAssistantToken;
    const bool open_thinking = thinking && (!ctx.drop_thinking || int(index) >= ctx.last_user_index);
    prompt += open_thinking ? kThinkStart : kThinkEnd;
  }
  return prompt;
}

}  // namespace

Result<std::string> encode_chat(const Json& messages_json, const EncodeOptions& options,
                                const Json& context_json) {
  DSV4_ASSIGN_OR_RETURN(auto raw_messages, read_messages(messages_json, "messages"));
  DSV4_ASSIGN_OR_RETURN(auto raw_context, read_messages(context_json, "context"));

  // Context and messages merge separately (a leading tool result does not join the context's last
  // user message); tool results are then ordered with the context in view, where their calls
  // may live. Sorting a message depends only on what precedes it, so sorting the concatenation
  // equals the reference's separate sorts of context and context + messages.
  const std::vector<Message> messages = merge_tool_messages(raw_messages);
  const std::vector<Message> context = merge_tool_messages(raw_context);
  std::vector<Message> full = context;
  full.insert(full.end(), messages.begin(), messages.end());
  sort_tool_results_by_call_order(full);
  const bool has_context = !raw_context.empty();

  std::string prompt;
  if (options.add_default_bos_token && !has_context) prompt += kBosToken;

  bool drop_thinking = options.drop_thinking;
  for (const Message& m : full)
    if (py_truthy(m.tools)) drop_thinking = false;

  size_t n_render = messages.size();
  size_t context_len = context.size();
  if (options.thinking_mode == ThinkingMode::kThinking && drop_thinking) {
    full = drop_thinking_messages(full);
    n_render = full.size() - drop_thinking_messages(context).size();
    context_len = full.size() - n_render;
  }

  const RenderContext ctx{full, options.thinking_mode, drop_thinking, options.reasoning_effort,
                          find_last_user_index(full)};
  for (size_t i = 0; i < n_render; ++i) {
    DSV4_ASSIGN_OR_RETURN(auto part, render_message(context_len + i, ctx));
    prompt += part;
  }
  return prompt;
}

// ---- Parsing a completion ------------------------------------------------------------------

namespace {

// A short, one-line, quoted excerpt of model text for error messages.
std::string snippet(std::string_view s) {
  constexpr size_t kMax = 60;
  if (s.size() <= kMax) return py_json_quote(s);
  size_t n = kMax;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;  // whole UTF-8 chars
  return py_json_quote(s.substr(0, n)) + "...";
}

struct Read {
  size_t index;                          // just past the stop (or the end of the text)
  std::string_view content;              // text before the stop
  std::optional<std::string_view> stop;  // which stop matched first; none at end of text
};

// _read_until_stop: the text up to the earliest of `stops` (the first listed wins a tie).
Read read_until_stop(size_t index, std::string_view text, std::initializer_list<std::string_view> stops) {
  size_t min_pos = text.size();
  std::optional<std::string_view> matched;
  for (std::string_view s : stops) {
    const size_t pos = text.find(s, index);
    if (pos != std::string_view::npos && pos < min_pos) {
      min_pos = pos;
      matched = s;
    }
  }
  if (matched) return {min_pos + matched->size(), text.substr(index, min_pos - index), matched};
  return {text.size(), text.substr(index), std::nullopt};
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// The reference's regex ^\s*name="(.*?)">\n$ (DOTALL; `$` also matches before a final newline).
std::optional<std::string> match_invoke_name(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  constexpr std::string_view kPrefix = "name=\"";
  if (!s.starts_with(kPrefix)) return std::nullopt;
  s.remove_prefix(kPrefix.size());
  if (s.ends_with("\">\n\n")) return std::string(s.substr(0, s.size() - 4));
  if (s.ends_with("\">\n")) return std::string(s.substr(0, s.size() - 3));
  return std::nullopt;
}

struct Param {
  std::string name;
  bool is_string;
  std::string value;
};

// The reference's regex ^ name="(.*?)" string="(true|false)">(.*?)<$ (DOTALL): the shortest
// name followed by a string attribute, then the value up to a final '<' (or '<' + newline).
std::optional<Param> match_parameter(std::string_view s) {
  constexpr std::string_view kPrefix = " name=\"";
  if (!s.starts_with(kPrefix)) return std::nullopt;
  s.remove_prefix(kPrefix.size());
  constexpr std::string_view kTrue = "\" string=\"true\">", kFalse = "\" string=\"false\">";
  for (size_t p = 0; p < s.size(); ++p) {
    const std::string_view rest = s.substr(p);
    const bool t = rest.starts_with(kTrue), f = rest.starts_with(kFalse);
    if (!t && !f) continue;
    const std::string_view v = rest.substr(t ? kTrue.size() : kFalse.size());
    if (v.ends_with("<\n"))
      return Param{std::string(s.substr(0, p)), t, std::string(v.substr(0, v.size() - 2))};
    if (v.ends_with("<"))
      return Param{std::string(s.substr(0, p)), t, std::string(v.substr(0, v.size() - 1))};
  }
  return std::nullopt;
}

const std::string kInvokeOpen = fmt::format("<{}invoke", kDsmlToken);
const std::string kInvokeClose = fmt::format("</{}invoke", kDsmlToken);
const std::string kParamOpen = fmt::format("<{}parameter", kDsmlToken);
const std::string kParamClose = fmt::format("/{}parameter", kDsmlToken);
const std::string kToolCallsEnd = fmt::format("</{}tool_calls>", kDsmlToken);

// parse_tool_calls: `index` is just past "\n\n<｜DSML｜tool_calls". Unlike the reference, a block
// cut off before "</｜DSML｜tool_calls>" is an error, and string="false" values must be JSON.
Result<std::vector<ToolCall>> parse_tool_calls(size_t& index, std::string_view text) {
  std::vector<ToolCall> calls;
  bool closed = false;
  while (index < text.size()) {
    Read r = read_until_stop(index, text, {kInvokeOpen, kToolCallsEnd});
    index = r.index;
    if (r.content != ">\n")
      return Status::errorf("completion: tool-call block: expected '>\\n' after a tag, got {}",
                            snippet(r.content));
    if (r.stop == kToolCallsEnd) {
      closed = true;
      break;
    }
    if (!r.stop) break;

    r = read_until_stop(index, text, {kParamOpen, kInvokeClose});
    index = r.index;
    const auto name = match_invoke_name(r.content);
    if (!name)
      return Status::errorf(
          "completion: tool-call block: malformed invoke tag; expected name=\"...\">, got {}",
          snippet(r.content));
    ToolCall call{*name, "{"};
    std::vector<std::string> seen;
    std::optional<std::string_view> stop = r.stop;
    while (stop == kParamOpen) {
      r = read_until_stop(index, text, {kParamClose});
      index = r.index;
      const auto param = match_parameter(r.content);
      if (!param)
        return Status::errorf(
            "completion: tool '{}': malformed parameter; expected name=\"...\" "
            "string=\"true|false\">VALUE</｜DSML｜parameter>, got {}",
            *name, snippet(r.content));
      if (std::find(seen.begin(), seen.end(), param->name) != seen.end())
        return Status::errorf("completion: tool '{}': duplicate parameter name '{}'", *name, param->name);
      if (!param->is_string && !Json::accept(param->value))
        return Status::errorf(
            "completion: tool '{}': parameter '{}' has string=\"false\"; expected a JSON value, got {}",
            *name, param->name, snippet(param->value));
      if (!seen.empty()) call.arguments += ", ";
      seen.push_back(param->name);
      call.arguments +=
          py_json_quote(param->name) + ": " + (param->is_string ? py_json_quote(param->value) : param->value);

      r = read_until_stop(index, text, {kParamOpen, kInvokeClose});
      index = r.index;
      if (r.content != ">\n")
        return Status::errorf("completion: tool '{}': expected '>\\n' after a parameter, got {}", *name,
                              snippet(r.content));
      stop = r.stop;
    }
    call.arguments += "}";
    calls.push_back(std::move(call));
  }
  if (!closed)
    return Status::errorf("completion: tool-call block is not closed; expected '{}', got end of text",
                          kToolCallsEnd);
  return calls;
}

Status check_no_special_tokens(std::string_view field, std::string_view s) {
  for (std::string_view tok : {kBosToken, kEosToken, kThinkStart, kThinkEnd, kDsmlToken})
    if (s.find(tok) != std::string_view::npos)
      return Status::errorf("completion: unexpected special token '{}' inside {}", tok, field);
  return Status();
}

}  // namespace

Json ParsedMessage::to_json() const {
  Json calls = Json::array();
  for (const ToolCall& c : tool_calls)
    calls.push_back(
        Json{{"type", "function"}, {"function", Json{{"name", c.name}, {"arguments", c.arguments}}}});
  return Json{{"role", "assistant"},
              {"content", content},
              {"reasoning_content", reasoning_content},
              {"tool_calls", std::move(calls)}};
}

Result<ParsedMessage> parse_completion(std::string_view text, ThinkingMode mode) {
  ParsedMessage msg;
  size_t index = 0;
  if (mode == ThinkingMode::kThinking) {
    const Read r = read_until_stop(0, text, {kThinkEnd, kToolCallsStart});
    if (r.stop != kThinkEnd)
      return Status::errorf("completion: reasoning is not closed; expected '{}' before {}", kThinkEnd,
                            r.stop ? "the tool-call block" : "the end of the text");
    msg.reasoning_content = std::string(r.content);
    index = r.index;
  }
  const Read r = read_until_stop(index, text, {kEosToken, kToolCallsStart});
  msg.content = std::string(r.content);
  index = r.index;
  if (r.stop == kToolCallsStart) {
    DSV4_ASSIGN_OR_RETURN(msg.tool_calls, parse_tool_calls(index, text));
    const Read after = read_until_stop(index, text, {kEosToken});
    if (!after.content.empty())
      return Status::errorf("completion: unexpected text after the tool-call block; expected '{}', got {}",
                            kEosToken, snippet(after.content));
    if (!after.stop)
      return Status::errorf("completion: missing end-of-sentence token '{}' after the tool calls", kEosToken);
    index = after.index;
  } else if (!r.stop) {
    return Status::errorf("completion: missing end-of-sentence token; expected '{}' at the end, got {}",
                          kEosToken, snippet(text.substr(text.size() > 20 ? text.size() - 20 : 0)));
  }
  if (index != text.size())
    return Status::errorf("completion: unexpected text after '{}': {}", kEosToken,
                          snippet(text.substr(index)));
  DSV4_RETURN_IF_ERROR(check_no_special_tokens("the reasoning", msg.reasoning_content));
  DSV4_RETURN_IF_ERROR(check_no_special_tokens("the content", msg.content));
  return msg;
}

// ---- Streaming --------------------------------------------------------------------------------

namespace {

// Length of the longest suffix of `s` that is a proper prefix of one of `tokens`: those bytes
// may still become a special token and are held back.
size_t held_back(std::string_view s, std::initializer_list<std::string_view> tokens) {
  size_t best = 0;
  for (std::string_view tok : tokens)
    for (size_t n = std::min(s.size(), tok.size() - 1); n > best; --n)
      if (s.substr(s.size() - n) == tok.substr(0, n)) {
        best = n;
        break;
      }
  return best;
}

// The earliest of `tokens` in `s` from `from`: (position, token), or npos.
std::pair<size_t, std::string_view> find_first(std::string_view s, size_t from,
                                               std::initializer_list<std::string_view> tokens) {
  std::pair<size_t, std::string_view> best{std::string_view::npos, {}};
  for (std::string_view tok : tokens) {
    const size_t p = s.find(tok, from);
    if (p < best.first) best = {p, tok};
  }
  return best;
}

}  // namespace

CompletionStreamParser::CompletionStreamParser(ThinkingMode mode)
    : mode_(mode), phase_(mode == ThinkingMode::kThinking ? Phase::kReasoning : Phase::kContent) {}

Status CompletionStreamParser::advance(StreamDelta& delta) {
  const std::string_view text = text_;
  // Every special string that may not appear in reasoning or content; the tool-call opener is
  // listed because its leading "\n\n" must be held back too.
  const auto specials = {kToolCallsStart, kBosToken, kEosToken, kThinkStart, kThinkEnd, kDsmlToken};
  while (phase_ == Phase::kReasoning || phase_ == Phase::kContent) {
    const bool reasoning = phase_ == Phase::kReasoning;
    std::string& out = reasoning ? delta.reasoning_content : delta.content;
    const auto [pos, tok] = find_first(text, pos_, specials);
    // A match inside the held-back tail is not decided yet: "\n\n<｜DSML｜" holds a complete
    // "｜DSML｜" but may still become the tool-call opener, which starts earlier and wins.
    const size_t hold_start = text.size() - held_back(text.substr(pos_), specials);
    if (pos == std::string_view::npos || pos >= hold_start) {
      out += text.substr(pos_, hold_start - pos_);
      pos_ = hold_start;
      return Status();
    }
    if (reasoning && tok == kThinkEnd) {
      out += text.substr(pos_, pos - pos_);
      pos_ = pos + tok.size();
      phase_ = Phase::kContent;
    } else if (!reasoning && (tok == kEosToken || tok == kToolCallsStart)) {
      out += text.substr(pos_, pos - pos_);
      pos_ = pos + tok.size();
      phase_ = tok == kEosToken ? Phase::kDone : Phase::kToolCalls;
    } else if (reasoning && tok == kToolCallsStart) {
      return Status::errorf("completion: reasoning is not closed; expected '{}' before the tool-call block",
                            kThinkEnd);
    } else {
      return Status::errorf("completion: unexpected special token '{}' inside {}", tok,
                            reasoning ? "the reasoning" : "the content");
    }
  }
  if (phase_ == Phase::kDone && pos_ < text.size())
    return Status::errorf("completion: unexpected text after '{}': {}", kEosToken,
                          snippet(text.substr(pos_)));
  return Status();
}

Result<StreamDelta> CompletionStreamParser::feed(std::string_view chunk) {
  if (!error_.ok()) return error_;
  text_ += chunk;
  StreamDelta delta;
  error_ = advance(delta);
  if (!error_.ok()) return error_;
  return delta;
}

Result<ParsedMessage> CompletionStreamParser::finish() {
  if (!error_.ok()) return error_;
  // The tool-call block and the checks at the end need the whole text; the one-shot parser is
  // the single definition of the result.
  return parse_completion(text_, mode_);
}

}  // namespace dsv4::chat
