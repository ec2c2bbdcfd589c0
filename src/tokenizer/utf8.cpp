// UTF-8 validation and lossy decoding by maximal subparts (see utf8.h).
#include "tokenizer/utf8.h"

#include <cstdint>

namespace dsv4 {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Well-formed UTF-8 (Unicode Table 3-7): the lead byte fixes the length and the allowed range of
// the second byte; later bytes are 80..BF. Returns 0 for bytes that cannot start a sequence.
int sequence_length(uint8_t b, uint8_t& lo, uint8_t& hi) {
  lo = 0x80;
  hi = 0xBF;
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return 2;
  if (b >= 0xE0 && b <= 0xEF) {
    if (b == 0xE0) lo = 0xA0;  // no overlong forms
    if (b == 0xED) hi = 0x9F;  // no surrogates
    return 3;
  }
  if (b >= 0xF0 && b <= 0xF4) {
    if (b == 0xF0) lo = 0x90;  // no overlong forms
    if (b == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
    return 4;
  }
  return 0;
}

enum class Step { kChar, kInvalid, kIncomplete };

// Classifies the sequence starting at in[i]; `len` receives the bytes it covers (for kInvalid, the
// maximal subpart that gets one U+FFFD).
Step next_sequence(std::string_view in, size_t i, size_t& len) {
  uint8_t lo, hi;
  const int n = sequence_length(uint8_t(in[i]), lo, hi);
  if (n == 0) {
    len = 1;
    return Step::kInvalid;
  }
  for (int k = 1; k < n; ++k) {
    if (i + size_t(k) >= in.size()) {
      len = size_t(k);
      return Step::kIncomplete;
    }
    const uint8_t c = uint8_t(in[i + size_t(k)]);
    const uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (c < l || c > h) {
      len = size_t(k);
      return Step::kInvalid;
    }
  }
  len = size_t(n);
  return Step::kChar;
}

}  // namespace

size_t find_invalid_utf8(std::string_view s) {
  size_t i = 0, len = 0;
  while (i < s.size()) {
    if (next_sequence(s, i, len) != Step::kChar) return i;
    i += len;
  }
  return s.size();
}

size_t append_utf8_lossy(std::string_view in, bool final, std::string& out) {
  size_t i = 0, len = 0;
  while (i < in.size()) {
    switch (next_sequence(in, i, len)) {
      case Step::kChar:
        out.append(in.substr(i, len));
        break;
      case Step::kInvalid:
        out.append(kReplacement);
        break;
      case Step::kIncomplete:
        if (!final) return i;
        out.append(kReplacement);
        break;
    }
    i += len;
  }
  return i;
}

}  // namespace dsv4
