// Byte-level BPE tokenizer from HF tokenizer.json: loading and validation, added-token matching,
// pre-tokenization, BPE merges, decoding (see tokenizer.h for what is supported).
#include "tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <fstream>
#include <queue>
#include <sstream>
#include <unordered_map>

#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace dsv4 {

using json = nlohmann::json;

namespace {

// Ids above this are refused: the decode tables are dense, and no real vocabulary comes close.
constexpr int64_t kMaxVocab = int64_t(1) << 24;

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

void append_utf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

// Decodes the (valid) UTF-8 character at s[i]; advances i.
uint32_t next_codepoint(std::string_view s, size_t& i) {
  const auto b = uint8_t(s[i]);
  const size_t n = utf8_char_len(b);
  uint32_t cp = n == 1 ? b : n == 2 ? (b & 0x1F) : n == 3 ? (b & 0x0F) : (b & 0x07);
  for (size_t k = 1; k < n && i + k < s.size(); ++k) cp = (cp << 6) | (uint8_t(s[i + k]) & 0x3F);
  i += n;
  return cp;
}

// Rust's char::is_whitespace (Unicode White_Space), used by lstrip/rstrip of added tokens.
bool is_unicode_whitespace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// GPT-2's byte-to-character table: printable bytes map to themselves, the rest to U+0100.. so that
// every byte is a visible character.
struct ByteLevelTable {
  std::array<std::string, 256> byte_to_char;  // UTF-8 of the character for each byte
  std::array<int16_t, 512> char_to_byte;      // code point -> byte, -1 where none

  ByteLevelTable() {
    char_to_byte.fill(-1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const uint32_t cp = printable ? uint32_t(b) : uint32_t(256 + n++);
      append_utf8(cp, byte_to_char[size_t(b)]);
      char_to_byte[cp] = int16_t(b);
    }
  }
};
const ByteLevelTable& byte_level_table() {
  static const ByteLevelTable table;
  return table;
}

// The GPT-2 pattern ByteLevel uses when use_regex is true.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct PreTokenizerStep {
  enum class Kind { kSplit, kByteLevel } kind = Kind::kSplit;
  std::optional<Regex> regex;  // Split with a Regex pattern; ByteLevel with use_regex
  std::string literal;         // Split with a String pattern
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  bool add_prefix_space = false;  // ByteLevel
};

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
};

// Byte trie over added-token contents for leftmost-longest matching.
class TokenTrie {
 public:
  void insert(std::string_view s, int32_t token_index) {
    int32_t node = 0;
    for (const char c : s) {
      int32_t next = child(node, uint8_t(c));
      if (next < 0) {
        next = int32_t(nodes_.size());
        nodes_[size_t(node)].children.emplace_back(uint8_t(c), next);
        nodes_.emplace_back();
      }
      node = next;
    }
    nodes_[size_t(node)].token = token_index;
  }
  bool empty() const { return nodes_.size() == 1; }
  // Longest token starting at text[i]: its index and end, or -1.
  int32_t longest_at(std::string_view text, size_t i, size_t& end) const {
    int32_t node = 0, best = -1;
    for (size_t k = i; k < text.size(); ++k) {
      node = child(node, uint8_t(text[k]));
      if (node < 0) break;
      if (nodes_[size_t(node)].token >= 0) {
        best = nodes_[size_t(node)].token;
        end = k + 1;
      }
    }
    return best;
  }

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;
    int32_t token = -1;
  };
  int32_t child(int32_t node, uint8_t c) const {
    for (const auto& [b, n] : nodes_[size_t(node)].children)
      if (b == c) return n;
    return -1;
  }
  std::vector<Node> nodes_ = std::vector<Node>(1);
};

// A stretch of input: an added token's id, or text still to tokenize.
struct Segment {
  int32_t added_id = -1;
  std::string_view text;
};

std::string json_type(const json& j) {
  return j.type_name();
}

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::errorf("{}: cannot open file", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status::errorf("{}: read failed", path);
  return ss.str();
}

}  // namespace

struct Tokenizer::Impl {
  StringMap vocab;                                                   // model vocabulary: token string -> id
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (left, right) -> (rank, merged id)
  bool ignore_merges = false;
  bool fuse_unk = false;
  std::optional<int32_t> unk_id;

