#!/usr/bin/env python3
"""Does --compensate-at auto help out of domain? (issue: compensation that does not overfit.)

Each job prunes K layers with a metric, calibrated (and the auto compensation fitted and chosen) on the
Wikipedia calibration articles, and evaluates the pruned and the compensated model on one held-out file that
holds N windows of the Wikipedia evaluation articles followed by N windows of news text from another source
(gensim's Lee background corpus, launch/fetch-assets: .cache/assets/news/lee_background.txt), each set spread
evenly over its stream. The report's per-window losses are split by domain, and the paired 95 % interval of
(compensated - pruned) is computed per domain (the Perplexity protocol of docs/method.md).

Besides the default choice rule (`auto`), a reference run per job applies the lowest-validation-loss
candidate of the same job's candidates (`--layers` the job's removed layers, `--compensate-at` that layer,
`--ridge` its alpha): the rule without the intervals and the preference for strong ridges.

    python3 benchmarks/ood_compensation.py [--bin .build/release/gradmap-dist] [--np 2] [--metrics bi,taylor,fisher,gradmap]
        [--remove 4,8,11] [--calib-windows 16] [--windows 64] [--preset smollm2|qwen1.5b] [--no-reference]

Resumable: each job's report is kept in .cache/bench/ood/<preset>/ and reused. Prints a Markdown table.
"""
import argparse
import json
import math
import os
import platform
import statistics
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("GRADMAP_CACHE", os.path.join(ROOT, ".cache"))
ASSETS = os.path.join(CACHE, "assets")
PRESETS = {
    "smollm2": dict(model="SmolLM2-135M-Instruct.Q4_1.gguf", extra=[]),
    "qwen1.5b": dict(model="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", extra=["--weights", "bf16"]),
}
SEQ = 256
Z975 = statistics.NormalDist().inv_cdf(0.975)


def cpu_name():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def paired(a, b):
    """mean and 95 % interval of b - a over windows."""
    d = [y - x for x, y in zip(a, b)]
    n = len(d)
    m = sum(d) / n
    half = Z975 * math.sqrt(sum((x - m) ** 2 for x in d) / (n - 1)) / math.sqrt(n)
    return m, m - half, m + half


