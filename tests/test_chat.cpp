// DeepSeek-V4 chat format (src/chat): every golden case of spec/chat/golden.json byte for byte
// (encode) and field for field (parse, errors), the Python-compatible JSON writer, the streaming
// parser against the one-shot parser, bad input, and the encode-chat / parse-completion CLI.
#include <gtest/gtest.h>
#include <unistd.h>

#include <sys/wait.h>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include "chat/chat_format.h"
#include "chat/py_json.h"

namespace dsv4::chat {
namespace {

using Json = nlohmann::ordered_json;

const Json& golden() {
  static const Json g = [] {
    std::ifstream in(DSV4_SPEC_DIR "/chat/golden.json");
    std::stringstream s;
    s << in.rdbuf();
    return Json::parse(s.str());
  }();
  return g;
}

ThinkingMode mode_of(const std::string& s) {
  return s == "thinking" ? ThinkingMode::kThinking : ThinkingMode::kChat;
}

struct EncodeCase {
  std::string name;
  Json messages;
  EncodeOptions options;
  std::string prompt;
};

// The official cases carry only their input: official_1 is {"tools", "messages"} (tools go on
// the system message) and the mode is the one their prompts show after <｜Assistant｜>: <think>
// (thinking) for 1-3, </think> (chat) for 4.
std::vector<EncodeCase> encode_cases() {
  std::vector<EncodeCase> cases;
  for (const Json& c : golden()["encode"]) {
    EncodeCase e{c["name"], Json(), {}, c["prompt"]};
    if (c.contains("messages")) {
      e.messages = c["messages"];
      e.options.thinking_mode = mode_of(c["thinking_mode"]);
      const Json& o = c["options"];
      if (o.contains("reasoning_effort"))
        e.options.reasoning_effort =
            o["reasoning_effort"] == "max" ? ReasoningEffort::kMax : ReasoningEffort::kHigh;
      if (o.contains("add_default_bos_token")) e.options.add_default_bos_token = o["add_default_bos_token"];
      if (o.contains("drop_thinking")) e.options.drop_thinking = o["drop_thinking"];
    } else {
      const Json& in = c["official_input"];
      if (in.is_object()) {
        e.messages = in["messages"];
        e.messages[0]["tools"] = in["tools"];
      } else {
        e.messages = in;
      }
      e.options.thinking_mode = e.name == "official_4" ? ThinkingMode::kChat : ThinkingMode::kThinking;
    }
    cases.push_back(std::move(e));
  }
  return cases;
}

TEST(ChatGolden, EveryEncodeCaseByteForByte) {
  const auto cases = encode_cases();
  ASSERT_EQ(cases.size(), 14u);
  for (const EncodeCase& c : cases) {
    auto prompt = encode_chat(c.messages, c.options);
    ASSERT_TRUE(prompt.ok()) << c.name << ": " << prompt.status().message();
    EXPECT_EQ(*prompt, c.prompt) << c.name;
  }
}

TEST(ChatGolden, EveryParseCaseFieldForField) {
  ASSERT_EQ(golden()["parse"].size(), 3u);
  for (const Json& c : golden()["parse"]) {
    const auto msg = parse_completion(c["completion"].get<std::string>(), mode_of(c["thinking_mode"]));
    ASSERT_TRUE(msg.ok()) << c["name"] << ": " << msg.status().message();
    const Json got = msg->to_json();
    for (const auto& [field, want] : c["parsed"].items())
      EXPECT_EQ(got[field], want) << c["name"] << " " << field;
    EXPECT_EQ(got.size(), c["parsed"].size()) << c["name"];
  }
}

TEST(ChatGolden, EveryParseErrorCaseIsAnError) {
  ASSERT_EQ(golden()["parse_errors"].size(), 2u);
  for (const Json& c : golden()["parse_errors"]) {
    const auto msg = parse_completion(c["completion"].get<std::string>(), mode_of(c["thinking_mode"]));
    ASSERT_FALSE(msg.ok()) << c["name"];
    const std::string m = msg.status().message();
    EXPECT_EQ(m.rfind("completion: ", 0), 0u) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    if (c["name"] == "missing_eos") EXPECT_NE(m.find("end-of-sentence"), std::string::npos) << m;
    if (c["name"] == "missing_think_end") EXPECT_NE(m.find("</think>"), std::string::npos) << m;
  }
}

// ---- The JSON writer: Python's json.dumps(ensure_ascii=False), outputs taken from CPython 3.

TEST(ChatPyJson, NumbersStringsAndSeparatorsMatchPython) {
  const Json v = Json::parse(
      R"([1.0, 0.5, 1e16, 1e15, 1.5e-5, 0.0001, -0.0, 123456789.125, 1e300, 2.5e-310, -3.14, 100, -7, true, null])");
  EXPECT_EQ(py_json_dumps(v),
            "[1.0, 0.5, 1e+16, 1000000000000000.0, 1.5e-05, 0.0001, -0.0, 123456789.125, 1e+300, 2.5e-310, "
            "-3.14, 100, -7, true, null]");
  EXPECT_EQ(py_json_dumps(Json("a\"b\\c\n\t\x01\x1f\x7f é😀")), "\"a\\\"b\\\\c\\n\\t\\u0001\\u001f\x7f é😀\"");
  EXPECT_EQ(py_json_dumps(Json::parse(R"({"b": 1, "a": [{}, []]})")), R"({"b": 1, "a": [{}, []]})");
}

// ---- Encoding rules beyond the golden cases (expected strings derived from format.md).

Json conversation() {
  return Json::parse(R"([
    {"role": "system", "content": "S"},
    {"role": "user", "content": "Q1"},
    {"role": "assistant", "reasoning_content": "R1", "content": "A1"},
    {"role": "user", "content": "Q2"}])");
}

TEST(ChatEncode, KeepReasoningKeepsEarlierThinking) {
  EncodeOptions o;
  o.thinking_mode = ThinkingMode::kThinking;
  o.drop_thinking = false;
  auto p = encode_chat(conversation(), o);
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(*p,
            "<｜begin▁of▁sentence｜>S<｜User｜>Q1<｜Assistant｜><think>R1</think>A1<｜end▁of▁sentence｜>"
            "<｜User｜>Q2<｜Assistant｜><think>");
}

TEST(ChatEncode, ContextRendersOnlyTheNewMessages) {
  // In chat mode a conversation renders as the concatenation of its parts.
  Json context = conversation();
  const Json last = Json::array({context.back()});
  context.erase(context.size() - 1);
  const EncodeOptions o;
  auto full = encode_chat(conversation(), o);
  auto head = encode_chat(context, o);
  auto tail = encode_chat(last, o, context);
  ASSERT_TRUE(full.ok() && head.ok() && tail.ok());
  EXPECT_EQ(*tail, "<｜User｜>Q2<｜Assistant｜></think>");
  EXPECT_EQ(*head + *tail, *full);
}

TEST(ChatEncode, DeveloperBeforeLastUserIsDroppedInThinkingMode) {
  const Json msgs = Json::parse(R"([
    {"role": "developer", "content": "D"},
    {"role": "assistant", "reasoning_content": "R", "content": "A"},
    {"role": "user", "content": "Q"}])");
  EncodeOptions o;
  o.thinking_mode = ThinkingMode::kThinking;
  auto p = encode_chat(msgs, o);
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(*p, "<｜begin▁of▁sentence｜>A<｜end▁of▁sentence｜><｜User｜>Q<｜Assistant｜><think>");
}

