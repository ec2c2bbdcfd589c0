// Byte-level BPE tokenizer loaded from a HF tokenizer.json (+ tokenizer_config.json), matching HF
// `tokenizers` id for id. What the file may contain:
//   normalizer     null or a Sequence of none (anything else is refused: no Unicode normalization
//                  tables are built in);
//   pre_tokenizer  Split (regex or string pattern, any behavior, invert), ByteLevel
//                  (add_prefix_space, use_regex), or a Sequence of them;
//   model          BPE: vocab, merges ("a b" strings or [a, b] pairs), ignore_merges, unk_token;
//   added_tokens   special or not, normalized or not, lstrip/rstrip (single_word is refused);
//   decoder        ByteLevel; post_processor null or ByteLevel (neither adds tokens).
// Added tokens are matched in the raw text before pre-tokenization, leftmost-longest, as HF does.
// Decoding maps each token's characters back to bytes (a token with a character outside the
// byte-level alphabet, e.g. "<｜User｜>", contributes its own UTF-8) and replaces invalid UTF-8 by
// U+FFFD per maximal invalid subsequence (see utf8.h), which is HF's decode.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace dsv4 {

struct EncodeOptions {
  // Adds BOS / EOS where tokenizer_config.json says so (add_bos_token / add_eos_token), as HF's
  // add_special_tokens=True.
  bool add_special_tokens = true;
  // Treats special added tokens in the text as plain text (HF's split_special_tokens): for user
  // content that must not be able to inject control tokens. Non-special added tokens still match.
  bool split_special_tokens = false;
};

// Immutable once loaded: encode/decode are const and safe to call from several threads.
class Tokenizer {
 public:
  // Loads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json.
  static Result<Tokenizer> load(const std::string& dir);
  // The same from file contents; `config_json` may be empty (no BOS/EOS information).
  // `where` names the source in error messages.
  static Result<Tokenizer> from_json(std::string_view tokenizer_json, std::string_view config_json,
                                     const std::string& where = "tokenizer.json");

  // Text (valid UTF-8) to ids; invalid UTF-8 is an error naming the byte offset.
  Result<std::vector<int32_t>> encode(std::string_view text, const EncodeOptions& options = {}) const;
  // Ids to text; an id outside the vocabulary is an error.
  Result<std::string> decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  // Raw bytes a token stands for (possibly an incomplete UTF-8 sequence).
  Result<std::string> token_bytes(int32_t id) const;
  // The token's string form in the vocabulary ("Ġhello", "<｜User｜>").
  Result<std::string> id_to_token(int32_t id) const;
  std::optional<int32_t> token_to_id(std::string_view token) const;
  bool is_special(int32_t id) const;

  // Number of ids, added tokens included (max id + 1).
  int32_t vocab_size() const;
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  bool add_bos() const;
  bool add_eos() const;

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Streaming decoder: feed ids one at a time, get back only complete UTF-8 characters. The
// concatenation of every push() and finish() is byte-identical to Tokenizer::decode of all ids.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = false)
      : tokenizer_(&tokenizer), skip_special_tokens_(skip_special_tokens) {}

  // Text completed by this id (often empty while a multi-byte character is still open).
  Result<std::string> push(int32_t id);
  // Ends the stream: a still-incomplete trailing sequence becomes U+FFFD. The decoder is then empty
  // and may be reused for a new stream.
  std::string finish();

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_tokens_;
  std::string pending_;  // bytes of a UTF-8 sequence that later tokens may complete
};

}  // namespace dsv4
