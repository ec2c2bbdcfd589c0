// The tensor schema against generated checkpoints of both published layouts: every tensor lands
// in its slot with the right format, and the census adds up.
#include <gtest/gtest.h>

#include <unistd.h>
#include <filesystem>

#include "core/config.h"
#include "model/synthetic.h"
#include "model/weight_map.h"

namespace dsv4 {
namespace {
namespace fs = std::filesystem;

struct Generated {
  fs::path dir;
  ModelConfig cfg;
};

Generated generate(CheckpointLayout layout, int64_t shard_bytes, const std::string& tag) {
  Generated g{fs::temp_directory_path() / ("dsv4_wm_" + tag + std::to_string(::getpid())), micro_config()};
  fs::remove_all(g.dir);
  SyntheticOptions opt;
  opt.layout = layout;
  opt.shard_bytes = shard_bytes;
  g.cfg.n_mtp_layers = 1;
  g.cfg.compress_ratios.push_back(0);
  EXPECT_TRUE(write_synthetic_checkpoint(g.cfg, opt, g.dir.string()).ok());
  return g;
}

TEST(WeightMap, Nvfp4LayoutClassifiesEveryTensor) {
  const Generated g = generate(CheckpointLayout::kNvfp4, 20000, "nv");
  auto cfg = load_config(g.dir.string());
  ASSERT_TRUE(cfg.ok()) << cfg.status().message();
  auto ckpt = Checkpoint::open(g.dir.string());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().message();
  EXPECT_GT(ckpt->n_files(), 1u);
  const WeightMap m = WeightMap::build(*cfg, *ckpt);
  ASSERT_TRUE(m.status().ok()) << m.status().message();
  EXPECT_TRUE(m.has_mtp());
  EXPECT_EQ(m.linear("layers.1.ffn.experts.1.w2")->view.format, WeightFormat::kNVFP4);
  EXPECT_EQ(m.linear("mtp.0.ffn.experts.0.w1")->view.format, WeightFormat::kMXFP4);  // MTP stays MXFP4
  EXPECT_EQ(m.linear("layers.0.attn.wq_b")->view.format, WeightFormat::kFP8Block128);
  EXPECT_EQ(m.linear("layers.2.ffn.shared_experts.w2")->view.format, WeightFormat::kFP8Block128);
  EXPECT_EQ(m.linear("layers.1.attn.compressor.wkv")->view.format, WeightFormat::kBF16);
  EXPECT_EQ(m.linear("layers.1.attn.indexer.wq_b")->view.format, WeightFormat::kFP8Block128);
  EXPECT_EQ(m.linear("layers.2.ffn.gate")->view.format, WeightFormat::kBF16);
  EXPECT_NE(m.plain("layers.0.ffn.gate.tid2eid"), nullptr);
  EXPECT_EQ(m.plain("layers.0.ffn.gate.bias"), nullptr);  // hash layer: no bias
  EXPECT_NE(m.plain("layers.1.ffn.gate.bias"), nullptr);
  EXPECT_EQ(m.linear("layers.2.attn.indexer.wq_b"), nullptr);  // HCA layer: no indexer
  // Shapes: CSA compressor has two overlapping series, HCA one.
  EXPECT_EQ(m.plain("layers.1.attn.compressor.ape")->tensor->shape,
            (std::vector<int64_t>{4, 2 * g.cfg.head_dim}));
  EXPECT_EQ(m.plain("layers.2.attn.compressor.ape")->tensor->shape,
            (std::vector<int64_t>{128, g.cfg.head_dim}));
  // Every tensor of the checkpoint was consumed by exactly one slot.
  size_t consumed = m.plains().size();
  for (const auto& [_, lw] : m.linears()) {
    switch (lw.view.format) {
      case WeightFormat::kNVFP4:
        consumed += 4;
        break;  // weight, weight_scale, weight_scale_2, input_scale
      case WeightFormat::kMXFP4:
      case WeightFormat::kFP8Block128:
        consumed += 2;
        break;
      default:
        consumed += 1;
    }
  }
  EXPECT_EQ(consumed, ckpt->tensors().size());
  fs::remove_all(g.dir);
}

TEST(WeightMap, Mxfp4LayoutClassifiesEveryTensor) {
  const Generated g = generate(CheckpointLayout::kMxfp4, 0, "mx");
  auto cfg = load_config(g.dir.string());
  auto ckpt = Checkpoint::open(g.dir.string());
  ASSERT_TRUE(cfg.ok() && ckpt.ok());
  const WeightMap m = WeightMap::build(*cfg, *ckpt);
  ASSERT_TRUE(m.status().ok()) << m.status().message();
  for (const auto& [name, lw] : m.linears())
    if (lw.group == WeightGroup::kRoutedExperts) EXPECT_EQ(lw.view.format, WeightFormat::kMXFP4) << name;
  fs::remove_all(g.dir);
}

TEST(WeightMap, TheRealFlashConfigExpectsThePublishedShapes) {
  // A checkpoint without tensors: every slot is reported missing with its expected shape.
  const fs::path d = fs::temp_directory_path() / ("dsv4_wm_empty" + std::to_string(::getpid()));
  fs::create_directories(d);
  SafetensorsWriter w;
  w.add_f32("unused", {1}, {0.0f});
  ASSERT_TRUE(w.write_file((d / "model.safetensors").string()).ok());
  auto ckpt = Checkpoint::open(d.string());
  ASSERT_TRUE(ckpt.ok());
  const WeightMap m = WeightMap::build(ModelConfig::flash(), *ckpt);
  auto has = [&](const std::string& p) {
    for (const auto& s : m.problems())
      if (s == p) return true;
    return false;
  };
  EXPECT_TRUE(has("missing tensor 'layers.3.attn.wo_a.weight' (linear [8192, 4096])"));
  EXPECT_TRUE(has("missing tensor 'layers.2.attn.indexer.compressor.ape' [4, 256]"));
  EXPECT_TRUE(has("missing tensor 'layers.3.attn.compressor.ape' [128, 512]"));
  EXPECT_TRUE(has("missing tensor 'layers.0.ffn.gate.tid2eid' [129280, 6]"));
  EXPECT_TRUE(has("missing tensor 'layers.42.ffn.experts.255.w2.weight' (linear [4096, 2048])"));
  EXPECT_TRUE(has("missing tensor 'layers.0.hc_attn_fn' [24, 16384]"));
  EXPECT_TRUE(has("model.safetensors: unexpected tensor 'unused' F32 [1]"));
  fs::remove_all(d);
}

}  // namespace
}  // namespace dsv4
