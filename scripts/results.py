#!/usr/bin/env python3
"""Makes docs/results.md: pruning SmolLM2-135M with every metric, with and without compensation.

For each K (layers removed) and each metric (gradmap, fisher, gate, taylor, bi, angular, sleb, random; gradmap and
fisher also with --verify-top 3) it runs `gradmap-dist prune --no-compensate` under mpirun, then re-applies the
same removed layers (`prune --layers ...`, no scoring) with `--compensate-at shift` and `--compensate-at auto`.
Every run reports held-out perplexity on the evaluation articles (docs/data.md) and its timings. Then, for the
default setting, perplexity as the calibration set grows. Runs are cached as JSON in .cache/results/ (keyed by
their command), so an interrupted run resumes; delete the folder to start over.

    python3 scripts/results.py [--np 4] [--ks 4,8] [--calib-windows 32] [--eval-windows 64] [--growth 8,32,128]
"""
import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, ".cache")
METRICS = ["gradmap", "fisher", "gate", "taylor", "bi", "angular", "sleb", "random"]


def sh(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def run_prune(args, extra, label):
    """One cached prune run; returns its --json object plus wall time (None with --report-only and no cache)."""
    cmd = [os.path.join(ROOT, "launch", "run"), "-np", str(args.np), "--bin", args.bin, "prune",
           "--model", args.model, "--tokens", args.calib, "--seq-len", str(args.seq_len),
           "--eval-tokens", args.eval, "--eval-windows", str(args.eval_windows),
           "--out", os.path.join(CACHE, "results", "model-" + label), "--force", "--json"] + extra
    key = hashlib.sha256(json.dumps(cmd[3:]).encode()).hexdigest()[:16]
    path = os.path.join(CACHE, "results", f"{label}-{key}.json")
    if os.path.exists(path):
        return json.load(open(path))
    if args.report_only:
        return None
    print("running:", " ".join(cmd), file=sys.stderr, flush=True)
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr}")
    result = json.loads(r.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = time.time() - t0
    result["command"] = " ".join(["gradmap-dist"] + cmd[5:])
    json.dump(result, open(path, "w"), indent=1)
    return result


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--np", type=int, default=4)
    p.add_argument("--ks", default="4,8")
    p.add_argument("--metrics", default=",".join(METRICS))
    p.add_argument("--calib-windows", type=int, default=32)
    p.add_argument("--eval-windows", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--growth", default="8,32,128", help="calibration windows for the growth table ('' to skip)")
    p.add_argument("--default-metric", default="gradmap")
    p.add_argument("--default-k", type=int, default=8)
    p.add_argument("--bin", default=os.path.join(ROOT, ".build", "release", "gradmap-dist"))
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "results.md"))
    p.add_argument("--report-only", action="store_true", help="write the tables from the cached runs only")
    args = p.parse_args()
    args.model = os.path.join(CACHE, "assets", "SmolLM2-135M-Instruct.Q4_1.gguf")
    wiki = os.path.join(CACHE, "assets", "wiki")
    args.calib, args.eval = os.path.join(wiki, "calib.bin"), os.path.join(wiki, "eval.bin")
    os.makedirs(os.path.join(CACHE, "results"), exist_ok=True)
    if not args.report_only:
        subprocess.run([os.path.join(ROOT, "launch", "fetch-assets")], check=True)
    if not os.path.exists(args.bin):
        subprocess.run(["swift", "build", "-c", "release", "--product", "gradmap-dist"], cwd=ROOT, check=True)
    for txt, bin_ in [("calib.txt", args.calib), ("eval.txt", args.eval)]:
        if not os.path.exists(bin_):
            sh([args.bin, "tokenize", "--model", args.model, "--text", os.path.join(wiki, txt), "--out", bin_])

    rows = []
    ks = [int(k) for k in args.ks.split(",") if k]
    variants = []
    for m in args.metrics.split(","):
        variants.append((m, []))
        if m in ("gradmap", "fisher"):
            variants.append((m, ["--verify-top", "3"]))
    base = ["--calib-windows", str(args.calib_windows)]
    for k in ks:
        for metric, more in variants:
            name = metric + (" (verify 3)" if more else "")
            label = f"k{k}-{metric}{'-v3' if more else ''}-c{args.calib_windows}"
            plain = run_prune(args, base + ["--metric", metric, "--remove", str(k), "--no-compensate"] + more, label + "-none")
            if plain is None:
                continue
            removed = ",".join(str(x) for x in plain["removed"])
            row = {"k": k, "metric": name, "removed": plain["removed"], "ppl_original": plain["eval"]["ppl_original"],
                   "none": plain["eval"]["ppl_pruned"], "scoring_s": plain["seconds"]["scoring"],
                   "calib_pruned": plain["calib_loss"]["pruned"]}
            for mode in ("shift", "auto"):
                c = run_prune(args, base + ["--layers", removed, "--compensate-at", mode, "--skip-original-eval"], label + "-" + mode)
                if c is None:
                    row[mode], row[mode + "_layer"], row[mode + "_s"] = None, None, 0
                    continue
                row[mode] = c["eval"].get("ppl_compensated", c["eval"]["ppl_pruned"])
                row[mode + "_layer"] = (c["compensation"] or {}).get("layer")
                row[mode + "_s"] = c["seconds"]["compensation"]
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)

    growth = []
    for n in [int(x) for x in args.growth.split(",") if x]:
        label = f"growth-{args.default_metric}-k{args.default_k}-c{n}"
        r = run_prune(args, ["--calib-windows", str(n), "--metric", args.default_metric, "--remove", str(args.default_k),
                             "--compensate-at", "auto"], label)
        if r is None:
            continue
        growth.append({"windows": n, "removed": r["removed"], "none": r["eval"]["ppl_pruned"],
                       "auto": r["eval"].get("ppl_compensated"), "layer": (r["compensation"] or {}).get("layer"),
                       "seconds": r["seconds"]["scoring"] + r["seconds"]["compensation"]})
    write(args, rows, growth)


