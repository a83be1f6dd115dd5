#!/usr/bin/env python3
"""Throughput of the gradmap-dist engine on a LLaMA, against its own products' rate on this machine and PyTorch.

Usage:
  python3 benchmarks/run_engine.py [--preset 100m|tiny|smollm2|1b|qwen1.5b] [--binary PATH] [--no-torch] [--out FILE]
  (on a shared machine: chrt -f 10 python3 benchmarks/run_engine.py ..., so other work cannot preempt either side)

Steps:
  1. Unless --binary is given: `swift build -c release --scratch-path .build-bench` (a scratch folder
     of its own, so a concurrent debug build in .build is not locked) and use
     .build-bench/release/gradmap-dist.
  2. benchmarks/make_random_model.py --preset P (skipped when the model already exists).
  3. For each micro-batch size, each run --runs times on the first --windows windows of T tokens (the best,
     lowest `seconds` counts; compute only, no loading): `eval` (forward + loss), `grad-stats` (forward +
     backward of the mean loss, every gradient), `grad-stats --layer-matrices-only` (the decision step of
     gradmap/taylor: only the decoder layers' weight-matrix gradients), and with --matmul bf16 (default
     when the CPU has BF16 instructions: AVX512-BF16 or AMX) the decision step with `--matmul wgrad-bf16` and `--matmul bf16`, and
     `eval --matmul bf16`.
  4. `gradmap-dist bench-gemm` (before, between and after the engine runs; per product the best rate counts,
     as the engine's best run does) for every product the passes run, in its own form, shape and
     arithmetic (products()): linears and lm_head through oneDNN in f32 and bf16, forward nt R×O×I,
     dL/dX nn R×I×O, dL/dW tn O×I×R (R = micro-batch × T rows; lm_head per window); attention's per-head
     products (QKᵀ, PV and the four backward ones) on OpenBLAS with one thread, times the threads, since the
     engine runs one head per thread.
  5. Analytic model FLOPs (multiply-add = 2) per pass (pass_products()): the forward's products; grad-stats
     adds every backward product; the decision step skips lm_head's dW and the q/k/v dX of layer 0
     (nothing below the first layer needs it). The engine's recomputed QKᵀ in the backward is executed but
     not counted. "products alone" = Σ flops_i / rate_i over the pass's products at the rates of step 4 in
     the pass's arithmetic (--matmul bf16: every linear in bf16; wgrad-bf16: only the dW products;
     attention always f32); "% of products" = products alone / measured seconds.
  6. Unless --no-torch: PyTorch (float32, CPU, torch.set_num_threads(threads of the engine), default
     attention implementation) on the same windows and micro-batches: no_grad forward with the loss,
     forward + loss.backward() of every parameter, and the same with only the layers' weight matrices
     requiring grad (the decision step's work); with bf16, eval and that decision step again under
     torch.autocast("cpu", dtype=torch.bfloat16). Best of --runs. Losses are printed next to the engine's.

Prints markdown tables and writes JSON (default .cache/bench/engine.json for 100m,
.cache/bench/engine-<preset>.json otherwise).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import large_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEFAULTS = {
    # windows, seq_len, micro-batches, bench-gemm seconds per shape
    "100m": dict(windows=8, seq_len=256, micro_batches="1,4", gemm_seconds=1.0),
    "tiny": dict(windows=8, seq_len=32, micro_batches="1,4", gemm_seconds=0.05),
    # The ~1.1B BF16 model (make_random_model.py --preset 1b); PyTorch loads it as float32 like the engine.
    "1b": dict(windows=4, seq_len=256, micro_batches="1", gemm_seconds=0.4),
    # The real default model: SmolLM2-135M converted from the GGUF (gradmap-dist convert), calibration text.
    "smollm2": dict(windows=8, seq_len=256, micro_batches="1,4", gemm_seconds=0.4),
    # The real 1.5B, Qwen2.5-Coder-1.5B-Instruct Q4_K_M (benchmarks/large_model.py): the engine reads the GGUF,
    # PyTorch dequantises it through transformers' gguf_file=. Eval and the decision step in f32 and bf16 only:
    # every engine run loads the GGUF (~2 minutes on this machine), and the all-gradients step and wgrad-bf16
    # add nothing the decision step does not show; on the evaluation tokens.
    "qwen1.5b": dict(windows=4, seq_len=256, micro_batches="1", gemm_seconds=0.4,
                     skip=("grad-stats", "decision-wgrad-bf16")),
}


def prepare_smollm2(binary, model_dir):
    """SmolLM2-135M as a Hugging Face folder (F32, dequantised from the GGUF) with the calibration tokens."""
    assets = os.path.join(REPO, ".cache", "assets")
    if not os.path.exists(os.path.join(model_dir, "model.safetensors")):
        subprocess.run([os.path.join(REPO, "launch", "fetch-assets")], check=True)
        subprocess.run([binary, "convert", "--model", os.path.join(assets, "SmolLM2-135M-Instruct.Q4_1.gguf"),
                        "--out", model_dir], check=True)
    tokens = os.path.join(model_dir, "tokens.bin")
    if not os.path.exists(tokens):
        calib = os.path.join(assets, "wiki", "calib.bin")
        if not os.path.exists(calib):
            subprocess.run([binary, "tokenize", "--model", model_dir, "--text", os.path.join(assets, "wiki", "calib.txt"),
                            "--out", calib], check=True)
        with open(calib, "rb") as f, open(tokens, "wb") as g:
            g.write(f.read())


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run_json(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    return json.loads(p.stdout)


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_busy(seconds=1.0):
    """Fraction of all CPUs busy over `seconds` while this script sleeps: work of other processes."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return sum(v), idle
    try:
        t0, i0 = snap()
        time.sleep(seconds)
        t1, i1 = snap()
        return round(1 - (i1 - i0) / max(1, t1 - t0), 3)
    except OSError:
        return None


