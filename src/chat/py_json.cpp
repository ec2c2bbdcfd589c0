// Python-compatible JSON writer (see py_json.h).
#include "chat/py_json.h"

#include <charconv>
#include <cmath>
#include <cstdlib>

namespace dsv4::chat {
namespace {

// float.__repr__: the shortest digits that round-trip, positional notation when the decimal
// exponent is in [-4, 16), scientific ("1e+16", "1.5e-05") otherwise; ".0" marks whole numbers.
std::string py_float_repr(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  const std::string sci(buf, r.ptr);  // "-d.ddde+XX"
  const size_t e_pos = sci.find('e');
  std::string mantissa = sci.substr(0, e_pos);
  const int exp10 = std::atoi(sci.c_str() + e_pos + 1);
  std::string sign;
  if (!mantissa.empty() && mantissa[0] == '-') {
    sign = "-";
    mantissa.erase(0, 1);
  }
  std::string digits;
  for (char c : mantissa)
    if (c != '.') digits += c;
  if (exp10 >= -4 && exp10 < 16) {
    std::string out;
    if (exp10 < 0) {
      out = "0." + std::string(size_t(-exp10 - 1), '0') + digits;
    } else if (size_t(exp10) + 1 >= digits.size()) {
      out = digits + std::string(size_t(exp10) + 1 - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, size_t(exp10) + 1) + "." + digits.substr(size_t(exp10) + 1);
    }
    return sign + out;
  }
  std::string out = digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  const int a = std::abs(exp10);
  out += exp10 < 0 ? "e-" : "e+";
  if (a < 10) out += '0';
  out += std::to_string(a);
  return sign + out;
}

void dump(const nlohmann::ordered_json& v, std::string& out) {
  using T = nlohmann::ordered_json::value_t;
  switch (v.type()) {
    case T::null:
      out += "null";
      break;
    case T::boolean:
      out += v.get<bool>() ? "true" : "false";
      break;
    case T::number_integer:
      out += std::to_string(v.get<int64_t>());
      break;
    case T::number_unsigned:
      out += std::to_string(v.get<uint64_t>());
      break;
    case T::number_float:
      out += py_float_repr(v.get<double>());
      break;
    case T::string:
      out += py_json_quote(v.get_ref<const std::string&>());
      break;
    case T::array: {
      out += '[';
      bool first = true;
      for (const auto& e : v) {
        if (!first) out += ", ";
        first = false;
        dump(e, out);
      }
      out += ']';
      break;
    }
    case T::object: {
      out += '{';
      bool first = true;
      for (const auto& [k, e] : v.items()) {
        if (!first) out += ", ";
        first = false;
        out += py_json_quote(k);
        out += ": ";
        dump(e, out);
      }
      out += '}';
      break;
    }
    case T::binary:
    case T::discarded:
      out += "null";
      break;
  }
}

}  // namespace

std::string py_json_quote(std::string_view s) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += ch;  // UTF-8 bytes pass through: ensure_ascii=False
        }
    }
  }
  out += '"';
  return out;
}

std::string py_json_dumps(const nlohmann::ordered_json& value) {
  std::string out;
  dump(value, out);
  return out;
}

bool py_truthy(const nlohmann::ordered_json& v) {
  using T = nlohmann::ordered_json::value_t;
  switch (v.type()) {
    case T::null:
      return false;
    case T::boolean:
      return v.get<bool>();
    case T::number_integer:
      return v.get<int64_t>() != 0;
    case T::number_unsigned:
      return v.get<uint64_t>() != 0;
    case T::number_float:
      return v.get<double>() != 0.0;
    case T::string:
      return !v.get_ref<const std::string&>().empty();
    case T::array:
    case T::object:
      return !v.empty();
    default:
      return true;
  }
}

}  // namespace dsv4::chat
