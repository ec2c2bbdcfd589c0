// The bad-input corpus (tests/data/bad_input, made by scripts/make_bad_input_corpus.py): each
// case must give a one-line error naming the file, tensor or field, exit 1 from the CLI, and no
// crash. Also the CLI's own usage errors.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "model/inspect.h"

namespace dsv4 {
namespace {
namespace fs = std::filesystem;

struct CommandResult {
  int exit_code = -1;
  std::string out, err;
};

CommandResult run_cli(const std::string& args) {
  const fs::path err_file = fs::temp_directory_path() / ("dsv4_cli_err_" + std::to_string(::getpid()));
  const std::string cmd = std::string(DSV4_CLI) + " " + args + " 2>" + err_file.string();
  CommandResult r;
  FILE* p = ::popen(cmd.c_str(), "r");
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(err_file);
  r.err.assign(std::istreambuf_iterator<char>(in), {});
  fs::remove(err_file);
  return r;
}

std::vector<fs::path> corpus() {
  std::vector<fs::path> cases;
  for (const auto& e : fs::directory_iterator(std::string(DSV4_TEST_DATA) + "/bad_input"))
    if (e.is_directory()) cases.push_back(e.path());
  std::sort(cases.begin(), cases.end());
  return cases;
}

std::string expected_error(const fs::path& dir) {
  std::ifstream in(dir / "expected_error.txt");
  std::string line;
  std::getline(in, line);
  return line;
}

TEST(BadInput, CorpusIsThere) {
  EXPECT_GE(corpus().size(), 30u);
}

TEST(BadInput, InspectReportsEveryCase) {
  for (const fs::path& dir : corpus()) {
    const InspectReport r = inspect_checkpoint(dir.string());
    ASSERT_FALSE(r.ok) << dir.filename();
    const std::string first = r.json["problems"][0].get<std::string>();
    EXPECT_NE(first.find(expected_error(dir)), std::string::npos) << dir.filename() << ": " << first;
  }
}

TEST(BadInput, CliExitsOneWithOneLineError) {
  for (const fs::path& dir : corpus()) {
    const CommandResult r = run_cli("inspect " + dir.string());
    EXPECT_EQ(r.exit_code, 1) << dir.filename();
    ASSERT_EQ(r.err.rfind("error: ", 0), 0u) << dir.filename() << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(expected_error(dir)), std::string::npos) << dir.filename() << ": " << r.err;
  }
}

TEST(BadInput, UsageErrorsExitTwo) {
  EXPECT_EQ(run_cli("").exit_code, 2);
  EXPECT_EQ(run_cli("no-such-command").exit_code, 2);
  EXPECT_EQ(run_cli("inspect").exit_code, 2);
  EXPECT_EQ(run_cli("make-model --out /tmp/x --layout fp16").exit_code, 2);
  EXPECT_EQ(run_cli("inspect /nonexistent/dir").exit_code, 1);
  EXPECT_EQ(run_cli("--help").exit_code, 0);
}

TEST(Cli, MakeModelThenInspectBothLayouts) {
  for (const char* layout : {"nvfp4", "mxfp4"}) {
    const fs::path d =
        fs::temp_directory_path() / (std::string("dsv4_cli_") + layout + std::to_string(::getpid()));
    fs::remove_all(d);
    ASSERT_EQ(run_cli("make-model --preset tiny --layout " + std::string(layout) + " --out " + d.string())
                  .exit_code,
              0);
    const CommandResult text = run_cli("inspect " + d.string());
    EXPECT_EQ(text.exit_code, 0) << text.err;
    EXPECT_NE(text.out.find("problems: none"), std::string::npos);
    EXPECT_NE(text.out.find("0 sliding/hash; 1 CSA/dense; 2 HCA/dense; 3 CSA/dense;"), std::string::npos)
        << text.out;
    const CommandResult js = run_cli("inspect --json " + d.string());
    ASSERT_EQ(js.exit_code, 0);
    const auto j = nlohmann::json::parse(js.out);
    int64_t experts = 0, expert_bytes = 0;
    for (const auto& f : j["by_format"])
      if (f["name"] == (std::string(layout) == "nvfp4" ? "NVFP4" : "MXFP4"))
        experts = f["weights"], expert_bytes = f["bytes"];
    // tiny: 4 trunk layers × 8 experts × 3 projections in the layout's format (MTP adds 24 MXFP4).
    EXPECT_EQ(experts, std::string(layout) == "nvfp4" ? 96 : 120);
    // NVFP4 per projection [64, 256] or [256, 64]: 8192 code bytes + 1024 scale bytes + 4 (weight_scale_2).
    if (std::string(layout) == "nvfp4") EXPECT_EQ(expert_bytes, 96 * (8192 + 1024 + 4));
    EXPECT_TRUE(j["problems"].empty());
    fs::remove_all(d);
  }
}

}  // namespace
}  // namespace dsv4
