#!/usr/bin/env python3
"""Makes docs/results.md: which layers, how good, how fast, on the real models, for every metric.

Per model (--models: smollm2 = SmolLM2-135M, 30 layers; qwen1.5b = Qwen2.5-Coder-1.5B, 28 layers) and per K
in --ks-percent of its layers (12.5, 25, 37.5 % by default, rounded: SmolLM2 4, 8, 11; Qwen 4, 7, 10):

- every variant: each metric (gradmap with --gradient-norm l1 and l2, fisher, gate, taylor, bi, angular, sleb,
  random), and with --verify-top 3 where verification can change a decision (not angular, sleb, random), is run
  once at the largest K with --no-compensate. Decisions are greedy and deterministic (one layer per decision,
  compensation only after the last), so the first k decisions are the k-layer run's; smaller K reuse that
  prefix (angular removes one block of K consecutive layers, so it runs at every K);
- every distinct removed set is then re-applied (`prune --layers`, no scoring) with `--compensate-at shift`
  (the paper's rule) and `--compensate-at auto` (method.md stage 2 step 5): a set two variants share is
  compensated once;
- every run evaluates one held-out file: N windows of the Wikipedia evaluation articles followed by N windows
  of the news corpus (gensim's Lee background corpus, docs/data.md), each spread evenly over its stream, so
  every setting is scored on the same windows and two settings compare by the paired interval of their
  per-window loss difference (method.md);
- with --agreement, the layer SLEB would remove from each decision's model state (`score --metric sleb
  --without <the layers removed before it>`, cached per state; SLEB's own run gives its path for free), and
  per variant the share of decisions that took it.

Then the rule of docs/results-notes.md ("The rule that will pick the gradient default") is applied to every
(model, K, corpus) cell that has been measured. Every run's record (its pruning_report.json: removed layers,
scores, seconds, every held-out window's loss) is kept in benchmarks/results-runs/<model>/, committed and keyed
by its command with the checkout's path taken out, so an interrupted grid resumes on any clone and machine
(--report-only writes the tables from the records alone); the pruned checkpoints are written to .cache/results/<model>/
and deleted once their report is read.

    python3 scripts/results.py [--models smollm2] [--np 2] [--calib-windows 16] [--windows 128] [--agreement]
"""
import argparse
import datetime
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from compensation_time import cpu_name  # noqa: E402  (the benchmarks' shared helpers)
from ood_compensation import paired, spread, t975, tokens  # noqa: E402

CACHE = os.path.join(ROOT, ".cache")
RECORDS = os.path.join(ROOT, "benchmarks", "results-runs")
ASSETS = os.path.join(CACHE, "assets")
SEQ = 256
MODELS = {
    "smollm2": dict(name="SmolLM2-135M-Instruct (Q4_1 GGUF)", file="SmolLM2-135M-Instruct.Q4_1.gguf", layers=30, extra=[]),
    "qwen1.5b": dict(name="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF)", file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
                     layers=28, extra=["--weights", "bf16"]),
}
# (label, prune flags); the metric is the first word of the label.
METRICS = [("gradmap", ["--metric", "gradmap"]), ("gradmap-l2", ["--metric", "gradmap", "--gradient-norm", "l2"]),
           ("fisher", ["--metric", "fisher"]), ("gate", ["--metric", "gate"]), ("taylor", ["--metric", "taylor"]),
           ("bi", ["--metric", "bi"]), ("angular", ["--metric", "angular"]), ("sleb", ["--metric", "sleb"]),
           ("random", ["--metric", "random"])]
UNVERIFIABLE = {"angular", "sleb", "random"}  # a block, every candidate verified already, no scores to rank
GRADIENT = {"gradmap", "gradmap-l2", "fisher", "gate", "taylor"}  # one backward pass per decision: the candidates
DOMAINS = ["wiki", "news"]
MODES = ["none", "shift", "auto"]
# The auto runs' validation windows: the default job's count (32 calibration windows / 8), not the grid's 16 / 8 =
# 2, on which no interval (Student's t with 1 degree of freedom: 12.7) can tell a gain from noise.
AUTO_VALIDATION = ["--validation-windows", "4"]
DEFAULT_COMPENSATION = "auto"  # the prune command's default --compensate-at: the rule compares settings under it


