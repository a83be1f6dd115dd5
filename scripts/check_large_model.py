#!/usr/bin/env python3
"""The second real model, Qwen2.5-Coder-1.5B-Instruct Q4_K_M (launch/fetch-assets --large), against transformers
reading the same GGUF:
  1. tokenizer: `gradmap-dist tokenize` of the evaluation text gives the ids that HF `tokenizers` gives with the
     tokenizer transformers builds from the GGUF (AutoTokenizer.from_pretrained(gguf_file=...), no special tokens);
  2. loss: `gradmap-dist eval --matmul f32` (float32 weights) over the first N windows of those ids equals
     transformers' (gguf_file=..., float32, one window at a time) within 1e-4 relative;
  3. with --pruned FILE.gguf (a `prune --out FILE.gguf` of it, e.g. K = 7): transformers loads that file and its
     loss over the same windows equals `gradmap-dist eval --matmul f32` of it within the same 1e-4 (its kept
     tensors are the source's bytes and the compensated ffn_down is F16, which both sides decode exactly).
     A --pruned file that does not exist is reported as SKIPPED (the other checks still run);
     --pruned-only leaves out check 2.

    python3 scripts/check_large_model.py [--windows 8] [--seq-len 256] [--weights f32] [--binary PATH]
                                         [--pruned FILE.gguf [--pruned-only]]

Needs torch, transformers, accelerate and gguf, and about 13 GB free memory (the engine's float32 weights, ~6 GB,
then transformers', ~7 GB; they do not run at the same time). When the large GGUF is absent it prints how to
fetch it and exits 0 (the only skip). Exits 1 when a check fails.

Why 1e-4: both sides dequantise to the same float32 weights (the engine bit for bit as gguf-py, which
transformers uses) and compute in float32; what is left is float32 summation order through 28 layers and a
151,936-way softmax, measured 1.0e-5 relative in the loss (docs/data.md): 1e-4 is a factor 10 above it. --weights bf16 rounds every layer weight to BF16 and is outside this tolerance: the
script then reports the difference and checks nothing but that it is below 1e-2.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"


def compare_loss(a, gguf, tokens, ids, what):
    """The engine's `eval --matmul f32` loss of a GGUF against transformers' (gguf_file=, float32, one window at
    a time) over the same windows; True when within the limit."""
    t0 = time.time()
    r = subprocess.run([a.binary, "eval", "--model", gguf, "--tokens", tokens, "--seq-len", str(a.seq_len),
                        "--max-windows", str(a.windows), "--matmul", "f32", "--weights", a.weights, "--json"],
                       check=True, capture_output=True, text=True)
    engine = json.loads(r.stdout.strip().splitlines()[-1])["loss"]
    t_engine = time.time() - t0

    import torch
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(os.cpu_count())
    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf),
                                                 dtype=torch.float32)
    layers = model.config.num_hidden_layers
    windows = torch.tensor(ids).view(a.windows, a.seq_len)
    with torch.no_grad():
        losses = [model(windows[w:w + 1], labels=windows[w:w + 1]).loss.item() for w in range(a.windows)]
    del model
    ref = sum(losses) / len(losses)
    t_ref = time.time() - t0
    rel = abs(engine - ref) / abs(ref)
    limit = 1e-4 if a.weights == "f32" else 1e-2
    print(f"loss over {a.windows} windows × {a.seq_len} tokens of {what} ({os.path.basename(gguf)}, {layers} layers):")
    print(f"  gradmap-dist  {engine:.8f}  (--weights {a.weights} --matmul f32, {t_engine:.0f} s incl. load)")
    print(f"  transformers  {ref:.8f}  (gguf_file=, float32, {t_ref:.0f} s incl. load)")
    print(f"  relative difference {rel:.2e} (limit {limit:.0e})")
    return rel <= limit


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--weights", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "gradmap-dist"))
    ap.add_argument("--pruned", help="a pruned GGUF of the model: check 3 (skipped when the file is absent)")
    ap.add_argument("--pruned-only", action="store_true", help="with --pruned: leave out check 2")
    a = ap.parse_args()
    if a.pruned_only and not a.pruned:
        ap.error("--pruned-only needs --pruned FILE.gguf")
    cache = os.environ.get("GRADMAP_CACHE", os.path.join(ROOT, ".cache"))
    assets = os.path.join(cache, "assets")
    gguf = os.path.join(assets, NAME)
    text = os.path.join(assets, "wiki", "eval.txt")
    if not os.path.exists(gguf):
        print(f"check_large_model: SKIPPED: {gguf} is absent (run launch/fetch-assets --large to fetch it)")
        return 0
    if not os.path.exists(text):
        sys.exit(f"check_large_model: {text} is missing: run launch/fetch-assets")
    tokens = os.path.join(assets, "wiki", "eval.qwen2.5-coder.bin")
    ok = True

    # 1. Tokenizer.
    t0 = time.time()
    subprocess.run([a.binary, "tokenize", "--model", gguf, "--text", text, "--out", tokens], check=True,
                   stdout=subprocess.DEVNULL)
    ours = np.fromfile(tokens, dtype="<u4").astype(np.int64)
    t_ours = time.time() - t0
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(assets, gguf_file=NAME)
    theirs = np.array(tok(open(text, encoding="utf-8").read(), add_special_tokens=False)["input_ids"], dtype=np.int64)
    same = len(ours) == len(theirs) and np.array_equal(ours, theirs)
    first = next((i for i in range(min(len(ours), len(theirs))) if ours[i] != theirs[i]), min(len(ours), len(theirs)))
    print(f"tokenizer ({type(tok).__name__}, vocab {len(tok)}): gradmap-dist {len(ours)} ids in {t_ours:.1f} s, "
          f"tokenizers {len(theirs)} ids: {'identical' if same else f'DIFFER from index {first}'}")
    ok &= same

    # 2. Loss over the first windows (the engine's ids; they equal transformers' when check 1 passed).
    need = a.windows * a.seq_len
    if len(ours) < need:
        sys.exit(f"check_large_model: {tokens} has {len(ours)} ids, fewer than {a.windows} × {a.seq_len}")
    ids = ours[:need]  # the first windows of `tokens`, which eval reads
    if not a.pruned_only:
        ok &= compare_loss(a, gguf, tokens, ids, "eval.txt")

    # 3. The pruned GGUF, optional.
    if a.pruned and not os.path.exists(a.pruned):
        print(f"pruned GGUF: SKIPPED: {a.pruned} is absent (write it with prune --out FILE.gguf)")
    elif a.pruned:
        ok &= compare_loss(a, os.path.abspath(a.pruned), tokens, ids, "eval.txt, pruned GGUF")
    print("check_large_model: " + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