  std::vector<AddedToken> added;
  StringMap added_by_content;
  TokenTrie raw_trie;         // added tokens matched on the raw text (normalized: false)
  TokenTrie normalized_trie;  // added tokens matched after normalization (normalized: true)

  std::vector<PreTokenizerStep> pre_tokenizer;

  // Dense tables over all ids (model vocabulary and added tokens).
  std::vector<std::string> token_of_id;
  std::vector<std::string> bytes_of_id;
  std::vector<uint8_t> assigned;
  std::vector<uint8_t> special;

  std::optional<int32_t> bos, eos;
  bool add_bos = false, add_eos = false;

  void split_added(std::string_view text, const TokenTrie& trie, bool split_special,
                   std::vector<Segment>& out) const;
  Status pre_tokenize(std::string_view text, std::vector<std::string>& pieces) const;
  void bpe(std::string_view piece, std::vector<int32_t>& ids) const;
  std::optional<int32_t> lookup(std::string_view token) const;  // added tokens first, then the vocabulary
};

namespace {

Status parse_normalizer(const json& j) {
  if (j.is_null()) return Status();
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    return Status::errorf("normalizer: expected an object with a 'type', got {}", json_type(j));
  const std::string type = j["type"];
  if (type == "Sequence") {
    if (!j.contains("normalizers") || !j["normalizers"].is_array())
      return Status::error("normalizer Sequence: expected a 'normalizers' array");
    for (const auto& n : j["normalizers"]) DSV4_RETURN_IF_ERROR(parse_normalizer(n));
    return Status();
  }
  return Status::errorf("normalizer '{}' not supported; expected none (null or an empty Sequence)", type);
}

Result<SplitBehavior> parse_behavior(const json& j) {
  const std::string b = j.is_string() ? j.get<std::string>() : std::string("<") + json_type(j) + ">";
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  return Status::errorf(
      "pre_tokenizer Split: behavior '{}' unknown; expected Removed, Isolated, MergedWithPrevious, "
      "MergedWithNext or Contiguous",
      b);
}

Status parse_pre_tokenizer(const json& j, std::vector<PreTokenizerStep>& steps) {
  if (j.is_null()) return Status();
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    return Status::errorf("pre_tokenizer: expected an object with a 'type', got {}", json_type(j));
  const std::string type = j["type"];
  if (type == "Sequence") {
    if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array())
      return Status::error("pre_tokenizer Sequence: expected a 'pretokenizers' array");
    for (const auto& p : j["pretokenizers"]) DSV4_RETURN_IF_ERROR(parse_pre_tokenizer(p, steps));
    return Status();
  }
  PreTokenizerStep step;
  if (type == "Split") {
    const json& pattern = j.value("pattern", json());
    if (pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string()) {
      DSV4_ASSIGN_OR_RETURN(Regex re, Regex::compile(pattern["Regex"].get<std::string>()));
      step.regex = std::move(re);
    } else if (pattern.is_object() && pattern.contains("String") && pattern["String"].is_string()) {
      step.literal = pattern["String"].get<std::string>();
      if (step.literal.empty()) return Status::error("pre_tokenizer Split: empty String pattern");
    } else {
      return Status::errorf(
          "pre_tokenizer Split: pattern expected {{\"Regex\": ..}} or {{\"String\": ..}}, got {}",
          pattern.dump());
    }
    DSV4_ASSIGN_OR_RETURN(step.behavior, parse_behavior(j.value("behavior", json())));
    step.invert = j.value("invert", false);
  } else if (type == "ByteLevel") {
    step.kind = PreTokenizerStep::Kind::kByteLevel;
    step.add_prefix_space = j.value("add_prefix_space", true);
    if (j.value("use_regex", true)) {
      DSV4_ASSIGN_OR_RETURN(Regex re, Regex::compile(kGpt2Pattern));
      step.regex = std::move(re);
    }
  } else {
    return Status::errorf("pre_tokenizer '{}' not supported; expected Split, ByteLevel or a Sequence of them",
                          type);
  }
  steps.push_back(std::move(step));
  return Status();
}