def variants():
    out = []
    for label, flags in METRICS:
        out.append((label, flags))
        if label not in UNVERIFIABLE:
            out.append((label + " (verify 3)", flags + ["--verify-top", "3"]))
    return out


class Runner:
    """Recorded gradmap-dist runs of one model (one JSON per command in benchmarks/results-runs/<model>/)."""

    def __init__(self, args, key):
        self.args, self.key, self.spec = args, key, MODELS[key]
        self.dir = os.path.join(CACHE, "results", key)  # token files and pruned checkpoints: regenerated
        self.records = os.path.join(RECORDS, key)  # one JSON per run: committed
        os.makedirs(self.dir, exist_ok=True)
        os.makedirs(self.records, exist_ok=True)
        self.model = os.path.join(ASSETS, self.spec["file"])
        self.calib = os.path.join(self.dir, "calib.bin")
        self.held = os.path.join(self.dir, f"held-out-{args.windows}.bin")
        self.common = ["--model", self.model, "--tokens", self.calib, "--seq-len", str(SEQ),
                       "--calib-windows", str(args.calib_windows), *self.spec["extra"]]

    def prepare(self):
        """Calibration and held-out token files for this model's tokenizer."""
        import struct
        if not os.path.exists(self.model):
            sys.exit(f"{self.model} missing: run launch/fetch-assets{' --large' if self.key != 'smollm2' else ''}")
        b = self.args.bin
        tokens(b, self.model, os.path.join(ASSETS, "wiki", "calib.txt"), self.calib)
        wiki = tokens(b, self.model, os.path.join(ASSETS, "wiki", "eval.txt"), os.path.join(self.dir, "eval.bin"))
        news = tokens(b, self.model, os.path.join(ASSETS, "news", "lee_background.txt"), os.path.join(self.dir, "news.bin"))
        if not os.path.exists(self.held):
            mixed = spread(wiki, self.args.windows) + spread(news, self.args.windows)
            with open(self.held, "wb") as f:
                f.write(struct.pack("<%dI" % len(mixed), *mixed))

    def cached(self, command, tag):
        # Whether a run re-evaluates the pruned model depends on which run of its set came first; not part of the key.
        # Paths relative to the checkout, so that a record made in one clone is found in another.
        key = [c.replace(ROOT + os.sep, "") for c in command if c != "--skip-pruned-eval"]
        digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
        return os.path.join(self.records, f"{tag}-{digest}.json")

    def run(self, command, tag, report=False):
        """One cached job: its last stdout JSON (with `report`, the pruning_report.json it wrote instead, for the
        per-window losses) plus wall seconds; None when not cached under --report-only."""
        path = self.cached(command, tag)
        if os.path.exists(path):
            return json.load(open(path))
        if self.args.report_only:
            return None
        cmd = [os.path.join(ROOT, "launch", "run"), "-np", str(self.args.np), "--bin", self.args.bin] + command
        print(time.strftime("%H:%M:%S"), "running:", " ".join(command), file=sys.stderr, flush=True)
        t0 = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-3000:]}")
        if report:
            out = command[command.index("--out") + 1]
            result = json.load(open(os.path.join(out, "pruning_report.json")))
            shutil.rmtree(out)  # the record keeps what the tables need; a 1.5B checkpoint is GBs
        else:
            result = json.loads(r.stdout.strip().splitlines()[-1])
        result["wall_seconds"] = time.time() - t0
        result["command"] = " ".join(["gradmap-dist"] + command)
        result["cpu"] = f"{cpu_name()}, {os.cpu_count()} cores, {self.args.np} ranks"
        with open(path + ".partial", "w") as f:  # the checkout's path out of every string in it
            f.write(json.dumps(result, separators=(",", ":")).replace(ROOT + os.sep, ""))
        os.replace(path + ".partial", path)
        return result

    def all_records(self):
        """(file name, record) of every run record of this model, in name order."""
        for name in sorted(os.listdir(self.records)):
            if name.endswith(".json"):
                yield name, json.load(open(os.path.join(self.records, name)))

    def pruned_evaluations(self):
        """The pruned model's held-out losses per removed set, from every record that evaluated it (one
        evaluation of a set is as good as another: the same model on the same windows)."""
        found = {}
        for _, rec in self.all_records():
            d = by_domain(rec, "pruned", self.args.windows) if "eval" in rec and "removed" in rec else None
            if d and len(d["news"]) == self.args.windows:
                found.setdefault(frozenset(rec["removed"]), d)
        return found

    def prune_command(self, flags, tag):
        out = os.path.join(self.dir, "model-" + tag)
        return ["prune", *self.common, "--eval-tokens", self.held, "--out", out, "--force"] + flags

    def prune(self, flags, tag):
        return self.run(self.prune_command(flags, tag), tag, report=True)

    def sleb_choice(self, state):
        """The layer SLEB removes from the model without `state` (original indices)."""
        flags = ["--without", ",".join(map(str, state))] if state else []
        r = self.run(["score", *self.common, "--metric", "sleb"] + flags, "sleb-state-" + ("-".join(map(str, state)) or "none"))
        return None if r is None else r["choice"]


