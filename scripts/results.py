#!/usr/bin/env python3
"""Makes docs/results.md: pruning SmolLM2-135M with every metric, with and without compensation.

For each K (layers removed) and each metric (gradmap, fisher, gate, taylor, bi, angular, sleb, random; gradmap and
fisher also with --verify-top 3) it runs `gradmap-dist prune --no-compensate` under mpirun, then re-applies the
same removed layers (`prune --layers ...`, no scoring) with `--compensate-at shift` and `--compensate-at auto`.
Every run reports held-out perplexity on the evaluation articles (docs/data.md) with its 95 % interval
(method.md) and its timings; every run evaluates the same windows, so two settings compare by the paired interval
of their per-window loss difference (from the runs' pruning_report.json). Then, for the default setting,
perplexity as the calibration set grows. Runs are cached as JSON in .cache/results/ (keyed by
their command), so an interrupted run resumes; delete the folder to start over.

    python3 scripts/results.py [--np 4] [--ks 4,8] [--calib-windows 32] [--eval-windows 128] [--growth 8,32,128]
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
Z975 = 1.959963984540054  # the two-sided 95 % normal quantile, as in the Swift code (method.md)


def sh(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def run_prune(args, extra, label, np=None):
    """One cached prune run; returns its --json object plus wall time (None with --report-only and no cache)."""
    cmd = [os.path.join(ROOT, "launch", "run"), "-np", str(np or args.np), "--bin", args.bin, "prune",
           "--model", args.model, "--tokens", args.calib, "--seq-len", str(args.seq_len),
           "--eval-tokens", args.eval, "--eval-windows", str(args.eval_windows),
           "--out", os.path.join(CACHE, "results", "model-" + label), "--force", "--json"] + extra
    key = hashlib.sha256(json.dumps(cmd[5:]).encode()).hexdigest()[:16]  # the binary's path is not part of the key
    path = os.path.join(CACHE, "results", f"{label}-{key}.json")
    if os.path.exists(path):
        return with_decisions(json.load(open(path)), label)
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
    result = with_decisions(result, label)
    json.dump(result, open(path, "w"), indent=1)
    return result


def with_decisions(result, label):
    """Adds the per-decision records (layer, score, seconds) and the held-out per-window losses
    (eval.window_losses, only in the report file) from the run's pruning_report.json."""
    report = os.path.join(CACHE, "results", "model-" + label, "pruning_report.json")
    missing = "decisions" not in result or ("eval" in result and "window_losses" not in result["eval"])
    if missing and os.path.exists(report):
        saved = json.load(open(report))
        result.setdefault("decisions", saved.get("decisions", []))
        if "window_losses" in saved.get("eval", {}) and saved["eval"].get("window_indices") == result["eval"].get("window_indices"):
            result["eval"]["window_losses"] = saved["eval"]["window_losses"]
    return result


def cell(result, stage):
    """One perplexity of a run: value, 95 % interval (None from runs made before intervals), the per-window
    losses and the window indices they belong to (None when not recorded)."""
    e = result["eval"]
    return {"ppl": e["ppl_" + stage], "interval": e.get(f"ppl_{stage}_interval"),
            "losses": e.get("window_losses", {}).get(stage), "windows": e.get("window_indices")}


def mean_interval(x):
    """The 95 % normal interval of a mean (docs/method.md): mean +- z * sd / sqrt(n), sd with divisor n - 1."""
    n = len(x)
    mean = sum(x) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in x) / (n - 1))
    half = Z975 * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def paired_ratio(a, b):
    """b's perplexity over a's with its 95 % interval, from the per-window loss differences b - a (the same
    windows); None when either has no per-window losses or they were measured on other windows."""
    if a["losses"] is None or b["losses"] is None or a["windows"] != b["windows"] or len(a["losses"]) < 2:
        return None
    m, lo, hi = mean_interval([y - x for x, y in zip(a["losses"], b["losses"])])
    return math.exp(m), math.exp(lo), math.exp(hi)