def fmt(x):
    return "—" if x is None else (f"{x:.1f}" if x < 1000 else f"{x:.3g}")


def write(args, rows, growth):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    lines = ["# Results: which layers, how good, how fast (SmolLM2-135M)", "",
             f"Made by `python3 scripts/results.py --np {args.np} --ks {args.ks} --calib-windows {args.calib_windows} "
             f"--eval-windows {args.eval_windows} --growth {args.growth}` on {datetime.date.today()} "
             f"({cpu}, {os.cpu_count()} cores, {args.np} ranks).", "",
             f"Model: SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised; 30 layers). Calibration: {args.calib_windows} windows "
             f"of {args.seq_len} tokens spread over the calibration articles; evaluation: {args.eval_windows} windows of "
             f"{args.seq_len} tokens spread over the held-out evaluation articles (docs/data.md); perplexity as in "
             "docs/method.md. Protected: first and last layer. Compensation columns re-apply the same removed layers "
             "with `--compensate-at shift` (the paper's rule) or `auto` (validation-selected, method.md step 4).", ""]
    if rows:
        lines.append(f"Unpruned perplexity: **{fmt(rows[0]['ppl_original'])}**.")
        lines.append("")
    for k in sorted({r["k"] for r in rows}):
        lines += [f"## K = {k} layers removed", "",
                  "| metric | removed layers | ppl, no compensation | ppl, shift (j*) | ppl, auto (j*) | scoring s | compensation s (auto) |",
                  "|---|---|---|---|---|---|---|"]
        for r in [r for r in rows if r["k"] == k]:
            lines.append(f"| {r['metric']} | {' '.join(map(str, r['removed']))} | {fmt(r['none'])} | {fmt(r['shift'])} ({r['shift_layer']}) "
                         f"| {fmt(r['auto'])} ({r['auto_layer'] if r['auto_layer'] is not None else 'none'}) | {r['scoring_s']:.0f} | {r['auto_s']:.0f} |")
        lines.append("")
    if growth:
        lines += [f"## Calibration size ({args.default_metric}, K = {args.default_k}, auto compensation, {args.np} ranks)", "",
                  "| calibration windows | removed layers | ppl, no compensation | ppl, auto (j*) | seconds |", "|---|---|---|---|---|"]
        for g in growth:
            lines.append(f"| {g['windows']} | {' '.join(map(str, g['removed']))} | {fmt(g['none'])} | {fmt(g['auto'])} ({g['layer']}) | {g['seconds']:.0f} |")
        lines.append("")
    if rows:
        best = {}
        for r in rows:
            for mode in ("none", "shift", "auto"):
                best.setdefault((r["k"], mode), []).append((r[mode], r["metric"]))
        lines += ["## Best per column", ""]
        for (k, mode), vals in sorted(best.items()):
            vals = [x for x in vals if x[0] is not None]
            if not vals:
                continue
            v, m = min(vals)
            lines.append(f"- K = {k}, {mode}: {m} ({fmt(v)})")
        lines.append("")
    open(args.out, "w").write("\n".join(lines) + "\n")
    print("wrote", args.out, file=sys.stderr)


if __name__ == "__main__":
    main()