TEST(ChatEncode, ConsecutiveUsersMergeAndTaskTokensFollowTheirMessage) {
  // A user message joins the previous one (task-less) with a blank line, losing its own task as
  // in the reference.
  auto merged = encode_chat(Json::parse(R"([{"role": "user", "content": "a"},
                                            {"role": "user", "content": "b", "task": "query"}])"),
                            EncodeOptions{});
  ASSERT_TRUE(merged.ok()) << merged.status().message();
  EXPECT_EQ(*merged, "<｜begin▁of▁sentence｜><｜User｜>a\n\nb<｜Assistant｜></think>");
  auto task = encode_chat(Json::parse(R"([{"role": "user", "content": "a", "task": "query"},
                                          {"role": "assistant", "content": "q"}])"),
                          EncodeOptions{});
  ASSERT_TRUE(task.ok()) << task.status().message();
  EXPECT_EQ(*task, "<｜begin▁of▁sentence｜><｜User｜>a<｜query｜>q<｜end▁of▁sentence｜>");
}

TEST(ChatEncode, ToolCallArgumentsRenderAsDsml) {
  const Json msgs = Json::parse(R"([
    {"role": "user", "content": "go"},
    {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function":
      {"name": "f", "arguments": "{\"s\": \"x\\ny\", \"n\": 1.50, \"o\": {\"k\": [true, null]}}"}}]}])");
  auto p = encode_chat(msgs, EncodeOptions{});
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(*p,
            "<｜begin▁of▁sentence｜><｜User｜>go<｜Assistant｜></think>\n\n<｜DSML｜tool_calls>\n"
            "<｜DSML｜invoke name=\"f\">\n"
            "<｜DSML｜parameter name=\"s\" string=\"true\">x\ny</｜DSML｜parameter>\n"
            "<｜DSML｜parameter name=\"n\" string=\"false\">1.5</｜DSML｜parameter>\n"
            "<｜DSML｜parameter name=\"o\" string=\"false\">{\"k\": [true, null]}</｜DSML｜parameter>\n"
            "</｜DSML｜invoke>\n</｜DSML｜tool_calls><｜end▁of▁sentence｜>");
}