def fmt_ratio(r):
    return "not paired (no per-window losses)" if r is None else f"{r[0]:.3f} [95 % {r[1]:.3f}, {r[2]:.3f}]"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--np", type=int, default=4)
    p.add_argument("--ks", default="4,8")
    p.add_argument("--metrics", default=",".join(METRICS))
    p.add_argument("--calib-windows", type=int, default=32)
    p.add_argument("--eval-windows", type=int, default=128)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--growth", default="8,32,128", help="calibration windows for the growth table ('' to skip)")
    p.add_argument("--growth-np", type=int, default=4, help="ranks for the calibration-growth runs")
    p.add_argument("--default-metric", default="bi", help="metric of the calibration-growth runs")
    p.add_argument("--cli-default-metric", default="bi", help="the prune command's default --metric (for the check)")
    p.add_argument("--cli-default-compensation", default="auto", help="the prune command's default --compensate-at")
    p.add_argument("--default-k", type=int, default=8)
    p.add_argument("--prefix-check-metric", default="gradmap", help="metric also run directly at every smaller K")
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
    for m in [x for x in args.metrics.split(",") if x]:
        variants.append((m, []))
        if m in ("gradmap", "fisher"):
            variants.append((m, ["--verify-top", "3"]))
    base = ["--calib-windows", str(args.calib_windows)]
    # Decisions are greedy and deterministic (one layer per decision, compensation only after the last one), so the
    # first k decisions of a K-layer run are exactly the decisions of a k-layer run: smaller K re-apply that prefix
    # with --layers and take its scoring time from the per-decision seconds. `prefix_check` runs one metric directly
    # at every smaller K to show that the prefix is what a direct run removes.
    kmax = max(ks)
    prefix_check = []
    for metric, more in variants:
        name = metric + (" (verify 3)" if more else "")
        tag = f"{metric}{'-v3' if more else ''}-c{args.calib_windows}"
        plain = run_prune(args, base + ["--metric", metric, "--remove", str(kmax), "--no-compensate"] + more, f"k{kmax}-{tag}-none")
        if plain is None:
            continue
        for k in sorted(ks, reverse=True):
            label = f"k{k}-{tag}"
            run = plain
            if k != kmax and metric == "angular":  # one block of K consecutive layers: depends on K, run it
                run = run_prune(args, base + ["--metric", metric, "--remove", str(k), "--no-compensate"] + more, label + "-none")
                if run is None:
                    continue
            derived = run is plain and k != kmax
            layers = run["removed"][:k]
            seconds = [d["seconds"] for d in plain.get("decisions", [])[:k]]
            if not derived:
                scoring = run["seconds"]["scoring"]
            elif len(seconds) < k:
                scoring = None
            else:  # bi scores once: its decisions carry the time since that one scoring began
                scoring = seconds[-1] if metric == "bi" else sum(seconds)
            row = {"k": k, "metric": name, "removed": layers, "ppl_original": cell(plain, "original"),
                   "none": None if derived else cell(run, "pruned"), "scoring_s": scoring, "derived": derived}
            if k != kmax and metric == args.prefix_check_metric and not more:
                direct = run_prune(args, base + ["--metric", metric, "--remove", str(k), "--no-compensate"], label + "-direct")
                if direct is not None:
                    prefix_check.append({"metric": metric, "k": k, "prefix": layers, "direct": direct["removed"]})
                    if direct["removed"] != layers:
                        sys.exit(f"prefix check failed: {metric} K={k} direct {direct['removed']} vs prefix {layers}")
            for mode in ("shift", "auto"):
                c = run_prune(args, base + ["--layers", ",".join(map(str, layers)), "--compensate-at", mode,
                                            "--skip-original-eval"], label + "-" + mode)
                if c is None:
                    row[mode], row[mode + "_layer"], row[mode + "_s"] = None, None, None
                    continue
                if row["none"] is None:
                    row["none"] = cell(c, "pruned")
                row[mode] = cell(c, "compensated" if "ppl_compensated" in c["eval"] else "pruned")
                row[mode + "_layer"] = (c["compensation"] or {}).get("layer")
                row[mode + "_s"] = c["seconds"]["compensation"]
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)

    growth = []
    for n in [int(x) for x in args.growth.split(",") if x]:
        label = f"growth-{args.default_metric}-k{args.default_k}-c{n}"
        r = run_prune(args, ["--calib-windows", str(n), "--metric", args.default_metric, "--remove", str(args.default_k),
                             "--compensate-at", "auto", "--skip-original-eval"], label, np=args.growth_np)
        if r is None:
            continue
        growth.append({"windows": n, "removed": r["removed"], "none": cell(r, "pruned"),
                       "auto": cell(r, "compensated") if "ppl_compensated" in r["eval"] else None,
                       "layer": (r["compensation"] or {}).get("layer"),
                       "seconds": r["seconds"]["scoring"] + r["seconds"]["compensation"]})
    write(args, rows, growth, prefix_check)


