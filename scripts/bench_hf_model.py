#!/usr/bin/env python3
"""HF transformers peer of `dsv4 bench model` (src/cuda/model_bench.h).

Builds the same DeepSeek-V4 model -- the config.json of the bench's random checkpoint (real
widths, its first N layers) -- in HF transformers with random weights, BF16, eager attention (the
only attention DeepSeek-V4 has in HF) and HF's default experts implementation, on the GPU. It prefills
every sequence to --context tokens (forwards of about --prefill-tokens rows), once, at the
largest batch size that fits, and times decode steps at each batch size, the smaller ones on the
first sequences of that cache as dsv4's bench does (one token per sequence per step, the last
logits copied to the host as dsv4's Model::forward returns them). Rows, in the bench's format:
    model params | ms | ms/layer | tok/s | GB/s | TFLOP/s | floor ms | % of floor
Batch sizes that run out of memory are reported and skipped. With --compare OURS.txt (the output
of `dsv4 bench model`) it ends with both side by side.

Floor: the bench's definition in HF's storage formats (BF16 weights and caches): the bytes a
step reads -- every weight of a layer but its routed experts, the routed experts the step's tokens
hit (counted from the routers' ids), the cache rows each query attends (the window, HCA's entries
or CSA's top-k, the indexer's keys), the embedding rows, the LM head, the logits -- over the copy
bandwidth measured here (1 GiB device-to-device, read + write), and FLOPs (2 per weight MAC of
each row's active weights, attention over the attended rows, the indexer's scores) over the BF16
GEMM rate measured here (torch.matmul 8192^3); the larger of the two.

Run on the GPU machine (torch >= 2.11, transformers >= 5.17):
  python scripts/bench_hf_model.py --config CKPT/config.json --compare ours.txt
Check the logic on a CPU with a tiny config:
  python scripts/bench_hf_model.py --config tests/fixtures/tiny-nvfp4/config.json --device cpu \\
      --context 300 --batch 1,2 --steps 2 --prefill-tokens 256
"""
import argparse
import json
import math
import re
import statistics
import time

import torch
import transformers
from transformers import DeepseekV4Config, DeepseekV4ForCausalLM
from transformers.cache_utils import DynamicCache
from transformers.models.deepseek_v4 import modeling_deepseek_v4 as hf

HEADER = "model params | ms | ms/layer | tok/s | GB/s | TFLOP/s | floor ms | % of floor"


def hf_config(path, experts_implementation):
    with open(path) as f:
        cfg = json.load(f)
    kwargs = {k: v for k, v in cfg.items() if k not in ("architectures", "model_type", "torch_dtype", "topk_method")}
    if experts_implementation:
        kwargs["experts_implementation"] = experts_implementation
    return DeepseekV4Config(**kwargs, attn_implementation="eager"), cfg


def build_model(hf_cfg, device, seed):
    torch.manual_seed(seed)
    with torch.device(device):
        model = DeepseekV4ForCausalLM._from_config(hf_cfg, dtype=torch.bfloat16).eval()
    # HF initialises tid2eid to zeros (every token to expert 0): give each token k distinct
    # experts, as DeepSeek's table (and dsv4's random checkpoint) does.
    gen = torch.Generator(device=device).manual_seed(seed)
    for layer in model.model.layers:
        gate = layer.mlp.gate
        if isinstance(gate, hf.DeepseekV4HashRouter):
            v, e = gate.tid2eid.shape[0], gate.num_experts
            ids = torch.empty_like(gate.tid2eid)
            for s in range(0, v, 8192):
                n = min(8192, v - s)
                ids[s:s + n] = torch.rand(n, e, generator=gen, device=device).argsort(dim=1)[:, :gate.top_k]
            gate.tid2eid.copy_(ids)
    return model


