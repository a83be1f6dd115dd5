#!/usr/bin/env python3
"""The MPI pipeline on a random LLaMA of ~350M parameters (benchmarks/make_random_model.py --preset 300m):
time and per-rank peak resident memory of one forward+backward (`grad-stats --rank-stats`) for N = 1, 2, 4
ranks with the stages S and replicas R varied; bytes sent per token at a stage boundary; and the measured
pipeline bubble (time a rank waits for its neighbours over its total) for 1, 2 and 4×S micro-batches.

    python3 benchmarks/run_pipeline.py [--preset 300m|tiny] [--binary PATH] [--windows 8] [--seq-len 128]

Writes .cache/bench/pipeline.json and prints markdown tables (pasted into docs/benchmarks.md). On a 2-core
machine N = 4 oversubscribes the cores: ranks then also wait for a core, which the bubble includes.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(binary, model, np_, stages, windows, seq_len, micro_batch, threads=None, balance="compute"):
    cmd = [os.path.join(ROOT, "launch", "run"), "-np", str(np_), "--bin", binary, "grad-stats", "--model", model,
           "--tokens", os.path.join(model, "tokens.bin"), "--seq-len", str(seq_len), "--max-windows", str(windows),
           "--stages", str(stages), "--micro-batch", str(micro_batch), "--balance", balance, "--json", "--rank-stats"]
    env = dict(os.environ)
    if threads:
        env["GRADMAP_BLAS_THREADS"] = str(threads)
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    o = json.loads(r.stdout.strip().splitlines()[-1])
    o["wall"] = time.time() - t0
    return o


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="300m")
    ap.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "gradmap-dist"))
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--runs", type=int, default=2, help="replica runs: best of N")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--out", default=os.path.join(ROOT, ".cache", "bench", "pipeline.json"))
    ap.add_argument("--sections", default="scaling,replicas,bubble")
    a = ap.parse_args()
    sections = a.sections.split(",")
    model = os.path.join(ROOT, ".cache", "models", f"llama-{a.preset}")
    subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "make_random_model.py"), "--preset", a.preset], check=True)
    if not os.path.exists(a.binary):
        subprocess.run(["swift", "build", "-c", "release", "--product", "gradmap-dist"], cwd=ROOT, check=True)
    meta = json.load(open(os.path.join(model, "bench-meta.json")))
    hidden = meta["config"]["hidden_size"]
    tokens = a.windows * a.seq_len
    results = {"preset": a.preset, "params": meta.get("params", {}), "windows": a.windows, "seq_len": a.seq_len,
               "scaling": [], "replicas": [], "bubble": []}
    if "scaling" in sections:
        scaling(a, model, hidden, tokens, results)
    if "replicas" in sections:
        replicas(a, model, tokens, results)
    if "bubble" in sections:
        bubble(a, model, results)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    json.dump(results, open(a.out, "w"), indent=1)


def scaling(a, model, hidden, tokens, results):
    print(f"## Ranks, stages and replicas ({a.preset}: {a.windows} windows × {a.seq_len} tokens, micro-batch 1)\n")
    print("| N | S × R | seconds | tokens/s | speed-up vs N=1 | peak RSS per rank (MiB) | parameter MiB per rank | bytes sent per token per boundary |")
    print("|---|---|---|---|---|---|---|---|")
    base = None
    for np_, s in [(1, 1), (2, 2), (2, 1), (4, 4), (4, 2), (4, 1)]:
        o = run(a.binary, model, np_, s, a.windows, a.seq_len, 1)
        base = base or o["seconds"]
        ranks = o["ranks"]
        rss = [r["peak_rss_bytes"] / 2**20 for r in ranks]
        par = [r["parameter_bytes"] / 2**20 for r in ranks]
        # A middle boundary carries activations forward and their gradients back: bytes per token each way.
        sent = [r["bytes_sent"] for r in ranks if r["replica"] == 0 and r["stage"] < s - 1]
        per_token = (sent[0] / (tokens / (np_ // s))) if sent else 0
        results["scaling"].append({"np": np_, "stages": s, "seconds": o["seconds"], "ranks": ranks})
        print(f"| {np_} | {s} × {np_ // s} | {o['seconds']:.2f} | {tokens / o['seconds']:.0f} | {base / o['seconds']:.2f} | "
              f"{', '.join(f'{x:.0f}' for x in rss)} | {', '.join(f'{x:.0f}' for x in par)} | "
              f"{per_token:.0f} (4·H = {4 * hidden} each way) |")


def replicas(a, model, tokens, results):
    """R data-parallel replicas on R cores against one rank on one core, same windows: ideal speed-up R."""
    cores = os.cpu_count()
    print(f"\n## Replicas: R ranks on R cores (1 BLAS thread each) against 1 rank on 1 core, {a.windows} windows\n")
    print("| R | seconds | tokens/s | speed-up | target 0.85·R | all-reduce s (max over ranks) | loss |")
    print("|---|---|---|---|---|---|---|")
    base = None
    for r in [x for x in (1, 2, 4, 8) if x <= cores]:
        o = min((run(a.binary, model, r, 1, a.windows, a.seq_len, 1, threads=1) for _ in range(a.runs)), key=lambda o: o["seconds"])
        base = base or o["seconds"]
        red = max(x["reduce_seconds"] for x in o["ranks"])
        results["replicas"].append({"replicas": r, "seconds": o["seconds"], "reduce": red, "loss": o["loss"]})
        print(f"| {r} | {o['seconds']:.2f} | {tokens / o['seconds']:.0f} | {base / o['seconds']:.2f} | {0.85 * r:.2f} | {red:.2f} | {o['loss']:.6f} |")


def bubble(a, model, results):
    """Waiting over total time per rank; 1F1B's own floor with equal stages is (S-1)/(m+S-1)."""
    cores = os.cpu_count()
    print(f"\n## Pipeline bubble (1 replica, micro-batch 1, layers balanced by compute unless noted)\n")
    print("| S | cores per rank | micro-batches m | balance | seconds | bubble per rank (waiting / total) | mean | 1F1B floor (S-1)/(m+S-1) |")
    print("|---|---|---|---|---|---|---|---|")
    for s, ms, balances in [(2, (8, 16), ("compute", "memory")), (4, (16, 32), ("compute",))]:
        for m in ms:
            for bal in balances:
                o = run(a.binary, model, s, s, m, a.seq_len, 1, balance=bal)
                b = [r["bubble"] for r in o["ranks"]]
                floor = (s - 1) / (m + s - 1)
                results["bubble"].append({"stages": s, "micro_batches": m, "balance": bal, "seconds": o["seconds"], "bubble": b,
                                          "floor": floor, "layers": [r["layers"] for r in o["ranks"]]})
                per_rank = f"{max(1, cores // s)}" if s <= cores else f"{cores}/{s} (oversubscribed)"
                print(f"| {s} | {per_rank} | {m} ({m // s}×S) | {bal} | {o['seconds']:.2f} | {', '.join(f'{x:.0%}' for x in b)} | "
                      f"{sum(b) / len(b):.0%} | {floor:.0%} |")


if __name__ == "__main__":
    main()