def by_domain(report, stage, n):
    """The stage's per-window held-out losses split into the two corpora, or None when not evaluated."""
    w = report["eval"].get("window_losses", {}).get(stage)
    return None if w is None else {"wiki": w[:n], "news": w[n:]}


def ppl_cell(losses):
    """Perplexity with its 95 % interval: exp of the mean per-window loss and of its Student interval."""
    n = len(losses)
    m = sum(losses) / n
    half = t975(n - 1) * math.sqrt(sum((x - m) ** 2 for x in losses) / (n - 1)) / math.sqrt(n)
    return {"ppl": math.exp(m), "lo": math.exp(m - half), "hi": math.exp(m + half), "losses": losses}


def grid(args, key):
    """Every row of one model: (K, variant) with its removed layers, per corpus and compensation mode the
    held-out perplexity, the compensated layer, the seconds and the SLEB agreement."""
    run = runner = Runner(args, key)
    if not args.report_only:
        run.prepare()
    layers = run.spec["layers"]
    ks = sorted({round(p / 100 * layers) for p in map(float, args.ks_percent.split(","))})
    kmax = ks[-1]
    n = args.windows
    # The unpruned model's held-out losses: from any record that evaluated it (a --variants run need not
    # repeat the evaluation another variant's first job made).
    original = next(({d: ppl_cell(v) for d, v in by_domain(rec, "original", n).items()}
                     for _, rec in run.all_records() if "eval" in rec and by_domain(rec, "original", n)), None)
    scored = {}
    for i, (label, flags) in enumerate(variants()):
        if args.variants and label not in args.variants.split(","):
            continue
        # The first job also evaluates the unpruned model (once per model); a job recorded that way stays so.
        base = flags + ["--remove", str(kmax), "--no-compensate"]
        name = f"k{kmax}-{tag(label)}-none"
        recorded_with_original = os.path.exists(run.cached(run.prune_command(base, name), name))
        skip = [] if original is None or recorded_with_original else ["--skip-original-eval"]
        r = run.prune(base + skip, name)
        if r is None:
            continue
        if original is None and by_domain(r, "original", n):
            original = {d: ppl_cell(v) for d, v in by_domain(r, "original", n).items()}
        scored[label] = {kmax: r}
        if label.startswith("angular"):
            for k in ks[:-1]:
                a = run.prune(flags + ["--remove", str(k), "--no-compensate", "--skip-original-eval"], f"k{k}-{tag(label)}-none")
                if a is not None:
                    scored[label][k] = a
    # Compensation: once per distinct removed set and mode.
    pruned_eval = {}  # frozenset of removed layers -> per-domain losses of the pruned model
    # The pruned model's evaluation does not depend on the compensation: any earlier run of the set has it
    # (records of an earlier auto rule included), so a new rule's runs evaluate only the compensated model.
    pruned_eval.update(run.pruned_evaluations())
    for label, runs in scored.items():
        for r in runs.values():
            d = by_domain(r, "pruned", n)
            if d:
                pruned_eval.setdefault(frozenset(r["removed"]), d)
    def compensated(removed, mode):
        s = frozenset(removed)
        extra = ["--skip-pruned-eval"] if s in pruned_eval else []
        if mode not in args.modes.split(",") and not args.report_only:  # only what an earlier run measured
            run = Runner(argparse.Namespace(**dict(vars(args), report_only=True)), key)
        else:
            run = runner
        validation = AUTO_VALIDATION if mode == "auto" else []
        c = run.prune(["--layers", ",".join(map(str, sorted(removed))), "--compensate-at", mode, "--skip-original-eval"]
                      + validation + extra,
                      f"set-{'-'.join(map(str, sorted(removed)))}-{mode}")
        d = by_domain(c, "pruned", n) if c else None
        if d:
            pruned_eval.setdefault(s, d)
        return c

    # The runs in the order that fills whole cells of the rule first: the default compensation before shift,
    # smaller K first (a session that ends early leaves complete K, not a bit of every K).
    if not args.report_only:
        for mode in [m for m in ("auto", "shift") if m in args.modes.split(",")]:
            for k in ks:
                for label, runs in scored.items():
                    compensated(runs.get(k, runs[kmax])["removed"][:k], mode)
    rows = []
    for label, runs in scored.items():
        full = runs[kmax]
        for k in ks:
            r = runs.get(k, full)
            removed = r["removed"][:k]
            s = frozenset(removed)
            row = {"model": key, "k": k, "variant": label, "removed": removed, "derived": r is full and k != kmax,
                   "scoring_s": scoring_seconds(label, r, k), "ppl": {}, "layer": {}, "comp_s": {}}
            for mode in ("auto", "shift"):
                c = compensated(removed, mode)
                if c is None:
                    continue
                folded = (c.get("compensation") or {}).get("layer")
                comp = by_domain(c, "compensated", n) if folded is not None else pruned_eval.get(s)
                if comp:
                    row["ppl"][mode] = {dom: ppl_cell(comp[dom]) for dom in DOMAINS}
                row["layer"][mode] = folded
                row["comp_s"][mode] = c["seconds"]["compensation"]
            if s in pruned_eval:
                row["ppl"]["none"] = {dom: ppl_cell(pruned_eval[s][dom]) for dom in DOMAINS}
            rows.append(row)
            print(json.dumps({k_: v for k_, v in row.items() if k_ != "ppl"}), file=sys.stderr, flush=True)
    agreement = {}
    if args.agreement:
        known = {}
        sleb = scored.get("sleb", {}).get(kmax)
        if sleb is not None:  # SLEB's own path: at each of its states it took what it would take
            for d in range(kmax):
                known[frozenset(sleb["removed"][:d])] = sleb["removed"][d]
        for label, runs in scored.items():
            if label.startswith("angular"):
                continue
            removed = runs[kmax]["removed"]
            hits = []
            for d in range(kmax):
                state = frozenset(removed[:d])
                if state not in known:
                    c = run.sleb_choice(sorted(state))
                    if c is None:
                        break
                    known[state] = c
                hits.append(known[state] == removed[d])
            agreement[label] = hits
    cpus = sorted({rec["cpu"] for _, rec in run.all_records() if "cpu" in rec})
    return {"key": key, "ks": ks, "rows": rows, "original": original, "agreement": agreement,
            "windows": n, "layers": layers, "cpus": cpus}


