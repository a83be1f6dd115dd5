#!/usr/bin/env python3
"""Build the fixtures of the pruned-GGUF writer under Tests/Fixtures/gguf/.

Usage:  python3 scripts/make_gguf_prune_fixtures.py [--out Tests/Fixtures/gguf]

Needs what scripts/make_gguf_fixtures.py needs (numpy, gguf 0.19.0, torch, transformers); reuses its random
weights and llama.cpp permutation, and takes the tokenizer metadata of its tokenizer_gpt2.gguf (run that script
first). Deterministic: same versions → same bytes.

Files:
  llama_prune.gguf   v3, llama, 4 layers, hidden 64, 4 heads / 2 kv heads, FFN 64, untied output,
                     general.alignment 64; ffn_down Q4_1 in layers 0-2 and F16 in layer 3, the other tensors
                     of every type the reader dequantises; the gpt2 tokenizer of tokenizer_gpt2.gguf (vocab 360);
                     and three arrays the writer must treat by their rule: llama.test.per_layer (u32, one per
                     layer: cut to the kept layers), llama.test.three (length 3: kept), test.per_layer_elsewhere
                     (length 4 but not under llama.: kept).
  llama_prune.tokens.bin   8 windows of 16 uint32 token ids.
  q4_1.input.f32     40 blocks of 32 float32: random ones and the edge cases (a constant block, so d = 0; values
                     on the half levels, where rounding ties; one huge and one tiny range; all negative).
  q4_1.expected.bin  gguf-py's quants.quantize(input, Q4_1): the bytes the Swift quantiser must reproduce.
"""

import argparse
import os

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import GGUFReader, GGUFValueType as V, GGUFWriter
from gguf.quants import quantize

import make_gguf_fixtures as base

SPEC = dict(
    layers=4, hidden=64, ffn=64, heads=4, kv=2, vocab=360, tied=False, theta=10000.0, eps=1e-5, seed=21,
    version=3, alignment=64,
    types={
        "token_embd": Q.Q8_0, "output": Q.Q4_1, "norm": Q.F32,
        0: dict(attn_q=Q.Q4_1, attn_k=Q.Q4_0, attn_v=Q.Q8_0, attn_output=Q.F16, ffn_gate=Q.BF16, ffn_up=Q.Q4_1, ffn_down=Q.Q4_1),
        1: dict(attn_q=Q.Q8_0, attn_k=Q.Q4_1, attn_v=Q.F32, attn_output=Q.Q4_0, ffn_gate=Q.Q4_1, ffn_up=Q.F16, ffn_down=Q.Q4_1),
        2: dict(attn_q=Q.Q4_0, attn_k=Q.F16, attn_v=Q.Q4_1, attn_output=Q.Q8_0, ffn_gate=Q.Q8_0, ffn_up=Q.BF16, ffn_down=Q.Q4_1),
        3: dict(attn_q=Q.F16, attn_k=Q.Q8_0, attn_v=Q.Q4_0, attn_output=Q.Q4_1, ffn_gate=Q.F32, ffn_up=Q.Q4_0, ffn_down=Q.F16),
    })


def tokenizer_fields(out):
    """(key, value, type, sub_type) of tokenizer_gpt2.gguf's tokenizer.* metadata."""
    r = GGUFReader(os.path.join(out, "tokenizer_gpt2.gguf"))
    fields = []
    for k, f in r.fields.items():
        if not k.startswith("tokenizer."):
            continue
        t = f.types[0]
        fields.append((k, f.contents(), t, f.types[1] if t == V.ARRAY else None))
    return fields


def write_model(out):
    s = SPEC
    rng = np.random.default_rng(s["seed"])
    w = base.hf_weights(s, rng)
    path = os.path.join(out, "llama_prune.gguf")
    writer = GGUFWriter(path, arch="llama")
    base.add_model_metadata(writer, "llama_prune", s)
    writer.add_key_value("llama.test.per_layer", [10, 11, 12, 13], V.ARRAY, sub_type=V.UINT32)
    writer.add_key_value("llama.test.three", [1.5, 2.5, 3.5], V.ARRAY, sub_type=V.FLOAT32)
    writer.add_key_value("test.per_layer_elsewhere", ["a", "b", "c", "d"], V.ARRAY, sub_type=V.STRING)
    for k, v, t, sub in tokenizer_fields(out):
        writer.add_key_value(k, v, t, sub_type=sub)
    for gname, _, qtype, values in base.gguf_tensors(s, w):
        writer.add_tensor(gname, base.encode(values, qtype), raw_dtype=qtype if qtype not in (Q.F32, Q.F16) else None)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    ids = np.random.default_rng(s["seed"] + 100).integers(0, s["vocab"], size=(8, 16)).astype(np.uint32)
    ids.tofile(os.path.join(out, "llama_prune.tokens.bin"))
    print(f"llama_prune: {os.path.getsize(path)} bytes")


def write_q4_1(out):
    rng = np.random.default_rng(31)
    blocks = [rng.normal(0, 0.2, 32) for _ in range(30)]
    blocks.append(np.full(32, 0.375))                       # constant: d = 0, every level 0
    blocks.append(np.arange(32) % 16 + 0.5)                 # min 0.5, max 15.5: d = 1, ties at x.5 + ...
    blocks.append(np.concatenate([[0.0, 15.0], np.arange(30) % 15 + 0.5]))  # d = 1: (x − 0) + 0.5 on integers
    blocks.append(rng.normal(0, 1e4, 32))                   # huge range
    blocks.append(rng.normal(0, 1e-6, 32))                  # tiny range: d is an f16 subnormal
    blocks.append(-np.abs(rng.normal(3, 1, 32)))            # all negative
    blocks.append(rng.uniform(-1, 1, 32).round(1))          # repeated values
    blocks.append(np.linspace(-1, 1, 32))
    blocks.append(rng.normal(0, 0.02, 32) + 7)              # offset far from zero
    blocks.append(rng.standard_cauchy(32))                  # outliers
    x = np.concatenate(blocks).astype(np.float32)
    x.tofile(os.path.join(out, "q4_1.input.f32"))
    quantize(x.reshape(-1, 32), Q.Q4_1).tofile(os.path.join(out, "q4_1.expected.bin"))
    print(f"q4_1: {len(blocks)} blocks")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "gguf"))
    out = os.path.abspath(ap.parse_args().out)
    write_model(out)
    write_q4_1(out)
    total = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out) if f.split(".")[0] in ("llama_prune", "q4_1"))
    print(f"total {total} bytes")
    assert total < 200_000, "these fixtures must stay under 200 KB"


if __name__ == "__main__":
    main()