TEST(ChatEncode, BadMessagesAreErrorsNamingTheField) {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {R"({"messages": 1})", "messages: expected an array"},
      {R"([1])", "messages[0]: expected an object"},
      {R"([{"content": "x"}])", "messages[0].role: missing"},
      {R"([{"role": "robot", "content": "x"}])", "messages[0].role: unknown role 'robot'"},
      {R"([{"role": "user", "content": 5}])", "messages[0].content: expected a string, got number"},
      {R"([{"role": "user", "content": "x"}, {"role": "developer"}])", "messages[1].content: empty"},
      {R"([{"role": "user", "content": "x", "task": "fly"}])", "messages[0].task: unknown task 'fly'"},
      {R"([{"role": "system", "content": "x", "tools": {}}])", "messages[0].tools: expected an array"},
      {R"([{"role": "system", "content": "x", "tools": [{"type": "function"}]}])",
       "messages[0].tools[0].function: missing"},
      {R"([{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]}])",
       "messages[0].tool_calls[0].function.arguments: expected a string"},
      {R"([{"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]}])",
       "messages[0].tool_calls[0].function.name: missing"},
      {R"([{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}]}])",
       "tool_calls[0].function.arguments: expected a JSON object, got array"},
      {R"([{"role": "latest_reminder"}])", "messages[0].content: missing"},
  };
  for (const auto& [text, want] : cases) {
    Json j = Json::parse(text);
    if (j.is_object()) j = j["messages"];
    auto p = encode_chat(j, EncodeOptions{});
    ASSERT_FALSE(p.ok()) << text;
    EXPECT_NE(p.status().message().find(want), std::string::npos) << p.status().message();
  }
}

// ---- Parsing: errors beyond the golden ones.

