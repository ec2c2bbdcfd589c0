// dsv4 bench linear [--format nvfp4|mxfp4|fp8|bf16] [--shape flash|pro] [--tokens 1,8,64]
// [--path auto,decode,prefill,dequant]:
// times the GPU linear at DeepSeek-V4 expert shapes against its measured floor and cuBLAS BF16
// (src/cuda/linear_bench.h).
// dsv4 bench moe [--format nvfp4|mxfp4] [--shape flash|pro] [--tokens 1,8,64,512,4096]: the MoE
// layer (router, routed experts, FP8 shared expert) and each part likewise (src/cuda/moe_bench.h).
// dsv4 bench attention [--shape flash,pro] [--type sliding,hca,csa] [--batch 1,3,64] [--prefill 4096]
// [--context 4096]: the attention op on the model's key lists (src/cuda/attention_bench.h).
// dsv4 bench model [--shape flash|pro] [--layers 4] [--batch 1,8,32,64] [--context 4096]: the whole
// model, random weights at real widths cut to its first layers: decode and prefill against their
// floors (src/cuda/model_bench.h).
// All need a CUDA build and a GPU; otherwise they say so and exit 1.
#include <fmt/format.h>

#include <string>
#include <vector>

#include "commands.h"
#include "core/quant.h"
#ifdef DSV4_HAVE_CUDA
#include "cuda/attention_bench.h"
#include "cuda/linear_bench.h"
#include "cuda/model_bench.h"
#include "cuda/moe_bench.h"
#endif
#include "model/synthetic.h"
#include "runtime/model_bench.h"