def tag(label):
    return label.replace(" (verify 3)", "-v3")


def scoring_seconds(label, r, k):
    """Scoring seconds of the first k decisions: the run's own when it took exactly k, else the decisions' own
    seconds summed (one-shot bi: its decisions carry the time since its single scoring began)."""
    if len(r["removed"]) == k:
        return r["seconds"]["scoring"]
    seconds = [d["seconds"] for d in r.get("decisions", [])[:k]]
    if len(seconds) < k:
        return None
    return seconds[-1] if label.startswith("bi") else sum(seconds)


def fmt(c):
    if c is None:
        return "—"
    v = c["ppl"]
    p = (lambda x: f"{x:.1f}" if x < 1000 else f"{x:.3g}")
    return f"{p(v)} [{p(c['lo'])}, {p(c['hi'])}]"


def secs(x):
    return "—" if x is None else f"{x:.0f}"


def rule(models):
    """The rule of docs/results-notes.md on the measured cells: (lines of Markdown, the winner or None)."""
    cells = []
    for g in models:
        for k in g["ks"]:
            rows = [r for r in g["rows"] if r["k"] == k and DEFAULT_COMPENSATION in r["ppl"]]
            if len(rows) < len(variants()):  # a cell is measured when every setting is: a best of a few is no best
                continue
            for dom in DOMAINS:
                ranked = sorted(rows, key=lambda r: (r["ppl"][DEFAULT_COMPENSATION][dom]["ppl"], r["variant"]))
                best = ranked[0]
                results = {}
                for rank, r in enumerate(ranked, 1):
                    diff = paired(best["ppl"][DEFAULT_COMPENSATION][dom]["losses"], r["ppl"][DEFAULT_COMPENSATION][dom]["losses"])
                    results[r["variant"]] = {"rank": rank, "diff": diff, "passes": r is best or diff[1] <= 0}
                sleb = next((r["scoring_s"] for r in rows if r["variant"] == "sleb"), None)
                cells.append({"model": g["key"], "k": k, "domain": dom, "best": best["variant"], "results": results,
                              "sleb_s": sleb, "scoring": {r["variant"]: r["scoring_s"] for r in rows}})
    candidates = sorted({v for c in cells for v in c["results"] if v.split(" ")[0] in GRADIENT})
    lines = [f"Measured cells: {len(cells)} of 12 (2 models × 3 K × 2 corpora). Each candidate with `--compensate-at "
             f"{DEFAULT_COMPENSATION}` (the default); a cell passes when the candidate is the best setting of the cell or "
             "the paired 95 % interval of its mean per-window loss difference to the best reaches 0; time: scoring "
             "≤ 1/4 of sleb's at the same (model, K).", "",
             "| candidate | cells passed | time bound | mean rank | cells failed (Δ loss to the best [95 %]) |",
             "|---|---:|---|---:|---|"]
    table = []
    for v in candidates:
        mine = [c for c in cells if v in c["results"]]
        passed = [c for c in mine if c["results"][v]["passes"]]
        fast = all(c["sleb_s"] is not None and c["scoring"].get(v) is not None and c["scoring"][v] <= c["sleb_s"] / 4
                   for c in mine)
        mean_rank = sum(c["results"][v]["rank"] for c in mine) / len(mine)
        failed = "; ".join(f"{c['model']} K={c['k']} {c['domain']}: +{c['results'][v]['diff'][0]:.3f} "
                           f"[{c['results'][v]['diff'][1]:+.3f}, {c['results'][v]['diff'][2]:+.3f}] vs {c['best']}"
                           for c in mine if not c["results"][v]["passes"])
        table.append((len(passed) == len(cells) == len(mine) and fast, mean_rank, v, len(passed), len(mine), fast, failed))
    table.sort(key=lambda t: (not t[0], t[1], t[2]))
    for ok, mean_rank, v, np_, nm, fast, failed in table:
        lines.append(f"| {v} | {np_}/{nm} | {'met' if fast else 'not met'} | {mean_rank:.1f} | {failed or '—'} |")
    winners = [t for t in table if t[0]]
    lines.append("")
    if len(cells) < 12 and candidates and all(t[3] < t[4] or not t[5] for t in table):
        lines.append(f"{12 - len(cells)} of the 12 cells are not measured yet, but every candidate already fails a measured "
                     "cell or the time bound, so none can pass all 12: no gradient candidate wins (rule point 5), "
                     "whatever the other cells give.")
        return lines, None
    if len(cells) < 12:
        lines.append(f"The rule needs all 12 cells; {12 - len(cells)} are not measured yet, so no default is chosen by it here.")
        return lines, None
    if winners:
        lines.append(f"Winner: **{winners[0][2]}** (passes every cell within the time bound, mean rank {winners[0][1]:.1f}).")
        return lines, winners[0][2]
    lines.append("No gradient candidate passes every cell within the time bound (rule point 5).")
    return lines, None