def secs(x):
    return "—" if x is None else f"{x:.0f}"


def fmt(x):
    """A perplexity cell: the value and its 95 % interval when the run recorded one."""
    if x is None:
        return "—"
    if isinstance(x, dict):
        lo, hi = x["interval"] or (None, None)
        return fmt(x["ppl"]) + (f" [{fmt(lo)}, {fmt(hi)}]" if lo is not None and hi is not None else "")
    return f"{x:.1f}" if x < 1000 else f"{x:.3g}"


def write(args, rows, growth, prefix_check):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    lines = ["# Results: which layers, how good, how fast (SmolLM2-135M)", "",
             f"Made by `python3 scripts/results.py --np {args.np} --ks {args.ks} --calib-windows {args.calib_windows} "
             f"--eval-windows {args.eval_windows} --growth {args.growth} --growth-np {args.growth_np} "
             f"--default-metric {args.default_metric}` on {datetime.date.today()} "
             f"({cpu}, {os.cpu_count()} cores, {args.np} ranks).", "",
             f"Model: SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised; 30 layers). Calibration: {args.calib_windows} windows "
             f"of {args.seq_len} tokens spread over the calibration articles; evaluation: {args.eval_windows} windows of "
             f"{args.seq_len} tokens spread over the held-out evaluation articles (docs/data.md); perplexity as in "
             "docs/method.md. Protected: first and last layer. Compensation columns re-apply the same removed layers "
             "with `--compensate-at shift` (the paper's rule) or `auto` (validation-selected, method.md step 4); their "
             "'no compensation' perplexity is the same model before the compensation is folded in. Every perplexity "
             "is followed by its 95 % interval [lo, hi]: the normal interval of the mean per-window loss mapped "
             "through exp (method.md, per window; windows of one article are correlated, so it is somewhat too "
             "narrow). Every run evaluates the same windows, so comparisons of two settings state the paired "
             "interval of their perplexity ratio (from the per-window loss differences). Seconds are wall "
             "time on a shared 2-core machine (docs/benchmarks.md has the clean timings).", ""]
    kmax = max(r["k"] for r in rows) if rows else None
    if any(r["derived"] for r in rows):
        lines += [f"Smaller K reuse the first K decisions of the K = {kmax} run: decisions are greedy and deterministic "
                  "(one layer per decision, compensation only after the last), so a K-layer run removes exactly that "
                  "prefix; its scoring time is the sum of those decisions' seconds (marked *). Angular removes one block "
                  "of K consecutive layers, so it runs at every K."]
        for c in prefix_check:
            lines.append(f"Checked: `{c['metric']}` run directly with K = {c['k']} removed {' '.join(map(str, c['direct']))}, "
                         f"the prefix of its K = {kmax} run is {' '.join(map(str, c['prefix']))}.")
        lines.append("")
    if rows:
        lines.append(f"Unpruned perplexity: **{fmt(rows[0]['ppl_original'])}**.")
        lines.append("")
    for k in sorted({r["k"] for r in rows}):
        lines += [f"## K = {k} layers removed", "",
                  "| metric | removed layers | ppl, no compensation | ppl, shift (j*) | ppl, auto (j*) | scoring s | compensation s (auto) |",
                  "|---|---|---|---|---|---|---|"]
        for r in [r for r in rows if r["k"] == k]:
            lines.append(f"| {r['metric']} | {' '.join(map(str, r['removed']))} | {fmt(r['none'])} | {fmt(r['shift'])} ({r['shift_layer']}) "
                         f"| {fmt(r['auto'])} ({r['auto_layer'] if r['auto_layer'] is not None else 'none'}) | {secs(r['scoring_s'])}{'*' if r['derived'] else ''} | {secs(r['auto_s'])} |")
        lines.append("")
    if growth:
        lines += [f"## Calibration size ({args.default_metric}, K = {args.default_k}, auto compensation, {args.growth_np} ranks)", "",
                  "Each run calibrates on N windows spread evenly over the calibration articles (method.md) and is evaluated on the same held-out windows.", "",
                  "| calibration windows | removed layers | ppl, no compensation | ppl, auto (j*) | seconds |", "|---|---|---|---|---|"]
        for g in growth:
            lines.append(f"| {g['windows']} | {' '.join(map(str, g['removed']))} | {fmt(g['none'])} | {fmt(g['auto'])} ({g['layer']}) | {g['seconds']:.0f} |")
        lines.append("")
    if rows:
        best = {}
        for r in rows:
            for mode in ("none", "shift", "auto"):
                best.setdefault((r["k"], mode), []).append((r[mode], r["metric"]))
        lines += ["## Best per column", "",
                  "With the runner-up and its perplexity over the best's, paired over the evaluation windows (a ratio "
                  "interval that holds 1 is no clear difference).", ""]
        for (k, mode), vals in sorted(best.items()):
            vals = sorted((x for x in vals if x[0] is not None), key=lambda x: x[0]["ppl"])
            if not vals:
                continue
            (v, m), line = vals[0], f"- K = {k}, {mode}: {vals[0][1]} ({fmt(vals[0][0])})"
            if len(vals) > 1:
                v2, m2 = vals[1]
                line += f"; next {m2} ({fmt(v2)}), ratio {fmt_ratio(paired_ratio(v, v2))}"
            lines.append(line)
        lines.append("")
        lines += ["## Mean rank over K (lower is better)", "",
                  "Each (metric, compensation) pair ranked by perplexity within each K, then averaged over K.", "",
                  "| metric | compensation | mean rank | " + " | ".join(f"ppl K={k}" for k in sorted({r['k'] for r in rows})) + " |",
                  "|---|---|---|" + "---|" * len({r['k'] for r in rows})]
        ks = sorted({r["k"] for r in rows})
        cells = {}
        for k in ks:
            entries = sorted(((r[mode], r["metric"], mode) for r in rows if r["k"] == k for mode in ("none", "shift", "auto")
                              if r[mode] is not None), key=lambda e: (e[0]["ppl"], e[1], e[2]))
            for rank, (v, m, mode) in enumerate(entries, 1):
                cells.setdefault((m, mode), {})[k] = (rank, v)
        table = sorted(((sum(r for r, _ in c.values()) / len(c), m, mode, c) for (m, mode), c in cells.items() if len(c) == len(ks)))
        for mean, m, mode, c in table:
            lines.append(f"| {m} | {mode} | {mean:.1f} | " + " | ".join(fmt(c[k][1]) for k in ks) + " |")
        lines.append("")
        # The defaults: the best mean rank among the one-pass settings (one scoring pass per decision, whatever
        # the depth: not --verify-top, whose M extra forwards double a decision, nor sleb, a forward per layer).
        one_pass = [(mean, m, mode) for mean, m, mode, _ in table if "verify" not in m and m != "sleb"]
        if one_pass:
            mean, m, mode = one_pass[0]
            best = table[0]
            lines += ["## Defaults chosen by this table", "",
                      "Rule: the best mean rank among the settings that cost one scoring pass per decision (every metric "
                      "but sleb, without --verify-top), GradMAP's premise. "
                      f"Chosen: **`--metric {m}` with "
                      f"{'`--compensate-at ' + mode + '`' if mode != 'none' else '`--no-compensate`'}** (mean rank {mean:.1f}).",
                      ""]
            if best[1] != m or best[2] != mode:
                kmax = max(ks)
                cost = {r["metric"]: r["scoring_s"] for r in rows if r["k"] == kmax}
                paired = "; ".join(f"K = {k}: the default's perplexity over the best's "
                                   f"{fmt_ratio(paired_ratio(best[3][k][1], c[k][1]))}"
                                   for k in ks for c in [cells[(m, mode)]])
                lines += [f"Best overall: {best[1]} with {best[2]} compensation (mean rank {best[0]:.1f}; scoring "
                          f"{cost.get(best[1]) or 0:.0f} s at K = {kmax} against {cost.get(m) or 0:.0f} s for the default). "
                          f"Paired over the evaluation windows, {paired}.", ""]
            current = f"{args.cli_default_metric} / {args.cli_default_compensation}"
            chosen = f"{m} / {mode}"
            lines += [f"The CLI's defaults ({current}) " + ("are this choice." if current == chosen else
                      f"differ from this choice ({chosen})."), ""]
    notes = os.path.join(ROOT, "docs", "results-notes.md")
    if os.path.exists(notes):  # the reading of the table, written by hand after a run
        lines += [open(notes).read().rstrip(), ""]
    open(args.out, "w").write("\n".join(lines) + "\n")
    print("wrote", args.out, file=sys.stderr)


if __name__ == "__main__":
    main()
