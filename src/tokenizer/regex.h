// Unicode regex for the pre-tokenizer's splits, on PCRE2 (the patterns need \p{..} classes and
// look-ahead, which std::regex and RE2 lack). HF tokenizers runs these patterns on Oniguruma;
// translate_onig_pattern() rewrites the one construct whose meaning differs in PCRE2 (see there).
// Built without PCRE2, compile() returns an error and nothing else changes.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace dsv4 {

// Oniguruma → PCRE2: Oniguruma's Unicode \s also matches U+0085 (NEL), PCRE2's (UCP) does not, so
// \s becomes [\s\x{85}] and \S becomes [^\s\x{85}] (inside a class, \s gains \x{85}). Everything
// else in HF's patterns (\p{L}, (?!..), {1,3}, literal non-ASCII) means the same in both.
std::string translate_onig_pattern(std::string_view pattern);

class Regex {
 public:
  // Compiles an Oniguruma-syntax pattern (translated) as UTF-8 with Unicode properties.
  static Result<Regex> compile(std::string_view pattern);

  // All non-overlapping, non-empty matches in `text` (valid UTF-8) as [begin, end) byte offsets,
  // left to right. Empty matches are skipped: HF drops the empty pieces they would create.
  Status find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& matches) const;

 private:
  struct Code;
  std::shared_ptr<const Code> code_;
};

}  // namespace dsv4
