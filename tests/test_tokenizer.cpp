// Tokenizer against HF `tokenizers`: golden ids and decodes from scripts/make_tokenizer_golden.py
// on DeepSeek-V4's tokenizer.json, streaming decode vs one-shot decode, UTF-8 rules, and bad input.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tokenizer/regex.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace dsv4 {
namespace {

using json = nlohmann::json;

const std::string kDataDir = std::string(DSV4_TEST_DATA) + "/tokenizer";
const std::string kTokenizerDir = kDataDir + "/deepseek-v4";

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const json& golden() {
  static const json g = json::parse(read_text(kDataDir + "/golden.json"));
  return g;
}

// Loaded once: parsing the 6 MB file is the slow part of these tests.
const Tokenizer& deepseek() {
  static const Tokenizer* t = [] {
    auto r = Tokenizer::load(kTokenizerDir);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? new Tokenizer(std::move(r).value()) : nullptr;
  }();
  return *t;
}

#ifdef DSV4_HAVE_PCRE2

std::string streamed(const Tokenizer& t, const std::vector<int32_t>& ids, bool skip_special,
                     std::string* partial_error) {
  StreamDecoder d(t, skip_special);
  std::string out;
  for (const int32_t id : ids) {
    auto piece = d.push(id);
    if (!piece.ok()) {
      *partial_error = piece.status().message();
      return out;
    }
    // Only complete characters leave the decoder.
    if (find_invalid_utf8(*piece) != piece->size()) *partial_error = "push emitted invalid UTF-8";
    out += *piece;
  }
  return out + d.finish();
}

std::string show_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size() && i < 40; ++i) s += std::to_string(ids[i]) + " ";
  return ids.size() > 40 ? s + "..." : s;
}

TEST(Tokenizer, LoadsDeepSeekV4) {
  const Tokenizer& t = deepseek();
  EXPECT_EQ(t.vocab_size(), golden()["vocab_size"].get<int32_t>());
  EXPECT_EQ(t.bos_id(), 0);
  EXPECT_EQ(t.eos_id(), 1);
  EXPECT_FALSE(t.add_bos());
  EXPECT_EQ(t.token_to_id("<｜User｜>"), 128803);
  EXPECT_TRUE(t.is_special(0));
  EXPECT_FALSE(t.is_special(128803));  // DeepSeek marks the chat markers as non-special added tokens
  EXPECT_EQ(t.id_to_token(128821).value(), "<think>");
}

TEST(Tokenizer, GoldenEncodeMatchesHf) {
  const Tokenizer& t = deepseek();
  ASSERT_GE(golden()["encode"].size(), 30u);
  for (const auto& c : golden()["encode"]) {
    const std::string name = c["name"], text = c["text"];
    const auto want = c["ids"].get<std::vector<int32_t>>();
    auto got = t.encode(text, {.add_special_tokens = false});
    ASSERT_TRUE(got.ok()) << name << ": " << got.status().message();
    EXPECT_EQ(*got, want) << name << "\n got: " << show_ids(*got) << "\nwant: " << show_ids(want);
    // HF transformers' default call (add_special_tokens=True) follows tokenizer_config.json.
    auto with_special = t.encode(text);
    ASSERT_TRUE(with_special.ok());
    EXPECT_EQ(*with_special, c["transformers_ids"].get<std::vector<int32_t>>()) << name;
  }
}

TEST(Tokenizer, GoldenDecodeMatchesHf) {
  const Tokenizer& t = deepseek();
  for (const char* section : {"encode", "decode"}) {
    for (const auto& c : golden()[section]) {
      const std::string name = c["name"];
      const auto ids = c["ids"].get<std::vector<int32_t>>();
      for (const bool skip : {false, true}) {
        const std::string want = c[skip ? "decoded_skip_special" : "decoded"];
        auto got = t.decode(ids, skip);
        ASSERT_TRUE(got.ok()) << name << ": " << got.status().message();
        EXPECT_EQ(*got, want) << section << "/" << name << " skip_special=" << skip;
        std::string error;
        EXPECT_EQ(streamed(t, ids, skip, &error), want) << section << "/" << name << " (streamed)";
        EXPECT_EQ(error, "") << section << "/" << name;
      }
    }
  }
}

TEST(Tokenizer, RoundTripsText) {
  const Tokenizer& t = deepseek();
  for (const auto& c : golden()["encode"]) {
    const std::string text = c["text"];
    auto ids = t.encode(text);
    ASSERT_TRUE(ids.ok());
    auto back = t.decode(*ids);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, text) << c["name"].get<std::string>();
  }
}

