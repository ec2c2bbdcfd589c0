// Shared by the CPU model tests and the GPU model tests: running a token sequence through the
// model in chunks of given sizes.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "model/model.h"

namespace dsv4::model_test {

// Feeds `tokens` to a fresh state in chunks of the given sizes (the last one repeats) and
// returns logits for every position.
inline std::vector<float> run_chunks(Model& model, const std::vector<int32_t>& tokens,
                                     std::vector<int64_t> sizes) {
  SequenceState state = model.new_state();
  std::vector<float> logits;
  size_t begin = 0, i = 0;
  while (begin < tokens.size()) {
    const size_t len =
        std::min<size_t>(size_t(sizes[std::min(i++, sizes.size() - 1)]), tokens.size() - begin);
    const SequenceChunk chunk{&state, std::span<const int32_t>(tokens.data() + begin, len)};
    Result<std::vector<float>> out = model.forward(std::span<const SequenceChunk>(&chunk, 1));
    EXPECT_TRUE(out.ok()) << out.status().message();
    if (!out.ok()) return {};
    logits.insert(logits.end(), out->begin(), out->end());
    begin += len;
  }
  return logits;
}

}  // namespace dsv4::model_test
