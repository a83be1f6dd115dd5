#!/usr/bin/env python3
"""Pruning cost with a fixed calibration set: the time of one decision of every metric (`gradmap-dist score`,
the unpruned model), and the whole pruning time of gradmap against sleb for K = 25% of the layers
(`prune --no-compensate`). Default model: SmolLM2-135M (needs launch/fetch-assets: the model and text);
`--model DIR` takes a benchmark model folder with its tokens.bin (e.g. .cache/models/llama-1b).

    python3 benchmarks/run_pruning.py [--np 1] [--calib-windows 8] [--seq-len 256] [--binary PATH]
    python3 benchmarks/run_pruning.py --model .cache/models/llama-1b --calib-windows 2 --seq-len 128 \
        --metrics gradmap,bi,sleb --out .cache/bench/pruning-1b.json

Writes .cache/bench/pruning.json and prints markdown tables (pasted into docs/benchmarks.md).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRICS = ["gradmap", "fisher", "gate", "taylor", "bi", "angular", "sleb", "random"]


def gm(a, args):
    cmd = [os.path.join(ROOT, "launch", "run"), "-np", str(a.np), "--bin", a.binary] + args
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1]), time.time() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--np", type=int, default=1)
    ap.add_argument("--calib-windows", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--remove", type=int, help="K for the whole-pruning comparison (default 25%% of the layers)")
    ap.add_argument("--model", help="model folder with tokens.bin (default SmolLM2-135M and the calibration text)")
    ap.add_argument("--metrics", default=",".join(METRICS), help="metrics for the one-decision table")
    ap.add_argument("--weights", default="f32")
    ap.add_argument("--matmul", default="f32",
                    help="comma-separated --matmul modes (f32, wgrad-bf16, bf16): the whole-pruning comparison runs "
                         "gradmap and sleb once per mode, both with the same mode; the one-decision table uses the first")
    ap.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "gradmap-dist"))
    ap.add_argument("--out", default=os.path.join(ROOT, ".cache", "bench", "pruning.json"))
    a = ap.parse_args()
    if not os.path.exists(a.binary):
        subprocess.run(["swift", "build", "-c", "release", "--product", "gradmap-dist"], cwd=ROOT, check=True)
    if a.model:
        model, calib = a.model, os.path.join(a.model, "tokens.bin")
        layers = json.load(open(os.path.join(model, "config.json")))["num_hidden_layers"]
        name = os.path.basename(os.path.normpath(model))
    else:
        subprocess.run([os.path.join(ROOT, "launch", "fetch-assets")], check=True, stdout=subprocess.DEVNULL)
        model = os.path.join(ROOT, ".cache", "assets", "SmolLM2-135M-Instruct.Q4_1.gguf")
        calib = os.path.join(ROOT, ".cache", "assets", "wiki", "calib.bin")
        if not os.path.exists(calib):
            subprocess.run([a.binary, "tokenize", "--model", model, "--text", calib[:-3] + "txt", "--out", calib], check=True)
        layers, name = 30, "SmolLM2-135M"
    a.remove = a.remove or layers // 4
    common = ["--model", model, "--tokens", calib, "--seq-len", str(a.seq_len), "--calib-windows", str(a.calib_windows),
              "--weights", a.weights]
    modes = a.matmul.split(",")
    res = {"np": a.np, "calib_windows": a.calib_windows, "seq_len": a.seq_len, "score": {}, "prune": {},
           "matmul": modes, "by_matmul": {}}
    tokens = a.calib_windows * a.seq_len
    print(f"## One decision per metric ({name}, {a.calib_windows} × {a.seq_len} calibration tokens, {a.np} rank(s))\n")
    print("| metric | seconds per decision | what it runs |")
    print("|---|---|---|")
    what = {"gradmap": "forward + backward", "taylor": "forward + backward", "fisher": "forward + backward (no weight gradients)",
            "gate": "forward + backward (no weight gradients)", "bi": "forward", "angular": "forward",
            "sleb": f"forward sweep over {layers - 2} candidates (shared prefixes)", "random": "nothing"}
    for m in a.metrics.split(","):
        o, wall = gm(a, ["score"] + common + ["--metric", m, "--matmul", modes[0]])
        res["score"][m] = o["seconds"]
        print(f"| {m} | {o['seconds']:.1f} | {what[m]} |")
    print(f"\n## Whole pruning, K = {a.remove} of {layers} layers, no compensation\n")
    print("| --matmul | metric | scoring seconds | removed layers | calibration loss after | sleb / gradmap time |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            runs = {}
            for m in ("gradmap", "sleb"):
                o, wall = gm(a, ["prune"] + common + ["--metric", m, "--remove", str(a.remove), "--no-compensate",
                                                      "--matmul", mode, "--out", os.path.join(tmp, f"{m}-{mode}"), "--json"])
                runs[m] = {"scoring": o["seconds"]["scoring"], "removed": o["removed"], "loss": o["calib_loss"]["pruned"]}
            ratio = runs["sleb"]["scoring"] / runs["gradmap"]["scoring"]
            res["by_matmul"][mode] = dict(runs, sleb_over_gradmap=ratio)
            for m, r in runs.items():
                print(f"| {mode} | {m} | {r['scoring']:.0f} | {' '.join(map(str, r['removed']))} | {r['loss']:.4f} "
                      f"| {f'{ratio:.2f}×' if m == 'sleb' else ''} |")
    res["prune"] = {m: res["by_matmul"][modes[0]][m] for m in ("gradmap", "sleb")}
    res["sleb_over_gradmap"] = res["by_matmul"][modes[0]]["sleb_over_gradmap"]
    for mode in modes:
        print(f"\nsleb / gradmap pruning time, --matmul {mode}: {res['by_matmul'][mode]['sleb_over_gradmap']:.2f}×")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    json.dump(res, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
