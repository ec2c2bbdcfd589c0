// `dsv4 chat`: an interactive multi-turn chat in DeepSeek-V4's format. The sequence state is
// kept between turns (only each new turn is prefilled); reasoning is shown apart from the answer.
// Lines starting with '/' are commands: /reset starts over, /exit (or end of input) quits.
#include <fmt/format.h>
#include <unistd.h>

#include <iostream>

#include "chat_display.h"
#include "commands.h"
#include "model_args.h"

namespace dsv4::cli {

void register_chat(CLI::App& app, Action& run) {
  auto* cmd = app.add_subcommand("chat", "Interactive multi-turn chat (keeps the model state between turns)");
  static ModelArgs model_args;
  static GenerationArgs gen_args;
  static ChatModeArgs chat_args;
  model_args.add(cmd);
  gen_args.add(cmd);
  chat_args.add(cmd);
  cmd->callback([cmd, &run] {
    run = [cmd] {
      const Status resolved = gen_args.resolve(model_args.model_dir, cmd);
      if (!resolved.ok()) return fail(resolved.message());
      Result<Tokenizer> tokenizer = model_args.load_tokenizer();
      if (!tokenizer.ok()) return fail(tokenizer.status().message());
      Result<std::unique_ptr<Model>> model = model_args.load_model();
      if (!model.ok()) return fail(model.status().message());
      ChatSession session(**model, *tokenizer, chat_args.mode(), chat_args.effort());
      if (!chat_args.system.empty()) session.set_system(chat_args.system);
      const bool terminal = ::isatty(0) && ::isatty(1);
      ChatDisplay display(::isatty(1));
      if (terminal) fmt::print(stderr, "dsv4 chat: type a message; /reset starts over, /exit quits.\n");
      std::string line;
      while (true) {
        if (terminal) fmt::print("> ");
        std::fflush(stdout);
        if (!std::getline(std::cin, line) || line == "/exit") break;
        if (line.empty()) continue;
        if (line == "/reset") {
          session.reset();
          fmt::print(stderr, "(conversation reset)\n");
          continue;
        }
        Result<ChatTurn> turn =
            session.send(line, gen_args.options, [&](const chat::StreamDelta& d) { display.show(d); });
        if (!turn.ok()) {
          fmt::print(stderr, "error: {}\n", turn.status().message());
          continue;  // a bad turn does not end the chat
        }
        display.finish(*turn);
        if (!model_args.quiet) {
          report_speed(turn->generation);
          if (turn->reprefilled)
            fmt::print(stderr, "(history re-prefilled: the new prompt did not extend the last)\n");
        }
      }
      return 0;
    };
  });
}

}  // namespace dsv4::cli
