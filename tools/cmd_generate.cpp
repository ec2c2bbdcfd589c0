// `dsv4 generate`: generation from token ids (ids in, ids out; greedy unless sampling flags are
// given) or from text (--prompt, streamed as it is produced; --chat wraps it as one user turn of
// DeepSeek-V4's chat format, --thinking in thinking mode; reasoning is shown apart from the answer).
#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "chat_display.h"
#include "commands.h"
#include "model_args.h"
#include "token_args.h"

namespace dsv4::cli {

void register_generate(CLI::App& app, Action& run) {
  auto* cmd = app.add_subcommand("generate", "Generate from token ids or from a text prompt");
  static ModelArgs model_args;
  static GenerationArgs gen_args;
  static ChatModeArgs chat_args;
  static bool chat = false;
  static std::string tokens_arg, tokens_file, prompt, prompt_file;
  model_args.add(cmd);
  gen_args.add(cmd);
  chat_args.add(cmd);
  cmd->add_flag("--chat", chat, "Send the prompt as a user message in DeepSeek-V4's chat format");
  auto* tok =
      cmd->add_option("--tokens", tokens_arg, "Comma-separated prompt token ids (prints generated ids)");
  auto* tokf = cmd->add_option("--tokens-file", tokens_file, "File of prompt token ids")->excludes(tok);
  auto* pr = cmd->add_option("--prompt", prompt, "Prompt text (streams generated text)")->excludes(tok, tokf);
  cmd->add_option("--prompt-file", prompt_file, "File holding the prompt text")->excludes(tok, tokf, pr);
  cmd->callback([cmd, &run] {
    run = [cmd] {
      const bool text_mode = cmd->count("--prompt") || cmd->count("--prompt-file");
      if (!text_mode && !cmd->count("--tokens") && !cmd->count("--tokens-file"))
        return fail("generate: give --prompt, --prompt-file, --tokens or --tokens-file");
      const Status resolved = gen_args.resolve(model_args.model_dir, cmd);
      if (!resolved.ok()) return fail(resolved.message());
      if (!text_mode && !cmd->count("--temperature"))
        gen_args.options.sampling.temperature = 0;  // ids: greedy

      std::vector<int32_t> prompt_ids;
      Result<Tokenizer> tokenizer = Status::error("no tokenizer");
      if (text_mode) {
        tokenizer = model_args.load_tokenizer();
        if (!tokenizer.ok()) return fail(tokenizer.status().message());
        if (cmd->count("--prompt-file")) {
          std::ifstream in(prompt_file);
          if (!in) return fail(fmt::format("--prompt-file {}: cannot open", prompt_file));
          std::stringstream ss;
          ss << in.rdbuf();
          prompt = ss.str();
        }
        if (prompt.empty()) return fail("--prompt: empty; expected some text");
        Result<std::vector<int32_t>> ids = tokenizer->encode(prompt);
        if (!ids.ok()) return fail(ids.status().message());
        prompt_ids = std::move(*ids);
      } else {
        Result<std::vector<int32_t>> ids = read_token_args(tokens_arg, tokens_file);
        if (!ids.ok()) return fail(ids.status().message());
        prompt_ids = std::move(*ids);
      }

      Result<std::unique_ptr<Model>> model = model_args.load_model();
      if (!model.ok()) return fail(model.status().message());
      // Ids mode needs no tokenizer (EOS then comes from config.json).
      if (chat || chat_args.thinking) {
        if (!text_mode) return fail("--chat/--thinking: need --prompt or --prompt-file");
        ChatSession session(**model, *tokenizer, chat_args.mode(), chat_args.effort());
        if (!chat_args.system.empty()) session.set_system(chat_args.system);
        ChatDisplay display(::isatty(1));
        Result<ChatTurn> turn =
            session.send(prompt, gen_args.options, [&](const chat::StreamDelta& d) { display.show(d); });
        if (!turn.ok()) return fail(turn.status().message());
        display.finish(*turn);
        if (!model_args.quiet) report_speed(turn->generation);
        return 0;
      }
      Generator generator(**model, text_mode ? &*tokenizer : nullptr);
      const auto on_text = [&](std::string_view t) {
        if (text_mode) {
          fmt::print("{}", t);
          std::fflush(stdout);
        }
      };
      Result<GenerationResult> r = generator.generate(prompt_ids, gen_args.options, on_text);
      if (!r.ok()) return fail(r.status().message());
      if (text_mode) {
        fmt::print("\n");
      } else {
        fmt::print("{}\n", fmt::join(r->tokens, ","));
      }
      if (!model_args.quiet) report_speed(*r);
      return 0;
    };
  });
}

}  // namespace dsv4::cli
