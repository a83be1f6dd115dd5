#!/usr/bin/env python3
"""Build the k-quant and qwen2 GGUF fixtures under Tests/Fixtures/gguf/ and their references.

Usage:  python3 scripts/make_kquant_fixtures.py [--out Tests/Fixtures/gguf]

Needs numpy, gguf (llama.cpp's gguf-py), torch, transformers (+ accelerate) and safetensors. Made with
gguf 0.19.0, torch 2.13.0+cpu, transformers 5.24.0. Deterministic: same versions -> same bytes.

Files (see Tests/Fixtures/README.md):
  kquants.gguf          tensors only (no model): for each of Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and
                        Q8_K three tensors of raw blocks, since gguf-py quantises none of the k-quants:
                          <T>.random  3 rows of 2 blocks: random bytes, every scale field a random finite f16
                                      (both signs, exponents 2^-14 .. 2^4, some subnormal); Q8_K's d a random f32
                          <T>.zeros   1 row of 1 block: all quant and scale bytes 0x00
                          <T>.ones    1 row of 2 blocks: all quant bytes 0xFF; f16 scales 65504 (largest
                                      finite) in block 0 and -2^-24 (smallest subnormal) in block 1
  kquants.expected.safetensors   each tensor dequantised by gguf-py's `gguf.quants.dequantize` (float32,
                        [rows, cols]). Q8_K has no gguf-py decoder: its reference is ggml's dequantize_row_q8_K
                        (f32 d times the int8 values, in float32) written out in numpy below.
  qwen2_tied.gguf, qwen2_untied.gguf   general.architecture qwen2 from the weights of Tests/Fixtures/qwen2_tied
                        (3 layers, hidden 32, 4 heads / 2 kv heads, FFN 64, vocab 96, q/k/v biases, rope base
                        1e6); tied has no output.weight, untied adds a random one. Tensors in F32, F16, Q8_0,
                        Q5_0, Q5_1 and Q4_0 (blocks of 32: the k-quants need rows of 256). q/k rows are NOT
                        permuted (llama.cpp's convert_hf_to_gguf.py permutes only llama's; qwen2 uses NEOX RoPE).
  qwen2_*.reference.safetensors / .tokens.bin / .reference.json   as make_gguf_fixtures.py's: every tensor
                        under its HF name dequantised by gguf-py (checked equal to what transformers loads from
                        the GGUF), "logits" and the loss from transformers (gguf_file=..., float64).
"""

import argparse
import json
import os

import numpy as np
import torch
from gguf import GGMLQuantizationType as Q
from gguf import GGUFReader, GGUFWriter
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize
from safetensors.numpy import load_file, save_file

B, T = 2, 16

# Byte offsets of the f16 scale fields of one block (Q8_K's d is an f32 at 0, handled apart).
F16_FIELDS = {
    Q.Q5_0: [0], Q.Q5_1: [0, 2], Q.Q2_K: [80, 82], Q.Q3_K: [108], Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208],
}
KQUANT_TYPES = [Q.Q5_0, Q.Q5_1, Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.Q8_K]


def random_f16(rng, n):
    """Finite f16 values of both signs over a wide exponent range, a few subnormal."""
    v = rng.choice([-1, 1], n) * rng.uniform(1, 2, n) * 2.0 ** rng.integers(-14, 5, n)
    v[::5] = rng.choice([-1, 1], len(v[::5])) * rng.integers(1, 1024, len(v[::5])) * 2.0 ** -24
    return v.astype(np.float16)


def set_scales(blocks, qtype, values):
    """Writes f16 `values` (one per block and field) into the scale fields of blocks [n, type_size]."""
    for k, off in enumerate(F16_FIELDS[qtype]):
        blocks[:, off:off + 2] = values[:, k:k + 1].view(np.uint8).reshape(-1, 2)