TEST(ChatParse, MalformedCompletionsAreErrors) {
  const std::string eos = "<｜end▁of▁sentence｜>";
  const std::string open = "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n";
  const std::string close = "</｜DSML｜invoke>\n</｜DSML｜tool_calls>";
  const auto param = [](const std::string& name, const char* is_str, const std::string& v) {
    return "<｜DSML｜parameter name=\"" + name + "\" string=\"" + is_str + "\">" + v +
           "</｜DSML｜parameter>\n";
  };
  const std::vector<std::pair<std::string, const char*>> cases = {
      {"a" + eos + "b", "unexpected text after"},
      {"a<think>b" + eos, "unexpected special token '<think>' inside the content"},
      {"a<｜DSML｜invoke" + eos, "unexpected special token '｜DSML｜'"},
      {open + param("x", "true", "1") + param("x", "true", "2") + close + eos,
       "duplicate parameter name 'x'"},
      {open + param("x", "false", "{bad") + close + eos, "expected a JSON value"},
      {open + param("x", "maybe", "1") + close + eos, "malformed parameter"},
      {open + param("x", "true", "1") + close + "tail" + eos, "unexpected text after the tool-call block"},
      {open + param("x", "true", "1") + close, "missing end-of-sentence"},
      {open + param("x", "true", "1"), "not closed"},
      {"\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke nom=\"f\">\n" + close + eos, "malformed invoke tag"},
      {"\n\n<｜DSML｜tool_calls>junk" + close + eos, "expected '>\\n' after a tag"},
  };
  for (const auto& [text, want] : cases) {
    const auto m = parse_completion(text, ThinkingMode::kChat);
    ASSERT_FALSE(m.ok()) << text;
    EXPECT_NE(m.status().message().find(want), std::string::npos) << m.status().message();
    EXPECT_EQ(m.status().message().find('\n'), std::string::npos) << m.status().message();
  }
  const auto m = parse_completion("r" + open + close + eos, ThinkingMode::kThinking);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("before the tool-call block"), std::string::npos)
      << m.status().message();
}

TEST(ChatParse, EncodedToolCallsParseBack) {
  // The assistant turn of a golden prompt, parsed, gives back its tool calls with Python-style
  // argument JSON.
  const std::string text =
      "Two tools.</think>\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_time\">\n"
      "<｜DSML｜parameter name=\"city\" string=\"true\">Pa\"ris</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"utc_offset\" string=\"false\">1</｜DSML｜parameter>\n</｜DSML｜invoke>\n"
      "<｜DSML｜invoke name=\"noargs\">\n</｜DSML｜invoke>\n</｜DSML｜tool_calls><｜end▁of▁sentence｜>";
  const auto m = parse_completion(text, ThinkingMode::kThinking);
  ASSERT_TRUE(m.ok()) << m.status().message();
  ASSERT_EQ(m->tool_calls.size(), 2u);
  EXPECT_EQ(m->tool_calls[0].name, "get_time");
  EXPECT_EQ(m->tool_calls[0].arguments, R"({"city": "Pa\"ris", "utc_offset": 1})");
  EXPECT_EQ(m->tool_calls[1].name, "noargs");
  EXPECT_EQ(m->tool_calls[1].arguments, "{}");
  EXPECT_EQ(m->reasoning_content, "Two tools.");
}

// ---- Streaming: same result as the one-shot parser for any chunking, never a partial token.

struct StreamCase {
  std::string text;
  ThinkingMode mode;
};

std::vector<StreamCase> stream_cases() {
  std::vector<StreamCase> cases;
  for (const char* key : {"parse", "parse_errors"})
    for (const Json& c : golden()[key]) cases.push_back({c["completion"], mode_of(c["thinking_mode"])});
  const std::string eos = "<｜end▁of▁sentence｜>";
  // Text that looks like the start of special tokens but is not one.
  cases.push_back({"x </thin k <｜end y\n\n<｜DSx <" + eos, ThinkingMode::kChat});
  cases.push_back({"think </thinking> no</think>\n\nok\n\n" + eos, ThinkingMode::kThinking});
  cases.push_back(
      {"r</think>c\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n"
       "<｜DSML｜parameter name=\"v\" string=\"true\">a" +
           eos +
           "b</｜DSML｜parameter>\n"
           "</｜DSML｜invoke>\n</｜DSML｜tool_calls>" +
           eos,
       ThinkingMode::kThinking});
  cases.push_back({"a</think>b" + eos, ThinkingMode::kChat});
  cases.push_back({"a" + eos + "tail", ThinkingMode::kChat});
  return cases;
}