def git_state():
    def git(*a):
        p = subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True)
        return p.stdout.strip() if p.returncode == 0 else None
    status = git("status", "--porcelain", "--", "Sources", "Package.swift")
    return {"head_at_run": git("rev-parse", "--short", "HEAD"), "sources_modified": bool(status) if status is not None else None}


def shape_key(m, n, k):
    return f"{m}x{n}x{k}"


def products(cfg, windows, mb, t):
    """Every product one forward + backward runs over `windows` windows of t tokens in micro-batches of mb:
    [(name, pass, form, (m, n, k), flops)] with pass "forward", "dx" (dL/dinput) or "dw" (dL/dweight) and the
    form bench-gemm measures (nt = A·Bᵀ, nn = A·B, tn = Aᵀ·B). The micro-batch sets the shapes (hence the
    rate), not the FLOPs. Linears with R = mb·t rows, input I, output O: forward nt R×O×I, dX nn R×I×O,
    dW tn O×I×R. lm_head runs per window (t rows). Attention per window and head, the full t×t square (the
    engine computes it all and masks): forward QKᵀ nt t×t×hd and PV nn t×hd×t; backward dV (tn), dP (nt),
    dQ (nn), dK (tn), each 2·t²·hd. Its recomputed QKᵀ is executed but not counted (model FLOPs)."""
    h, i, v, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or h // nh
    qd, kvd, n, r = nh * hd, nkv * hd, windows * t, mb * t
    out = []
    for name, o, ii, count in (("q_proj", qd, h, L), ("k_proj+v_proj", kvd, h, 2 * L), ("o_proj", h, qd, L),
                               ("gate_proj+up_proj", i, h, 2 * L), ("down_proj", h, i, L)):
        f = count * 2 * n * o * ii
        out += [(name, "forward", "nt", (r, o, ii), f), (name, "dx", "nn", (r, ii, o), f),
                (name, "dw", "tn", (o, ii, r), f)]
    att = L * 2 * windows * nh * t * t * hd
    out += [("attention QKᵀ", "forward", "nt", (t, t, hd), att), ("attention PV", "forward", "nn", (t, hd, t), att),
            ("attention dV", "dx", "tn", (t, hd, t), att), ("attention dP", "dx", "nt", (t, t, hd), att),
            ("attention dQ", "dx", "nn", (t, hd, t), att), ("attention dK", "dx", "tn", (t, hd, t), att)]
    f = 2 * n * v * h
    out += [("lm_head", "forward", "nt", (t, v, h), f), ("lm_head", "dx", "nn", (t, h, v), f),
            ("lm_head", "dw", "tn", (v, h, t), f)]
    return out


