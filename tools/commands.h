// The dsv4 CLI: one binary, one file per subcommand. Each register_* adds its subcommand to the
// app and sets `run` to the action; the action returns the process exit code
// (0 ok, 1 error; usage errors exit 2 through CLI11).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace dsv4::cli {

using Action = std::function<int()>;

void register_inspect(CLI::App& app, Action& run);
void register_make_model(CLI::App& app, Action& run);
void register_logits(CLI::App& app, Action& run);
void register_generate(CLI::App& app, Action& run);
void register_chat(CLI::App& app, Action& run);
void register_tokenize(CLI::App& app, Action& run);
void register_encode_chat(CLI::App& app, Action& run);
void register_parse_completion(CLI::App& app, Action& run);
void register_bench(CLI::App& app, Action& run);

// Prints "error: <message>" on stderr and returns 1.
int fail(const std::string& message);

}  // namespace dsv4::cli
