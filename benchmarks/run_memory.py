#!/usr/bin/env python3
"""Memory per rank on a model larger than one rank's budget: the ~1.1B random LLaMA stored in BF16
(benchmarks/make_random_model.py --preset 1b, 2.2 GB of shards; 4.4 GB as float32, as much again for the
gradients). For S = 1, 2, 4 pipeline stages and --weights f32 | bf16 it runs one decision step
(`grad-stats --rank-stats`: forward + backward with every weight gradient) under launch/run and reports each
rank's peak resident memory (VmHWM) against its parameter bytes and against `inspect --ranks S`'s estimate
(the check: within 20 %). Then one real pruning decision at the smallest S whose estimate fits the budget.

    python3 benchmarks/run_memory.py [--preset 1b|tiny|qwen1.5b] [--windows 2] [--seq-len 128] [--budget-gib 4]

--preset qwen1.5b: the real Qwen2.5-Coder-1.5B GGUF (benchmarks/large_model.py) read directly, on its tokenised
evaluation text; each run waits until inspect's planned peak of all ranks together is free (the machine is
shared), and the prune step is left out (docs/data.md has the 2-rank prune of it against the plan).

Writes .cache/bench/memory.json and prints markdown tables (pasted into docs/benchmarks.md). On a 2-core
machine S = 4 oversubscribes the cores: times are then not comparable, memory is.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import large_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 2**20


def launch(binary, np_, args):
    cmd = [os.path.join(ROOT, "launch", "run"), "-np", str(np_), "--bin", binary] + args
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    o = json.loads(r.stdout.strip().splitlines()[-1])
    o["wall"] = time.time() - t0
    return o


def estimate(binary, model, stages, weights, seq_len):
    return large_model.inspect(binary, model, stages, weights, seq_len)["plan"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="1b")
    ap.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "gradmap-dist"))
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--stages", default="1,2,4")
    ap.add_argument("--weights", default="f32,bf16", help="weight formats to run, comma-separated")
    ap.add_argument("--budget-gib", type=float, default=4.0, help="per-rank memory budget the prune run must fit")
    ap.add_argument("--out", default=os.path.join(ROOT, ".cache", "bench", "memory.json"))
    a = ap.parse_args()
    if not os.path.exists(a.binary):
        subprocess.run(["swift", "build", "-c", "release", "--product", "gradmap-dist"], cwd=ROOT, check=True)
    large = a.preset == "qwen1.5b"
    if large:
        model, tokens = large_model.model_and_tokens(a.binary)
        total = large_model.inspect(a.binary, model, 1, "f32", a.seq_len)["model"]["parameters"]
    else:
        model = os.path.join(ROOT, ".cache", "models", f"llama-{a.preset}")
        subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "make_random_model.py"), "--preset", a.preset],
                       check=True)
        total = json.load(open(os.path.join(model, "bench-meta.json")))["params"]["total"]
        tokens = os.path.join(model, "tokens.bin")
    results = {"preset": a.preset, "params": total, "windows": a.windows, "seq_len": a.seq_len, "runs": [],
               "load_average": {"before": large_model.load_average()}}
    print(f"### Peak memory per rank ({a.preset}: {total / 1e9:.2f} B parameters, {a.windows} windows × {a.seq_len} "
          f"tokens, one forward + backward with every weight gradient)\n")
    print("| S | --weights | seconds | loss | rank: peak MiB (estimate MiB, measured/estimate) | f32 parameter MiB per rank | weights held MiB per rank |")
    print("|---|---|---|---|---|---|---|")
    worst = 0.0
    for s in [int(x) for x in a.stages.split(",")]:
        for w in a.weights.split(","):
            plan = estimate(a.binary, model, s, w, a.seq_len)
            if large:
                large_model.wait_for_memory(sum(p["estimated_peak_bytes"] for p in plan) + large_model.GIB // 2,
                                            f"grad-stats -np {s} --weights {w}")
            o = launch(a.binary, s, ["grad-stats", "--model", model, "--tokens", tokens, "--seq-len", str(a.seq_len),
                                     "--max-windows", str(a.windows), "--stages", str(s), "--weights", w,
                                     "--json", "--rank-stats"])
            cells = []
            for r, p in zip(o["ranks"], plan):
                ratio = r["peak_rss_bytes"] / p["estimated_peak_bytes"]
                worst = max(worst, abs(ratio - 1))
                cells.append(f"{r['rank']}: {r['peak_rss_bytes'] / MIB:.0f} ({p['estimated_peak_bytes'] / MIB:.0f}, {ratio:.2f})")
            results["runs"].append({"stages": s, "weights": w, "seconds": o["seconds"], "loss": o["loss"],
                                    "ranks": o["ranks"], "estimate": plan})
            params = ", ".join("%.0f" % (r["parameter_bytes"] / MIB) for r in o["ranks"])
            held = ", ".join("%.0f" % (r["weight_bytes"] / MIB) for r in o["ranks"])
            print(f"| {s} | {w} | {o['seconds']:.1f} | {o['loss']:.6f} | {'; '.join(cells)} | {params} | {held} |")
    results["worst_estimate_error"] = worst
    results["load_average"]["after"] = large_model.load_average()
    print(f"1-minute load average before and after: {results['load_average']['before']:.2f}, "
          f"{results['load_average']['after']:.2f}\n")
    print(f"\nLargest |measured / estimate - 1| over all ranks and runs: {worst:.1%} (target ≤ 20 %)\n")

    # One pruning decision at the fewest stages whose estimated peak fits the budget on every rank.
    budget = a.budget_gib * 2**30
    w = None
    for s in [] if large else [int(x) for x in a.stages.split(",")]:
        fits = {w: max(p["estimated_peak_bytes"] for p in estimate(a.binary, model, s, w, a.seq_len)) <= budget
                for w in ("f32", "bf16")}
        w = "bf16" if fits["bf16"] else None
        if w:
            break
    if w:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        out = os.path.join(os.path.dirname(os.path.abspath(a.out)), "memory-pruned")
        o = launch(a.binary, s, ["prune", "--model", model, "--tokens", tokens, "--seq-len", str(a.seq_len),
                                 "--calib-windows", str(a.windows), "--stages", str(s), "--weights", w, "--remove", "1",
                                 "--protect-first", "0", "--protect-last", "0", "--no-compensate", "--out", out, "--force", "--json"])
        report = json.load(open(os.path.join(out, "pruning_report.json")))
        peaks = [r["peak_rss_bytes"] for r in report["ranks"]]
        results["prune"] = {"stages": s, "weights": w, "removed": o["removed"], "peaks": peaks, "budget": budget,
                            "f32_fits": fits["f32"]}
        print(f"Prune (gradmap, 1 layer) within a {a.budget_gib:g} GiB per-rank budget: S = {s}, --weights {w}; removed "
              f"{o['removed']}; peak per rank {', '.join(f'{p / MIB:.0f}' for p in peaks)} MiB "
              f"(f32 weights at S = {s} {'would also' if fits['f32'] else 'would not'} fit by the estimate)")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    json.dump(results, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