// Reads "bos_token"-style entries: a string, {"content": ...}, or null.
Result<std::optional<std::string>> config_token(const json& config, const char* key) {
  if (!config.contains(key) || config[key].is_null()) return std::optional<std::string>();
  const json& t = config[key];
  if (t.is_string()) return std::optional<std::string>(t.get<std::string>());
  if (t.is_object() && t.contains("content") && t["content"].is_string())
    return std::optional<std::string>(t["content"].get<std::string>());
  return Status::errorf("tokenizer_config.json: '{}' expected a string or {{\"content\": ..}}, got {}", key,
                        t.dump());
}

// The ids that split [0, n) into matched and unmatched pieces (HF's find_matches), then combined
// by the Split behavior (HF's NormalizedString::split). Returns [begin, end) ranges.
void apply_split_behavior(size_t n, const std::vector<std::pair<size_t, size_t>>& found,
                          SplitBehavior behavior, bool invert, std::vector<std::pair<size_t, size_t>>& out) {
  struct Part {
    size_t begin, end;
    bool is_match;
  };
  std::vector<Part> parts;
  size_t prev = 0;
  for (const auto& [b, e] : found) {
    if (prev != b) parts.push_back({prev, b, invert});
    parts.push_back({b, e, !invert});
    prev = e;
  }
  if (prev != n) parts.push_back({prev, n, invert});

  std::vector<Part> merged;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const auto& p : parts)
        if (!p.is_match) merged.push_back(p);
      break;
    case SplitBehavior::kIsolated:
      merged = parts;
      break;
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const auto& p : parts) {
        if (p.is_match && !previous_match && !merged.empty()) {
          merged.back().end = p.end;
        } else {
          merged.push_back(p);
        }
        previous_match = p.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        if (it->is_match && !previous_match && !merged.empty()) {
          merged.back().begin = it->begin;
        } else {
          merged.push_back(*it);
        }
        previous_match = it->is_match;
      }
      std::reverse(merged.begin(), merged.end());
      break;
    }
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (const auto& p : parts) {
        if (p.is_match == previous_match && !merged.empty()) {
          merged.back().end = p.end;
        } else {
          merged.push_back(p);
        }
        previous_match = p.is_match;
      }
      break;
    }
  }
  out.clear();
  for (const auto& p : merged)
    if (p.end > p.begin) out.emplace_back(p.begin, p.end);
}

}  // namespace

void Tokenizer::Impl::split_added(std::string_view text, const TokenTrie& trie, bool split_special,
                                  std::vector<Segment>& out) const {
  if (trie.empty()) {
    out.push_back({-1, text});
    return;
  }
  size_t start_offset = 0, i = 0;
  while (i < text.size()) {
    size_t end = 0;
    const int32_t t = trie.longest_at(text, i, end);
    if (t < 0) {
      ++i;
      continue;
    }
    const AddedToken& tok = added[size_t(t)];
    if (split_special && tok.special) {
      i = end;  // HF skips the match and keeps searching after it
      continue;
    }
    size_t begin = i;
    if (tok.lstrip) {
      // Absorb whitespace to the left, but not into what an earlier match already took.
      size_t k = begin;
      while (k > start_offset) {
        size_t c = k - 1;
        while (c > start_offset && (uint8_t(text[c]) & 0xC0) == 0x80) --c;
        size_t p = c;
        if (!is_unicode_whitespace(next_codepoint(text, p))) break;
        k = c;
      }
      begin = k;
    }
    if (tok.rstrip) {
      while (end < text.size()) {
        size_t p = end;
        if (!is_unicode_whitespace(next_codepoint(text, p))) break;
        end = p;
      }
    }
    if (begin > start_offset) out.push_back({-1, text.substr(start_offset, begin - start_offset)});
    out.push_back({tok.id, text.substr(begin, end - begin)});
    start_offset = i = end;
  }
  if (start_offset < text.size()) out.push_back({-1, text.substr(start_offset)});
}

