#!/usr/bin/env python3
"""Build a seeded random LLaMA checkpoint and a random token file for benchmarks.

Usage:
  python3 benchmarks/make_random_model.py [--preset 100m|300m|tiny] [--out DIR] [--seed S]
                                          [--windows W] [--seq-len T] [--force]

Writes, into a git-ignored folder (default .cache/models/llama-<preset>):
  config.json, generation_config.json   as written by transformers' save_pretrained
  model.safetensors                     every tensor in F32 (a single file; 1b: BF16 shards + index)
  tokens.bin                            W*T raw little-endian uint32 ids, uniform in [0, vocab)
  bench-meta.json                       preset, seed, config, parameter counts

The work is skipped when config.json, model.safetensors, tokens.bin and bench-meta.json
already exist and bench-meta.json records the same preset, seed and token shape (use --force
to rebuild).

Presets (head_dim = hidden / heads in both; untied lm_head; rope_theta 10000; RMS eps 1e-6):
  100m  hidden 768, intermediate 2048, 12 layers, 12 heads, 4 kv heads (GQA 3:1), vocab 32000.
        124,668,672 parameters: 75,515,904 in the decoder layers (75,497,472 in matrices,
        18,432 in norms), 24,576,000 embedding, 24,576,000 lm_head, 768 final norm.
        The matrices the engine multiplies with (layers + lm_head) hold 100,073,472 parameters.
        Tokens: 16 windows x 256.
  300m  hidden 1024, intermediate 2816, 24 layers, 16 heads, 8 kv heads, vocab 32000 (pipeline benchmark).
  1b    hidden 2048, intermediate 5632, 22 layers, 32 heads, 4 kv heads, vocab 32000 (TinyLlama's shape):
        1,100,048,384 parameters, stored in BF16 and sharded (max 1GB per file), as large checkpoints are.
        Tokens: 16 windows x 256.
  tiny  hidden 64, intermediate 160, 2 layers, 4 heads, 2 kv heads, vocab 512 (for CI: seconds).
        Tokens: 8 windows x 32.

Weights are transformers' own random initialisation (normal(0, 0.02) linears and embeddings,
norm weights 1) under torch.manual_seed(seed), so the loss sits near ln(vocab).
"""

import argparse
import json
import os
import sys

PRESETS = {
    "100m": dict(
        config=dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                    num_attention_heads=12, num_key_value_heads=4, vocab_size=32000),
        windows=16, seq_len=256),
    "300m": dict(
        config=dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=24,
                    num_attention_heads=16, num_key_value_heads=8, vocab_size=32000),
        windows=32, seq_len=128),
    "1b": dict(
        config=dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                    num_attention_heads=32, num_key_value_heads=4, vocab_size=32000),
        windows=16, seq_len=256, dtype="bfloat16", shard="1GB"),
    "tiny": dict(
        config=dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, vocab_size=512),
        windows=8, seq_len=32),
}

COMMON = dict(
    max_position_embeddings=4096, rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False,
    attention_bias=False, mlp_bias=False, hidden_act="silu", bos_token_id=1, eos_token_id=2,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def param_counts(cfg):
    """Parameter counts from the config alone (the script checks them against the torch model)."""
    h, i, v, l = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    hd = h // cfg["num_attention_heads"]
    qd, kvd = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    layer_matrices = qd * h + 2 * kvd * h + h * qd + 3 * i * h
    layer_norms = 2 * h
    return {
        "total": l * (layer_matrices + layer_norms) + 2 * v * h + h,
        "layer_matrices": l * layer_matrices,
        "layer_norms": l * layer_norms,
        "embedding": v * h,
        "lm_head": v * h,
        "final_norm": h,
        "matmul": l * layer_matrices + v * h,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="100m")
    ap.add_argument("--out", help="output folder (default .cache/models/llama-<preset> in the repo)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--windows", type=int, help="token windows (default: the preset's)")
    ap.add_argument("--seq-len", type=int, help="tokens per window (default: the preset's)")
    ap.add_argument("--layers", type=int, help="decoder layers (default: the preset's)")
    ap.add_argument("--force", action="store_true", help="rebuild even when the output exists")
    args = ap.parse_args()

    preset = PRESETS[args.preset]
    out = args.out or os.path.join(REPO, ".cache", "models", f"llama-{args.preset}")
    windows = args.windows or preset["windows"]
    seq_len = args.seq_len or preset["seq_len"]
    cfg = dict(COMMON, **preset["config"])
    if args.layers:
        cfg["num_hidden_layers"] = args.layers
    counts = param_counts(cfg)
    meta = {"preset": args.preset, "seed": args.seed, "windows": windows, "seq_len": seq_len,
            "config": cfg, "params": counts}

    meta_path = os.path.join(out, "bench-meta.json")
    dtype = preset.get("dtype", "float32")
    weights = "model.safetensors.index.json" if "shard" in preset else "model.safetensors"
    files = ["config.json", weights, "tokens.bin", "bench-meta.json"]
    if not args.force and all(os.path.exists(os.path.join(out, f)) for f in files):
        with open(meta_path) as f:
            old = json.load(f)
        if all(old.get(k) == meta[k] for k in ("preset", "seed", "windows", "seq_len", "config")):
            print(f"{out}: exists ({counts['total']:,} parameters), skipped")
            return
        print(f"{out}: exists with different settings, rebuilding")

    import numpy as np
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(args.seed)
    config = LlamaConfig(**cfg)
    model = LlamaForCausalLM(config).to(getattr(torch, dtype)).eval()
    total = sum(p.numel() for p in model.parameters())
    if total != counts["total"]:
        sys.exit(f"parameter count {total} != expected {counts['total']} (transformers changed its LLaMA?)")

    os.makedirs(out, exist_ok=True)
    # F32 presets: one file (max_shard_size above their size); 1b: BF16 in 1 GB shards.
    model.save_pretrained(out, safe_serialization=True, max_shard_size=preset.get("shard", "4GB"))
    ids = np.random.default_rng(args.seed).integers(0, cfg["vocab_size"], size=windows * seq_len, dtype=np.uint32)
    ids.astype("<u4").tofile(os.path.join(out, "tokens.bin"))
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print(f"{out}: {total:,} parameters ({counts['matmul']:,} in matmul weights), "
          f"tokens {windows} x {seq_len}")


if __name__ == "__main__":
    main()
