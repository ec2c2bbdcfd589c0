#include <fmt/format.h>

#include <cstdio>

#include "commands.h"

namespace dsv4::cli {

int fail(const std::string& message) {
  fmt::print(stderr, "error: {}\n", message);
  return 1;
}

}  // namespace dsv4::cli

int main(int argc, char** argv) {
  CLI::App app{"dsv4: DeepSeek-V4 inference with FP4 experts (CPU reference; Hopper GPUs)"};
  app.require_subcommand(1);
  dsv4::cli::Action run;
  dsv4::cli::register_inspect(app, run);
  dsv4::cli::register_make_model(app, run);
  dsv4::cli::register_logits(app, run);
  dsv4::cli::register_generate(app, run);
  dsv4::cli::register_chat(app, run);
  dsv4::cli::register_tokenize(app, run);
  dsv4::cli::register_encode_chat(app, run);
  dsv4::cli::register_parse_completion(app, run);
  dsv4::cli::register_bench(app, run);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  return run ? run() : 2;
}