std::vector<std::string> special_strings() {
  return {std::string(kBosToken), std::string(kEosToken),  std::string(kThinkStart),
          std::string(kThinkEnd), std::string(kDsmlToken), std::string(kToolCallsStart)};
}

void check_stream(const StreamCase& c, const std::vector<size_t>& sizes, const std::string& label) {
  const auto oneshot = parse_completion(c.text, c.mode);
  CompletionStreamParser parser(c.mode);
  std::string reasoning, content;
  Status feed_error;
  size_t pos = 0;
  for (size_t i = 0; pos < c.text.size(); ++i) {
    const size_t n = std::min(sizes[i % sizes.size()], c.text.size() - pos);
    const auto d = parser.feed(std::string_view(c.text).substr(pos, n));
    pos += n;
    if (!d.ok()) {
      feed_error = d.status();
      break;
    }
    reasoning += d->reasoning_content;
    content += d->content;
    // What was shown is always a prefix of the final text, so no special-token byte ever was.
    if (oneshot.ok()) {
      ASSERT_EQ(oneshot->reasoning_content.compare(0, reasoning.size(), reasoning), 0) << label;
      ASSERT_EQ(oneshot->content.compare(0, content.size(), content), 0) << label;
    }
    for (const std::string& tok : special_strings())
      for (const std::string* shown : {&d->reasoning_content, &d->content})
        ASSERT_EQ(shown->find(tok), std::string::npos) << label << ": emitted a special token";
  }
  const auto streamed = feed_error.ok() ? parser.finish() : Result<ParsedMessage>(feed_error);
  ASSERT_EQ(streamed.ok(), oneshot.ok())
      << label << ": " << streamed.status().message() << " vs " << oneshot.status().message();
  if (!oneshot.ok()) return;
  EXPECT_EQ(streamed->to_json(), oneshot->to_json()) << label;
  EXPECT_EQ(reasoning, oneshot->reasoning_content) << label;
  EXPECT_EQ(content, oneshot->content) << label;
}

TEST(ChatStream, ByteByByteMatchesOneShot) {
  const auto cases = stream_cases();
  for (size_t i = 0; i < cases.size(); ++i)
    check_stream(cases[i], {1}, "case " + std::to_string(i) + " bytewise");
}

TEST(ChatStream, RandomChunksMatchOneShot) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<size_t> size(1, 12);
  const auto cases = stream_cases();
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<size_t> sizes(64);
    for (auto& s : sizes) s = size(rng);
    for (size_t i = 0; i < cases.size(); ++i)
      check_stream(cases[i], sizes, "case " + std::to_string(i) + " trial " + std::to_string(trial));
  }
}

TEST(ChatStream, PartialSpecialTokenIsHeldBack) {
  CompletionStreamParser p(ThinkingMode::kThinking);
  auto d = p.feed("abc</thi");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->reasoning_content, "abc");
  d = p.feed("nk>hello\n");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->content, "hello");  // the newline may open a tool-call block
  d = p.feed("\n<｜DSML｜tool_calls>\n</｜DSML｜tool_calls><｜end▁of▁sentence｜>");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->content, "");
  const auto m = p.finish();
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->content, "hello");
  EXPECT_TRUE(m->tool_calls.empty());
}

// ---- The CLI.

