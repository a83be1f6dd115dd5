#!/usr/bin/env python3
"""Build tiny random LLaMA-family checkpoints and dump float64 reference outputs.

Usage:  python3 scripts/make_fixtures.py [--out Tests/Fixtures]

Generated with torch 2.13.0+cpu, transformers 5.24.0, safetensors 0.8.0 (the
versions are asserted loosely: other versions print a warning, the outputs may
then differ in config.json details but should agree numerically).

Fixture format -- one folder per model, Tests/Fixtures/<name>/:
  config.json             as written by save_pretrained, possibly post-edited into the
                          legacy RoPE form (top-level "rope_theta" + "rope_scaling");
                          otherwise the transformers-5 "rope_parameters" form.
  model.safetensors       the weights (F32, F16 or BF16, see reference.json "dtype"), or
  model-0000i-of-0000N.safetensors + model.safetensors.index.json  (sharded fixture)
  tokens.bin              raw little-endian uint32 token ids, B*T of them: B windows of
                          T consecutive tokens, uniform random in [0, vocab).
  reference.safetensors   all F32:
                            "logits"           [B, T, V]
                            "loss"             [1]
                            "grad.<param>"     for EVERY tensor stored in the checkpoint,
                                               same shape as the parameter. With tied
                                               embeddings there is no lm_head.weight and
                                               grad.model.embed_tokens.weight holds both uses.
  reference.json          {"windows": B, "seq_len": T, "loss": float, "model_type": str,
                           "dtype": "F32"|"F16"|"BF16", "notes": str, ...}

Loss = mean next-token NLL over positions 1..T-1 of each window, averaged over the
windows (= HF causal-LM loss with labels=input_ids, all windows of length T, no padding).

Reference computation: the checkpoint is reloaded from disk with from_pretrained (so
F16/BF16 rounding of the weights is included), converted to float64, run with
attn_implementation="eager", and the loss is back-propagated. Stock transformers
computes RMSNorm, the RoPE angles and the eager softmax in float32 and upcasts the
logits to float32 for the loss even in a float64 model; for a clean float64 reference
those four places are patched to stay in float64 (same formulas). The patched result is
checked against stock transformers (float64 model, labels=input_ids) -- they agree to
~1e-6 -- and the loss is computed from the float64 logits with the formula above.
Logits, loss and grads are then rounded to float32.

All parameters are re-initialised from a per-model seed: linear weights ~ N(0, 0.2),
biases ~ N(0, 0.1), norm weights ~ 1 + N(0, 0.1), embeddings ~ 0.5 * N(0, 1).
The script is deterministic: re-running it reproduces every file byte for byte
(config.json carries "transformers_version", so it is byte-stable only for the same
transformers version).
"""

import argparse
import json
import math
import os
import shutil
import struct
import sys
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

import safetensors
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)
from transformers.models.llama import modeling_llama
from transformers.models.mistral import modeling_mistral
from transformers.models.qwen2 import modeling_qwen2

EXPECTED_VERSIONS = {"torch": "2.13.0+cpu", "transformers": "5.24.0", "safetensors": "0.8.0"}

HIDDEN, INTER, LAYERS, VOCAB = 32, 64, 2, 96
WINDOWS, SEQ = 2, 16

ARCH = {
    "llama": (LlamaConfig, LlamaForCausalLM, modeling_llama, "Llama"),
    "mistral": (MistralConfig, MistralForCausalLM, modeling_mistral, "Mistral"),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, modeling_qwen2, "Qwen2"),
}
DTYPE_NAME = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}