Status Tokenizer::Impl::pre_tokenize(std::string_view text, std::vector<std::string>& pieces) const {
  pieces.assign(1, std::string(text));
  std::vector<std::string> next;
  std::vector<std::pair<size_t, size_t>> found, ranges;
  const ByteLevelTable& table = byte_level_table();
  for (const PreTokenizerStep& step : pre_tokenizer) {
    next.clear();
    for (std::string& piece : pieces) {
      if (step.kind == PreTokenizerStep::Kind::kByteLevel && step.add_prefix_space &&
          (piece.empty() || piece[0] != ' '))
        piece.insert(piece.begin(), ' ');
      if (step.regex) {
        DSV4_RETURN_IF_ERROR(step.regex->find_all(piece, found));
      } else if (!step.literal.empty()) {
        found.clear();
        for (size_t p = piece.find(step.literal); p != std::string::npos; p = piece.find(step.literal, p)) {
          found.emplace_back(p, p + step.literal.size());
          p += step.literal.size();
        }
      } else {
        // ByteLevel without use_regex keeps the piece whole.
        found.assign(1, {0, piece.size()});
      }
      const SplitBehavior behavior =
          step.kind == PreTokenizerStep::Kind::kByteLevel ? SplitBehavior::kIsolated : step.behavior;
      apply_split_behavior(piece.size(), found, behavior, step.invert, ranges);
      for (const auto& [b, e] : ranges) {
        if (step.kind == PreTokenizerStep::Kind::kByteLevel) {
          std::string mapped;
          mapped.reserve((e - b) * 2);
          for (size_t k = b; k < e; ++k) mapped += table.byte_to_char[uint8_t(piece[k])];
          next.push_back(std::move(mapped));
        } else {
          next.emplace_back(piece.substr(b, e - b));
        }
      }
    }
    pieces.swap(next);
  }
  return Status();
}