TEST(Tokenizer, SpecialTokensAreOneIdEach) {
  const Tokenizer& t = deepseek();
  auto ids = t.encode("<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜></think>");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int32_t>{0, 128803, *t.token_to_id("hi"), 128804, 128822}));
}

TEST(Tokenizer, SplitSpecialTokensTreatsThemAsText) {
  const Tokenizer& t = deepseek();
  auto ids = t.encode("<｜end▁of▁sentence｜>", {.split_special_tokens = true});
  ASSERT_TRUE(ids.ok());
  EXPECT_GT(ids->size(), 3u);
  EXPECT_EQ(std::count(ids->begin(), ids->end(), 1), 0);
  EXPECT_EQ(t.decode(*ids).value(), "<｜end▁of▁sentence｜>");
}

TEST(Tokenizer, StreamingHoldsBackSplitCharacters) {
  const Tokenizer& t = deepseek();
  // "€" is E2 82 AC: three single-byte tokens; nothing may come out before the third.
  std::vector<int32_t> ids;
  for (const auto& c : golden()["decode"])
    if (c["name"] == "split_3byte_char") ids = c["ids"].get<std::vector<int32_t>>();
  ASSERT_EQ(ids.size(), 5u);  // a, E2, 82, AC, b
  StreamDecoder d(t);
  EXPECT_EQ(d.push(ids[0]).value(), "a");
  EXPECT_EQ(d.push(ids[1]).value(), "");
  EXPECT_EQ(d.push(ids[2]).value(), "");
  EXPECT_EQ(d.push(ids[3]).value(), "€");
  EXPECT_EQ(d.push(ids[4]).value(), "b");
  EXPECT_EQ(d.finish(), "");
}

TEST(Tokenizer, EncodesThousandsOfTokensQuickly) {
  const Tokenizer& t = deepseek();
  std::string text;
  for (const auto& c : golden()["encode"]) text += c["text"].get<std::string>();
  const auto start = std::chrono::steady_clock::now();
  auto ids = t.encode(text);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(ids.ok());
  EXPECT_GT(ids->size(), 3000u);
  // Generous bound for a shared 2-core CI machine in a debug build; release takes a few ms.
  EXPECT_LT(ms, 2000.0) << ids->size() << " tokens";
}

TEST(Tokenizer, RejectsInvalidUtf8AndUnknownIds) {
  const Tokenizer& t = deepseek();
  auto bad = t.encode("ok\xC3(");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("not valid UTF-8 at byte 2"), std::string::npos)
      << bad.status().message();
  const std::vector<int32_t> ids = {5, t.vocab_size()};
  auto dec = t.decode(ids);
  ASSERT_FALSE(dec.ok());
  EXPECT_NE(dec.status().message().find("not in the vocabulary"), std::string::npos)
      << dec.status().message();
  StreamDecoder d(t);
  EXPECT_FALSE(d.push(-1).ok());
}

TEST(Tokenizer, OnigWhitespaceTranslation) {
  EXPECT_EQ(translate_onig_pattern(R"(\s+(?!\S)|[^\s\p{L}])"),
            R"([\s\x{85}]+(?![^\s\x{85}])|[^\s\x{85}\p{L}])");
  EXPECT_EQ(translate_onig_pattern(R"([]\s]\\s)"), R"([]\s\x{85}]\\s)");
}

// A ten-token file (written by the golden script) exercising what DeepSeek's does not use:
// ByteLevel's own regex and prefix space, a Removed String split, lstrip/rstrip, characters
// missing from the vocabulary; its config adds BOS.
TEST(Tokenizer, GoldenSmallFileMatchesHf) {
  auto t = Tokenizer::load(kDataDir + "/small");
  ASSERT_TRUE(t.ok()) << t.status().message();
  ASSERT_TRUE(t->add_bos());
  ASSERT_GE(golden()["small"].size(), 5u);
  for (const auto& c : golden()["small"]) {
    const std::string text = c["text"];
    const auto want = c["ids"].get<std::vector<int32_t>>();
    auto ids = t->encode(text, {.add_special_tokens = false});
    ASSERT_TRUE(ids.ok()) << text << ": " << ids.status().message();
    EXPECT_EQ(*ids, want) << "'" << text << "'";
    EXPECT_EQ(t->decode(want).value(), c["decoded"].get<std::string>()) << "'" << text << "'";
    auto with_bos = t->encode(text);
    ASSERT_TRUE(with_bos.ok());
    ASSERT_FALSE(with_bos->empty());
    EXPECT_EQ(with_bos->front(), *t->bos_id());
    EXPECT_EQ(with_bos->size(), want.size() + 1);
  }
}