FIXTURES = [
    dict(
        name="llama_gqa", arch="llama", seed=1001, dtype=torch.float32, form="legacy",
        cfg=dict(num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
                 rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        notes="llama, GQA 4 heads / 2 kv heads, head_dim 8, untied lm_head, F32, rms_norm_eps 1e-5; "
              "legacy config form: top-level rope_theta 10000 and rope_scaling null.",
    ),
    dict(
        name="qwen2_tied", arch="qwen2", seed=1002, dtype=torch.float32, form="rope_parameters",
        cfg=dict(num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                 tie_word_embeddings=True, use_sliding_window=False, sliding_window=None,
                 rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
        notes="qwen2, 3 layers, 4 heads / 2 kv heads, q/k/v biases (no o_proj bias), tied embeddings "
              "(no lm_head.weight in the checkpoint; grad of embed_tokens includes the lm_head use), "
              "rope_theta 1e6 in the transformers-5 rope_parameters form, layer_types present.",
    ),
    dict(
        name="mistral_headdim", arch="mistral", seed=1003, dtype=torch.float32, form="rope_parameters",
        cfg=dict(num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=None,
                 rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        notes="mistral, 4 heads / 2 kv heads with explicit head_dim 16 != hidden/heads (q_proj [64,32], "
              "o_proj [32,64]), sliding_window null, F32.",
    ),
    dict(
        name="llama3_rope", arch="llama", seed=1004, dtype=torch.float32, form="legacy", seq=32,
        cfg=dict(num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                 rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 4.0,
                                  "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                  "original_max_position_embeddings": 32}),
        check_scaling=True,
        notes="llama, 2 heads / 1 kv head, head_dim 16, T=32, llama3 rope scaling (factor 4, low 1, high 4, "
              "original_max_position_embeddings 32) in the legacy form (rope_theta + rope_scaling). "
              "With these numbers the 8 frequencies hit all three llama3 branches: "
              "wavelength 2pi < 8 kept, 2pi*10^0.5 ~ 19.9 smoothed, the rest (> 32) divided by 4.",
    ),
    dict(
        name="llama_linear_bias", arch="llama", seed=1005, dtype=torch.float32, form="rope_parameters",
        cfg=dict(num_attention_heads=4, num_key_value_heads=2, attention_bias=True, mlp_bias=True,
                 rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}),
        check_scaling=True,
        notes="llama with attention_bias (q,k,v,o biases) and mlp_bias (gate,up,down biases), "
              "linear rope scaling factor 2 in the rope_parameters form, F32.",
    ),
    dict(
        name="llama_bf16", arch="llama", seed=1006, dtype=torch.bfloat16, form="rope_parameters",
        cfg=dict(num_attention_heads=4, num_key_value_heads=4,
                 rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        notes="llama, plain MHA (4 heads / 4 kv heads), weights stored in BF16; the reference uses the "
              "BF16-rounded weights, computed in float64.",
    ),
    dict(
        name="llama_sharded_f16", arch="llama", seed=1007, dtype=torch.float16, form="rope_parameters",
        shard="20KB",
        cfg=dict(num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=1,
                 rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        notes="llama, 3 layers, 4 heads / 1 kv head, weights stored in F16 and sharded over several "
              "model-0000i-of-0000N.safetensors files with model.safetensors.index.json; the reference uses "
              "the F16-rounded weights, computed in float64.",
    ),
]


# --------------------------------------------------------------------------- float64 patches

def _rms_norm_f64(self, hidden_states):
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


def _eager_attention_f64(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    n_rep = module.num_key_value_groups
    key_states = modeling_llama.repeat_kv(key, n_rep)
    value_states = modeling_llama.repeat_kv(value, n_rep)
    attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1)  # stays in query.dtype
    attn_output = torch.matmul(attn_weights, value_states)
    return attn_output.transpose(1, 2).contiguous(), attn_weights


def inv_freq_f64(config):
    """RoPE inverse frequencies in float64 (default / linear / llama3), as in modeling_rope_utils."""
    rp = config.rope_parameters
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    base = rp["rope_theta"]
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    kind = rp["rope_type"]
    if kind == "default":
        return inv
    if kind == "linear":
        return inv / rp["factor"]
    if kind == "llama3":
        factor, lo, hi = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"]
        old = rp["original_max_position_embeddings"]
        lo_wav, hi_wav = old / lo, old / hi
        wav = 2 * math.pi / inv
        out = torch.where(wav > lo_wav, inv / factor, inv)
        smooth = (old / wav - lo) / (hi - lo)
        smoothed = (1 - smooth) * out / factor + smooth * out
        medium = ~(wav < hi_wav) & ~(wav > lo_wav)
        config.llama3_branches = (int((wav < hi_wav).sum()), int(medium.sum()), int((wav > lo_wav).sum()))
        return torch.where(medium, smoothed, out)
    raise ValueError(f"unsupported rope_type {kind}")


def _rotary_f64(self, x, position_ids):
    freqs = position_ids[..., None].to(torch.float64) * self.inv_freq_f64
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


@contextmanager
def float64_patches(model):
    """Make the HF forward pass stay in float64 end to end (see the module docstring)."""
    rotary = model.model.rotary_emb
    inv = inv_freq_f64(model.config)
    hf_inv = rotary.inv_freq.detach().to(torch.float64)
    assert torch.allclose(inv, hf_inv, rtol=1e-6, atol=0), (inv, hf_inv)
    assert rotary.attention_scaling == 1.0
    rotary.inv_freq_f64 = inv
    saved = []
    for _, _, mod, prefix in ARCH.values():
        for obj, attr, new in ((getattr(mod, prefix + "RMSNorm"), "forward", _rms_norm_f64),
                               (getattr(mod, prefix + "RotaryEmbedding"), "forward", _rotary_f64),
                               (mod, "eager_attention_forward", _eager_attention_f64)):
            saved.append((obj, attr, getattr(obj, attr)))
            setattr(obj, attr, new)
    try:
        yield
    finally:
        for obj, attr, old in saved:
            setattr(obj, attr, old)
        del rotary.inv_freq_f64


# --------------------------------------------------------------------------- helpers

def reinit_(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied lm_head is deduplicated away
            z = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name.endswith("embed_tokens.weight"):
                v = 0.5 * z
            elif name.endswith("norm.weight"):
                v = 1.0 + 0.1 * z
            elif name.endswith(".bias"):
                v = 0.1 * z
            elif name.endswith(".weight") and p.dim() == 2:
                v = 0.2 * z
            else:
                raise ValueError(f"unexpected parameter {name}")
            p.copy_(v)


def checkpoint_tensors(folder):
    """name -> tensor for every tensor stored in the folder's safetensors file(s)."""
    files = sorted(f for f in os.listdir(folder) if f.startswith("model") and f.endswith(".safetensors"))
    out = {}
    for f in files:
        with safe_open(os.path.join(folder, f), framework="pt") as h:
            assert h.metadata().get("format") == "pt", (f, h.metadata())
            for k in h.keys():
                assert k not in out, k
                out[k] = h.get_tensor(k)
    return out, files


def to_legacy_rope(cfg_json):
    rp = dict(cfg_json.pop("rope_parameters"))
    cfg_json["rope_theta"] = float(rp.pop("rope_theta"))
    cfg_json["rope_scaling"] = None if rp["rope_type"] == "default" else rp
    return cfg_json


def f64_forward(model, ids):
    """Patched float64 forward + backward; returns logits, loss, {name: grad}."""
    model.zero_grad(set_to_none=True)
    with float64_patches(model):
        logits = model(input_ids=ids).logits
        V = logits.shape[-1]
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
        loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    return logits.detach(), loss.detach(), grads


def stock_forward(model, ids):
    """Unpatched transformers (labels=input_ids), for cross-checking."""
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    return out.logits.detach(), out.loss.detach(), grads


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


# --------------------------------------------------------------------------- one fixture

def build(spec, out_root):
    name, arch = spec["name"], spec["arch"]
    cfg_cls, model_cls, _, _ = ARCH[arch]
    dtype = spec["dtype"]
    T = spec.get("seq", SEQ)
    folder = os.path.join(out_root, name)
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)

    kw = dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
              max_position_embeddings=128, rms_norm_eps=1e-6, tie_word_embeddings=False)
    kw.update(spec["cfg"])
    config = cfg_cls(**kw)
    config._attn_implementation = "eager"
    torch.manual_seed(spec["seed"])
    model = model_cls(config)
    reinit_(model, spec["seed"])
    model = model.to(dtype)
    model.eval()
    mem_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    # ---- write checkpoint
    save_kw = dict(safe_serialization=True)
    if "shard" in spec:
        save_kw["max_shard_size"] = spec["shard"]
    model.save_pretrained(folder, **save_kw)
    gen = os.path.join(folder, "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)
    cfg_path = os.path.join(folder, "config.json")
    with open(cfg_path) as f:
        cfg_json = json.load(f)
    assert "rope_parameters" in cfg_json and "rope_theta" not in cfg_json, cfg_json
    if spec["form"] == "legacy":
        cfg_json = to_legacy_rope(cfg_json)
        with open(cfg_path, "w") as f:
            f.write(json.dumps(cfg_json, indent=2, sort_keys=True) + "\n")

    # ---- verify the folder reloads identically
    stored, files = checkpoint_tensors(folder)
    if "shard" in spec:
        assert len(files) >= 3, files
        with open(os.path.join(folder, "model.safetensors.index.json")) as f:
            index = json.load(f)
        assert set(index["weight_map"]) == set(stored)
        assert sorted(set(index["weight_map"].values())) == files
        assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in stored.values())
    else:
        assert files == ["model.safetensors"], files
    if config.tie_word_embeddings:
        assert "lm_head.weight" not in stored
    loaded_cfg = AutoConfig.from_pretrained(folder)
    assert dict(loaded_cfg.rope_parameters) == dict(config.rope_parameters), \
        (loaded_cfg.rope_parameters, config.rope_parameters)
    reloaded = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager", dtype="auto")
    reloaded.eval()
    assert type(reloaded) is model_cls and reloaded.dtype == dtype, (type(reloaded), reloaded.dtype)
    assert dict(reloaded.config.rope_parameters) == dict(config.rope_parameters)
    assert reloaded.config.tie_word_embeddings == config.tie_word_embeddings
    re_state = reloaded.state_dict()
    assert set(re_state) == set(mem_state)
    for k, v in mem_state.items():
        assert re_state[k].dtype == dtype and torch.equal(re_state[k], v), k
    for k, v in stored.items():
        assert v.dtype == dtype and torch.equal(re_state[k], v), k
    if config.tie_word_embeddings:
        assert reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()

    # ---- tokens
    g = torch.Generator().manual_seed(spec["seed"] + 500)
    ids = torch.randint(0, VOCAB, (WINDOWS, T), generator=g, dtype=torch.int64)
    with open(os.path.join(folder, "tokens.bin"), "wb") as f:
        f.write(struct.pack("<%dI" % ids.numel(), *ids.flatten().tolist()))

    # stock forward: in-memory model and reloaded model must agree exactly (this proves e.g. that the
    # legacy config loads into the same RoPE). Only for F32: model.to(bf16/f16) also rounds the rotary
    # inv_freq buffer, while from_pretrained keeps it in float32.
    if dtype == torch.float32:
        with torch.no_grad():
            a = model(input_ids=ids).logits
            b = reloaded(input_ids=ids).logits
        assert torch.equal(a, b)

    # ---- float64 reference
    ref = reloaded.to(torch.float64)
    logits, loss, grads = f64_forward(ref, ids)
    assert set(grads) == set(stored), (set(grads) ^ set(stored))
    for k, v in stored.items():
        assert grads[k].shape == v.shape and torch.isfinite(grads[k]).all(), k
        assert grads[k].abs().max() > 0, f"zero gradient for {k}"

    # cross-check against stock transformers (float64 model, some float32 internals)
    s_logits, s_loss, s_grads = stock_forward(ref, ids)
    check = {"logits_rel": rel_err(s_logits, logits), "loss_abs": abs(s_loss.item() - loss.item()),
             "grad_rel_max": max(rel_err(s_grads[k], grads[k]) for k in grads)}
    assert check["logits_rel"] < 1e-5 and check["loss_abs"] < 1e-5 and check["grad_rel_max"] < 1e-4, check
    # and against a plain float32 run of the stored weights
    f32 = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32)
    f_logits, f_loss, _ = stock_forward(f32, ids)
    assert rel_err(f_logits.double(), logits) < 1e-4 and abs(f_loss.item() - loss.item()) < 1e-4

    # the RoPE scaling must actually matter
    if spec.get("check_scaling"):
        plain_cfg = AutoConfig.from_pretrained(folder)
        plain_cfg.rope_parameters = {"rope_type": "default", "rope_theta": config.rope_parameters["rope_theta"]}
        plain_cfg._attn_implementation = "eager"
        plain = model_cls(plain_cfg).to(torch.float64)
        plain.load_state_dict(ref.state_dict())
        plain.eval()
        p_logits, _, _ = f64_forward(plain, ids)
        diff = (p_logits - logits).abs().max().item()
        assert diff > 1e-2, f"rope scaling does not change the logits ({diff})"
        check["scaling_logit_diff"] = diff
        if config.rope_parameters["rope_type"] == "llama3":
            kept, smoothed, divided = ref.config.llama3_branches
            assert kept > 0 and smoothed > 0 and divided > 0, ref.config.llama3_branches

    lstd = logits.std().item()
    assert 0.5 < lstd < 5.0, f"logits std {lstd} out of range"

    # ---- write reference
    tensors = {"logits": logits.float().contiguous(), "loss": loss.reshape(1).float()}
    for k in sorted(grads):
        tensors["grad." + k] = grads[k].float().contiguous()
    save_file(tensors, os.path.join(folder, "reference.safetensors"), metadata={"format": "pt"})
    meta = {
        "windows": WINDOWS,
        "seq_len": T,
        "loss": float(loss.float().item()),
        "model_type": arch,
        "dtype": DTYPE_NAME[dtype],
        "config_rope_form": spec["form"],
        "seed": spec["seed"],
        "notes": spec["notes"] + " Reference computed in float64 from the stored weights; saved as F32.",
    }
    with open(os.path.join(folder, "reference.json"), "w") as f:
        f.write(json.dumps(meta, indent=2) + "\n")

    print(f"== {name}: loss {loss.item():.6f}  logits std {lstd:.3f}  "
          + "  ".join(f"{k} {v:.2e}" for k, v in check.items()))
    for f in sorted(os.listdir(folder)):
        print(f"   {os.path.getsize(os.path.join(folder, f)):8d}  {f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                  "Tests", "Fixtures"))
    ap.add_argument("--only", nargs="*", help="build only these fixtures")
    args = ap.parse_args()

    got = {"torch": torch.__version__, "transformers": transformers.__version__,
           "safetensors": safetensors.__version__}
    if got != EXPECTED_VERSIONS:
        print(f"warning: versions {got} differ from {EXPECTED_VERSIONS}", file=sys.stderr)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    out = os.path.normpath(args.out)
    os.makedirs(out, exist_ok=True)
    for spec in FIXTURES:
        if args.only and spec["name"] not in args.only:
            continue
        build(spec, out)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    print(f"total size of {out}: {total} bytes")


if __name__ == "__main__":
    main()
