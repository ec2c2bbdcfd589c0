// Token-id arguments shared by `dsv4 logits` and `dsv4 generate`: --tokens "0,17,5" or
// --tokens-file (ids separated by commas or whitespace).
#pragma once

#include <fmt/format.h>

#include <cctype>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/status.h"

namespace dsv4::cli {

inline Result<std::vector<int32_t>> parse_token_ids(const std::string& text, const std::string& where) {
  std::vector<int32_t> ids;
  std::string item;
  const auto flush = [&]() -> Status {
    if (item.empty()) return {};
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (...) {
      used = 0;
    }
    if (used != item.size() || v < 0 || v > INT32_MAX)
      return Status::errorf("{}: token '{}'; expected a non-negative integer id", where, item);
    ids.push_back(int32_t(v));
    item.clear();
    return {};
  };
  for (char c : text) {
    if (c == ',' || std::isspace(static_cast<unsigned char>(c))) {
      DSV4_RETURN_IF_ERROR(flush());
    } else {
      item += c;
    }
  }
  DSV4_RETURN_IF_ERROR(flush());
  if (ids.empty()) return Status::errorf("{}: no token ids; expected at least one", where);
  return ids;
}

inline Result<std::vector<int32_t>> read_token_args(const std::string& tokens, const std::string& file) {
  if (file.empty()) {
    if (tokens.empty()) return Status::error("--tokens or --tokens-file: expected one of them");
    return parse_token_ids(tokens, "--tokens");
  }
  std::ifstream in(file);
  if (!in) return Status::errorf("--tokens-file {}: cannot read the file", file);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_token_ids(ss.str(), file);
}

}  // namespace dsv4::cli
