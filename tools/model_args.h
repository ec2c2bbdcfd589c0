// Flags shared by the commands that run the model (generate, chat): the same names everywhere —
// --model, --device, --threads, --seed, --max-tokens and the sampling flags — plus the memory
// plan (refused before loading when it will not fit) and loading with progress.
#pragma once

#include <fmt/format.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <memory>
#include <string>
#include <vector>

#include "core/parallel.h"
#include "model/model.h"
#include "runtime/generator.h"
#include "runtime/loading.h"
#include "tokenizer/tokenizer.h"
#ifdef DSV4_HAVE_CUDA
#include "cuda/check.h"
#include "cuda/cuda_backend.h"
#endif

namespace dsv4::cli {

// The backend for --device: the CPU reference, or the GPU when built with CUDA and one is present.
inline Result<std::unique_ptr<Backend>> make_backend(const std::string& device) {
  if (device == "cpu") return make_cpu_backend();
#ifdef DSV4_HAVE_CUDA
  if (cuda::device_count() == 0)
    return Status::error("--device cuda: no CUDA device found; expected a Hopper GPU");
  return make_cuda_backend();
#else
  return Status::error(
      "--device cuda: this dsv4 was built without CUDA; expected a build with nvcc (DSV4_CUDA=ON)");
#endif
}

struct ModelArgs {
  std::string model_dir, device = "cpu", tokenizer_dir;
  int threads = 0;
  bool quiet = false;

  void add(CLI::App* cmd) {
    cmd->add_option("--model", model_dir, "Model directory (config.json + safetensors)")->required();
    cmd->add_option("--device", device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
    cmd->add_option("--threads", threads, "CPU threads (default: all cores)")->check(CLI::PositiveNumber);
    cmd->add_option("--tokenizer", tokenizer_dir,
                    "Directory with tokenizer.json (default: the model directory)");
    cmd->add_flag("--quiet", quiet, "No loading progress, memory plan or speed report");
  }

  // Loads the model (with progress and the memory plan on stderr), after checking that the plan
  // fits the backend's free memory: one sequence of up to min(max_position, 4096) tokens,
  // prefilled in one forward.
  Result<std::unique_ptr<Model>> load_model() const {
    if (threads > 0) set_cpu_threads(threads);
    DSV4_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, make_backend(device));
    constexpr int64_t kPlanContext = 4096;
    DSV4_ASSIGN_OR_RETURN(const MemoryPlan plan,
                          plan_model_memory(model_dir, *backend, kPlanContext, 1, kPlanContext));
    if (!quiet)
      fmt::print(stderr, "{}{}\n", plan.describe(),
                 plan.holds_weights ? "" : fmt::format(" ({} CPU threads)", cpu_threads()));
    DSV4_RETURN_IF_ERROR(plan.check());
    if (!quiet) DSV4_RETURN_IF_ERROR(read_checkpoint_with_progress(model_dir, ::isatty(2)));
    return Model::load(model_dir, std::move(backend));
  }

  Result<Tokenizer> load_tokenizer() const {
    return Tokenizer::load(tokenizer_dir.empty() ? model_dir : tokenizer_dir);
  }
};

struct GenerationArgs {
  GenerationOptions options;
  uint64_t seed = 0;
  bool seed_given = false;

  void add(CLI::App* cmd) {
    cmd->add_option("--max-tokens,--max-new-tokens", options.max_tokens, "Most tokens to generate")
        ->check(CLI::PositiveNumber);
    cmd->add_option("--temperature", options.sampling.temperature,
                    "0 = greedy (default 1.0, or generation_config.json)");
    cmd->add_option("--top-p", options.sampling.top_p, "Nucleus sampling mass (default 1.0)");
    cmd->add_option("--top-k", options.sampling.top_k, "Keep the k most likely tokens (0 = off)");
    cmd->add_option("--min-p", options.sampling.min_p, "Drop tokens below min-p × the top probability");
    cmd->add_option("--repetition-penalty", options.sampling.repetition_penalty,
                    "HF-style penalty (1 = off)");
    cmd->add_option("--stop", options.stop_strings, "Stop before this string (repeatable)");
    cmd->add_option("--seed", seed, "Random seed (default: random)")->each([this](const std::string&) {
      seed_given = true;
    });
  }

  // Sampling defaults: DeepSeek's recommendation, then generation_config.json, then the flags.
  Status resolve(const std::string& model_dir, const CLI::App* cmd) {
    SamplingParams flags = options.sampling;
    options.sampling = SamplingParams{};
    DSV4_RETURN_IF_ERROR(apply_generation_config(model_dir, &options.sampling));
    if (cmd->count("--temperature")) options.sampling.temperature = flags.temperature;
    if (cmd->count("--top-p")) options.sampling.top_p = flags.top_p;
    if (cmd->count("--top-k")) options.sampling.top_k = flags.top_k;
    if (cmd->count("--min-p")) options.sampling.min_p = flags.min_p;
    if (cmd->count("--repetition-penalty")) options.sampling.repetition_penalty = flags.repetition_penalty;
    options.sampling.seed = seed_given ? seed : std::random_device{}();
    return options.sampling.validate();
  }
};

inline void report_speed(const GenerationResult& r) {
  const int64_t n = int64_t(r.tokens.size());
  fmt::print(stderr,
             "\nprompt: {} tokens in {:.2f} s ({:.1f} tok/s) | generated: {} tokens in {:.2f} s ({:.1f} "
             "tok/s) | stop: {}\n",
             r.prompt_tokens, r.prefill_seconds,
             r.prefill_seconds > 0 ? double(r.prompt_tokens) / r.prefill_seconds : 0.0, n, r.decode_seconds,
             r.decode_seconds > 0 ? double(n) / r.decode_seconds : 0.0, r.stop_reason);
}

}  // namespace dsv4::cli