// BPE on one pre-tokenized piece: start from its characters, repeatedly merge the adjacent pair
// with the lowest merge rank (leftmost on ties), as HF's Word::merge_all does with its heap.
void Tokenizer::Impl::bpe(std::string_view piece, std::vector<int32_t>& ids) const {
  if (ignore_merges) {
    if (auto it = vocab.find(piece); it != vocab.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  struct Symbol {
    int32_t id;
    int32_t prev, next;  // neighbours in the live list, -1 at the ends
    bool alive;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(piece.size());
  bool last_was_unk = false;
  for (size_t i = 0; i < piece.size();) {
    const size_t n = std::min(utf8_char_len(uint8_t(piece[i])), piece.size() - i);
    const auto it = vocab.find(piece.substr(i, n));
    i += n;
    if (it != vocab.end()) {
      symbols.push_back({it->second, 0, 0, true});
      last_was_unk = false;
    } else if (unk_id && !(fuse_unk && last_was_unk)) {
      symbols.push_back({*unk_id, 0, 0, true});
      last_was_unk = true;
    }
    // Without an unk token, HF drops characters missing from the vocabulary; byte-level
    // vocabularies contain all 256 byte characters, so this never happens for them.
  }
  const int32_t n = int32_t(symbols.size());
  for (int32_t k = 0; k < n; ++k) {
    symbols[size_t(k)].prev = k - 1;
    symbols[size_t(k)].next = k + 1 < n ? k + 1 : -1;
  }

  struct Candidate {
    int32_t rank, left, right, left_id, right_id, merged_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto push_pair = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const int32_t a = symbols[size_t(left)].id, b = symbols[size_t(right)].id;
    const auto it = merges.find((uint64_t(uint32_t(a)) << 32) | uint32_t(b));
    if (it != merges.end()) heap.push({it->second.first, left, right, a, b, it->second.second});
  };
  for (int32_t k = 0; k + 1 < n; ++k) push_pair(k, k + 1);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Symbol& l = symbols[size_t(c.left)];
    Symbol& r = symbols[size_t(c.right)];
    // Stale entries: a neighbour was merged away since this pair was queued.
    if (!l.alive || !r.alive || l.next != c.right || l.id != c.left_id || r.id != c.right_id) continue;
    l.id = c.merged_id;
    r.alive = false;
    l.next = r.next;
    if (r.next >= 0) symbols[size_t(r.next)].prev = c.left;
    push_pair(l.prev, c.left);
    push_pair(c.left, l.next);
  }
  for (int32_t k = n > 0 ? 0 : -1; k >= 0; k = symbols[size_t(k)].next) ids.push_back(symbols[size_t(k)].id);
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Result<Tokenizer> Tokenizer::load(const std::string& dir) {
  const std::string path = dir + "/tokenizer.json";
  DSV4_ASSIGN_OR_RETURN(std::string text, read_file(path));
  std::string config;
  const std::string config_path = dir + "/tokenizer_config.json";
  if (std::ifstream(config_path).good()) {
    DSV4_ASSIGN_OR_RETURN(config, read_file(config_path));
  }
  return from_json(text, config, path);
}

Result<Tokenizer> Tokenizer::from_json(std::string_view tokenizer_json, std::string_view config_json,
                                       const std::string& where) {
  auto impl = std::make_unique<Impl>();
  Impl& t = *impl;
  json j = json::parse(tokenizer_json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::errorf("{}: malformed JSON", where);
  if (!j.is_object()) return Status::errorf("{}: expected a JSON object, got {}", where, json_type(j));

  // Model: BPE only.
  if (!j.contains("model") || !j["model"].is_object()) return Status::errorf("{}: no 'model' object", where);
  const json& model = j["model"];
  const std::string model_type = model.value("type", std::string("BPE"));
  if (model_type != "BPE")
    return Status::errorf("{}: model type '{}' not supported; expected BPE", where, model_type);
  if (model.value("byte_fallback", false))
    return Status::errorf("{}: BPE byte_fallback not supported; expected false", where);
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (model.contains(key) && !model[key].is_null() && model[key] != "")
      return Status::errorf("{}: BPE {} not supported; expected null, got {}", where, key, model[key].dump());
  if (model.contains("dropout") && model["dropout"].is_number() && model["dropout"].get<double>() > 0)
    return Status::errorf("{}: BPE dropout not supported (encoding must be deterministic); expected null",
                          where);
  t.ignore_merges = model.value("ignore_merges", false);
  t.fuse_unk = model.value("fuse_unk", false);

  if (!model.contains("vocab") || !model["vocab"].is_object())
    return Status::errorf("{}: model.vocab expected an object", where);
  int64_t n_ids = 0;
  for (const auto& [token, id] : model["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= kMaxVocab)
      return Status::errorf("{}: model.vocab['{}']: expected an id in [0, {}), got {}", where, token,
                            kMaxVocab, id.dump());
    t.vocab.emplace(token, id.get<int32_t>());
    n_ids = std::max(n_ids, id.get<int64_t>() + 1);
  }

  // Added tokens.
  if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
    if (!j["added_tokens"].is_array()) return Status::errorf("{}: added_tokens expected an array", where);
    for (const auto& a : j["added_tokens"]) {
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") ||
          !a["content"].is_string())
        return Status::errorf(
            "{}: added_tokens entry expected {{\"id\": int, \"content\": string, ..}}, got {}", where,
            a.dump());
      const int64_t id = a["id"].get<int64_t>();
      AddedToken tok{a["content"].get<std::string>(), int32_t(id), a.value("special", false),
                     a.value("lstrip", false), a.value("rstrip", false)};
      if (id < 0 || id >= kMaxVocab)
        return Status::errorf("{}: added token '{}': expected an id in [0, {}), got {}", where, tok.content,
                              kMaxVocab, id);
      if (tok.content.empty()) return Status::errorf("{}: added token {} has empty content", where, id);
      if (a.value("single_word", false))
        return Status::errorf("{}: added token '{}': single_word not supported; expected false", where,
                              tok.content);
      if (find_invalid_utf8(tok.content) != tok.content.size())
        return Status::errorf("{}: added token {} is not valid UTF-8", where, id);
      n_ids = std::max(n_ids, id + 1);
      const int32_t index = int32_t(t.added.size());
      (a.value("normalized", !tok.special) ? t.normalized_trie : t.raw_trie).insert(tok.content, index);
      t.added_by_content[tok.content] = tok.id;
      t.added.push_back(std::move(tok));
    }
  }

  // Dense id tables. Added tokens take precedence over the model vocabulary for the same id.
  t.token_of_id.assign(size_t(n_ids), std::string());
  t.assigned.assign(size_t(n_ids), 0);
  t.special.assign(size_t(n_ids), 0);
  for (const auto& [token, id] : t.vocab) {
    if (t.assigned[size_t(id)] && t.token_of_id[size_t(id)] != token)
      return Status::errorf("{}: model.vocab: id {} given to both '{}' and '{}'", where, id,
                            t.token_of_id[size_t(id)], token);
    t.token_of_id[size_t(id)] = token;
    t.assigned[size_t(id)] = 1;
  }
  for (const AddedToken& a : t.added) {
    t.token_of_id[size_t(a.id)] = a.content;
    t.assigned[size_t(a.id)] = 1;
    t.special[size_t(a.id)] = a.special;
  }

  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    const std::string unk = model["unk_token"];
    const auto it = t.vocab.find(unk);
    if (it == t.vocab.end())
      return Status::errorf("{}: BPE unk_token '{}' is not in the vocabulary", where, unk);
    t.unk_id = it->second;
  }

  // Merges: rank = position in the list.
  if (!model.contains("merges") || !model["merges"].is_array())
    return Status::errorf("{}: model.merges expected an array", where);
  const json& merges = model["merges"];
  t.merges.reserve(merges.size());
  std::string merged;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const json& m = merges[rank];
    std::string a, b;
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
        return Status::errorf("{}: merge {}: expected \"left right\", got '{}'", where, rank, s);
      a = s.substr(0, space);
      b = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      return Status::errorf("{}: merge {}: expected \"left right\" or [left, right], got {}", where, rank,
                            m.dump());
    }
    merged = a + b;
    const auto ia = t.vocab.find(a), ib = t.vocab.find(b), im = t.vocab.find(merged);
    if (ia == t.vocab.end() || ib == t.vocab.end() || im == t.vocab.end())
      return Status::errorf("{}: merge {} ('{}' + '{}'): token '{}' is not in the vocabulary", where, rank, a,
                            b,
                            ia == t.vocab.end()   ? a
                            : ib == t.vocab.end() ? b
                                                  : merged);
    // The first (lowest-rank) occurrence of a pair wins, as in HF.
    t.merges.emplace((uint64_t(uint32_t(ia->second)) << 32) | uint32_t(ib->second),
                     std::make_pair(int32_t(rank), im->second));
  }

  // Pipeline.
  DSV4_RETURN_IF_ERROR(parse_normalizer(j.value("normalizer", json())).with_context(where));
  DSV4_RETURN_IF_ERROR(
      parse_pre_tokenizer(j.value("pre_tokenizer", json()), t.pre_tokenizer).with_context(where));
  const json decoder = j.value("decoder", json());
  if (!decoder.is_object() || decoder.value("type", std::string()) != "ByteLevel")
    return Status::errorf("{}: decoder {} not supported; expected {{\"type\": \"ByteLevel\"}}", where,
                          decoder.dump());
  const json post = j.value("post_processor", json());
  if (!post.is_null() && (!post.is_object() || post.value("type", std::string()) != "ByteLevel"))
    return Status::errorf("{}: post_processor {} not supported; expected null or ByteLevel", where,
                          post.value("type", post.dump()));

  // Decode table: the ByteLevel decoder turns a token's characters back into bytes; a token with a
  // character outside the byte alphabet (added tokens like "<｜User｜>") stands for its own UTF-8.
  const ByteLevelTable& table = byte_level_table();
  t.bytes_of_id.assign(size_t(n_ids), std::string());
  for (size_t id = 0; id < size_t(n_ids); ++id) {
    const std::string& s = t.token_of_id[id];
    std::string bytes;
    bool all_mapped = true;
    for (size_t i = 0; i < s.size() && all_mapped;) {
      const uint32_t cp = next_codepoint(s, i);
      if (cp < table.char_to_byte.size() && table.char_to_byte[cp] >= 0) {
        bytes += char(table.char_to_byte[cp]);
      } else {
        all_mapped = false;
      }
    }
    t.bytes_of_id[id] = all_mapped ? std::move(bytes) : s;
  }

  // tokenizer_config.json: BOS/EOS and whether encode adds them.
  if (!config_json.empty()) {
    json c = json::parse(config_json, nullptr, false);
    if (c.is_discarded() || !c.is_object()) return Status::error("tokenizer_config.json: malformed JSON");
    for (auto [key, slot] : {std::pair{"bos_token", &t.bos}, std::pair{"eos_token", &t.eos}}) {
      DSV4_ASSIGN_OR_RETURN(std::optional<std::string> content, config_token(c, key));
      if (!content) continue;
      *slot = t.lookup(*content);
      if (!*slot)
        return Status::errorf("tokenizer_config.json: {} '{}' is not in the vocabulary", key, *content);
    }
    auto flag = [&](const char* key) -> Result<bool> {
      if (!c.contains(key) || c[key].is_null()) return false;
      if (!c[key].is_boolean())
        return Status::errorf("tokenizer_config.json: '{}' expected a boolean, got {}", key, c[key].dump());
      return c[key].get<bool>();
    };
    DSV4_ASSIGN_OR_RETURN(t.add_bos, flag("add_bos_token"));
    DSV4_ASSIGN_OR_RETURN(t.add_eos, flag("add_eos_token"));
    if (t.add_bos && !t.bos)
      return Status::error("tokenizer_config.json: add_bos_token is true; expected a bos_token, got none");
    if (t.add_eos && !t.eos)
      return Status::error("tokenizer_config.json: add_eos_token is true; expected an eos_token, got none");
  }
  return Tokenizer(std::move(impl));
}

