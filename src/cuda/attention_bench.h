// bench_attention: times cuda::attention on the key lists the model builds (sliding window, HCA's
// admissible entries, CSA's top-k) at V4-Flash/Pro widths, for decode batches (one sequence per
// token, `context` tokens of history each) and prefills (one sequence from position 0), against
// its floor and dense cuBLAS BF16 GEMMs of the same shapes as the peer, all measured in one run.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"

namespace dsv4::cuda {

struct AttentionBenchOptions {
  std::vector<std::string> shapes;  // "flash", "pro"
  std::vector<std::string> types;   // "sliding", "hca", "csa"
  std::vector<int64_t> batches;     // decode: sequences
  std::vector<int64_t> prefills;    // prefill: tokens
  int64_t context = 4096;           // decode: tokens of history per sequence
};

// Prints the device line, the measured ceilings, then one line per case.
Status bench_attention(const AttentionBenchOptions& opt);

}  // namespace dsv4::cuda