// The CLI round trip: `dsv4 tokenize --text` then `--ids` on what it printed.
TEST(Tokenizer, CliEncodesAndDecodes) {
  auto run = [](const std::string& args) {
    std::string out;
    FILE* p =
        popen((std::string(DSV4_CLI) + " tokenize --tokenizer " + kTokenizerDir + " " + args).c_str(), "r");
    if (p == nullptr) return out;
    char buf[256];
    while (size_t n = fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
    EXPECT_EQ(pclose(p), 0) << args;
    return out;
  };
  const std::string ids = run("--text '<｜User｜>Hello 世界'");
  EXPECT_EQ(ids, "128803,19923,223,3427\n");
  EXPECT_EQ(run("--ids " + ids.substr(0, ids.size() - 1)), "<｜User｜>Hello 世界\n");
}

#else  // !DSV4_HAVE_PCRE2

TEST(Tokenizer, LoadSaysBuiltWithoutPcre2) {
  auto r = Tokenizer::load(kTokenizerDir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("built without PCRE2"), std::string::npos) << r.status().message();
}

#endif  // DSV4_HAVE_PCRE2

std::string write_temp(const std::string& name, const std::string& content) {
  const auto dir = std::filesystem::temp_directory_path() / ("dsv4_tok_" + name);
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer.json", std::ios::binary) << content;
  return dir.string();
}

TEST(TokenizerErrors, MissingFile) {
  auto r = Tokenizer::load("/nonexistent/dir");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "/nonexistent/dir/tokenizer.json: cannot open file");
}

TEST(TokenizerErrors, MalformedJson) {
  auto r = Tokenizer::load(write_temp("malformed", "{\"model\": {\"type\": \"BPE\", "));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("tokenizer.json: malformed JSON"), std::string::npos)
      << r.status().message();
}

TEST(TokenizerErrors, UnsupportedModelType) {
  auto r = Tokenizer::from_json(R"({"model": {"type": "WordPiece", "vocab": {}}})", "");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "tokenizer.json: model type 'WordPiece' not supported; expected BPE");
}

TEST(TokenizerErrors, UnsupportedPipelineParts) {
  const std::string base =
      R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "decoder": {"type": "ByteLevel"})";
  auto nfc = Tokenizer::from_json(base + R"(, "normalizer": {"type": "NFC"}})", "");
  ASSERT_FALSE(nfc.ok());
  EXPECT_NE(nfc.status().message().find("normalizer 'NFC' not supported"), std::string::npos);
  auto meta = Tokenizer::from_json(base + R"(, "pre_tokenizer": {"type": "Metaspace"}})", "");
  ASSERT_FALSE(meta.ok());
  EXPECT_NE(meta.status().message().find("pre_tokenizer 'Metaspace' not supported"), std::string::npos);
  auto merge = Tokenizer::from_json(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a a"]},
                                        "decoder": {"type": "ByteLevel"}})",
                                    "");
  ASSERT_FALSE(merge.ok());
  EXPECT_NE(merge.status().message().find("token 'aa' is not in the vocabulary"), std::string::npos)
      << merge.status().message();
  auto cfg = Tokenizer::from_json(base + "}", R"({"bos_token": "<nope>"})");
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.status().message(), "tokenizer_config.json: bos_token '<nope>' is not in the vocabulary");
}

TEST(TokenizerErrors, RegexNeedsPcre2OrValidPattern) {
  auto r = Regex::compile("(unclosed");
  ASSERT_FALSE(r.ok());
#ifdef DSV4_HAVE_PCRE2
  EXPECT_NE(r.status().message().find("regex '(unclosed'"), std::string::npos) << r.status().message();
#else
  EXPECT_NE(r.status().message().find("built without PCRE2"), std::string::npos) << r.status().message();
#endif
}

TEST(Utf8, LossyDecodeByMaximalSubparts) {
  std::string out;
  EXPECT_EQ(append_utf8_lossy("a\xE2\x82", /*final=*/false, out), 1u);
  EXPECT_EQ(out, "a");
  out.clear();
  append_utf8_lossy("\xE2\x82z\xF0\x9F\x98\x80\xC0\xAF\xED\xA0\x80", /*final=*/true, out);
  EXPECT_EQ(out, "\xEF\xBF\xBDz\xF0\x9F\x98\x80\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(find_invalid_utf8("ok\xF4\x90"), 2u);
  EXPECT_EQ(find_invalid_utf8("€😀"), std::string("€😀").size());
}

}  // namespace
}  // namespace dsv4