def tokens(binary, model, text, out):
    if not os.path.exists(out):
        subprocess.run([binary, "tokenize", "--model", model, "--text", text, "--out", out], check=True,
                       stdout=subprocess.DEVNULL)
    with open(out, "rb") as f:
        raw = f.read()
    return list(struct.unpack("<%dI" % (len(raw) // 4), raw))


def spread(ids, n):
    """n windows of SEQ tokens spread evenly over the stream (the tool's own rule: window i*W/n)."""
    w = len(ids) // SEQ
    if w < n:
        sys.exit(f"only {w} windows of {SEQ} tokens in the stream, {n} wanted")
    return [t for i in range(n) for t in ids[(i * w // n) * SEQ:(i * w // n + 1) * SEQ]]


def run(binary, np_, args, out):
    """One prune job; its pruning_report.json (kept for resuming)."""
    report = os.path.join(out, "pruning_report.json")
    if os.path.exists(report):
        with open(report) as f:
            return json.load(f)
    cmd = [os.path.join(ROOT, "launch", "run"), "-np", str(np_), "--bin", binary, "prune", *args, "--out", out,
           "--force", "--skip-original-eval"]
    print(" ".join(cmd[1:]), file=sys.stderr)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"exit {r.returncode}: {r.stderr[-2000:]}")
    with open(report) as f:
        return json.load(f)


def by_domain(report, n):
    """(pruned, compensated) per-window losses per domain; compensated = pruned when nothing was folded."""
    w = report["eval"]["window_losses"]
    pruned = w["pruned"]
    comp = w.get("compensated", pruned)
    return {"wiki": (pruned[:n], comp[:n]), "news": (pruned[n:], comp[n:])}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default=os.path.join(ROOT, ".build", "release", "gradmap-dist"))
    p.add_argument("--np", type=int, default=2)
    p.add_argument("--metrics", default="bi,taylor,fisher,gradmap")
    p.add_argument("--remove", default="4,8,11")
    p.add_argument("--calib-windows", type=int, default=16)
    p.add_argument("--windows", type=int, default=64, help="held-out windows per domain")
    p.add_argument("--preset", default="smollm2", choices=sorted(PRESETS))
    p.add_argument("--no-reference", action="store_true", help="skip the lowest-validation-loss reference runs")
    args = p.parse_args()
    preset = PRESETS[args.preset]
    model = os.path.join(ASSETS, preset["model"])
    news_text = os.path.join(ASSETS, "news", "lee_background.txt")
    if not os.path.exists(news_text):
        sys.exit(f"{news_text} missing: run launch/fetch-assets")
    work = os.path.join(CACHE, "bench", "ood", args.preset)
    os.makedirs(work, exist_ok=True)
    calib = os.path.join(work, "calib.bin")
    tokens(args.bin, model, os.path.join(ASSETS, "wiki", "calib.txt"), calib)
    wiki = tokens(args.bin, model, os.path.join(ASSETS, "wiki", "eval.txt"), os.path.join(work, "eval.bin"))
    news = tokens(args.bin, model, news_text, os.path.join(work, "news.bin"))
    held = os.path.join(work, f"held-out-{args.windows}.bin")
    mixed = spread(wiki, args.windows) + spread(news, args.windows)
    with open(held, "wb") as f:
        f.write(struct.pack("<%dI" % len(mixed), *mixed))
    common = ["--model", model, "--tokens", calib, "--seq-len", str(SEQ), "--calib-windows", str(args.calib_windows),
              "--eval-tokens", held, *preset["extra"]]
    rows = []
    for k in [int(x) for x in args.remove.split(",")]:
        for metric in args.metrics.split(","):
            tag = f"{metric}-K{k}-c{args.calib_windows}-w{args.windows}"
            auto = run(args.bin, args.np, common + ["--metric", metric, "--remove", str(k)], os.path.join(work, tag))
            detail = auto["compensation_detail"]
            cands = detail["candidates"]
            lowest = min(range(len(cands)), key=lambda i: (cands[i]["validation_loss"], i))
            rules = [("auto", auto, detail["chosen_layer"], auto["compensation"] and auto["compensation"].get("ridge"))]
            if not args.no_reference:
                c = cands[lowest]
                if c["validation_loss"] < detail["baseline_validation_loss"]:
                    ref = run(args.bin, args.np, common + ["--layers", ",".join(map(str, auto["removed"])),
                              "--compensate-at", str(c["layer"]), "--ridge", repr(c["alpha"])],
                              os.path.join(work, tag + "-lowest"))
                    rules.append(("lowest validation loss", ref, c["layer"], c["alpha"]))
                else:
                    rules.append(("lowest validation loss", auto | {"eval": {"window_losses": {
                        "pruned": auto["eval"]["window_losses"]["pruned"]}}}, None, None))
            for name, report, layer, alpha in rules:
                d = by_domain(report, args.windows)
                rows.append((k, metric, name, layer, alpha, {dom: paired(*d[dom]) for dom in d},
                             {dom: math.exp(sum(d[dom][0]) / len(d[dom][0])) for dom in d},
                             {dom: math.exp(sum(d[dom][1]) / len(d[dom][1])) for dom in d}))
    print(f"CPU: {cpu_name()}; {args.preset}, {args.np} ranks, {args.calib_windows} calibration windows x {SEQ} "
          f"(validation: {max(1, args.calib_windows // 8)}), {args.windows} + {args.windows} held-out windows\n")
    print("| K | metric | rule | j* | α | wiki ppl pruned → comp. | Δ loss wiki [95 %] | news ppl pruned → comp. | Δ loss news [95 %] |")
    print("|---:|---|---|---:|---:|---|---|---|---|")
    for k, metric, name, layer, alpha, delta, before, after in rows:
        cells = []
        for dom in ("wiki", "news"):
            m, lo, hi = delta[dom]
            cells.append(f"{before[dom]:.1f} → {after[dom]:.1f}")
            cells.append("0 (none folded)" if layer is None else f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]")
        print(f"| {k} | {metric} | {name} | {'—' if layer is None else layer} | {'—' if alpha is None else alpha:} | "
              + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
