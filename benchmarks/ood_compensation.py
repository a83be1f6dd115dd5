#!/usr/bin/env python3
"""Does --compensate-at auto help out of domain? (issue: compensation that does not overfit.)

Each job prunes K layers with a metric, calibrated (and the auto compensation fitted and chosen) on the
Wikipedia calibration articles, and evaluates the pruned and the compensated model on one held-out file that
holds N windows of the Wikipedia evaluation articles followed by N windows of news text from another source
(gensim's Lee background corpus, launch/fetch-assets: .cache/assets/news/lee_background.txt), each set spread
evenly over its stream. The report's per-window losses are split by domain, and the paired 95 % interval of
(compensated - pruned) is computed per domain (the Perplexity protocol of docs/method.md).

The job's report holds every candidate solution's loss on every validation window, so the choice of other
rules can be made here from the same numbers; each solution another rule would fold is then folded on the
same pruned model (`--layers` the job's removed layers, `--compensate-at` its layer, `--ridge` its alpha) and
evaluated the same way. Rules (method.md stage 2 step 5 states the tool's):
  lowest       the lowest mean validation loss, folded if below the uncompensated one (the rule before)
  interval     the tool's: among the solutions whose paired 95 % interval against the best reaches 0, the
               largest alpha; folded only if its interval against the uncompensated model is below 0
  layer-first  the best's layer, then the largest alpha at that layer tied with the best; the same fold test

    python3 benchmarks/ood_compensation.py [--bin .build/release/gradmap-dist] [--np 2] [--metrics bi,taylor,fisher,gradmap]
        [--remove 4,8,11] [--calib-windows 16] [--windows 64] [--preset smollm2|qwen1.5b]

Resumable: each job's report is kept in .cache/bench/ood/<preset>/ and reused. Prints a Markdown table.
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys

from compensation_time import cpu_name  # this folder's scripts share it

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("GRADMAP_CACHE", os.path.join(ROOT, ".cache"))
ASSETS = os.path.join(CACHE, "assets")
PRESETS = {
    "smollm2": dict(model="SmolLM2-135M-Instruct.Q4_1.gguf", extra=[]),
    "qwen1.5b": dict(model="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", extra=["--weights", "bf16"]),
}
SEQ = 256


def t975(dof):
    """Student's two-sided 95 % quantile (the tool's intervals, Support/Interval.swift)."""
    import scipy.stats  # PyPI's scipy: only the interval scripts need it
    return float(scipy.stats.t.ppf(0.975, dof))


def paired(a, b):
    """mean and 95 % interval of b - a over windows."""
    d = [y - x for x, y in zip(a, b)]
    n = len(d)
    m = sum(d) / n
    half = t975(n - 1) * math.sqrt(sum((x - m) ** 2 for x in d) / (n - 1)) / math.sqrt(n)
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


def by_domain(report, n, folded):
    """(pruned, compensated) per-window losses per domain; compensated = pruned when nothing is folded."""
    w = report["eval"]["window_losses"]
    pruned = w["pruned"]
    comp = w["compensated"] if folded else pruned
    return {"wiki": (pruned[:n], comp[:n]), "news": (pruned[n:], comp[n:])}


RULES = ["lowest", "interval", "layer-first"]
MINIMUM_GAIN = 1e-6


def choose(detail, rule):
    """(layer, alpha) the rule folds, or None, from the report's validation losses (per window)."""
    cands = detail["candidates"]
    base_w = detail["baseline_validation_window_losses"]
    base = detail["baseline_validation_loss"]
    means = [c["validation_loss"] for c in cands]
    best = min(range(len(cands)), key=lambda i: (means[i], i))
    if rule == "lowest":
        pick = best
    else:
        ws = [c["validation_window_losses"] for c in cands]
        spread = len(base_w) >= 2
        tied = [i for i in range(len(cands))
                if (paired(ws[best], ws[i])[1] <= 0 if spread else means[i] == means[best])]
        if rule == "layer-first":
            tied = [i for i in tied if cands[i]["layer"] == cands[best]["layer"]]
        pick = max(tied, key=lambda i: (cands[i]["alpha"], -means[i], -i))
        if spread and not paired(base_w, ws[pick])[2] < 0:
            return None
    if not means[pick] < base * (1 - MINIMUM_GAIN):
        return None
    return cands[pick]["layer"], cands[pick]["alpha"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default=os.path.join(ROOT, ".build", "release", "gradmap-dist"))
    p.add_argument("--np", type=int, default=2)
    p.add_argument("--metrics", default="bi,taylor,fisher,gradmap")
    p.add_argument("--remove", default="4,8,11")
    p.add_argument("--calib-windows", type=int, default=16)
    p.add_argument("--windows", type=int, default=64, help="held-out windows per domain")
    p.add_argument("--preset", default="smollm2", choices=sorted(PRESETS))
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
            folded = (detail["chosen_layer"], detail["alpha"]) if detail["chosen_layer"] is not None else None
            evaluated = {folded: auto, None: auto}
            for rule in RULES:
                pick = choose(detail, rule)
                if rule == "interval" and pick != folded:
                    sys.exit(f"{tag}: the tool folded {folded}, the interval rule computed here picks {pick}")
                if pick is not None and pick not in evaluated:
                    layer, alpha = pick
                    evaluated[pick] = run(args.bin, args.np, common + [
                        "--layers", ",".join(map(str, auto["removed"])), "--compensate-at", str(layer),
                        "--ridge", repr(alpha)], os.path.join(work, f"{tag}-L{layer}-a{alpha:g}"))
                report = evaluated[pick]
                d = by_domain(report, args.windows, folded=pick is not None)
                rows.append((k, metric, rule, pick, {dom: paired(*d[dom]) for dom in d},
                             {dom: math.exp(sum(d[dom][0]) / len(d[dom][0])) for dom in d},
                             {dom: math.exp(sum(d[dom][1]) / len(d[dom][1])) for dom in d}))
    print(f"CPU: {cpu_name()}; {args.preset}, {args.np} ranks, {args.calib_windows} calibration windows x {SEQ} "
          f"(validation: {max(1, args.calib_windows // 8)}), {args.windows} + {args.windows} held-out windows\n")
    print("| K | metric | rule | j* | α | wiki ppl pruned → comp. | Δ loss wiki [95 %] | news ppl pruned → comp. | Δ loss news [95 %] |")
    print("|---:|---|---|---:|---:|---|---|---|---|")
    for k, metric, rule, pick, delta, before, after in rows:
        cells = []
        for dom in ("wiki", "news"):
            m, lo, hi = delta[dom]
            cells.append(f"{before[dom]:.1f} → {after[dom]:.1f}")
            cells.append("0 (none folded)" if pick is None else f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]")
        layer, alpha = pick if pick else ("—", "—")
        print(f"| {k} | {metric} | {rule} | {layer} | {alpha} | " + " | ".join(cells) + " |")
    # Per rule: out-of-domain losses (news worse than uncompensated beyond its interval) and the in-domain
    # gain summed over the jobs, against the lowest rule's.
    print()
    print("| rule | jobs folded | news worse (interval above 0) | news mean Δ > 0 | Σ wiki gain | share of lowest's |")
    print("|---|---:|---:|---:|---:|---:|")
    gain = {r: sum(-row[4]["wiki"][0] for row in rows if row[2] == r and row[3]) for r in RULES}
    for r in RULES:
        mine = [row for row in rows if row[2] == r]
        folded = [row for row in mine if row[3]]
        worse = sum(1 for row in folded if row[4]["news"][1] > 0)
        above = sum(1 for row in folded if row[4]["news"][0] > 0)
        share = gain[r] / gain["lowest"] if gain["lowest"] > 0 else float("nan")
        print(f"| {r} | {len(folded)} / {len(mine)} | {worse} | {above} | {gain[r]:.3f} | {share:.0%} |")

if __name__ == "__main__":
    main()