namespace dsv4::cli {

namespace {
// dsv4 bench attention's flags (0 in --batch or --prefill: none of that mode).
struct AttentionBenchOptionsCli {
  std::vector<std::string> shapes{"flash", "pro"};
  std::vector<std::string> types{"sliding", "hca", "csa"};
  std::vector<int64_t> batches{1, 3, 64};
  std::vector<int64_t> prefills{4096};
  int64_t context = 4096;
};
}  // namespace

void register_bench(CLI::App& app, Action& run) {
  auto* bench =
      app.add_subcommand("bench", "GPU benchmarks: µs, GB/s, TFLOP/s, % of measured floor, x cuBLAS BF16");
  bench->require_subcommand(1);
  auto* linear = bench->add_subcommand("linear", "the linear op (y = x·Wᵀ) at V4 expert shapes");
  struct Opts {
    std::vector<std::string> formats{"nvfp4", "mxfp4", "fp8", "bf16"};
    std::vector<std::string> shapes{"flash", "pro"};
    std::vector<int64_t> tokens{1, 8, 64};
    std::vector<std::string> paths{"auto"};
  };
  auto opts = std::make_shared<Opts>();
  linear->add_option("--format", opts->formats, "weight formats")
      ->delimiter(',')
      ->check(CLI::IsMember({"nvfp4", "mxfp4", "fp8", "bf16"}));
  linear->add_option("--shape", opts->shapes, "expert shapes")
      ->delimiter(',')
      ->check(CLI::IsMember({"flash", "pro"}));
  linear->add_option("--tokens", opts->tokens, "token counts")
      ->delimiter(',')
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  linear
      ->add_option("--path", opts->paths,
                   "paths to time: auto (the heuristic's choice) and/or forced decode, prefill, dequant "
                   "(dequantize + cuBLAS); a path that cannot run a case is skipped")
      ->delimiter(',')
      ->check(CLI::IsMember({"auto", "decode", "prefill", "dequant"}));
  linear->callback([&run, opts] {
    run = [opts]() -> int {
#ifdef DSV4_HAVE_CUDA
      cuda::LinearBenchOptions o;
      for (const auto& f : opts->formats)
        o.formats.push_back(f == "nvfp4"   ? WeightFormat::kNVFP4
                            : f == "mxfp4" ? WeightFormat::kMXFP4
                            : f == "fp8"   ? WeightFormat::kFP8Block128
                                           : WeightFormat::kBF16);
      o.shapes = opts->shapes;
      o.tokens = opts->tokens;
      o.paths.clear();
      for (const auto& p : opts->paths)
        o.paths.push_back(p == "auto"      ? cuda::LinearPath::kAuto
                          : p == "decode"  ? cuda::LinearPath::kDecode
                          : p == "prefill" ? cuda::LinearPath::kPrefill
                                           : cuda::LinearPath::kDequantCublas);
      const Status s = cuda::bench_linear(o);
      return s.ok() ? 0 : fail(s.message());
#else
      return fail("bench linear: this dsv4 was built without CUDA; expected a build with nvcc and a GPU");
#endif
    };
  });

  auto* moe = bench->add_subcommand(
      "moe", "the MoE layer (router, routed and shared experts) and its parts at V4 shapes");
  struct MoeOpts {
    std::string format = "nvfp4";
    std::vector<std::string> shapes{"flash", "pro"};
    std::vector<int64_t> tokens{1, 8, 64, 512, 4096};
  };
  auto mopts = std::make_shared<MoeOpts>();
  moe->add_option("--format", mopts->format, "expert weight format")
      ->check(CLI::IsMember({"nvfp4", "mxfp4"}));
  moe->add_option("--shape", mopts->shapes, "model shapes")
      ->delimiter(',')
      ->check(CLI::IsMember({"flash", "pro"}));
  moe->add_option("--tokens", mopts->tokens, "token counts")
      ->delimiter(',')
      ->check(CLI::Range(int64_t(1), int64_t(1) << 16));
  moe->callback([&run, mopts] {
    run = [mopts]() -> int {
#ifdef DSV4_HAVE_CUDA
      cuda::MoeBenchOptions o;
      o.format = mopts->format == "mxfp4" ? WeightFormat::kMXFP4 : WeightFormat::kNVFP4;
      o.shapes = mopts->shapes;
      o.tokens = mopts->tokens;
      const Status s = cuda::bench_moe(o);
      return s.ok() ? 0 : fail(s.message());
#else
      return fail("bench moe: this dsv4 was built without CUDA; expected a build with nvcc and a GPU");
#endif
    };
  });

  auto* attention =
      bench->add_subcommand("attention", "the attention op on the model's key lists, decode and prefill");
  auto aopts = std::make_shared<AttentionBenchOptionsCli>();
  attention->add_option("--shape", aopts->shapes, "model shapes")
      ->delimiter(',')
      ->check(CLI::IsMember({"flash", "pro"}));
  attention->add_option("--type", aopts->types, "layer types")
      ->delimiter(',')
      ->check(CLI::IsMember({"sliding", "hca", "csa"}));
  attention->add_option("--batch", aopts->batches, "decode batch sizes (sequences)")
      ->delimiter(',')
      ->check(CLI::Range(int64_t(0), int64_t(4096)));
  attention->add_option("--prefill", aopts->prefills, "prefill token counts (one sequence)")
      ->delimiter(',')
      ->check(CLI::Range(int64_t(0), int64_t(1) << 16));
  attention->add_option("--context", aopts->context, "decode: tokens of history per sequence")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  attention->callback([&run, aopts] {
    run = [aopts]() -> int {
#ifdef DSV4_HAVE_CUDA
      cuda::AttentionBenchOptions o;
      o.shapes = aopts->shapes;
      o.types = aopts->types;
      for (int64_t b : aopts->batches)
        if (b > 0) o.batches.push_back(b);
      for (int64_t n : aopts->prefills)
        if (n > 0) o.prefills.push_back(n);
      o.context = aopts->context;
      const Status s = cuda::bench_attention(o);
      return s.ok() ? 0 : fail(s.message());
#else
      return fail("bench attention: this dsv4 was built without CUDA; expected a build with nvcc and a GPU");
#endif
    };
  });

  auto* model = bench->add_subcommand(
      "model", "the whole model (random weights, real widths, first N layers): decode, prefill");
  struct ModelOpts {
    std::string shape = "flash", layout = "nvfp4", keep;
    int64_t layers = 4, context = 4096, steps = 10, prefill_rows = 8192;
    uint64_t seed = 1;
    bool eager = false;
    std::vector<int64_t> batches{1, 8, 32, 64};
  };
  auto mo = std::make_shared<ModelOpts>();
  model->add_option("--shape", mo->shape, "V4-Flash or V4-Pro widths")
      ->check(CLI::IsMember({"flash", "pro"}));
  model
      ->add_option(
          "--layers", mo->layers,
          "the first N layers (default 4: Flash has sliding, CSA and HCA layers, hash and dense routers)")
      ->check(CLI::Range(int64_t(1), int64_t(61)));
  model->add_option("--batch", mo->batches, "decode batch sizes (sequences)")
      ->delimiter(',')
      ->check(CLI::Range(int64_t(1), int64_t(4096)));
  model->add_option("--context", mo->context, "tokens of history per sequence when decode is timed")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  model->add_option("--steps", mo->steps, "timed decode steps per batch size")->check(CLI::Range(1, 1000));
  model->add_option("--prefill-rows", mo->prefill_rows, "most rows per prefill forward")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 16));
  model
      ->add_option("--layout", mo->layout,
                   "expert format: nvfp4 (NVIDIA ModelOpt) or mxfp4 (DeepSeek native)")
      ->check(CLI::IsMember({"nvfp4", "mxfp4"}));
  model->add_option("--keep", mo->keep, "write the random checkpoint to this directory and keep it");
  model->add_option("--seed", mo->seed, "random seed of the weights and tokens");
  model->add_flag("--eager", mo->eager, "time decode steps run eagerly, not replayed as CUDA graphs");
  model->callback([&run, mo] {
    run = [mo]() -> int {
#ifdef DSV4_HAVE_CUDA
      const ModelConfig full = mo->shape == "pro" ? ModelConfig::pro() : ModelConfig::flash();
      if (mo->layers > full.n_layers)
        return fail(fmt::format("--layers {}: V4-{} has {} layers; expected at most that", mo->layers,
                                mo->shape, full.n_layers));
      ModelBenchOptions o;
      o.model = first_layers(full, mo->layers);
      o.shape = mo->shape;
      o.batches = mo->batches;
      o.context = mo->context;
      o.decode_steps = mo->steps;
      o.prefill_rows = mo->prefill_rows;
      o.layout = parse_checkpoint_layout(mo->layout).value();
      o.seed = mo->seed;
      o.keep_dir = mo->keep;
      o.decode_graphs = !mo->eager;
      const Status s = cuda::bench_model(o);
      return s.ok() ? 0 : fail(s.message());
#else
      return fail("bench model: this dsv4 was built without CUDA; expected a build with nvcc and a GPU");
#endif
    };
  });
}

}  // namespace dsv4::cli
