#!/usr/bin/env python3
"""Writes tests/data/bad_input/: one model directory per malformed-checkpoint case, each with an
`expected_error.txt` holding a substring the one-line error must contain. Standard library only.

Usage: scripts/make_bad_input_corpus.py BUILD/dsv4 [OUT_DIR]
The dsv4 binary writes the valid micro checkpoint that weight-level cases start from; each case
then breaks exactly one thing. The corpus is committed; rerun only when adding cases.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

MICRO_CONFIG = None  # filled from the generated micro model


def write_safetensors(path, header, data=b"", raw_header=None):
    text = raw_header if raw_header is not None else json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        f.write(data)


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def case(root, name, expected, config=None):
    d = os.path.join(root, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(config if config is not None else MICRO_CONFIG)
    with open(os.path.join(d, "expected_error.txt"), "w") as f:
        f.write(expected + "\n")
    return d


def mutate_model(d, base, fn):
    """Copies the micro model's tensors into d after fn(header, data) -> (header, data)."""
    header, data = read_safetensors(base)
    header, data = fn(header, data)
    write_safetensors(os.path.join(d, "model.safetensors"), header, data)


def main():
    global MICRO_CONFIG
    dsv4 = sys.argv[1]
    root = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "tests", "data", "bad_input")
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp()
    subprocess.run([dsv4, "make-model", "--preset", "micro", "--out", tmp], check=True, stdout=subprocess.DEVNULL)
    MICRO_CONFIG = open(os.path.join(tmp, "config.json")).read()
    base = os.path.join(tmp, "model.safetensors")
    cfg = json.loads(MICRO_CONFIG)
    one = {"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}

    # --- safetensors container
    d = case(root, "truncated_file", "file has 5 bytes; expected at least 8")
    open(os.path.join(d, "model.safetensors"), "wb").write(b"\x10\x00\x00\x00\x00")
    d = case(root, "header_past_end", "header length 1000 runs past the end of the file")
    write_safetensors(os.path.join(d, "model.safetensors"), None, b"", raw_header=b"{}")
    with open(os.path.join(d, "model.safetensors"), "r+b") as f:
        f.write(struct.pack("<Q", 1000))
    d = case(root, "malformed_json", "header is not valid JSON")
    write_safetensors(os.path.join(d, "model.safetensors"), None, b"", raw_header=b'{"t": {"dtype": ')
    d = case(root, "header_not_object", "header is not a JSON object")
    write_safetensors(os.path.join(d, "model.safetensors"), None, b"", raw_header=b"[1, 2]")
    d = case(root, "unknown_dtype", "unknown dtype 'F4'")
    write_safetensors(os.path.join(d, "model.safetensors"), {"t": {"dtype": "F4", "shape": [2], "data_offsets": [0, 1]}}, b"\0")
    d = case(root, "negative_shape", "shape entries must be non-negative integers")
    write_safetensors(os.path.join(d, "model.safetensors"), {"t": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8)
    d = case(root, "offsets_out_of_range", "out of range; data section has 8 bytes")
    write_safetensors(os.path.join(d, "model.safetensors"), {"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8)
    d = case(root, "offsets_reversed", "end before begin")
    write_safetensors(os.path.join(d, "model.safetensors"), {"t": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}}, b"\0" * 8)
    d = case(root, "overlapping_offsets", "overlap")
    write_safetensors(os.path.join(d, "model.safetensors"), {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12)
    d = case(root, "shape_byte_mismatch", "byte size 32 does not match shape [4, 4]")
    write_safetensors(os.path.join(d, "model.safetensors"), {"t": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 32]}}, b"\0" * 32)
    d = case(root, "missing_data_offsets", "field 'data_offsets' expected [begin, end]")
    write_safetensors(os.path.join(d, "model.safetensors"), {"t": {"dtype": "F32", "shape": [2]}}, b"\0" * 8)

    # --- sharded checkpoints
    d = case(root, "missing_shard", "shard 'model-00002-of-00002.safetensors' (holding 't2' and 0 more) is missing from disk")
    write_safetensors(os.path.join(d, "model-00001-of-00002.safetensors"), one, b"\0" * 8)
    json.dump({"weight_map": {"t": "model-00001-of-00002.safetensors", "t2": "model-00002-of-00002.safetensors"}},
              open(os.path.join(d, "model.safetensors.index.json"), "w"))
    d = case(root, "indexed_tensor_absent", "tensor 'ghost' is listed in the index but absent from the shard")
    write_safetensors(os.path.join(d, "model-00001-of-00001.safetensors"), one, b"\0" * 8)
    json.dump({"weight_map": {"t": "model-00001-of-00001.safetensors", "ghost": "model-00001-of-00001.safetensors"}},
              open(os.path.join(d, "model.safetensors.index.json"), "w"))
    d = case(root, "index_malformed", "model.safetensors.index.json: not valid JSON")
    open(os.path.join(d, "model.safetensors.index.json"), "w").write("{weight_map: ")
    d = case(root, "index_path_escape", "expected a file name in the directory")
    json.dump({"weight_map": {"t": "../secret.safetensors"}}, open(os.path.join(d, "model.safetensors.index.json"), "w"))
    d = case(root, "no_weights", "no model.safetensors.index.json or model.safetensors")

    # --- config.json
    c = dict(cfg); del c["hidden_size"]
    case(root, "config_missing_field", "config.json: missing field 'hidden_size'", json.dumps(c))
    c = dict(cfg); c["num_attention_heads"] = 3
    case(root, "config_heads_not_divisible", "field 'o_groups'", json.dumps({**c, "o_groups": 2}))
    c = dict(cfg); c["hidden_size"] = "4096"
    case(root, "config_wrong_type", "field 'hidden_size': expected an integer, got \"4096\"", json.dumps(c))
    case(root, "config_malformed", "config.json: not valid JSON", '{"hidden_size": 4096,')
    c = dict(cfg); c["compress_ratios"] = [0, 4, 64]
    case(root, "config_bad_ratio", "field 'compress_ratios[2]': 64; expected 0 (sliding), 4 (CSA) or 128 (HCA)", json.dumps(c))
    c = dict(cfg); c["engram_config"] = {"n": 1}
    case(root, "config_v4_1", "only DeepSeek-V4 is supported", json.dumps(c))
    c = dict(cfg); c["model_type"] = "deepseek_v3"
    case(root, "config_other_model", "unsupported model 'deepseek_v3'", json.dumps(c))
    c = dict(cfg); del c["compress_ratios"]
    case(root, "config_no_schedule", "missing field 'compress_ratios' (or 'layer_types')", json.dumps(c))

    # --- weights vs config (start from the valid micro model, break one thing)
    def set_shape(name, shape):
        def f(h, data):
            h[name]["shape"] = shape
            return h, data
        return f

    def drop(name):
        def f(h, data):
            del h[name]
            return h, data
        return f

    def add_extra(name):
        def f(h, data):
            h[name] = {"dtype": "F32", "shape": [2], "data_offsets": [len(data), len(data) + 8]}
            return h, data + b"\0" * 8
        return f

    def set_f32(name, value):
        def f(h, data):
            b = h[name]["data_offsets"][0]
            data = data[:b] + struct.pack("<f", value) + data[b + 4:]
            return h, data
        return f

    def set_i64(name, index, value):
        def f(h, data):
            b = h[name]["data_offsets"][0] + 8 * index
            data = data[:b] + struct.pack("<q", value) + data[b + 8:]
            return h, data
        return f

    # A [32, 16] U8 tensor relabelled [16, 32] keeps its byte size, so only the schema check sees it.
    d = case(root, "weight_wrong_shape", "tensor 'layers.1.ffn.experts.0.w1.weight': shape [16, 32], expected [32, 16]")
    mutate_model(d, base, set_shape("layers.1.ffn.experts.0.w1.weight", [16, 32]))
    d = case(root, "weight_missing", "missing tensor 'layers.2.attn.wkv.weight'")
    mutate_model(d, base, drop("layers.2.attn.wkv.weight"))
    d = case(root, "weight_unexpected", "unexpected tensor 'layers.7.attn.wkv.weight'")
    mutate_model(d, base, add_extra("layers.7.attn.wkv.weight"))
    d = case(root, "weight_scale_2_zero", "tensor 'layers.1.ffn.experts.1.w2.weight_scale_2': value 0; expected a finite non-zero scale")
    mutate_model(d, base, set_f32("layers.1.ffn.experts.1.w2.weight_scale_2", 0.0))
    d = case(root, "weight_scale_2_nan", "tensor 'layers.0.ffn.experts.0.w3.weight_scale_2': value nan; expected a finite non-zero scale")
    mutate_model(d, base, set_f32("layers.0.ffn.experts.0.w3.weight_scale_2", float("nan")))
    d = case(root, "tid2eid_out_of_range", "tensor 'layers.0.ffn.gate.tid2eid': entry [3, 0] = 9; expected an expert id below 2")
    mutate_model(d, base, set_i64("layers.0.ffn.gate.tid2eid", 3, 9))
    d = case(root, "scale_wrong_dtype", "tensor 'layers.1.attn.wq_a.scale': dtype U8, expected F8_E8M0")
    def relabel(h, data):
        h["layers.1.attn.wq_a.scale"]["dtype"] = "U8"
        return h, data
    mutate_model(d, base, relabel)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
