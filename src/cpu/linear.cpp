// CPU reference of `linear`: exact row dequantization, fp32 accumulation (cpu::grouped_linear
// with one group).
#include "ops/linear.h"

#include "ops/grouped_linear.h"

namespace dsv4 {

Status check_linear(const LinearParams& p) {
  if (!p.x || !p.y || !p.w.data) return Status::error("linear: null input, output or weight");
  if (p.n_tokens < 0 || p.w.rows <= 0 || p.w.cols <= 0)
    return Status::errorf("linear: shape [{}, {}] x [{}, {}]ᵀ; expected positive sizes", p.n_tokens, p.w.cols,
                          p.w.rows, p.w.cols);
  if ((p.w.format == WeightFormat::kNVFP4 && p.w.cols % kNvfp4Block) ||
      (p.w.format == WeightFormat::kMXFP4 && p.w.cols % kMxfp4Block))
    return Status::errorf("linear: {} weight with {} in-features; expected whole scale blocks",
                          weight_format_name(p.w.format), p.w.cols);
  return {};
}

namespace cpu {

// linear is grouped_linear with one group: the same rows, products and summation order.
void linear(const LinearParams& p, ActivationPrecision x_precision) {
  grouped_linear({p.x, p.w, p.y, p.n_tokens, 1}, x_precision);
}

}  // namespace cpu
}  // namespace dsv4
