#!/usr/bin/env python3
"""Does `--matmul` change what gets pruned? The same prune on SmolLM2-135M (the real default model, from the
fetched GGUF and text) under --matmul f32, wgrad-bf16 and bf16: removed layers, held-out perplexity and
scoring time. wgrad-bf16 changes only weight-gradient products, so it is run for the metrics that have them.

    python3 benchmarks/run_matmul_modes.py [--metrics gradmap,taylor,bi] [--remove 8] [--calib-windows 16]
        [--eval-windows 16] [--compensate] [--binary PATH] [--out .cache/bench/matmul-modes.json]

--metrics takes prune's metric names, optionally with "+verify3" (e.g. fisher+verify3 runs
`--metric fisher --verify-top 3`); --remove takes a list (4,8: each K is its own prune, which matters when
compensation between decisions can change later ones); --compensate keeps prune's default compensation
(`--compensate-at auto`) instead of `--no-compensate`.

Prints a markdown table (pasted into docs/benchmarks.md).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHT_GRADIENT_METRICS = {"gradmap", "taylor"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--metrics", default="gradmap,taylor,bi")
    ap.add_argument("--remove", default="8")
    ap.add_argument("--compensate", action="store_true")
    ap.add_argument("--calib-windows", type=int, default=16)
    ap.add_argument("--eval-windows", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--np", type=int, default=1)
    ap.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "gradmap-dist"))
    ap.add_argument("--out", default=os.path.join(ROOT, ".cache", "bench", "matmul-modes.json"))
    a = ap.parse_args()
    if not os.path.exists(a.binary):
        subprocess.run(["swift", "build", "-c", "release", "--product", "gradmap-dist"], cwd=ROOT, check=True)
    subprocess.run([os.path.join(ROOT, "launch", "fetch-assets")], check=True, stdout=subprocess.DEVNULL)
    assets = os.path.join(ROOT, ".cache", "assets")
    model = os.path.join(assets, "SmolLM2-135M-Instruct.Q4_1.gguf")
    wiki = os.path.join(assets, "wiki")
    for name in ("calib", "eval"):
        if not os.path.exists(os.path.join(wiki, name + ".bin")):
            subprocess.run([a.binary, "tokenize", "--model", model, "--text", os.path.join(wiki, name + ".txt"),
                            "--out", os.path.join(wiki, name + ".bin")], check=True)
    rows = []
    print(f"| metric | K | --matmul | removed layers (in order) | held-out ppl | scoring s | job s |")
    print("|---|---:|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for spec, remove, mode in [(sp, int(k), m) for sp in a.metrics.split(",") for k in a.remove.split(",")
                                   for m in (["f32", "wgrad-bf16", "bf16"] if sp.split("+")[0] in WEIGHT_GRADIENT_METRICS
                                             else ["f32", "bf16"])]:
            metric = spec.split("+")[0]
            extra = ["--verify-top", "3"] if spec.endswith("+verify3") else []
            extra += [] if a.compensate else ["--no-compensate"]
            cmd = [os.path.join(ROOT, "launch", "run"), "-np", str(a.np), "--bin", a.binary, "prune",
                   "--model", model, "--tokens", os.path.join(wiki, "calib.bin"), "--seq-len", str(a.seq_len),
                   "--calib-windows", str(a.calib_windows), "--eval-tokens", os.path.join(wiki, "eval.bin"),
                   "--eval-windows", str(a.eval_windows), "--metric", metric, "--remove", str(remove),
                   *extra, "--skip-original-eval", "--matmul", mode, "--out", os.path.join(tmp, f"{spec}-{remove}-{mode}"), "--json"]
            start = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True)
            job = time.perf_counter() - start
            if r.returncode != 0:
                sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
            o = json.loads(r.stdout.strip().splitlines()[-1])
            ppl = o["eval"]["ppl_pruned"]
            row = {"metric": spec, "remove": remove, "matmul": mode, "removed": o["removed"], "ppl": ppl,
                   "scoring_seconds": o["seconds"]["scoring"], "job_seconds": job, "scores": o["scores"],
                   "compensation": o.get("compensation")}
            rows.append(row)
            print(f"| {spec.replace('+verify3', ' --verify-top 3')} | {remove} | {mode} | {' '.join(map(str, o['removed']))} "
                  f"| {ppl:.2f} | {o['seconds']['scoring']:.0f} | {job:.0f} |", flush=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    json.dump(rows, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