def out_of_domain(g):
    """Item 4 on the grid: per compensation mode, over the distinct removed sets where it folded a solution, how
    often the news text got worse (the paired 95 % interval of compensated − pruned loss above 0; its mean above
    0) and the summed in-domain (wiki) loss gain. Markdown lines, or [] when nothing is measured."""
    lines = []
    for mode in ("auto", "shift"):
        seen, folded, worse, mean_worse, wiki_gain, news_gain, worst = set(), 0, 0, 0, 0.0, 0.0, None
        for r in g["rows"]:
            s = frozenset(r["removed"])
            if s in seen or mode not in r["ppl"] or "none" not in r["ppl"] or r["layer"].get(mode) is None:
                continue
            seen.add(s)
            folded += 1
            dn = paired(r["ppl"]["none"]["news"]["losses"], r["ppl"][mode]["news"]["losses"])
            dw = paired(r["ppl"]["none"]["wiki"]["losses"], r["ppl"][mode]["wiki"]["losses"])
            worse += dn[1] > 0
            mean_worse += dn[0] > 0
            wiki_gain -= dw[0]
            news_gain -= dn[0]
            if worst is None or dn[0] > worst[0][0]:
                worst = (dn, r)
        if folded:
            w = worst[1]
            lines.append(f"- `{mode}`: folded in {folded} removed sets; news worse in {worse} (interval above 0), mean "
                         f"news Δ above 0 in {mean_worse}; summed loss gain wiki {wiki_gain:.3f}, news {news_gain:.3f}; "
                         f"the news text's least gain: {-worst[0][0]:+.3f} [{-worst[0][2]:+.3f}, {-worst[0][1]:+.3f}] "
                         f"({w['variant']}, K = {w['k']}, layer {w['layer'][mode]}).")
    if lines:
        lines = [f"Compensation out of domain ({g['key']}; gain = pruned − compensated mean loss, paired over the "
                 "held-out windows):", ""] + lines + [""]
    return lines