def kquant_blocks(rng, qtype, kind, n):
    _, size = GGML_QUANT_SIZES[qtype]
    fields = len(F16_FIELDS.get(qtype, []))
    if kind == "random":
        blocks = rng.integers(0, 256, (n, size), dtype=np.uint8)
        if qtype == Q.Q8_K:
            d = (rng.choice([-1, 1], n) * rng.uniform(1, 2, n) * 2.0 ** rng.integers(-20, 5, n)).astype(np.float32)
            blocks[:, 0:4] = d.view(np.uint8).reshape(n, 4)
        else:
            set_scales(blocks, qtype, random_f16(rng, n * fields).reshape(n, fields))
    elif kind == "zeros":
        blocks = np.zeros((n, size), dtype=np.uint8)
    else:  # ones: every quant byte 0xFF, scales at the ends of the f16 range
        blocks = np.full((n, size), 0xFF, dtype=np.uint8)
        if qtype == Q.Q8_K:
            blocks[:, 0:4] = np.array([65504.0, -2.0 ** -24], dtype=np.float32)[:n].view(np.uint8).reshape(n, 4)
        else:
            extremes = np.array([65504.0, -2.0 ** -24], dtype=np.float16)[:n]
            set_scales(blocks, qtype, np.repeat(extremes.reshape(n, 1), fields, axis=1))
    return blocks


def dequantize_q8_k(raw):
    """ggml's dequantize_row_q8_K: y = d * q, d the block's f32, q its 256 int8 (the 16 int16 sums unused)."""
    blocks = raw.reshape(-1, 292)
    d = blocks[:, 0:4].copy().view(np.float32)
    q = blocks[:, 4:260].view(np.int8).astype(np.float32)
    return (d * q).astype(np.float32)


def write_kquants(out):
    rng = np.random.default_rng(15)
    path = os.path.join(out, "kquants.gguf")
    writer = GGUFWriter(path, arch="llama")
    expected = {}
    for qtype in KQUANT_TYPES:
        block_size, size = GGML_QUANT_SIZES[qtype]
        for kind, rows, per_row in [("random", 3, 2), ("zeros", 1, 1), ("ones", 1, 2)]:
            blocks = kquant_blocks(rng, qtype, kind, rows * per_row)
            raw = blocks.reshape(rows, per_row * size)
            name = f"{qtype.name}.{kind}"
            writer.add_tensor(name, raw, raw_dtype=qtype)
            ref = dequantize_q8_k(raw) if qtype == Q.Q8_K else dequantize(raw, qtype)
            ref = ref.reshape(rows, per_row * block_size).astype(np.float32)
            assert np.isfinite(ref).all(), name
            expected[name] = np.ascontiguousarray(ref)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    # What gguf-py reads back from the file decodes to the same values (the layout round trip).
    reader = GGUFReader(path)
    for t in reader.tensors:
        data = np.asarray(t.data)
        got = dequantize_q8_k(data) if t.tensor_type == Q.Q8_K else dequantize(data, t.tensor_type)
        assert np.array_equal(got.reshape(expected[t.name].shape).view(np.uint32), expected[t.name].view(np.uint32)), t.name
    save_file(expected, os.path.join(out, "kquants.expected.safetensors"))
    print(f"kquants: {len(expected)} tensors, {os.path.getsize(path)} bytes")


# ---- qwen2

QWEN2_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "qwen2_tied")
QWEN2_LOCAL = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
}
QWEN2_TYPES = [
    dict(attn_q=Q.Q5_0, attn_k=Q.Q5_1, attn_v=Q.Q8_0, attn_output=Q.F16, ffn_gate=Q.Q5_1, ffn_up=Q.Q4_0, ffn_down=Q.Q5_0),
    dict(attn_q=Q.Q5_1, attn_k=Q.Q5_0, attn_v=Q.Q5_0, attn_output=Q.Q5_1, ffn_gate=Q.Q8_0, ffn_up=Q.Q5_1, ffn_down=Q.F16),
    dict(attn_q=Q.Q8_0, attn_k=Q.F32, attn_v=Q.Q5_1, attn_output=Q.Q5_0, ffn_gate=Q.Q5_0, ffn_up=Q.F16, ffn_down=Q.Q5_1),
]


def encode(values, qtype):
    if qtype == Q.F32:
        return values.astype(np.float32), None
    if qtype == Q.F16:
        return values.astype(np.float16), None
    return quantize(values.astype(np.float32), qtype), qtype


