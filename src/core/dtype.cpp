#include "core/dtype.h"

#include <array>
#include <utility>

namespace dsv4 {
namespace {

struct DTypeInfo {
  DType type;
  std::string_view name;
  std::size_t size;
};

constexpr std::array<DTypeInfo, 9> kDTypes = {{
    {DType::kBF16, "BF16", 2},
    {DType::kF16, "F16", 2},
    {DType::kF32, "F32", 4},
    {DType::kF8_E4M3, "F8_E4M3", 1},
    {DType::kF8_E8M0, "F8_E8M0", 1},
    {DType::kU8, "U8", 1},
    {DType::kI8, "I8", 1},
    {DType::kI32, "I32", 4},
    {DType::kI64, "I64", 8},
}};

const DTypeInfo& info(DType t) {
  for (const auto& d : kDTypes)
    if (d.type == t) return d;
  return kDTypes[0];  // unreachable: every enumerator is in the table
}

}  // namespace

std::string_view dtype_name(DType t) {
  return info(t).name;
}
std::size_t dtype_size(DType t) {
  return info(t).size;
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& d : kDTypes)
    if (d.name == name) return d.type;
  return std::nullopt;
}

std::string_view known_dtype_names() {
  return "BF16, F16, F32, F8_E4M3, F8_E8M0, U8, I8, I32, I64";
}

}  // namespace dsv4
