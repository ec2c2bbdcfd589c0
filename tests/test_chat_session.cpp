// ChatSession (src/runtime/chat_session.h) on a micro model sized to DeepSeek-V4's real tokenizer:
// later turns feed only the new text, and the state they continue from is exactly what a fresh
// prefill of the whole conversation gives.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "model/synthetic.h"
#include "runtime/chat_session.h"

namespace dsv4 {
namespace {
namespace fs = std::filesystem;

const std::string kTokenizerDir = std::string(DSV4_TEST_DATA) + "/tokenizer/deepseek-v4";

class ChatSessionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = (fs::temp_directory_path() / ("dsv4_chat_session_" + std::to_string(::getpid()))).string();
    auto tok = Tokenizer::load(kTokenizerDir);
    ASSERT_TRUE(tok.ok()) << tok.status().message();
    ModelConfig cfg = micro_config();
    cfg.vocab_size = tok->vocab_size();
    SyntheticOptions opt;
    opt.seed = 11;
    ASSERT_TRUE(write_synthetic_checkpoint(cfg, opt, dir_).ok());
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
      fs::copy_file(fs::path(kTokenizerDir) / f, fs::path(dir_) / f, fs::copy_options::overwrite_existing);
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static std::string dir_;
};
std::string ChatSessionTest::dir_;

TEST_F(ChatSessionTest, LaterTurnsContinueTheStateExactly) {
  auto tok = Tokenizer::load(dir_);
  auto model = Model::load(dir_, make_cpu_backend());
  ASSERT_TRUE(tok.ok() && model.ok());
  GenerationOptions opt;
  opt.sampling.temperature = 0;
  opt.max_tokens = 5;
  int continued = 0;
  for (chat::ThinkingMode mode : {chat::ThinkingMode::kChat, chat::ThinkingMode::kThinking}) {
    ChatSession session(**model, *tok, mode);
    auto first = session.send("Hello, who are you?", opt);
    ASSERT_TRUE(first.ok()) << first.status().message();
    EXPECT_FALSE(first->reprefilled);
    auto second = session.send("And what can you do?", opt);
    ASSERT_TRUE(second.ok()) << second.status().message();
    // The second turn fed its own text only, unless the random model's first reply was not a
    // well-formed message (e.g. reasoning never closed), which the history cannot reproduce.
    EXPECT_EQ(second->reprefilled, !first->parse_error.empty()) << first->parse_error;
    if (!second->reprefilled) EXPECT_LT(second->fed_tokens, 20);

    // A fresh prefill of the whole second prompt continues with the same tokens.
    nlohmann::ordered_json history = session.messages();
    history.erase(history.size() - 1);  // the second reply
    chat::EncodeOptions eo;
    eo.thinking_mode = mode;
    eo.drop_thinking = false;
    auto prompt = chat::encode_chat(history, eo);
    ASSERT_TRUE(prompt.ok()) << prompt.status().message();
    auto ids = tok->encode(*prompt);
    ASSERT_TRUE(ids.ok());
    Generator fresh(**model, &*tok);
    auto again = fresh.generate(*ids, opt);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->tokens, second->generation.tokens);
    EXPECT_EQ(session.messages().size(), 4u);
    continued += !second->reprefilled;
    session.reset();
    EXPECT_TRUE(session.messages().empty());
  }
  EXPECT_GE(continued, 1);  // chat mode's replies always parse, so at least it continues
}

TEST_F(ChatSessionTest, SystemPromptSurvivesReset) {
  auto tok = Tokenizer::load(dir_);
  auto model = Model::load(dir_, make_cpu_backend());
  ASSERT_TRUE(tok.ok() && model.ok());
  ChatSession session(**model, *tok, chat::ThinkingMode::kChat);
  session.set_system("You are terse.");
  GenerationOptions opt;
  opt.max_tokens = 2;
  opt.sampling.seed = 1;
  ASSERT_TRUE(session.send("hi", opt).ok());
  session.reset();
  ASSERT_EQ(session.messages().size(), 1u);
  EXPECT_EQ(session.messages()[0]["role"], "system");
}

TEST_F(ChatSessionTest, CliChatAndGenerateRunAndRejectBadInput) {
  const std::string cli = DSV4_CLI;
  const auto run = [](const std::string& cmd) {
    const int status = std::system(cmd.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  EXPECT_EQ(run("printf 'hello\\nsecond turn\\n/reset\\nagain\\n' | " + cli + " chat --model " + dir_ +
                " --max-tokens 3 --seed 1 --quiet > /dev/null 2>&1"),
            0);
  EXPECT_EQ(run(cli + " generate --model " + dir_ +
                " --prompt 'Hi' --chat --thinking --max-tokens 3 --quiet > /dev/null 2>&1"),
            0);
  EXPECT_EQ(run(cli + " generate --model " + dir_ +
                " --prompt 'Hi' --max-tokens 3 --stop x --quiet > /dev/null 2>&1"),
            0);
  // Bad input: one-line error, exit 1 (usage: 2).
  EXPECT_EQ(run(cli + " generate --model " + dir_ + " --tokens 1,2 --chat --quiet > /dev/null 2>&1"), 1);
  EXPECT_EQ(run(cli + " generate --model " + dir_ + " --prompt '' --quiet > /dev/null 2>&1"), 1);
  EXPECT_EQ(run(cli + " generate --model " + dir_ + " --prompt x --top-p 3 --quiet > /dev/null 2>&1"), 1);
  EXPECT_EQ(run(cli + " chat --model " + std::string(DSV4_TEST_DATA) +
                "/bad_input/no_weights < /dev/null > /dev/null 2>&1"),
            1);
  EXPECT_EQ(run(cli + " chat --model " + dir_ + " --reasoning-effort extreme < /dev/null > /dev/null 2>&1"),
            2);
}

}  // namespace
}  // namespace dsv4