def pass_products(cfg, windows, mb, t, kind):
    """The products a pass runs: forward (eval); forward_backward (grad-stats: every gradient, minus the
    embedding's, which is a gather); decision (gradmap/taylor: the layers' weight gradients, so no lm_head dW,
    and no dL/dh below layer 0: the q/k/v dX products of layer 0 are skipped)."""
    ps = products(cfg, windows, mb, t)
    if kind == "forward":
        return [p for p in ps if p[1] == "forward"]
    if kind == "forward_backward":
        return ps
    L = cfg["num_hidden_layers"]
    out = []
    for name, ph, form, shape, f in ps:
        if name == "lm_head" and ph == "dw":
            continue
        if ph == "dx" and name in ("q_proj", "k_proj+v_proj"):
            f = f * (L - 1) // L
        out.append((name, ph, form, shape, f))
    return out


def gemm_requests(cfg, mbs, t):
    """(form, shape) pairs the references need: linears and lm_head through oneDNN (2 threads), attention
    through OpenBLAS one thread per head."""
    linear, attention = [], []
    for mb in mbs:
        for name, _, form, shape, _ in products(cfg, mb, mb, t):
            dest = attention if name.startswith("attention") else linear
            if (form, shape) not in dest:
                dest.append((form, shape))
    return linear, attention


def rate_key(form, shape):
    return f"{form}:{shape_key(*shape)}"

_torch_models = {}


def torch_model(model_dir, dtype):
    """The model, loaded once per dtype: a GGUF (model_dir ending in .gguf) through transformers' gguf_file=."""
    import torch
    from transformers import AutoModelForCausalLM
    if dtype not in _torch_models:
        _torch_models.clear()
        if model_dir.endswith(".gguf"):
            model = AutoModelForCausalLM.from_pretrained(os.path.dirname(model_dir), dtype=dtype,
                                                         gguf_file=os.path.basename(model_dir))
        else:
            model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
        model.eval()
        _torch_models[dtype] = model
    return _torch_models[dtype]


def torch_times(model_dir, tokens, t, windows, micro_batch, runs, threads, bf16=False, weights="f32"):
    """PyTorch on the same windows: eval (no_grad forward + loss), grad (loss.backward() of every parameter,
    the issue's reference) and grad_layers (only the decoder layers' weight matrices require grad: exactly
    what one gradmap decision computes). With bf16, the same under torch.autocast("cpu", torch.bfloat16)
    (oneDNN's AMX kernels on CPUs that have them): PyTorch's own mixed precision, against --matmul bf16."""
    import contextlib
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    model = torch_model(model_dir, torch.bfloat16 if weights == "bf16" else torch.float32)
    ids = torch.from_numpy(np.fromfile(tokens, dtype="<u4")[: windows * t].astype(np.int64)).view(windows, t)
    batches = [ids[s : s + micro_batch] for s in range(0, windows, micro_batch)]
    cast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def eval_pass():
        total = 0.0
        with torch.no_grad(), cast():
            for x in batches:
                total += model(input_ids=x, labels=x).loss.float().item() * x.shape[0]
        return total / windows

    def require(layers_only):
        for name, p in model.named_parameters():
            p.grad = None
            p.requires_grad_(not layers_only or (".layers." in name and p.dim() == 2))

    def grad_pass():
        total = 0.0
        for x in batches:
            with cast():
                loss = model(input_ids=x, labels=x).loss.float()
            (loss * (x.shape[0] / windows)).backward()
            total += loss.item() * x.shape[0]
        return total / windows

    passes = [("eval", lambda: None, eval_pass), ("grad_layers", lambda: require(True), grad_pass)]
    if not bf16:
        passes.insert(1, ("grad", lambda: require(False), grad_pass))
    out = {"attn_implementation": getattr(model.config, "_attn_implementation", None), "bf16_autocast": bf16}
    for name, setup, fn in passes:
        setup()
        best, loss = float("inf"), None
        for _ in range(runs):
            start = time.perf_counter()
            loss = fn()
            best = min(best, time.perf_counter() - start)
        out[name] = {"seconds": best, "loss": loss}
    require(False)
    return out


def torch_gemm(shapes, threads, seconds):
    """PyTorch's own float32 matmul rate (A·Bᵀ, its MKL/oneDNN kernels) at the same shapes: what bounds it."""
    import torch
    torch.set_num_threads(threads)
    out = []
    for m, n, k in shapes:
        a, b = torch.randn(m, k), torch.randn(n, k)
        for _ in range(2):
            a @ b.T
        start, it = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            a @ b.T
            it += 1
        out.append({"m": m, "n": n, "k": k, "gflops": 2 * m * n * k * it / (time.perf_counter() - start) / 1e9})
    return out


