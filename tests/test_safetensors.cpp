// safetensors reader/writer: round trips (single file and sharded) and header validation.
#include <gtest/gtest.h>

#include <unistd.h>
#include <cstring>
#include <filesystem>
#include <random>
#include <tuple>

#include "core/safetensors.h"

namespace dsv4 {
namespace {
namespace fs = std::filesystem;

fs::path temp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("dsv4_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = uint8_t(rng());
  return v;
}

SafetensorsWriter example_writer() {
  SafetensorsWriter w;
  w.add("a.weight", DType::kU8, {4, 8}, random_bytes(32, 1));
  w.add("a.weight_scale", DType::kF8_E4M3, {4, 1}, random_bytes(4, 2));
  w.add_f32("a.weight_scale_2", {}, {0.25f});
  w.add("b", DType::kBF16, {3, 5}, random_bytes(30, 3));
  w.add("c", DType::kI64, {2, 6}, random_bytes(96, 4));
  w.add("empty", DType::kF32, {0, 7}, {});
  return w;
}

void expect_example_tensors(const std::map<std::string, TensorInfo>& t) {
  ASSERT_EQ(t.size(), 6u);
  EXPECT_EQ(t.at("a.weight").shape, (std::vector<int64_t>{4, 8}));
  EXPECT_EQ(t.at("a.weight").dtype, DType::kU8);
  EXPECT_EQ(std::vector<uint8_t>(t.at("a.weight").data, t.at("a.weight").data + 32), random_bytes(32, 1));
  EXPECT_EQ(std::vector<uint8_t>(t.at("c").data, t.at("c").data + 96), random_bytes(96, 4));
  EXPECT_TRUE(t.at("a.weight_scale_2").shape.empty());
  EXPECT_EQ(t.at("a.weight_scale_2").numel(), 1);
  float v;
  std::memcpy(&v, t.at("a.weight_scale_2").data, 4);
  EXPECT_EQ(v, 0.25f);
  EXPECT_EQ(t.at("empty").nbytes(), 0);
}

TEST(Safetensors, SingleFileRoundTrip) {
  const fs::path d = temp_dir("single");
  ASSERT_TRUE(example_writer().write_file((d / "model.safetensors").string()).ok());
  auto f = SafetensorsFile::open((d / "model.safetensors").string());
  ASSERT_TRUE(f.ok()) << f.status().message();
  expect_example_tensors((*f)->tensors());
  auto ckpt = Checkpoint::open(d.string());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().message();
  expect_example_tensors(ckpt->tensors());
  fs::remove_all(d);
}

TEST(Safetensors, ShardedRoundTrip) {
  const fs::path d = temp_dir("sharded");
  ASSERT_TRUE(example_writer().write_sharded(d.string(), 40).ok());
  auto ckpt = Checkpoint::open(d.string());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().message();
  EXPECT_GT(ckpt->n_files(), 1u);
  expect_example_tensors(ckpt->tensors());
  EXPECT_NE(ckpt->find("b")->file.find("-of-"), std::string::npos);
  fs::remove_all(d);
}

TEST(Safetensors, HeaderValidation) {
  std::map<std::string, std::string> meta;
  auto ok = parse_safetensors_header(
      R"({"__metadata__": {"format": "pt"}, "x": {"dtype": "F8_E8M0", "shape": [2, 3], "data_offsets": [0, 6]}})",
      6, &meta);
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(meta.at("format"), "pt");
  const int64_t kData = 64;
  const std::vector<std::tuple<std::string, int64_t, std::string>> bad = {
      {R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "y": {"dtype": "F32", "shape": [2], "data_offsets": [7, 15]}})",
       kData, "overlap"},
      {R"({"x": {"dtype": "F32", "shape": [99999999999, 99999999999], "data_offsets": [0, 8]}})", kData,
       "overflows"},
      {R"({"x": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})", kData, "non-negative integers"},
      {R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, -8]}})", kData, "non-negative integers"},
      {R"({"x": {"dtype": 3, "shape": [2], "data_offsets": [0, 8]}})", kData, "missing string field 'dtype'"},
      {R"({"x": {"dtype": "F32", "data_offsets": [0, 8]}})", kData, "missing array field 'shape'"},
      {R"({"x": 5})", kData, "expected an object"},
      {R"({"__metadata__": {"a": 1}})", kData, "__metadata__: field 'a' expected a string"},
      {R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 4,
       "out of range; data section has 4 bytes"},
  };
  for (const auto& [header, data_size, want] : bad) {
    auto r = parse_safetensors_header(header, data_size, nullptr);
    ASSERT_FALSE(r.ok()) << header;
    EXPECT_NE(r.status().message().find(want), std::string::npos) << r.status().message();
  }
}

TEST(Safetensors, FuzzedHeadersNeverCrash) {
  // Random mutations of a valid header must be either accepted or refused with a message.
  const std::string base =
      R"({"a": {"dtype": "BF16", "shape": [3, 5], "data_offsets": [0, 30]}, "b": {"dtype": "U8", "shape": [4], "data_offsets": [30, 34]}})";
  std::mt19937 rng(99);
  for (int iter = 0; iter < 5000; ++iter) {
    std::string h = base;
    const int edits = 1 + int(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % h.size();
      switch (rng() % 3) {
        case 0:
          h[pos] = char(rng() % 128);
          break;
        case 1:
          h.erase(pos, 1);
          break;
        default:
          h.insert(pos, 1, "0123456789[]{},:\"-"[rng() % 18]);
          break;
      }
    }
    auto r = parse_safetensors_header(h, 34, nullptr);
    if (!r.ok()) EXPECT_FALSE(r.status().message().empty());
  }
}

}  // namespace
}  // namespace dsv4
