#include <fmt/format.h>

#include <filesystem>
#include "commands.h"

#include "model/synthetic.h"
#include "tokenizer/tokenizer.h"

namespace dsv4::cli {

void register_make_model(CLI::App& app, Action& run) {
  auto* cmd =
      app.add_subcommand("make-model", "Write a random-weight DeepSeek-V4 checkpoint (native layout)");
  static std::string out_dir, preset = "tiny", layout = "nvfp4";
  static uint64_t seed = 1;
  static int64_t layers = 0;
  static double shard_mb = 0;
  static std::string tokenizer_dir;
  cmd->add_option("--out", out_dir, "Output directory")->required();
  cmd->add_option("--preset", preset,
                  "Model shape: tiny (CI-sized, every layer type), micro (smallest valid), or flash / pro "
                  "(the published widths, first --layers layers (default 4), random stored bits)")
      ->check(CLI::IsMember({"tiny", "micro", "flash", "pro"}));
  cmd->add_option("--layout", layout, "nvfp4 (NVIDIA ModelOpt experts) or mxfp4 (DeepSeek native experts)")
      ->check(CLI::IsMember({"nvfp4", "mxfp4"}));
  cmd->add_option("--layers", layers, "Override the number of trunk layers")->check(CLI::PositiveNumber);
  cmd->add_option("--seed", seed, "Random seed");
  cmd->add_option("--tokenizer", tokenizer_dir,
                  "Copy this tokenizer (tokenizer.json, tokenizer_config.json) into the model and size the "
                  "vocabulary to it");
  cmd->add_option("--shard-mb", shard_mb, "Split into shards of this many MB with an index (0: one file)");
  cmd->callback([&run] {
    run = [] {
      const bool real_widths = preset == "flash" || preset == "pro";
      ModelConfig cfg = preset == "micro"   ? micro_config()
                        : preset == "flash" ? first_layers(ModelConfig::flash(), layers > 0 ? layers : 4)
                        : preset == "pro"   ? first_layers(ModelConfig::pro(), layers > 0 ? layers : 4)
                                            : tiny_config();
      if (real_widths && layers > cfg.n_layers)
        return fail(
            fmt::format("--layers {}: the {} schedule has {} layers; expected at most that", layers, preset,
                        preset == "flash" ? ModelConfig::flash().n_layers : ModelConfig::pro().n_layers));
      if (layers > 0 && !real_widths) {
        // Keep the MTP entry last; extend the trunk by repeating the CSA/HCA alternation.
        std::vector<int> ratios;
        for (int64_t i = 0; i < layers; ++i)
          ratios.push_back(i < cfg.n_layers ? cfg.compress_ratios[size_t(i)] : (i % 2 ? 4 : 128));
        ratios.push_back(0);
        cfg.n_layers = layers;
        cfg.compress_ratios = ratios;
        cfg.n_hash_layers = std::min<int64_t>(cfg.n_hash_layers, layers);
      }
      if (!tokenizer_dir.empty()) {
        Result<Tokenizer> tok = Tokenizer::load(tokenizer_dir);
        if (!tok.ok()) return fail(tok.status().message());
        cfg.vocab_size = tok->vocab_size();
        if (tok->bos_id()) cfg.bos_token_id = *tok->bos_id();
        if (tok->eos_id()) cfg.eos_token_id = *tok->eos_id();
      }
      SyntheticOptions opt;
      opt.layout = parse_checkpoint_layout(layout).value();
      opt.seed = seed;
      opt.shard_bytes = int64_t(shard_mb * 1e6);
      if (real_widths && opt.shard_bytes > 0)
        return fail("--shard-mb: the flash and pro presets write one file; expected no --shard-mb");
      const Status s = real_widths ? write_random_bits_checkpoint(cfg, opt, out_dir)
                                   : write_synthetic_checkpoint(cfg, opt, out_dir);
      if (!s.ok()) return fail(s.message());
      if (!tokenizer_dir.empty()) {
        std::error_code ec;
        for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
          if (std::filesystem::exists(std::filesystem::path(tokenizer_dir) / f))
            std::filesystem::copy_file(std::filesystem::path(tokenizer_dir) / f,
                                       std::filesystem::path(out_dir) / f,
                                       std::filesystem::copy_options::overwrite_existing, ec);
        if (ec)
          return fail(
              fmt::format("--tokenizer {}: cannot copy into {}: {}", tokenizer_dir, out_dir, ec.message()));
      }
      fmt::print("wrote {} ({} layout, {} layers, seed {})\n", out_dir, layout, cfg.n_layers, seed);
      return 0;
    };
  });
}

}  // namespace dsv4::cli
