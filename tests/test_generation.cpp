// Generation (src/runtime/generator.h): stop strings never leak, greedy generation agrees with
// the HF fixture's argmax, and a generation split over calls equals one call.
#include <gtest/gtest.h>

#include "core/safetensors.h"
#include "model_test_util.h"
#include "runtime/generator.h"

namespace dsv4 {
namespace {

const std::string kFixture = model_test::fixture_dir() + "/tiny-nvfp4";

TEST(StopStringMatcher, HoldsBackPrefixesAndCutsAtTheStop) {
  StopStringMatcher m({"</end>", "STOP"});
  std::string out;
  for (const char* piece : {"Hello <", "/e", "nd>", " never"}) out += m.push(piece);
  EXPECT_EQ(out, "Hello ");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.flush(), "");

  StopStringMatcher n({"STOP"});
  EXPECT_EQ(n.push("abcST"), "abc");  // "ST" may start "STOP"
  EXPECT_EQ(n.push("x"), "STx");      // it did not
  EXPECT_EQ(n.push("S"), "");
  EXPECT_EQ(n.flush(), "S");
  EXPECT_FALSE(n.stopped());
}

std::unique_ptr<Model> load_fixture() {
  auto m = Model::load(kFixture, make_cpu_backend());
  EXPECT_TRUE(m.ok()) << m.status().message();
  return m.ok() ? std::move(m.value()) : nullptr;
}

std::vector<int32_t> fixture_tokens(size_t n) {
  auto f = SafetensorsFile::open(kFixture + "/expected.safetensors");
  EXPECT_TRUE(f.ok());
  const TensorInfo* t = (*f)->find("tokens");
  std::vector<int32_t> ids;
  for (size_t i = 0; i < n; ++i) {
    int64_t v;
    std::memcpy(&v, t->data + 8 * i, 8);
    ids.push_back(int32_t(v));
  }
  return ids;
}

TEST(Generator, FirstGreedyTokenIsTheHfArgmax) {
  auto model = load_fixture();
  ASSERT_TRUE(model);
  auto f = SafetensorsFile::open(kFixture + "/expected.safetensors");
  ASSERT_TRUE(f.ok());
  const TensorInfo* logits = (*f)->find("logits_full");
  const int64_t V = model->config().vocab_size;
  for (size_t n : {1u, 40u, 130u}) {
    const std::vector<int32_t> prompt = fixture_tokens(n);
    Generator g(*model, nullptr);
    GenerationOptions opt;
    opt.sampling.temperature = 0;
    opt.max_tokens = 1;
    auto r = g.generate(prompt, opt);
    ASSERT_TRUE(r.ok()) << r.status().message();
    const float* row = reinterpret_cast<const float*>(logits->data) + (n - 1) * V;
    const int32_t hf_argmax = int32_t(std::max_element(row, row + V) - row);
    EXPECT_EQ(r->tokens.at(0), hf_argmax) << "prompt of " << n << " tokens";
    EXPECT_EQ(r->stop_reason, "max tokens");
  }
}

TEST(Generator, SplitGenerationEqualsOneCall) {
  auto model = load_fixture();
  ASSERT_TRUE(model);
  const std::vector<int32_t> prompt = fixture_tokens(20);
  GenerationOptions opt;
  opt.sampling.temperature = 0.8f;
  opt.sampling.seed = 5;
  opt.stop_at_eos = false;
  opt.max_tokens = 12;
  Generator one(*model, nullptr);
  auto whole = one.generate(prompt, opt);
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(one.n_tokens(), 20 + 12);

  // Greedy: the same 12 tokens as 6 + 6 (the second call feeds the first call's last token).
  opt.sampling.temperature = 0;
  Generator a(*model, nullptr), b(*model, nullptr);
  auto full = a.generate(prompt, opt);
  opt.max_tokens = 6;
  auto first = b.generate(prompt, opt);
  auto second = b.generate({}, opt);
  ASSERT_TRUE(full.ok() && first.ok() && second.ok());
  std::vector<int32_t> joined = first->tokens;
  joined.insert(joined.end(), second->tokens.begin(), second->tokens.end());
  EXPECT_EQ(joined, full->tokens);
  b.reset();
  EXPECT_EQ(b.n_tokens(), 0);
}

TEST(Generator, RejectsBadRequests) {
  auto model = load_fixture();
  ASSERT_TRUE(model);
  Generator g(*model, nullptr);
  GenerationOptions opt;
  EXPECT_FALSE(g.generate({}, opt).ok());
  opt.max_tokens = 0;
  EXPECT_FALSE(g.generate(fixture_tokens(3), opt).ok());
  opt.max_tokens = 2;
  opt.sampling.top_p = 2;
  EXPECT_FALSE(g.generate(fixture_tokens(3), opt).ok());
  const std::vector<int32_t> bad = {1, 99999};
  opt.sampling.top_p = 1;
  auto r = g.generate(bad, opt);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("99999"), std::string::npos);
}

}  // namespace
}  // namespace dsv4