def write(args, models):
    lines = ["# Results: which layers, how good, how fast", "",
             f"Made by `python3 scripts/results.py --models {args.models} --np {args.np} --calib-windows {args.calib_windows} "
             f"--windows {args.windows}{' --agreement' if args.agreement else ''}` on {datetime.date.today()}, from the "
             "runs' records (benchmarks/results-runs/). Wall seconds on machines shared with builds and tests "
             "(docs/benchmarks.md has the clean timings); the records name their CPU, "
             + "; ".join(f"{g['key']}: " + ", ".join(g["cpus"]) for g in models if g["cpus"]) + ".", "",
             f"Calibration: {args.calib_windows} windows of {SEQ} tokens spread over the Wikipedia calibration articles "
             f"(auto compensation: {AUTO_VALIDATION[1]} validation windows from the rest), sized to this "
             f"2-core machine. Held out: {args.windows} windows of {SEQ} tokens of the Wikipedia evaluation articles "
             f"(**wiki**) and {args.windows} of the news corpus (**news**, another domain; docs/data.md), the same "
             "windows for every setting. Every perplexity is followed by its 95 % interval [lo, hi] (Student's t "
             "interval of the mean per-window loss through exp, method.md). Protected: first and last layer. "
             "Compensation: `none`; `shift` (the paper's rule: the layer whose mean drifted most); `auto` "
             "(validation-chosen, method.md stage 2 step 5; `none` in the j* column when it folded nothing, and "
             "then its perplexity is the uncompensated one). Smaller K reuse the first K decisions of the largest K's "
             "run (greedy, deterministic decisions); their scoring seconds are those decisions' own (marked *). "
             "SLEB agreement: the share of the first K decisions that removed the layer SLEB removes from the same "
             "model state (`score --metric sleb --without` the layers removed before).", ""]
    for g in models:
        spec = MODELS[g["key"]]
        lines += [f"## {spec['name']}, {g['layers']} layers", ""]
        if g["original"]:
            lines += [f"Unpruned perplexity: wiki **{fmt(g['original']['wiki'])}**, news **{fmt(g['original']['news'])}**.", ""]
        for k in g["ks"]:
            rows = [r for r in g["rows"] if r["k"] == k]
            if not rows:
                continue
            lines += [f"### K = {k} ({100 * k / g['layers']:.1f} % of the layers)", "",
                      "| metric | removed layers | SLEB agreement | wiki: none | shift (j*) | auto (j*) | news: none | shift | auto "
                      "| scoring s | compensation s shift / auto |", "|---|---|---|---|---|---|---|---|---|---|---|"]
            for r in rows:
                hits = g["agreement"].get(r["variant"])
                agree = "—" if not hits or len(hits) < k else f"{sum(hits[:k])}/{k}"
                ppl = lambda m, d: fmt(r["ppl"].get(m, {}).get(d))  # noqa: E731
                j = lambda m: ("none" if r["layer"].get(m) is None else r["layer"][m]) if m in r["layer"] else "—"  # noqa: E731
                lines.append(
                    f"| {r['variant']} | {' '.join(map(str, r['removed']))} | {agree} | {ppl('none', 'wiki')} | "
                    f"{ppl('shift', 'wiki')} ({j('shift')}) | {ppl('auto', 'wiki')} ({j('auto')}) | {ppl('none', 'news')} | "
                    f"{ppl('shift', 'news')} | {ppl('auto', 'news')} | {secs(r['scoring_s'])}{'*' if r['derived'] else ''} | "
                    f"{secs(r['comp_s'].get('shift'))} / {secs(r['comp_s'].get('auto'))} |")
            lines.append("")
        if g["agreement"]:
            kmax = g["ks"][-1]
            share = sorted(((sum(h) / len(h), v) for v, h in g["agreement"].items() if len(h) == kmax), reverse=True)
            lines += [f"SLEB agreement over all {kmax} decisions (angular removes one block, not a decision at a "
                      "time, so it has none): " + ", ".join(f"{v} {100 * s:.0f} %" for s, v in share) + ".", ""]
        lines += out_of_domain(g)
    lines += ["## The gradient default by the stated rule", ""]
    rule_lines, _ = rule(models)
    lines += rule_lines + [""]
    notes = os.path.join(ROOT, "docs", "results-notes.md")
    if os.path.exists(notes):  # the reading of the table and the rule, written by hand
        lines += [open(notes).read().rstrip(), ""]
    open(args.out, "w").write("\n".join(lines) + "\n")
    print("wrote", args.out, file=sys.stderr)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="smollm2,qwen1.5b", help="comma-separated: " + ", ".join(MODELS))
    p.add_argument("--run", default=None, help="models to run (default: --models); the others are read from the cache")
    p.add_argument("--np", type=int, default=2)
    p.add_argument("--ks-percent", default="12.5,25,37.5")
    p.add_argument("--calib-windows", type=int, default=16)
    p.add_argument("--windows", type=int, default=128, help="held-out windows per corpus")
    p.add_argument("--variants", default="", help="only these variants (labels, comma-separated; default all)")
    p.add_argument("--modes", default="auto,shift", help="compensation modes to run (the others: only what is cached)")
    p.add_argument("--agreement", action="store_true", help="measure each decision's agreement with SLEB")
    p.add_argument("--bin", default=os.path.join(ROOT, ".build", "release", "gradmap-dist"))
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "results.md"))
    p.add_argument("--report-only", action="store_true", help="write the tables from the cached runs only")
    args = p.parse_args()
    if not args.report_only:
        if not os.path.exists(args.bin):
            subprocess.run(["swift", "build", "-c", "release", "--product", "gradmap-dist"], cwd=ROOT, check=True)
        subprocess.run([os.path.join(ROOT, "launch", "fetch-assets")], check=True)
    running = set((args.run or args.models).split(","))
    models = []
    for key in args.models.split(","):
        a = argparse.Namespace(**vars(args))
        a.report_only = args.report_only or key not in running
        models.append(grid(a, key))
    write(args, models)


if __name__ == "__main__":
    main()
