// `dsv4 logits`: logits at every position of a token sequence, as one prefill of the first N
// tokens followed by one-token decode steps; written as F32 `logits` [n_tokens, vocab].
#include <fmt/format.h>

#include <cstring>

#include "commands.h"
#include "core/safetensors.h"
#include "model/model.h"
#include "model_args.h"
#include "token_args.h"

namespace dsv4::cli {

void register_logits(CLI::App& app, Action& run) {
  auto* cmd =
      app.add_subcommand("logits", "Logits at every position (prefill of N tokens, then decode steps)");
  static std::string model_dir, tokens_arg, tokens_file, device = "cpu", out_path;
  static int64_t prefill = -1;
  cmd->add_option("--model", model_dir, "Model directory (config.json + safetensors)")->required();
  auto* tok = cmd->add_option("--tokens", tokens_arg, "Comma-separated token ids, e.g. 0,17,5");
  cmd->add_option("--tokens-file", tokens_file, "File of token ids (separated by commas or whitespace)")
      ->excludes(tok);
  cmd->add_option("--prefill", prefill, "Tokens fed as the first prefill (default: all)");
  cmd->add_option("--device", device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--out", out_path, "Output .safetensors file")->required();
  cmd->callback([&run] {
    run = [] {
      Result<std::vector<int32_t>> tokens = read_token_args(tokens_arg, tokens_file);
      if (!tokens.ok()) return fail(tokens.status().message());
      const int64_t n = int64_t(tokens->size());
      const int64_t n_prefill = prefill < 0 ? n : prefill;
      if (n_prefill < 1 || n_prefill > n)
        return fail(fmt::format("--prefill {}: expected 1 <= N <= the number of tokens ({})", prefill, n));
      Result<std::unique_ptr<Backend>> backend = make_backend(device);
      if (!backend.ok()) return fail(backend.status().message());
      Result<std::unique_ptr<Model>> model = Model::load(model_dir, std::move(backend.value()));
      if (!model.ok()) return fail(model.status().message());
      const int64_t V = (*model)->config().vocab_size;
      SequenceState state = (*model)->new_state();
      std::vector<float> logits;  // [n, V]
      logits.reserve(size_t(n * V));
      for (int64_t begin = 0; begin < n;) {
        const int64_t len = begin == 0 ? n_prefill : 1;
        const SequenceChunk chunk{&state, std::span<const int32_t>(tokens->data() + begin, size_t(len))};
        Result<std::vector<float>> step = (*model)->forward(std::span<const SequenceChunk>(&chunk, 1));
        if (!step.ok()) return fail(step.status().message());
        logits.insert(logits.end(), step->begin(), step->end());
        begin += len;
      }
      SafetensorsWriter writer;
      writer.add_f32("logits", {n, V}, logits);
      const Status s = writer.write_file(out_path);
      if (!s.ok()) return fail(s.message());
      return 0;
    };
  });
}

}  // namespace dsv4::cli