def measure_ceilings(device):
    """Copy bandwidth (GB/s, read + write) and sustained BF16 GEMM rate (TFLOP/s), medians of 10 runs."""
    if device == "cpu":
        return float("nan"), float("nan")

    def median_ms(fn, runs=10):
        fn()
        times = []
        for _ in range(runs):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        return statistics.median(times)

    src = torch.ones(1 << 30, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    copy_gbs = 2 * (1 << 30) / (median_ms(lambda: dst.copy_(src)) * 1e6)
    del src, dst
    n = 8192
    x = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    y = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    # As dsv4's bench (src/cuda/bench_util.h, kGemmWarmSeconds): the rate after 2 s of the same
    # GEMM, in the power-capped state long runs reach, not a cold burst.
    start = time.monotonic()
    while time.monotonic() - start < 2.0:
        for _ in range(50):
            torch.matmul(x, y)
        torch.cuda.synchronize()
    gemm_tflops = 2 * n ** 3 / (median_ms(lambda: torch.matmul(x, y)) * 1e9)
    return copy_gbs, gemm_tflops


def sync(device):
    if device != "cpu":
        torch.cuda.synchronize()


class Cost:
    """The floor's bytes and FLOPs of a forward, from the model's own parameters."""

    def __init__(self, model, cfg):
        self.cfg = cfg
        self.layers = []
        for i, layer in enumerate(model.model.layers):
            dense_bytes = dense_macs = 0
            for name, p in layer.named_parameters():
                routed = name.startswith("mlp.experts.")
                if not routed:
                    dense_bytes += p.numel() * p.element_size()
                    if p.dim() >= 2:
                        dense_macs += p.numel()
            for name, b in layer.named_buffers():
                if not name.endswith("tid2eid") and "inv_freq" not in name:
                    dense_bytes += b.numel() * b.element_size()
            ex = layer.mlp.experts
            expert_numel = ex.gate_up_proj[0].numel() + ex.down_proj[0].numel()
            self.layers.append({
                "ratio": cfg["compress_ratios"][i], "hash": i < cfg["num_hash_layers"],
                "dense_bytes": dense_bytes, "dense_macs": dense_macs,
                "expert_bytes": expert_numel * ex.gate_up_proj.element_size(), "expert_macs": expert_numel})
        w = model.lm_head.weight
        self.head_bytes, self.head_macs = w.numel() * w.element_size(), w.numel()
        self.other_bytes = sum(p.numel() * p.element_size() for p in model.model.norm.parameters()) + \
            sum(p.numel() * p.element_size() for p in model.model.hc_head.parameters())

    def forward(self, n_rows, positions, experts_hit, n_out, decode, cache_bytes=2):
        c = self.cfg
        k, d, w = c["num_experts_per_tok"], c["hidden_size"], c["sliding_window"]
        b = n_rows * d * 2  # embedding rows (BF16)
        f = 0.0
        for layer, hit in zip(self.layers, experts_hit):
            b += layer["dense_bytes"] + hit * layer["expert_bytes"] + (n_rows * k * 8 if layer["hash"] else 0)
            f += 2.0 * n_rows * (layer["dense_macs"] + k * layer["expert_macs"])
            ratio = layer["ratio"]
            for p in positions:
                entries = (p + 1) // ratio if ratio else 0
                rows = min(p + 1, w)
                if ratio == 128:
                    rows += entries
                if ratio == 4:
                    rows += min(entries, c["index_topk"])
                    if decode:
                        b += entries * c["index_head_dim"] * cache_bytes
                    f += 2.0 * c["index_n_heads"] * entries * c["index_head_dim"]
                if decode:
                    b += rows * c["head_dim"] * cache_bytes
                f += 4.0 * c["num_attention_heads"] * rows * c["head_dim"]
        b += self.other_bytes + self.head_bytes + n_out * c["vocab_size"] * 4
        f += 2.0 * n_out * self.head_macs
        return b, f


class RouterProbe:
    """Keeps each router's expert ids of a forward (no sync while timed); counts them afterwards."""

    def __init__(self, model):
        self.ids = []
        for layer in model.model.layers:
            layer.mlp.gate.register_forward_hook(lambda mod, inp, out: self.ids.append(out[2]))

    def reset(self):
        self.ids = []

    def hits(self):
        return [int(torch.unique(i).numel()) for i in self.ids]


def row_line(params, ms, ms_per_layer, tok_s, cost, ceilings):
    b, f = cost
    copy_gbs, gemm_tflops = ceilings
    floor_ms = max(b / (copy_gbs * 1e6), f / (gemm_tflops * 1e9)) if not math.isnan(copy_gbs) else float("nan")
    per_layer = f"{ms_per_layer:.3f}" if ms_per_layer is not None else "-"
    return (f"{params} | {ms:.2f} | {per_layer} | {tok_s:.0f} | {b / (ms * 1e6):.0f} | {f / (ms * 1e9):.1f} | "
            f"{floor_ms:.3f} | {100 * floor_ms / ms:.0f}%")


def prefill(model, cost, probe, args, shape, n_layers, batch, ceilings):
    """A fresh cache of `batch` sequences of --context tokens; returns it and the prefill row."""
    cfg, dev = cost.cfg, args.device
    gen = torch.Generator(device=dev).manual_seed(args.seed)
    cache = DynamicCache(config=model.config)
    prompt = torch.randint(0, cfg["vocab_size"], (batch, args.context), generator=gen, device=dev)
    chunk = max(1, min(args.context, args.prefill_tokens // batch))
    times, timed = [], [0.0, 0.0, 0, 0.0]  # bytes, FLOPs, rows, seconds of the timed forwards
    with torch.no_grad():
        for start in range(0, args.context, chunk):
            ids = prompt[:, start:start + chunk]
            probe.reset()
            sync(dev)
            t0 = time.perf_counter()
            model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
            sync(dev)
            times.append(time.perf_counter() - t0)
            if start > 0 or ids.shape[1] == args.context:  # the first forward warms up
                n = ids.shape[0] * ids.shape[1]
                positions = list(range(start, start + ids.shape[1])) * batch
                b, f = cost.forward(n, positions, probe.hits(), batch, decode=False)
                timed[0] += b
                timed[1] += f
                timed[2] += n
                timed[3] += times[-1]
    n_timed = max(1, len(times) - 1)
    row = row_line(
        f"model shape={shape} layers={n_layers} engine=hf phase=prefill batch={batch} context={args.context} "
        f"rows={batch * chunk}", 1e3 * timed[3] / n_timed, None, timed[2] / timed[3],
        (timed[0] / n_timed, timed[1] / n_timed), ceilings)
    print(f"hf prefill: {batch} sequences x {args.context} tokens in {len(times)} forwards of {batch * chunk} "
          f"rows: {sum(times):.1f} s (first forward untimed)")
    return cache, row


def slice_cache(cache, batch):
    """Keeps the first `batch` sequences of every cache tensor (all of them are batch-first)."""
    for layer in cache.layers:
        for name, value in list(vars(layer).items()):
            if torch.is_tensor(value) and value.dim() and value.shape[0] > batch:
                setattr(layer, name, value[:batch])
            elif isinstance(value, dict):
                for k, v in value.items():
                    if torch.is_tensor(v) and v.dim() and v.shape[0] > batch:
                        value[k] = v[:batch]


def decode(model, cache, cost, probe, args, shape, n_layers, batch, position, ceilings, head_ms):
    """Times decode steps of `batch` sequences at `position`; returns the row and whether the
    last logits were finite."""
    cfg, dev = cost.cfg, args.device
    gen = torch.Generator(device=dev).manual_seed(args.seed + batch)
    step_ms, bytes_, flops, logits = [], 0.0, 0.0, None
    with torch.no_grad():
        for step in range(2 + args.steps):
            ids = torch.randint(0, cfg["vocab_size"], (batch, 1), generator=gen, device=dev)
            probe.reset()
            sync(dev)
            t0 = time.perf_counter()
            out = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
            logits = out.logits[:, -1].float().cpu()
            sync(dev)
            ms = 1e3 * (time.perf_counter() - t0)
            if step >= 2:
                step_ms.append(ms)
                b, f = cost.forward(batch, [position + step] * batch, probe.hits(), batch, decode=True)
                bytes_ += b
                flops += f
    ms = statistics.median(step_ms)
    row = row_line(
        f"model shape={shape} layers={n_layers} engine=hf phase=decode batch={batch} context={args.context}",
        ms, (ms - head_ms(batch)) / n_layers, 1e3 * batch / ms, (bytes_ / len(step_ms), flops / len(step_ms)),
        ceilings)
    return row, bool(torch.isfinite(logits).all())


def parse_rows(lines):
    rows = {}
    for line in lines:
        if not line.startswith("model ") or " engine=" not in line or " | " not in line:
            continue
        cols = [c.strip() for c in line.split(" | ")]
        params = dict(re.findall(r"(\w+)=(\S+)", cols[0]))
        rows[(params.get("engine"), params.get("phase"), int(params.get("batch", 0)))] = cols
    return rows


def compare(ours_path, hf_lines):
    with open(ours_path) as f:
        rows = parse_rows(f.readlines())
    rows.update(parse_rows(hf_lines))
    keys = sorted({(phase, batch) for (_, phase, batch) in rows}, key=lambda k: (k[0] != "prefill", k[1]))
    print("\n== dsv4 vs HF transformers (same GPU, same config.json)")
    print("phase batch | dsv4 ms | dsv4 tok/s | dsv4 % of floor | HF ms | HF tok/s | HF % of floor | dsv4 speed-up")
    for phase, batch in keys:
        ours, theirs = rows.get(("dsv4", phase, batch)), rows.get(("hf", phase, batch))
        o = (ours[1], ours[3], ours[7]) if ours else ("-", "-", "-")
        t = (theirs[1], theirs[3], theirs[7]) if theirs else ("-", "-", "-")
        # Decode: the same batch, so the step times compare; prefill forwards differ in rows: tok/s.
        speedup = "-"
        if ours and theirs:
            ratio = float(theirs[1]) / float(ours[1]) if phase == "decode" else float(ours[3]) / float(theirs[3])
            speedup = f"{ratio:.1f}x"
        print(f"{phase} {batch} | {' | '.join(o)} | {' | '.join(t)} | {speedup}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="config.json of the dsv4 bench's checkpoint")
    ap.add_argument("--batch", default="1,8,32,64")
    ap.add_argument("--context", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=10, help="timed decode steps per batch size")
    ap.add_argument("--prefill-tokens", type=int, default=4096, help="about this many rows per prefill forward")
    ap.add_argument("--experts-implementation", default=None, help="HF experts backend (default: HF's choice)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--compare", help="dsv4 bench model output to print side by side")
    args = ap.parse_args()

    hf_cfg, cfg = hf_config(args.config, args.experts_implementation)
    shape = {4096: "flash", 7168: "pro"}.get(cfg["hidden_size"], "custom")
    n_layers = cfg["num_hidden_layers"]
    dev = args.device
    print(f"hf: torch {torch.__version__}, transformers {transformers.__version__}, device "
          f"{torch.cuda.get_device_name() if dev != 'cpu' else 'cpu'}")
    ceilings = measure_ceilings(dev)
    print(f"hf measured: copy {ceilings[0]:.0f} GB/s (1 GiB D2D, read+write); torch BF16 matmul 8192^3 "
          f"{ceilings[1]:.0f} TFLOP/s")
    t0 = time.perf_counter()
    model = build_model(hf_cfg, dev, args.seed)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    print(f"hf model: {n_layers} layers ({', '.join(hf_cfg.layer_types)}), {params / 1e9:.1f} GB of BF16 "
          f"parameters, attention {model.config._attn_implementation}, experts "
          f"{model.config._experts_implementation}; built in {time.perf_counter() - t0:.1f} s")
    cost = Cost(model, cfg)
    probe = RouterProbe(model)

    def head_ms(batch):  # the LM head alone, to take out of the per-layer figure
        x = torch.randn(batch, cfg["hidden_size"], device=dev, dtype=torch.bfloat16)
        with torch.no_grad():
            model.lm_head(x)
            sync(dev)
            t = time.perf_counter()
            for _ in range(10):
                model.lm_head(x)
            sync(dev)
        return 1e3 * (time.perf_counter() - t) / 10

    # Prefill once, at the largest batch that fits; smaller batches decode its first sequences.
    lines, failed, cache, position = [], [], None, args.context
    for batch in sorted({int(b) for b in args.batch.split(",")}, reverse=True):
        try:
            if cache is None:
                cache, row = prefill(model, cost, probe, args, shape, n_layers, batch, ceilings)
                lines.append(row)
            else:
                slice_cache(cache, batch)
            row, finite = decode(model, cache, cost, probe, args, shape, n_layers, batch, position, ceilings,
                                 head_ms)
            position += 2 + args.steps
            lines.append(row)
            print(f"hf decode batch {batch}: logits finite: {'yes' if finite else 'NO'}")
        except torch.cuda.OutOfMemoryError as e:
            failed.append(batch)
            cache = None
            print(f"hf batch {batch}: out of GPU memory ({str(e).splitlines()[0][:160]})")
        if dev != "cpu":
            torch.cuda.empty_cache()
    print(HEADER)
    for line in lines:
        print(line)
    if failed:
        print(f"hf: batch sizes that did not fit: {', '.join(map(str, failed))}")
    if args.compare:
        compare(args.compare, lines)


if __name__ == "__main__":
    main()