def write_qwen2(name, tied, out):
    cfg = json.load(open(os.path.join(QWEN2_SRC, "config.json")))
    w = load_file(os.path.join(QWEN2_SRC, "model.safetensors"))
    layers, heads, kv = cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    tensors = [("token_embd.weight", "model.embed_tokens.weight", Q.Q8_0),
               ("output_norm.weight", "model.norm.weight", Q.F32)]
    if not tied:
        w["lm_head.weight"] = np.random.default_rng(21).normal(0, 0.2, w["model.embed_tokens.weight"].shape).astype(np.float32)
        tensors.append(("output.weight", "lm_head.weight", Q.Q5_1))
    for l in range(layers):
        p = f"model.layers.{l}."
        for g, t in [("attn_norm", Q.F32), ("ffn_norm", Q.F32)] + list(QWEN2_TYPES[l].items()):
            tensors.append((f"blk.{l}.{g}.weight", p + QWEN2_LOCAL[g] + ".weight", t))
        for g in ["attn_q", "attn_k", "attn_v"]:
            tensors.append((f"blk.{l}.{g}.bias", p + QWEN2_LOCAL[g] + ".bias", Q.F32))

    path = os.path.join(out, name + ".gguf")
    writer = GGUFWriter(path, arch="qwen2")
    writer.add_name(name)
    writer.add_block_count(layers)
    writer.add_context_length(cfg["max_position_embeddings"])
    writer.add_embedding_length(cfg["hidden_size"])
    writer.add_feed_forward_length(cfg["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv)
    writer.add_rope_freq_base(cfg["rope_parameters"]["rope_theta"])
    writer.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    writer.add_vocab_size(cfg["vocab_size"])
    for gname, hf, qtype in tensors:
        data, raw = encode(w[hf], qtype)
        writer.add_tensor(gname, data, raw_dtype=raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    reader = GGUFReader(path)
    assert reader.fields["general.architecture"].contents() == "qwen2"
    hf_of = {g: h for g, h, _ in tensors}
    ref = {}
    for t in reader.tensors:
        hf = hf_of[t.name]
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        values = dequantize(np.asarray(t.data), t.tensor_type).reshape(shape).astype(np.float32)
        # Quantisation error is small next to the weights: rows out of order would show here.
        err = np.abs(values - w[hf]).max() / np.abs(w[hf]).max()
        assert err < 0.15, (t.name, err)
        ref[hf] = np.ascontiguousarray(values)

    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(out, gguf_file=name + ".gguf", dtype=torch.float32)
    assert type(model).__name__ == "Qwen2ForCausalLM", type(model)
    assert model.config.tie_word_embeddings == tied
    sd = model.state_dict()
    for k, v in ref.items():
        assert np.array_equal(sd[k].numpy(), v), k  # transformers un-permutes nothing for qwen2
    ids = np.random.default_rng(1015 + tied).integers(0, cfg["vocab_size"], size=(B, T)).astype(np.uint32)
    ids.tofile(os.path.join(out, name + ".tokens.bin"))
    tids = torch.tensor(ids.astype(np.int64))
    with torch.no_grad():
        loss32 = model(tids, labels=tids).loss.item()
        r = model.double()(tids, labels=tids)
        loss64, logits = r.loss.item(), r.logits.float().numpy()
    assert abs(loss32 - loss64) < 1e-5, (loss32, loss64)
    ref["logits"] = np.ascontiguousarray(logits)
    save_file(ref, os.path.join(out, name + ".reference.safetensors"))
    with open(os.path.join(out, name + ".reference.json"), "w") as f:
        json.dump({"windows": B, "seq_len": T, "loss": loss64, "loss_float32": loss32, "tied": tied,
                   "architecture": "qwen2",
                   "notes": "loss: transformers from_pretrained(gguf_file=...) in float64, labels=input_ids"}, f, indent=1)
        f.write("\n")
    print(f"{name}: {os.path.getsize(path)} bytes, loss {loss64:.6f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "gguf"))
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    write_kquants(out)
    write_qwen2("qwen2_tied", True, out)
    write_qwen2("qwen2_untied", False, out)
    names = [f for f in os.listdir(out) if f.startswith(("kquants", "qwen2_"))]
    total = sum(os.path.getsize(os.path.join(out, f)) for f in names)
    print(f"total {total} bytes in {len(names)} files")
    assert total < 500_000, "fixtures must stay under 500 KB"


if __name__ == "__main__":
    main()
