#include <fmt/format.h>

#include "commands.h"
#include "model/inspect.h"

namespace dsv4::cli {

void register_inspect(CLI::App& app, Action& run) {
  auto* cmd =
      app.add_subcommand("inspect", "Check a checkpoint and print its config, layers and tensor census");
  static std::string model_dir;
  static bool as_json = false;
  cmd->add_option("model", model_dir, "Checkpoint directory (config.json + safetensors)")->required();
  cmd->add_flag("--json", as_json, "Print the report as JSON");
  cmd->callback([&run] {
    run = [] {
      const InspectReport r = inspect_checkpoint(model_dir);
      if (as_json) {
        fmt::print("{}\n", r.json.dump(2));
      } else {
        fmt::print("{}", format_inspect_report(r.json));
      }
      if (!r.ok) {
        const auto& problems = r.json["problems"];
        return fail(problems.size() == 1 ? problems[0].get<std::string>()
                                         : fmt::format("{} (and {} more problems)",
                                                       problems[0].get<std::string>(), problems.size() - 1));
      }
      return 0;
    };
  });
}

}  // namespace dsv4::cli