Result<std::vector<int32_t>> Tokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  const Impl& t = *impl_;
  if (const size_t bad = find_invalid_utf8(text); bad != text.size())
    return Status::errorf("encode: text is not valid UTF-8 at byte {}", bad);
  std::vector<int32_t> ids;
  if (options.add_special_tokens && t.add_bos) ids.push_back(*t.bos);

  // Added tokens first, on the raw text (normalized: false) and then on what is left (normalized:
  // true; the only supported normalizer is the identity, so "what is left" is the same text).
  std::vector<Segment> raw, segments;
  t.split_added(text, t.raw_trie, options.split_special_tokens, raw);
  for (const Segment& s : raw) {
    if (s.added_id >= 0) {
      segments.push_back(s);
    } else {
      t.split_added(s.text, t.normalized_trie, options.split_special_tokens, segments);
    }
  }

  std::vector<std::string> pieces;
  for (const Segment& s : segments) {
    if (s.added_id >= 0) {
      ids.push_back(s.added_id);
      continue;
    }
    DSV4_RETURN_IF_ERROR(t.pre_tokenize(s.text, pieces));
    for (const std::string& piece : pieces) t.bpe(piece, ids);
  }
  if (options.add_special_tokens && t.add_eos) ids.push_back(*t.eos);
  return ids;
}