struct CliRun {
  int exit_code;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string temp_file(const std::string& name, const std::string& contents) {
  // The pid keeps parallel test processes (ctest -j) from sharing a file.
  const std::string path = ::testing::TempDir() + "dsv4_chat_" + std::to_string(::getpid()) + "_" + name;
  std::ofstream(path, std::ios::binary) << contents;
  return path;
}

CliRun run_cli(const std::string& args, const std::string& stdin_text = "") {
  const std::string in = temp_file("stdin.txt", stdin_text);
  const std::string out = temp_file("stdout.txt", "");
  const std::string err = temp_file("stderr.txt", "");
  const std::string cmd =
      std::string(DSV4_CLI) + " " + args + " < '" + in + "' > '" + out + "' 2> '" + err + "'";
  const int status = std::system(cmd.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out), slurp(err)};
}

TEST(ChatCli, EncodeChatPrintsTheGoldenPrompts) {
  for (const EncodeCase& c : encode_cases()) {
    const std::string path = temp_file("messages.json", Json{{"messages", c.messages}}.dump());
    std::string args = "encode-chat --messages '" + path + "'";
    if (c.options.thinking_mode == ThinkingMode::kThinking) args += " --thinking-mode thinking";
    if (c.options.reasoning_effort == ReasoningEffort::kMax) args += " --reasoning-effort max";
    if (c.options.reasoning_effort == ReasoningEffort::kHigh) args += " --reasoning-effort high";
    if (!c.options.add_default_bos_token) args += " --no-bos";
    const CliRun r = run_cli(args);
    EXPECT_EQ(r.exit_code, 0) << c.name << ": " << r.err;
    EXPECT_EQ(r.out, c.prompt) << c.name;
  }
}

TEST(ChatCli, ParseCompletionPrintsTheMessage) {
  for (const Json& c : golden()["parse"]) {
    const CliRun r =
        run_cli("parse-completion --thinking-mode " + c["thinking_mode"].get<std::string>(), c["completion"]);
    ASSERT_EQ(r.exit_code, 0) << c["name"] << ": " << r.err;
    EXPECT_EQ(Json::parse(r.out), c["parsed"]) << c["name"];
    EXPECT_EQ(r.out, py_json_dumps(c["parsed"]) + "\n") << c["name"];
  }
  for (const Json& c : golden()["parse_errors"]) {
    const CliRun r =
        run_cli("parse-completion --thinking-mode " + c["thinking_mode"].get<std::string>(), c["completion"]);
    EXPECT_EQ(r.exit_code, 1) << c["name"];
    EXPECT_EQ(r.err.rfind("error: stdin: completion: ", 0), 0u) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

TEST(ChatCli, BadInputIsOneLineErrorAndExitOne) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"'" + ::testing::TempDir() + "dsv4_chat_no_such_file.json'", "cannot open"},
      {"'" + temp_file("malformed.json", "{\"messages\": [") + "'", "malformed JSON"},
      {"'" + temp_file("no_messages.json", "[]") + "'", "expected an object {\"messages\": [...]}"},
      {"'" + temp_file("bad_role.json", R"({"messages": [{"role": "wizard", "content": "x"}]})") + "'",
       "messages[0].role: unknown role 'wizard'"},
      {"'" + temp_file("bad_type.json", R"({"messages": [{"role": "user", "content": ["x"]}]})") + "'",
       "messages[0].content: expected a string, got array"},
      {"'" +
           temp_file(
               "bad_call.json",
               R"({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}]})") +
           "'",
       "messages[0].tool_calls[0].function.arguments: missing"},
  };
  for (const auto& [file, want] : cases) {
    const CliRun r = run_cli("encode-chat --messages " + file);
    EXPECT_EQ(r.exit_code, 1) << file;
    EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(want), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  const CliRun bad_dsml =
      run_cli("parse-completion",
              "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" "
              "string=\"false\">nope</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>"
              "<｜end▁of▁sentence｜>");
  EXPECT_EQ(bad_dsml.exit_code, 1);
  EXPECT_NE(bad_dsml.err.find("parameter 'a' has string=\"false\""), std::string::npos) << bad_dsml.err;
  EXPECT_EQ(run_cli("encode-chat --messages x.json --thinking-mode turbo").exit_code, 2);
}

}  // namespace
}  // namespace dsv4::chat
