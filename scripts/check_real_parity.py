#!/usr/bin/env python3
"""Parity on the real model: the engine's perplexity of unpruned SmolLM2-135M (the GGUF) on the evaluation
windows equals transformers' (same GGUF, dequantised, float32) within 0.5%.

    python3 scripts/check_real_parity.py [--windows 64] [--seq-len 256] [--binary PATH]

Uses the first N consecutive windows of .cache/assets/wiki/eval.bin (launch/fetch-assets, then
`gradmap-dist tokenize`); needs torch, transformers, accelerate and gguf. Prints both numbers; exits 1 when
they differ by more than 0.5%.
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "gradmap-dist"))
    a = ap.parse_args()
    assets = os.path.join(ROOT, ".cache", "assets")
    gguf = os.path.join(assets, "SmolLM2-135M-Instruct.Q4_1.gguf")
    tokens = os.path.join(assets, "wiki", "eval.bin")
    if not os.path.exists(tokens):
        subprocess.run([a.binary, "tokenize", "--model", gguf, "--text", tokens[:-3] + "txt", "--out", tokens], check=True)
    r = subprocess.run([a.binary, "eval", "--model", gguf, "--tokens", tokens, "--seq-len", str(a.seq_len),
                        "--max-windows", str(a.windows), "--matmul", "f32", "--json"], check=True, capture_output=True, text=True)
    engine = json.loads(r.stdout.strip().splitlines()[-1])

    import torch
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(os.cpu_count())
    model = AutoModelForCausalLM.from_pretrained(assets, gguf_file=os.path.basename(gguf), dtype=torch.float32)
    data = open(tokens, "rb").read(4 * a.windows * a.seq_len)
    ids = torch.tensor(struct.unpack("<%dI" % (len(data) // 4), data), dtype=torch.long).view(a.windows, a.seq_len)
    losses = []
    with torch.no_grad():
        for w in range(a.windows):
            x = ids[w:w + 1]
            losses.append(model(x, labels=x).loss.item())
    ref = sum(losses) / len(losses)
    diff = abs(math.exp(engine["loss"]) / math.exp(ref) - 1)
    print(f"SmolLM2-135M, {a.windows} windows × {a.seq_len} tokens of the evaluation articles:")
    print(f"  gradmap-dist  loss {engine['loss']:.6f}  ppl {math.exp(engine['loss']):.4f}")
    print(f"  transformers  loss {ref:.6f}  ppl {math.exp(ref):.4f}")
    print(f"  relative ppl difference {diff:.2e} (limit 5e-3)")
    sys.exit(0 if diff <= 5e-3 else 1)


if __name__ == "__main__":
    main()
