#include "core/quant_config.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace dsv4 {
using json = nlohmann::json;

Result<HfQuantConfig> parse_hf_quant_config(const std::string& text, const std::string& where) {
  const json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return Status::errorf("{}: not valid JSON", where);
  if (!j.is_object() || !j.contains("quantization") || !j["quantization"].is_object())
    return Status::errorf("{}: missing object field 'quantization'", where);
  HfQuantConfig q;
  if (j.contains("producer") && j["producer"].is_object()) {
    const json& p = j["producer"];
    q.producer = p.value("name", std::string()) + " " + p.value("version", std::string());
  }
  const json& quant = j["quantization"];
  if (quant.contains("quant_algo")) {
    if (quant["quant_algo"].is_string())
      q.quant_algo = quant["quant_algo"].get<std::string>();
    else if (!quant["quant_algo"].is_null())
      return Status::errorf("{}: field 'quantization.quant_algo': expected a string or null, got {}", where,
                            quant["quant_algo"].dump());
  }
  if (quant.contains("group_size") && quant["group_size"].is_number_integer())
    q.group_size = quant["group_size"].get<int64_t>();
  if (quant.contains("quantized_layers")) {
    const json& layers = quant["quantized_layers"];
    if (!layers.is_object())
      return Status::errorf("{}: field 'quantization.quantized_layers': expected an object", where);
    for (auto it = layers.begin(); it != layers.end(); ++it) {
      const json& e = it.value();
      if (!e.is_object() || !e.contains("quant_algo") || !e["quant_algo"].is_string())
        return Status::errorf(
            "{}: field 'quantization.quantized_layers[\"{}\"]': expected an object with a "
            "string 'quant_algo'",
            where, it.key());
      const std::string algo = e["quant_algo"].get<std::string>();
      if (std::find(q.algos.begin(), q.algos.end(), algo) == q.algos.end()) q.algos.push_back(algo);
      // The older schema spells the group "awq_block_size", the newer "group_size".
      for (const char* key : {"group_size", "awq_block_size"}) {
        if (!e.contains(key)) continue;
        if (!e[key].is_number_integer() || e[key].get<int64_t>() <= 0)
          return Status::errorf(
              "{}: field 'quantization.quantized_layers[\"{}\"].{}': expected a positive "
              "integer, got {}",
              where, it.key(), key, e[key].dump());
        const int64_t g = e[key].get<int64_t>();
        if (algo == "NVFP4" && g != 16)
          return Status::errorf(
              "{}: field 'quantization.quantized_layers[\"{}\"].{}': {}; NVFP4 groups are 16", where,
              it.key(), key, g);
        q.group_size = g;
      }
      ++q.n_quantized_entries;
    }
  } else if (!q.quant_algo.empty() && q.quant_algo != "MIXED_PRECISION") {
    q.algos.push_back(q.quant_algo);
  }
  for (const char* key : {"exclude_modules", "ignore"}) {
    if (!quant.contains(key)) continue;
    if (!quant[key].is_array())
      return Status::errorf("{}: field 'quantization.{}': expected an array of strings", where, key);
    for (const json& m : quant[key])
      if (m.is_string()) q.exclude_modules.push_back(m.get<std::string>());
  }
  return q;
}

Result<std::optional<HfQuantConfig>> load_hf_quant_config(const std::string& model_dir) {
  const auto path = std::filesystem::path(model_dir) / "hf_quant_config.json";
  if (!std::filesystem::exists(path)) return std::optional<HfQuantConfig>();
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  DSV4_ASSIGN_OR_RETURN(HfQuantConfig q, parse_hf_quant_config(ss.str()));
  return std::optional<HfQuantConfig>(std::move(q));
}

}  // namespace dsv4
