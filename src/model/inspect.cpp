#include "model/inspect.h"

#include <fmt/format.h>

#include <map>

#include "core/config.h"
#include "core/human_bytes.h"
#include "core/quant_config.h"
#include "core/safetensors.h"
#include "model/weight_map.h"

namespace dsv4 {
using json = nlohmann::json;

namespace {

// "0-1 sliding, 2 CSA, 3 HCA, ..." compressed into runs of equal types.
json layer_schedule(const ModelConfig& cfg) {
  json layers = json::array();
  for (int64_t i = 0; i < cfg.n_layers; ++i)
    layers.push_back({{"layer", i},
                      {"attention", attention_type_name(cfg.attention_type(i))},
                      {"compress_ratio", cfg.compress_ratio(i)},
                      {"router", cfg.is_hash_layer(i) ? "hash" : "dense"}});
  return layers;
}

}  // namespace

InspectReport inspect_checkpoint(const std::string& model_dir) {
  InspectReport r;
  json& j = r.json;
  j["model_dir"] = model_dir;
  j["problems"] = json::array();
  auto cfg = load_config(model_dir);
  if (!cfg.ok()) {
    j["problems"].push_back(cfg.status().message());
    return r;
  }
  const ModelConfig& c = *cfg;
  j["config"] = {{"vocab_size", c.vocab_size},
                 {"d_model", c.d_model},
                 {"n_layers", c.n_layers},
                 {"n_mtp_layers", c.n_mtp_layers},
                 {"n_heads", c.n_heads},
                 {"head_dim", c.head_dim},
                 {"q_lora_rank", c.q_lora_rank},
                 {"o_groups", c.o_groups},
                 {"sliding_window", c.sliding_window},
                 {"n_routed_experts", c.n_routed_experts},
                 {"n_experts_per_token", c.n_experts_per_token},
                 {"n_shared_experts", c.n_shared_experts},
                 {"moe_intermediate", c.moe_intermediate},
                 {"n_hash_layers", c.n_hash_layers},
                 {"index_topk", c.index_topk},
                 {"yarn_factor", c.yarn.enabled ? c.yarn.factor : 1.0}};
  j["layers"] = layer_schedule(c);

  auto ckpt = Checkpoint::open(model_dir);
  if (!ckpt.ok()) {
    j["problems"].push_back(ckpt.status().message());
    return r;
  }
  auto quant = load_hf_quant_config(model_dir);
  if (!quant.ok()) {
    j["problems"].push_back(quant.status().message());
  } else if (quant->has_value()) {
    const HfQuantConfig& q = **quant;
    j["hf_quant_config"] = {{"producer", q.producer},
                            {"quant_algo", q.quant_algo.empty() ? json(nullptr) : json(q.quant_algo)},
                            {"quantized_entries", q.n_quantized_entries},
                            {"algos", q.algos},
                            {"group_size", q.group_size},
                            {"exclude_modules", q.exclude_modules}};
  }
  const WeightMap map = WeightMap::build(c, *ckpt);
  for (const auto& p : map.problems()) j["problems"].push_back(p);

  int64_t total = 0;
  for (const auto& [_, t] : ckpt->tensors()) total += t.nbytes();
  j["tensors"] = {{"count", ckpt->tensors().size()},
                  {"files", ckpt->n_files()},
                  {"bytes", total},
                  {"has_mtp", map.has_mtp()}};

  std::map<std::string, std::pair<int64_t, int64_t>> by_format, by_group;  // count, bytes
  for (const auto& [_, lw] : map.linears()) {
    auto& f = by_format[std::string(weight_format_name(lw.view.format))];
    f.first++, f.second += lw.bytes;
    auto& g = by_group[std::string(weight_group_name(lw.group))];
    g.first++, g.second += lw.bytes;
  }
  for (const auto& [_, pw] : map.plains()) {
    auto& f = by_format[std::string(dtype_name(pw.tensor->dtype)) + " (plain)"];
    f.first++, f.second += pw.tensor->nbytes();
    auto& g = by_group[std::string(weight_group_name(pw.group))];
    g.first++, g.second += pw.tensor->nbytes();
  }
  auto to_json = [](const std::map<std::string, std::pair<int64_t, int64_t>>& m) {
    json out = json::array();
    for (const auto& [k, v] : m) out.push_back({{"name", k}, {"weights", v.first}, {"bytes", v.second}});
    return out;
  };
  j["by_format"] = to_json(by_format);
  j["by_group"] = to_json(by_group);
  r.ok = j["problems"].empty();
  return r;
}

std::string format_inspect_report(const json& j) {
  std::string s = fmt::format("model: {}\n", j["model_dir"].get<std::string>());
  if (j.contains("config")) {
    const json& c = j["config"];
    s += fmt::format(
        "config: DeepSeek-V4, {} layers (+{} MTP), d_model {}, {} heads x {}, q_lora {}, {} output groups\n"
        "        {} routed experts (top-{}, {} shared, width {}), {} hash layers, vocab {}, window {}, "
        "index top-{}\n",
        c["n_layers"].get<int64_t>(), c["n_mtp_layers"].get<int64_t>(), c["d_model"].get<int64_t>(),
        c["n_heads"].get<int64_t>(), c["head_dim"].get<int64_t>(), c["q_lora_rank"].get<int64_t>(),
        c["o_groups"].get<int64_t>(), c["n_routed_experts"].get<int64_t>(),
        c["n_experts_per_token"].get<int64_t>(), c["n_shared_experts"].get<int64_t>(),
        c["moe_intermediate"].get<int64_t>(), c["n_hash_layers"].get<int64_t>(),
        c["vocab_size"].get<int64_t>(), c["sliding_window"].get<int64_t>(), c["index_topk"].get<int64_t>());
    s += "layers:";
    // Runs of consecutive layers with the same attention type and router.
    const json& layers = j["layers"];
    size_t i = 0;
    while (i < layers.size()) {
      size_t k = i;
      while (k + 1 < layers.size() && layers[k + 1]["attention"] == layers[i]["attention"] &&
             layers[k + 1]["router"] == layers[i]["router"])
        ++k;
      const std::string range = k == i ? std::to_string(i) : fmt::format("{}-{}", i, k);
      s += fmt::format(" {} {}/{};", range, layers[i]["attention"].get<std::string>(),
                       layers[i]["router"].get<std::string>());
      i = k + 1;
    }
    s += "\n";
  }
  if (j.contains("tensors")) {
    const json& t = j["tensors"];
    s += fmt::format("tensors: {} in {} file(s), {} total{}\n", t["count"].get<int64_t>(),
                     t["files"].get<int64_t>(), human_bytes(t["bytes"].get<int64_t>()),
                     t["has_mtp"].get<bool>() ? " (MTP block present, not used for decoding)" : "");
    if (j.contains("hf_quant_config")) {
      const json& q = j["hf_quant_config"];
      std::string algos;
      for (const json& a : q["algos"]) algos += (algos.empty() ? "" : ",") + a.get<std::string>();
      s += fmt::format(
          "hf_quant_config.json: {}, quant_algo {}, {} quantized entries ({}, group {}); "
          "informational: formats are decided per tensor\n",
          q["producer"].get<std::string>(),
          q["quant_algo"].is_null() ? "null" : q["quant_algo"].get<std::string>(),
          q["quantized_entries"].get<int64_t>(), algos, q["group_size"].get<int64_t>());
    }
    for (const char* key : {"by_format", "by_group"}) {
      s += fmt::format("{}:\n", key[3] == 'f' ? "by format" : "by model part");
      for (const json& e : j[key])
        s += fmt::format("  {:<20} {:>8} weights {:>12}\n", e["name"].get<std::string>(),
                         e["weights"].get<int64_t>(), human_bytes(e["bytes"].get<int64_t>()));
    }
  }
  if (j["problems"].empty()) {
    s += "problems: none\n";
  } else {
    s += fmt::format("problems: {}\n", j["problems"].size());
    for (const json& p : j["problems"]) s += "  " + p.get<std::string>() + "\n";
  }
  return s;
}

}  // namespace dsv4
