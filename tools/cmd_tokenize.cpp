// `dsv4 tokenize`: text to ids or ids to text with a HF tokenizer directory, for checking prompts
// and model output by hand.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <charconv>
#include <iostream>
#include <iterator>

#include "commands.h"
#include "tokenizer/tokenizer.h"

namespace dsv4::cli {
namespace {

// "1,2, 3" or "1 2 3" -> ids; anything else is a usage error.
bool parse_ids(const std::string& s, std::vector<int32_t>& ids, std::string& error) {
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == ',' || s[i] == ' ') {
      ++i;
      continue;
    }
    int32_t id = 0;
    const auto [end, ec] = std::from_chars(s.data() + i, s.data() + s.size(), id);
    if (ec != std::errc() || (end != s.data() + s.size() && *end != ',' && *end != ' ')) {
      error = fmt::format("--ids: expected comma-separated integers, got '{}'", s);
      return false;
    }
    ids.push_back(id);
    i = size_t(end - s.data());
  }
  return true;
}

}  // namespace

void register_tokenize(CLI::App& app, Action& run) {
  auto* cmd = app.add_subcommand("tokenize", "Encode text to token ids or decode ids to text");
  static std::string dir, text, ids_arg;
  static bool show_tokens = false, split_special = false, skip_special = false, no_special = false;
  cmd->add_option("--tokenizer", dir, "Directory with tokenizer.json (and tokenizer_config.json)")
      ->required();
  auto* text_opt = cmd->add_option("--text", text, "Text to encode ('-' reads stdin)");
  auto* ids_opt = cmd->add_option("--ids", ids_arg, "Comma-separated ids to decode");
  text_opt->excludes(ids_opt);
  cmd->add_flag("--show-tokens", show_tokens, "With --text: print one 'id<TAB>token' line per token");
  cmd->add_flag("--split-special", split_special,
                "With --text: treat special tokens in the text as plain text");
  cmd->add_flag("--no-special", no_special,
                "With --text: do not add BOS/EOS even if tokenizer_config.json says so");
  cmd->add_flag("--skip-special", skip_special, "With --ids: leave special tokens out of the text");
  cmd->callback([&run, text_opt, ids_opt] {
    run = [text_opt, ids_opt]() -> int {
      if (text_opt->count() == 0 && ids_opt->count() == 0) {
        fmt::print(stderr, "error: tokenize: expected --text or --ids\n");
        return 2;
      }
      std::vector<int32_t> ids;
      std::string error;
      if (ids_opt->count() > 0 && !parse_ids(ids_arg, ids, error)) {
        fmt::print(stderr, "error: {}\n", error);
        return 2;
      }
      auto tokenizer = Tokenizer::load(dir);
      if (!tokenizer.ok()) return fail(tokenizer.status().message());
      if (ids_opt->count() > 0) {
        auto decoded = tokenizer->decode(ids, skip_special);
        if (!decoded.ok()) return fail(decoded.status().message());
        fmt::print("{}\n", *decoded);
        return 0;
      }
      if (text == "-")
        text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
      auto encoded =
          tokenizer->encode(text, {.add_special_tokens = !no_special, .split_special_tokens = split_special});
      if (!encoded.ok()) return fail(encoded.status().message());
      if (show_tokens) {
        for (const int32_t id : *encoded) fmt::print("{}\t{}\n", id, tokenizer->id_to_token(id).value());
      } else {
        fmt::print("{}\n", fmt::join(*encoded, ","));
      }
      return 0;
    };
  });
}

}  // namespace dsv4::cli