# Engine passes: (key in a row, command arguments, FLOPs key, PyTorch pass it is the same work as, --matmul).
PASSES = [
    ("eval", ["eval", "--matmul", "f32"], "forward", ("fp32", "eval"), "f32"),
    ("grad-stats", ["grad-stats", "--matmul", "f32"], "forward_backward", ("fp32", "grad"), "f32"),
    ("decision", ["grad-stats", "--layer-matrices-only", "--matmul", "f32"], "decision", ("fp32", "grad_layers"), "f32"),
    ("decision-wgrad-bf16", ["grad-stats", "--layer-matrices-only", "--matmul", "wgrad-bf16"], "decision",
     ("fp32", "grad_layers"), "wgrad-bf16"),
    ("eval-bf16", ["eval", "--matmul", "bf16"], "forward", ("bf16", "eval"), "bf16"),
    ("decision-bf16", ["grad-stats", "--layer-matrices-only", "--matmul", "bf16"], "decision",
     ("bf16", "grad_layers"), "bf16"),
]
LABELS = {
    "eval": "forward (eval)", "grad-stats": "forward+backward, all gradients (grad-stats)",
    "decision": "decision step: layer-matrix gradients", "decision-wgrad-bf16": "decision step, --matmul wgrad-bf16",
    "eval-bf16": "forward, --matmul bf16",
    "decision-bf16": "decision step, --matmul bf16",
}


def product_precision(matmul, name, phase):
    """The arithmetic a product runs in under --matmul: attention is float32 always (OpenBLAS), linears and
    lm_head follow the mode (wgrad-bf16: only the dW products in BF16)."""
    if name.startswith("attention"):
        return "attention"
    if matmul == "bf16" or (matmul == "wgrad-bf16" and phase == "dw"):
        return "bf16"
    return "f32"


def derive(results):
    """FLOPs, GFLOP/s and the product reference of every engine row (from the raw seconds and rates). The
    reference is what the pass's products would take if each ran at the rate bench-gemm measured for its
    form, shape and arithmetic in the same run: ref = Σ flops / Σ (flops_i / rate_i)."""
    cfg, windows, t = results["config"], results["windows"], results["seq_len"]
    rates = results["rates"]
    for row in results["engine"]:
        mb = row["micro_batch"]
        row["flops"], row["product_ref_gflops"] = {}, {}
        for cmd, _, fkey, _, matmul in PASSES:
            if cmd not in row:
                continue
            ps = pass_products(cfg, windows, mb, t, fkey)
            flops = sum(p[4] for p in ps)
            secs = sum(f / (rates[product_precision(matmul, name, ph)][rate_key(form, shape)] * 1e9)
                       for name, ph, form, shape, f in ps)
            m = row[cmd]
            m["flops"] = flops
            m["product_ref_gflops"] = flops / secs / 1e9
            m["product_seconds"] = secs
            m["tokens_per_s"] = windows * t / m["seconds"]
            m["gflops"] = flops / m["seconds"] / 1e9
            m["fraction_of_products"] = m["gflops"] / m["product_ref_gflops"]


def torch_row(results, mb, precision):
    for r in results["torch"]:
        if r["micro_batch"] == mb and ("bf16" if r.get("bf16_autocast") else "fp32") == precision:
            return r
    return None


