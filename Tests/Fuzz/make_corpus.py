#!/usr/bin/env python3
"""Regenerates the fuzz seed corpus (Tests/Fuzz/corpus): small valid inputs of every format gradmap-fuzz mutates.

    python3 Tests/Fuzz/make_corpus.py [--out Tests/Fuzz/corpus]

Needs numpy and safetensors. Deterministic (seeded); every file is < 64 KiB and the corpus < 1 MiB.
Layout, one folder per --format of gradmap-fuzz:
  safetensors/  *.safetensors of one tiny llama (config.json beside them is what they are loaded with; not a seed)
  index/        one complete sharded checkpoint folder per seed (the index is what gets mutated)
  gguf/         *.gguf copied from Tests/Fixtures/gguf (those under 64 KiB)
  config/       *.json config.json variants (llama, qwen2, mistral, llama3 RoPE, linear RoPE + biases)
  tokenizer/    *.json tokenizer.json files from Tests/Fixtures/tokenizers, cut down to their first merges
  tokens/       *.bin little-endian uint32 ids below vocab 96 (gradmap-fuzz reads them with --seq-len 8)
"""
import argparse
import json
import os
import shutil

import numpy as np
from safetensors.numpy import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures")

# The tiny llama every safetensors and index seed holds: vocab 16, hidden 8, FFN 16, 1 layer, 2 heads / 1 kv head.
TINY_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 16, "hidden_size": 8,
    "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
    "head_dim": 4, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "rope_scaling": None,
    "tie_word_embeddings": False, "torch_dtype": "float32",
}
TINY_SHAPES = {
    "model.embed_tokens.weight": [16, 8],
    "model.layers.0.input_layernorm.weight": [8],
    "model.layers.0.self_attn.q_proj.weight": [8, 8],
    "model.layers.0.self_attn.k_proj.weight": [4, 8],
    "model.layers.0.self_attn.v_proj.weight": [4, 8],
    "model.layers.0.self_attn.o_proj.weight": [8, 8],
    "model.layers.0.post_attention_layernorm.weight": [8],
    "model.layers.0.mlp.gate_proj.weight": [16, 8],
    "model.layers.0.mlp.up_proj.weight": [16, 8],
    "model.layers.0.mlp.down_proj.weight": [8, 16],
    "model.norm.weight": [8],
    "lm_head.weight": [16, 8],
}


def tiny_tensors(rng, dtype):
    out = {}
    for name, shape in TINY_SHAPES.items():
        x = rng.normal(0, 0.2, size=shape).astype(np.float32)
        out[name] = x.astype(dtype)
    return out


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def safetensors_seeds(out, rng):
    d = os.path.join(out, "safetensors")
    os.makedirs(d)
    write_json(os.path.join(d, "config.json"), TINY_CONFIG)
    save_file(tiny_tensors(rng, np.float32), os.path.join(d, "tiny_f32.safetensors"), metadata={"format": "pt"})
    save_file(tiny_tensors(rng, np.float16), os.path.join(d, "tiny_f16.safetensors"))
    # BF16 as numpy has no bfloat16: the top halves of float32, stored through a uint16 view and renamed below.
    t = tiny_tensors(rng, np.float32)
    half = {k: (v.view(np.uint32) >> 16).astype(np.uint16) for k, v in t.items()}
    path = os.path.join(d, "tiny_bf16.safetensors")
    save_file(half, path)
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = raw[8:8 + n].decode().replace('"U16"', '"BF16"')
    with open(path, "wb") as f:
        f.write(len(header.encode()).to_bytes(8, "little") + header.encode() + raw[8 + n:])
    # Extra non-float tensors and metadata: the reader must validate dtypes it cannot load.
    extra = tiny_tensors(rng, np.float32)
    extra["extra.ids"] = np.arange(6, dtype=np.int64).reshape(2, 3)
    extra["extra.mask"] = np.array([1, 0, 1], dtype=np.bool_)
    save_file(extra, os.path.join(d, "tiny_extra.safetensors"), metadata={"format": "pt", "note": "fuzz seed"})


