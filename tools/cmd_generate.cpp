// `dsv4 generate`: greedy generation from token ids (prints the new token ids), until the
// tokenizer exists.
#include <fmt/format.h>

#include <algorithm>

#include "commands.h"
#include "model/model.h"
#include "token_args.h"

namespace dsv4::cli {

void register_generate(CLI::App& app, Action& run) {
  auto* cmd = app.add_subcommand("generate", "Greedy generation from token ids (ids in, ids out)");
  static std::string model_dir, tokens_arg, tokens_file, device = "cpu";
  static int64_t max_new_tokens = 16;
  cmd->add_option("--model", model_dir, "Model directory (config.json + safetensors)")->required();
  auto* tok = cmd->add_option("--tokens", tokens_arg, "Comma-separated prompt token ids");
  cmd->add_option("--tokens-file", tokens_file, "File of prompt token ids")->excludes(tok);
  cmd->add_option("--max-new-tokens", max_new_tokens, "Tokens to generate")->check(CLI::NonNegativeNumber);
  cmd->add_option("--device", device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->callback([&run] {
    run = [] {
      if (device != "cpu") return fail("--device cuda: not yet supported (the CUDA backend has no model forward yet)");
      Result<std::vector<int32_t>> tokens = read_token_args(tokens_arg, tokens_file);
      if (!tokens.ok()) return fail(tokens.status().message());
      Result<std::unique_ptr<Model>> model = Model::load(model_dir, make_cpu_backend());
      if (!model.ok()) return fail(model.status().message());
      const int64_t V = (*model)->config().vocab_size;
      SequenceState state = (*model)->new_state();
      std::vector<int32_t> input = *tokens, generated;
      for (int64_t i = 0; i < max_new_tokens; ++i) {
        const SequenceChunk chunk{&state, input};
        Result<std::vector<float>> logits = (*model)->forward(std::span<const SequenceChunk>(&chunk, 1));
        if (!logits.ok()) return fail(logits.status().message());
        const float* last = logits->data() + (int64_t(input.size()) - 1) * V;
        const int32_t next = int32_t(std::max_element(last, last + V) - last);  // ties: lowest id
        generated.push_back(next);
        if (next == (*model)->config().eos_token_id) break;
        input = {next};
      }
      fmt::print("{}\n", fmt::join(generated, ","));
      return 0;
    };
  });
}

}  // namespace dsv4::cli