def print_tables(results, out_path):
    m, windows, t = results["machine"], results["windows"], results["seq_len"]
    print(f"\n{results['preset']}: {windows} windows x {t} tokens, best of {results['runs']}; {m['cpu']} "
          f"({m.get('cpu_id', '?')}), {m['cores']} cores, {m['threads']} threads; oneDNN {m.get('dnnl_impl', '?')}\n")
    print("Same work: each engine pass against the PyTorch pass computing the same quantities (grad-stats: "
          "loss.backward() of every parameter; decision: only the layers' weight matrices require grad; "
          "bf16: torch.autocast bf16). % of products: the pass's model GFLOP/s against the rate its own "
          "products reach in bench-gemm (each at its form, shape and arithmetic, measured in this run).\n")
    print("| micro-batch | pass | seconds | tokens/s | model GFLOP | GFLOP/s | products alone s | % of products "
          "| PyTorch same work s | engine / PyTorch (same work) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in results["engine"]:
        mb = row["micro_batch"]
        for cmd, _, fkey, (tprec, tkey), _ in PASSES:
            if cmd not in row:
                continue
            e = row[cmd]
            tr = torch_row(results, mb, tprec)
            same = tr[tkey]["seconds"] if tr and tkey in tr else None
            ts = f"{same:.3f}" if same else "-"
            ratio = f"{e['seconds'] / same:.2f}" if same else "-"
            print(f"| {mb} | {LABELS[cmd]} | {e['seconds']:.3f} | {e['tokens_per_s']:.0f} | {e['flops'] / 1e9:.4g} "
                  f"| {e['gflops']:.3g} | {e['product_seconds']:.3f} | {100 * e['fraction_of_products']:.0f}% "
                  f"| {ts} | {ratio} |")
    torch_mm = {(s["m"], s["n"], s["k"]): s["gflops"] for s in results.get("torch_gemm") or []}
    print("\n| product | form | M×N×K | oneDNN f32 GFLOP/s | oneDNN bf16 GFLOP/s | PyTorch f32 matmul GFLOP/s |")
    print("|---|---|---|---:|---:|---:|")
    rates = results["rates"]
    for key, g in rates["f32"].items():
        form, shape = key.split(":")
        dims = tuple(int(x) for x in shape.split("x"))
        b = rates.get("bf16", {}).get(key)
        tm = torch_mm.get(dims) if form == "nt" else None
        print(f"| linear | {form} | {shape.replace('x', '×')} | {g:.1f} | {f'{b:.1f}' if b else '-'} "
              f"| {f'{tm:.1f}' if tm else '-'} |")
    for key, g in rates["attention"].items():
        form, shape = key.split(":")
        print(f"| attention (OpenBLAS, 1 thread per head, × threads) | {form} | {shape.replace('x', '×')} "
              f"| {g:.1f} | - | - |")
    if results["torch"]:
        print("\nloss check (engine vs PyTorch, same windows):")
        for row in results["engine"]:
            mb = row["micro_batch"]
            for cmd, _, _, (tprec, tkey), _ in PASSES:
                tr = torch_row(results, mb, tprec)
                if cmd in row and tr and tkey in tr:
                    print(f"  micro-batch {mb} {cmd}: {row[cmd]['loss']:.6f} vs PyTorch {tprec} {tkey} {tr[tkey]['loss']:.6f}")
        print(f"  (torch attention: {results['torch'][0]['attn_implementation']})")
    busy = {k: v for k, v in results.get("other_cpu_busy", {}).items() if v is not None}
    if busy:
        print("\nCPU busy with other work while this script slept 1 s: "
              + ", ".join(f"{k} {100 * v:.0f}%" for k, v in busy.items()))
        if max(busy.values()) > 0.1:
            print("warning: the machine was not idle; other processes shared the cores, numbers are low and noisy")
    loads = results.get("load_average")
    if loads:
        print("\n1-minute load average: " + ", ".join(f"{k} {v:.2f}" for k, v in loads.items()))
    print(f"\nJSON: {os.path.relpath(out_path, REPO)}")


def cpu_id():
    """vendor, family/model and the ISA flags that decide the products (from /proc/cpuinfo)."""
    info = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            if ":" in line:
                k, v = (x.strip() for x in line.split(":", 1))
                info.setdefault(k, v)
            if not line.strip():
                break
    flags = [x for x in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
             if x in info.get("flags", "").split()]
    return f"{info.get('vendor_id', '?')} family {info.get('cpu family', '?')} model {info.get('model', '?')}; " + \
        " ".join(flags)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(DEFAULTS), default="100m")
    ap.add_argument("--binary", help="use this gradmap-dist instead of building one")
    ap.add_argument("--model", help="model folder (default .cache/models/llama-<preset>, generated if missing)")
    ap.add_argument("--windows", type=int)
    ap.add_argument("--seq-len", type=int)
    ap.add_argument("--micro-batches", help="comma-separated, e.g. 1,4")
    ap.add_argument("--runs", type=int, default=3, help="runs per measurement; the best counts")
    ap.add_argument("--gemm-seconds", type=float)
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    ap.add_argument("--matmul", default="f32,bf16",
                    help="engine precisions to run: f32 and/or bf16 (bf16 needs AVX512-BF16 or AMX; dropped with a note without)")
    ap.add_argument("--weights", choices=["f32", "bf16"], default="f32",
                    help="weights held by both sides: the engine's --weights, PyTorch's dtype (bf16 when f32 cannot fit)")
    ap.add_argument("--out", help="JSON results file")
    ap.add_argument("--report", metavar="JSON", help="only recompute and print the tables of an earlier run")
    args = ap.parse_args()

    if args.report:
        with open(args.report) as f:
            results = json.load(f)
        derive(results)
        print_tables(results, os.path.abspath(args.report))
        return

    d = DEFAULTS[args.preset]
    windows = args.windows or d["windows"]
    t = args.seq_len or d["seq_len"]
    mbs = [int(x) for x in (args.micro_batches or d["micro_batches"]).split(",")]
    gemm_seconds = args.gemm_seconds or d["gemm_seconds"]
    out_path = args.out or os.path.join(
        REPO, ".cache", "bench", "engine.json" if args.preset == "100m" else f"engine-{args.preset}.json")

    if args.binary:
        binary = os.path.abspath(args.binary)
    else:
        log("building: swift build -c release --scratch-path .build-bench")
        subprocess.run(["swift", "build", "-c", "release", "--scratch-path", ".build-bench"], cwd=REPO, check=True)
        binary = os.path.join(REPO, ".build-bench", "release", "gradmap-dist")

    matmuls = args.matmul.split(",")
    cpuinfo = open("/proc/cpuinfo").read().split()
    if "bf16" in matmuls and "avx512_bf16" not in cpuinfo and "amx_bf16" not in cpuinfo:
        log("note: no AVX512-BF16 or AMX-BF16 on this CPU; --matmul bf16 rows skipped")
        matmuls = [x for x in matmuls if x != "bf16"]

    model_dir = args.model or os.path.join(REPO, ".cache", "models", f"llama-{args.preset}")
    if args.preset == "smollm2" and not args.model:
        model_dir = os.path.join(REPO, ".cache", "models", "smollm2-135m")
        prepare_smollm2(binary, model_dir)
    elif args.preset == "qwen1.5b":
        model_dir, tokens = large_model.model_and_tokens(binary)
    elif not args.model:
        subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "make_random_model.py"),
                        "--preset", args.preset, "--out", model_dir], check=True)
    if model_dir.endswith(".gguf"):
        cfg = large_model.hf_config(large_model.inspect(binary, model_dir, 1, args.weights, t)["model"])
    else:
        with open(os.path.join(model_dir, "config.json")) as f:
            cfg = json.load(f)
        tokens = os.path.join(model_dir, "tokens.bin")
    n_tokens = os.path.getsize(tokens) // 4
    if n_tokens < windows * t:
        sys.exit(f"{tokens}: {n_tokens} tokens, fewer than {windows} windows x {t}")

    results = {
        "preset": args.preset, "model": os.path.relpath(model_dir, REPO), "config": {
            k: cfg.get(k) for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                                    "num_key_value_heads", "head_dim", "vocab_size", "tie_word_embeddings")},
        "windows": windows, "seq_len": t, "runs": args.runs, "weights": args.weights,
        "machine": {"cpu": cpu_model(), "cpu_id": cpu_id(), "cores": os.cpu_count()},
        "other_cpu_busy": {"before_engine": cpu_busy()}, "load_average": {"before_engine": large_model.load_average()},
        "memory_available_gib": {},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git": git_state(),
        "engine": [], "gemm": None, "torch": [],
    }

    # Product references at every form and shape the passes run, before, between and after the engine runs
    # (per shape the best counts, as the engine's best run does: both sides are "when the machine let it run").
    linear, attention = gemm_requests(cfg, mbs, t)
    precisions = ["f32"] + (["bf16"] if "bf16" in matmuls else [])
    gemm_runs = []

    def bench(requests, extra, env=None):
        out = {}
        for form in ("nt", "nn", "tn"):
            shapes = [sh for f, sh in requests if f == form]
            if shapes:
                r = run_json([binary, "bench-gemm", "--forms", form, "--shapes", ",".join(shape_key(*sh) for sh in shapes),
                              "--seconds", str(gemm_seconds), "--json", *extra], env=env)
                for x in r["shapes"]:
                    out[rate_key(form, (x["m"], x["n"], x["k"]))] = x
        return out, r

    def bench_all():
        log(f"bench-gemm: {len(linear)} linear products x {precisions}, {len(attention)} attention products")
        run = {}
        for prec in precisions:
            run[prec], info = bench(linear, ["--matmul", prec])
        # Attention runs one head per thread, each product single-threaded: its reference is the one-thread
        # rate times the threads.
        one, _ = bench(attention, ["--library", "openblas"], env=dict(os.environ, GRADMAP_BLAS_THREADS="1"))
        run["attention"] = {k: dict(x, gflops=x["gflops"] * info["blas_threads"]) for k, x in one.items()}
        run["threads"] = info["blas_threads"]
        return run

    gemm_runs.append(bench_all())

    # Engine runs.
    base = ["--model", model_dir, "--tokens", tokens, "--seq-len", str(t), "--max-windows", str(windows), "--json"]
    if args.weights != "f32":
        base += ["--weights", args.weights]
    passes = [p for p in PASSES if ("bf16" not in p[0] or "bf16" in matmuls) and p[0] not in d.get("skip", ())]
    for mb in mbs:
        row = {"micro_batch": mb}
        for cmd, argv, fkey, _, _ in passes:
            secs, loss = [], None
            if model_dir.endswith(".gguf"):
                # The large model: each run waits until inspect's planned peak for this pass fits in what is free.
                plan = large_model.inspect(binary, model_dir, 1, args.weights, t, mb)["plan"][0]
                need = plan["estimated_forward_peak_bytes" if fkey == "forward" else "estimated_peak_bytes"]
            for r in range(args.runs):
                if model_dir.endswith(".gguf"):
                    free = large_model.wait_for_memory(need + large_model.GIB // 2, f"engine {cmd}")
                    results["memory_available_gib"][f"engine {cmd} mb {mb} run {r + 1}"] = round(free / large_model.GIB, 1)
                out = run_json([binary, *argv, *base, "--micro-batch", str(mb)])
                secs.append(out["seconds"])
                loss = out["loss"]
                log(f"engine {cmd} micro-batch {mb} run {r + 1}: {out['seconds']:.3f} s")
            row[cmd] = {"seconds": min(secs), "all_seconds": secs, "loss": loss}
        results["engine"].append(row)
        if mb != mbs[-1]:
            gemm_runs.append(bench_all())

    results["other_cpu_busy"]["after_engine"] = cpu_busy()
    results["load_average"]["after_engine"] = large_model.load_average()
    gemm_runs.append(bench_all())
    results["rates"] = {
        kind: {key: max(g[kind][key]["gflops"] for g in gemm_runs) for key in gemm_runs[0][kind]}
        for kind in precisions + ["attention"]}
    results["gemm_runs"] = gemm_runs
    results["machine"].update(threads=gemm_runs[0]["threads"], dnnl_impl=", ".join(sorted(
        {x.get("impl", "?") for kind in precisions for x in gemm_runs[0][kind].values()})))

    # PyTorch.
    if not args.no_torch:
        results["other_cpu_busy"]["before_torch"] = cpu_busy()
        results["load_average"]["before_torch"] = large_model.load_average()
        if model_dir.endswith(".gguf"):
            # PyTorch's weights, the layers' matrix gradients (the decision step) and 2 GiB for the activations
            # of one micro-batch and the loader's copies; the engine has exited, so nothing else of ours is held.
            summary = large_model.inspect(binary, model_dir, 1, args.weights, t)["model"]
            width = 2 if args.weights == "bf16" else 4
            need = width * (summary["parameters"] + summary["layers"] * summary["layer_parameters"]) + 2 * large_model.GIB
            free = large_model.wait_for_memory(need, "pytorch")
            results["memory_available_gib"]["pytorch"] = round(free / large_model.GIB, 1)
        for mb in mbs:
            log(f"pytorch micro-batch {mb}")
            for bf16 in ([False, True] if "bf16" in matmuls else [False]):
                r = torch_times(model_dir, tokens, t, windows, mb, args.runs, results["machine"]["threads"], bf16=bf16,
                                weights=args.weights)
                r["micro_batch"] = mb
                results["torch"].append(r)
        results["torch_gemm"] = torch_gemm([sh for f, sh in linear if f == "nt"], results["machine"]["threads"], gemm_seconds)
    results["other_cpu_busy"]["after"] = cpu_busy()
    results["load_average"]["after"] = large_model.load_average()

    derive(results)
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print_tables(results, out_path)


if __name__ == "__main__":
    main()
