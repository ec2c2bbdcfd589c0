// UTF-8 helpers for the tokenizer: validation of input text and the one rule for invalid bytes on
// output. The rule is Unicode's "maximal subpart" substitution (what Rust's
// String::from_utf8_lossy in HF tokenizers and Python's errors="replace" do): each maximal prefix of
// a well-formed sequence that cannot be completed becomes one U+FFFD, and decoding resumes at the
// byte that broke it.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace dsv4 {

// Byte offset of the first invalid UTF-8 sequence in `s`, or s.size() if `s` is valid.
size_t find_invalid_utf8(std::string_view s);

// Appends the text of `in` to `out`, invalid subsequences replaced by U+FFFD. With final=false a
// trailing sequence that is valid so far but incomplete is left unconsumed (it may be completed by
// later bytes); with final=true it becomes U+FFFD. Returns the number of bytes consumed. Because the
// rule only looks ahead within one sequence, decoding a byte stream in pieces (final=false, carrying
// the unconsumed tail) gives byte-identical output to decoding it at once.
size_t append_utf8_lossy(std::string_view in, bool final, std::string& out);

// Length in bytes of the UTF-8 character starting with lead byte `b` (1 for invalid lead bytes).
inline size_t utf8_char_len(unsigned char b) {
  return b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 1;
}

}  // namespace dsv4
