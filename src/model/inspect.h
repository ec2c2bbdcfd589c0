// `dsv4 inspect`: what a checkpoint directory holds (config summary, layer schedule, tensor
// census by format and by model part, weight memory) and every problem found in it.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace dsv4 {

struct InspectReport {
  nlohmann::json json;  // the full report (also the --json output)
  bool ok = false;      // no problems found
};

InspectReport inspect_checkpoint(const std::string& model_dir);
std::string format_inspect_report(const nlohmann::json& report);

}  // namespace dsv4
