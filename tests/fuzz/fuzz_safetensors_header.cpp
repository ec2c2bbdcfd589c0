// libFuzzer target for the safetensors header parser: any byte string is either accepted or
// refused with a message; it must never crash, hang or read out of bounds.
// Build: cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DDSV4_FUZZ=ON && ninja -C build-fuzz
// fuzz_safetensors_header Run:   ./build-fuzz/tests/fuzz_safetensors_header -max_total_time=60
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 8) return 0;
  // The first 8 bytes choose the data-section size, the rest is the header text.
  uint64_t data_size = 0;
  for (int i = 0; i < 8; ++i) data_size = (data_size << 8) | data[i];
  const std::string header(reinterpret_cast<const char*>(data + 8), size - 8);
  auto r = dsv4::parse_safetensors_header(header, int64_t(data_size >> 1), nullptr);
  if (!r.ok() && r.status().message().empty()) __builtin_trap();
  return 0;
}
