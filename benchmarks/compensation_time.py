#!/usr/bin/env python3
"""--compensate-at auto against one scoring pass of the default metric (issue: auto at <= 2x a scoring pass).

The default job on SmolLM2-135M (bi, K = 8 of 30, 32 calibration windows of 256 tokens of the Wikipedia
calibration articles, auto compensation; no held-out evaluation, which neither side needs) on each rank count,
once with the compensation's shared passes (the default) and once with each part's own passes
(GRADMAP_COMPENSATION_PASSES=separate, the previous way). From each run's pruning report: the scoring seconds
(bi's one forward), the compensation seconds (fitting and folding: shifts, sums, solve, validation sweep,
fold; not the compensated model's calibration loss) and their parts, and the ratio compensation / scoring.
With --repeat R every (ranks, mode) runs R times in turn (rounds, so that a slow minute of a shared machine
hits every setting alike); the table gives the run with the median ratio and every run's ratio.

    python3 benchmarks/compensation_time.py [--bin .build/release/gradmap-dist] [--np 1,2,4] [--modes shared,separate] [--repeat 3]

Prints a Markdown table; the reports go to .cache/bench/compensation-<mode>-np<N>.json.
"""
import argparse
import json
import os
import platform
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("GRADMAP_CACHE", os.path.join(ROOT, ".cache"))


def cpu_name():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default=os.path.join(ROOT, ".build", "release", "gradmap-dist"))
    p.add_argument("--np", default="1,2,4")
    p.add_argument("--modes", default="shared,separate")
    p.add_argument("--calib-windows", type=int, default=32)
    p.add_argument("--remove", type=int, default=8)
    p.add_argument("--repeat", type=int, default=1)
    args = p.parse_args()
    assets = os.path.join(CACHE, "assets")
    model = os.path.join(assets, "SmolLM2-135M-Instruct.Q4_1.gguf")
    tokens = os.path.join(assets, "wiki", "calib.bin")
    if not os.path.exists(tokens):
        subprocess.run([args.bin, "tokenize", "--model", model, "--text", os.path.join(assets, "wiki", "calib.txt"),
                        "--out", tokens], check=True)
    out_dir = os.path.join(CACHE, "bench")
    os.makedirs(out_dir, exist_ok=True)
    runs = {}
    settings = [(int(n), mode) for n in args.np.split(",") for mode in args.modes.split(",")]
    for _ in range(args.repeat):
        for np_, mode in settings:
            out = os.path.join(out_dir, f"compensation-{mode}-np{np_}")
            env = dict(os.environ, GRADMAP_COMPENSATION_PASSES=mode)
            cmd = [os.path.join(ROOT, "launch", "run"), "-np", str(np_), "--bin", args.bin, "prune", "--model", model,
                   "--tokens", tokens, "--seq-len", "256", "--calib-windows", str(args.calib_windows),
                   "--remove", str(args.remove), "--compensate-at", "auto", "--out", out, "--force", "--json"]
            r = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"np={np_} {mode}: exit {r.returncode}: {r.stderr[-2000:]}")
            report = json.loads(r.stdout.strip().splitlines()[-1])
            with open(out + ".json", "w") as f:
                json.dump(report, f, indent=1)
            s, parts = report["seconds"], dict(report["compensation_detail"]["seconds"])
            split = f"{1 + max(r['stage'] for r in report['ranks'])} × {1 + max(r['replica'] for r in report['ranks'])}"
            runs.setdefault((np_, mode), []).append(
                (s["compensation"] / s["scoring"], f"{np_} ({split})", mode, report["removed"], report["compensation"]["layer"],
                 s["scoring"], s["compensation"], parts))
            print(f"np={np_} {mode}: scoring {s['scoring']:.1f} s, compensation {s['compensation']:.1f} s", file=sys.stderr)
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; {args.calib_windows} calibration windows x 256, bi, K = {args.remove}\n")
    print("| ranks (stages × replicas) | passes | removed | j* | scoring s | compensation s | shifts | sums | solve | validation | fold "
          "| compensation / scoring | every run's ratio |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for key in settings:
        ordered = sorted(runs[key], key=lambda r: r[0])
        ratio, label, mode, removed, layer, scoring, comp, parts = ordered[(len(ordered) - 1) // 2]
        cells = " | ".join(f"{parts.get(k, 0):.1f}" for k in ["shifts", "sums", "solve", "validation", "fold"])
        every = " ".join(f"{r[0]:.2f}" for r in runs[key])
        print(f"| {label} | {mode} | {' '.join(map(str, removed))} | {layer} | {scoring:.1f} | {comp:.1f} | {cells} | "
              f"**{ratio:.2f}** | {every} |")


if __name__ == "__main__":
    main()