Result<std::string> Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= vocab_size() || !impl_->assigned[size_t(id)])
    return Status::errorf("token id {}: not in the vocabulary; expected an id in [0, {})", id, vocab_size());
  return impl_->bytes_of_id[size_t(id)];
}

Result<std::string> Tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || id >= vocab_size() || !impl_->assigned[size_t(id)])
    return Status::errorf("token id {}: not in the vocabulary; expected an id in [0, {})", id, vocab_size());
  return impl_->token_of_id[size_t(id)];
}

Result<std::string> Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::string bytes;
  for (const int32_t id : ids) {
    DSV4_ASSIGN_OR_RETURN(std::string b, token_bytes(id));
    if (!(skip_special_tokens && is_special(id))) bytes += b;
  }
  std::string text;
  append_utf8_lossy(bytes, /*final=*/true, text);
  return text;
}

std::optional<int32_t> Tokenizer::Impl::lookup(std::string_view token) const {
  if (auto it = added_by_content.find(token); it != added_by_content.end()) return it->second;
  if (auto it = vocab.find(token); it != vocab.end()) return it->second;
  return std::nullopt;
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  return impl_->lookup(token);
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < vocab_size() && impl_->special[size_t(id)];
}
int32_t Tokenizer::vocab_size() const {
  return int32_t(impl_->token_of_id.size());
}
std::optional<int32_t> Tokenizer::bos_id() const {
  return impl_->bos;
}
std::optional<int32_t> Tokenizer::eos_id() const {
  return impl_->eos;
}
bool Tokenizer::add_bos() const {
  return impl_->add_bos;
}
bool Tokenizer::add_eos() const {
  return impl_->add_eos;
}

Result<std::string> StreamDecoder::push(int32_t id) {
  DSV4_ASSIGN_OR_RETURN(std::string b, tokenizer_->token_bytes(id));
  if (skip_special_tokens_ && tokenizer_->is_special(id)) return std::string();
  pending_ += b;
  std::string text;
  pending_.erase(0, append_utf8_lossy(pending_, /*final=*/false, text));
  return text;
}

std::string StreamDecoder::finish() {
  std::string text;
  append_utf8_lossy(pending_, /*final=*/true, text);
  pending_.clear();
  return text;
}

}  // namespace dsv4
