// JSON text exactly as Python's json.dumps(value, ensure_ascii=False) writes it, because the
// DeepSeek-V4 prompt embeds tool schemas and arguments in that form and the model was trained on
// those bytes: ", " and ": " separators, non-ASCII kept, Python's string escapes and float repr.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace dsv4::chat {

// Objects keep their insertion order, as Python dicts do.
std::string py_json_dumps(const nlohmann::ordered_json& value);

// A JSON string literal for `s` (quotes included), escaped as Python's json module does.
std::string py_json_quote(std::string_view s);

// Python's truthiness of a JSON value (`if value:`): null, false, 0, "", [] and {} are false.
bool py_truthy(const nlohmann::ordered_json& value);

}  // namespace dsv4::chat
