// Shared by the CPU model tests and the GPU model tests: running a token sequence through the
// model in chunks of given sizes, and row-wise logit errors with the tolerances of BF16
// activations against the fp32 reference.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "model/model.h"

namespace dsv4::model_test {

// The committed HF fixtures (tests/fixtures, docs/fixtures.md). The environment's DSV4_FIXTURES
// overrides the source-tree path for a binary run away from its checkout (built here, run on a
// GPU machine).
inline std::string fixture_dir() {
  if (const char* dir = std::getenv("DSV4_FIXTURES")) return dir;
  return DSV4_TEST_FIXTURES;
}

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

// Bounds on row-relative logit errors of one comparison: on the median row and on every row.
struct RowBounds {
  double median, row;
};

// docs/numerics.md "GPU model": BF16 activations (the GPU, or the CPU's bf16_activations oracle)
// against the fp32 reference move a row's logits by ~8e-3 relative (median; 1.5e-2 at most on
// the fixtures). Every row is bounded because the fixtures have no near-tie that BF16 could flip
// (docs/fixtures.md, "Token choice"); a flip moves a row by 0.2-0.6, a cache or position bug a
// whole class of rows by O(1).
constexpr RowBounds kBf16VsFp32{1.5e-2, 5e-2};

// Per row r of V logits: ‖got − ref‖₂ / ‖ref‖₂, and the rows whose greedy token (the first
// largest logit) differs.
struct RowErrors {
  std::vector<double> rel;  // [rows]
  std::vector<int64_t> greedy_differs;
  double median = 0, p90 = 0, max = 0;
  int64_t worst_row = -1;
};

inline RowErrors row_errors(const std::vector<float>& got, const std::vector<float>& ref, int64_t V) {
  RowErrors e;
  EXPECT_EQ(got.size(), ref.size());
  if (got.size() != ref.size() || ref.empty()) return e;
  const int64_t rows = int64_t(ref.size()) / V;
  for (int64_t r = 0; r < rows; ++r) {
    double diff = 0, norm = 0;
    int64_t arg_got = 0, arg_ref = 0;
    for (int64_t v = 0; v < V; ++v) {
      const double a = got[size_t(r * V + v)], b = ref[size_t(r * V + v)];
      diff += (a - b) * (a - b);
      norm += b * b;
      if (a > got[size_t(r * V + arg_got)]) arg_got = v;
      if (b > ref[size_t(r * V + arg_ref)]) arg_ref = v;
    }
    if (arg_got != arg_ref) e.greedy_differs.push_back(r);
    const double rel = std::sqrt(diff / norm);
    e.rel.push_back(rel);
    if (!(rel <= e.max)) e.max = rel, e.worst_row = r;
  }
  std::vector<double> sorted = e.rel;
  std::sort(sorted.begin(), sorted.end());
  e.median = sorted[sorted.size() / 2];
  e.p90 = sorted[sorted.size() * 9 / 10];
  return e;
}

}  // namespace dsv4::model_test