def index_seeds(out, rng):
    d = os.path.join(out, "index", "tiny_3_shards")
    os.makedirs(d)
    write_json(os.path.join(d, "config.json"), TINY_CONFIG)
    tensors = tiny_tensors(rng, np.float16)
    names = list(TINY_SHAPES)
    groups = [names[:1], names[1:7], names[7:]]
    weight_map = {}
    total = 0
    for i, group in enumerate(groups):
        shard = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        save_file({k: tensors[k] for k in group}, os.path.join(d, shard), metadata={"format": "pt"})
        for k in group:
            weight_map[k] = shard
            total += tensors[k].nbytes
    write_json(os.path.join(d, "model.safetensors.index.json"), {"metadata": {"total_size": total}, "weight_map": weight_map})
    # The fixture's own 4-shard checkpoint (F16, 3 layers), without its references.
    src = os.path.join(FIXTURES, "llama_sharded_f16")
    dst = os.path.join(out, "index", "llama_sharded_f16")
    os.makedirs(dst)
    for f in os.listdir(src):
        if f == "config.json" or f.startswith("model"):
            shutil.copy(os.path.join(src, f), os.path.join(dst, f))


def gguf_seeds(out):
    d = os.path.join(out, "gguf")
    os.makedirs(d)
    src = os.path.join(FIXTURES, "gguf")
    for f in sorted(os.listdir(src)):
        if f.endswith(".gguf") and os.path.getsize(os.path.join(src, f)) < 64 * 1024:
            shutil.copy(os.path.join(src, f), os.path.join(d, f))


def config_seeds(out):
    d = os.path.join(out, "config")
    os.makedirs(d)
    for name in ["llama_gqa", "qwen2_tied", "mistral_headdim", "llama3_rope", "llama_linear_bias"]:
        shutil.copy(os.path.join(FIXTURES, name, "config.json"), os.path.join(d, name + ".json"))
    write_json(os.path.join(d, "tiny_llama.json"), TINY_CONFIG)


def tokenizer_seeds(out, keep_merges=120):
    d = os.path.join(out, "tokenizer")
    os.makedirs(d)
    src = os.path.join(FIXTURES, "tokenizers")
    for name in sorted(os.listdir(src)):
        path = os.path.join(src, name, "tokenizer.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            tok = json.load(f)
        model = tok["model"]
        merges = model["merges"][:keep_merges]
        made = set()
        for m in merges:
            a, b = m.split(" ") if isinstance(m, str) else m
            made.update([a, b, a + b])
        # Single characters and <0xNN> bytes stay (the alphabet), plus whatever the kept merges use or make.
        vocab = {t: i for t, i in model["vocab"].items() if len(t) == 1 or t.startswith("<0x") or t in made}
        for t in tok.get("added_tokens") or []:
            if t["content"] in model["vocab"]:
                vocab[t["content"]] = model["vocab"][t["content"]]
        model["vocab"] = vocab
        model["merges"] = merges
        with open(os.path.join(d, name + ".json"), "w") as f:
            json.dump(tok, f, ensure_ascii=False, separators=(",", ":"))


def token_seeds(out, rng):
    d = os.path.join(out, "tokens")
    os.makedirs(d)
    shutil.copy(os.path.join(FIXTURES, "llama_gqa", "tokens.bin"), os.path.join(d, "llama_gqa.bin"))
    rng.integers(0, 96, size=24, dtype=np.uint32).astype("<u4").tofile(os.path.join(d, "three_windows.bin"))
    np.array([0, 95, 1, 94, 2, 93, 3, 92], dtype="<u4").tofile(os.path.join(d, "one_window_edges.bin"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "Tests", "Fuzz", "corpus"))
    args = ap.parse_args()
    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    rng = np.random.default_rng(11)
    safetensors_seeds(args.out, rng)
    index_seeds(args.out, rng)
    gguf_seeds(args.out)
    config_seeds(args.out)
    tokenizer_seeds(args.out)
    token_seeds(args.out, rng)
    total = 0
    for base, _, files in os.walk(args.out):
        for f in files:
            size = os.path.getsize(os.path.join(base, f))
            assert size < 64 * 1024, (f, size)
            total += size
    assert total < 1024 * 1024, total
    print(f"{args.out}: {total} bytes")


if __name__ == "__main__":
    main()
