#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>

namespace dsv4 {

Status SamplingParams::validate() const {
  if (!(temperature >= 0) || !std::isfinite(temperature))
    return Status::errorf("--temperature: {}; expected a finite value >= 0", temperature);
  if (!(top_p > 0 && top_p <= 1)) return Status::errorf("--top-p: {}; expected a value in (0, 1]", top_p);
  if (top_k < 0) return Status::errorf("--top-k: {}; expected >= 0", top_k);
  if (!(min_p >= 0 && min_p < 1)) return Status::errorf("--min-p: {}; expected a value in [0, 1)", min_p);
  if (!(repetition_penalty > 0) || !std::isfinite(repetition_penalty))
    return Status::errorf("--repetition-penalty: {}; expected a finite value > 0", repetition_penalty);
  return {};
}

Status apply_generation_config(const std::string& model_dir, SamplingParams* params) {
  const auto path = std::filesystem::path(model_dir) / "generation_config.json";
  if (!std::filesystem::exists(path)) return {};
  std::ifstream in(path);
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return Status::error("generation_config.json: not a valid JSON object");
  auto number = [&](const char* key, auto* out) -> Status {
    if (!j.contains(key) || j[key].is_null()) return {};
    if (!j[key].is_number())
      return Status::errorf("generation_config.json: field '{}': expected a number, got {}", key,
                            j[key].dump());
    *out = j[key].get<std::remove_pointer_t<decltype(out)>>();
    return {};
  };
  DSV4_RETURN_IF_ERROR(number("temperature", &params->temperature));
  DSV4_RETURN_IF_ERROR(number("top_p", &params->top_p));
  DSV4_RETURN_IF_ERROR(number("top_k", &params->top_k));
  DSV4_RETURN_IF_ERROR(number("min_p", &params->min_p));
  DSV4_RETURN_IF_ERROR(number("repetition_penalty", &params->repetition_penalty));
  if (j.contains("do_sample") && j["do_sample"].is_boolean() && !j["do_sample"].get<bool>())
    params->temperature = 0;
  return params->validate().with_context("generation_config.json");
}

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
  const int64_t V = int64_t(logits.size());
  work_.assign(logits.begin(), logits.end());
  if (params_.repetition_penalty != 1.0f) {
    // Each distinct token is penalised once, however often it occurred (as HF does).
    std::vector<bool> seen(size_t(V), false);
    for (int32_t t : history) {
      if (t < 0 || t >= V || seen[size_t(t)]) continue;
      seen[size_t(t)] = true;
      float& l = work_[size_t(t)];
      l = l > 0 ? l / params_.repetition_penalty : l * params_.repetition_penalty;
    }
  }
  if (params_.temperature == 0) {
    int32_t best = 0;
    for (int64_t i = 1; i < V; ++i)
      if (work_[size_t(i)] > work_[size_t(best)]) best = int32_t(i);
    return best;
  }
  // Candidates sorted by logit, ties to the lower id; the filters keep a prefix of this order.
  order_.resize(size_t(V));
  std::iota(order_.begin(), order_.end(), 0);
  std::stable_sort(order_.begin(), order_.end(),
                   [&](int32_t a, int32_t b) { return work_[size_t(a)] > work_[size_t(b)]; });
  int64_t keep = V;
  if (params_.top_k > 0) keep = std::min(keep, params_.top_k);
  std::vector<double> prob(static_cast<size_t>(keep));
  const double top = double(work_[size_t(order_[0])]) / params_.temperature;
  double sum = 0;
  for (int64_t i = 0; i < keep; ++i) {
    prob[size_t(i)] = std::exp(double(work_[size_t(order_[size_t(i)])]) / params_.temperature - top);
    sum += prob[size_t(i)];
  }
  if (params_.top_p < 1.0f) {  // smallest prefix whose mass reaches top_p (at least one token)
    double mass = 0;
    int64_t n = 0;
    while (n < keep && mass < params_.top_p * sum) mass += prob[size_t(n++)];
    keep = std::max<int64_t>(1, n);
  }
  if (params_.min_p > 0) {  // prob[0] is the largest
    int64_t n = 1;
    while (n < keep && prob[size_t(n)] >= params_.min_p * prob[0]) ++n;
    keep = n;
  }
  double total = 0;
  for (int64_t i = 0; i < keep; ++i) total += prob[size_t(i)];
  std::uniform_real_distribution<double> u(0.0, total);
  const double r = u(rng_);
  double acc = 0;
  for (int64_t i = 0; i < keep; ++i) {
    acc += prob[size_t(i)];
    if (r < acc) return order_[size_t(i)];
  }
  return order_[size_t(keep - 1)];
}

}  // namespace dsv4
