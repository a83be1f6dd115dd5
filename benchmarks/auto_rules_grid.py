#!/usr/bin/env python3
"""The auto compensation's choice rules on every removed set of the results grid (issue: compensation that
does not overfit).

scripts/results.py runs `--compensate-at auto` once per distinct removed set. Each run's report holds every
candidate's loss on every validation window. So any choice rule's pick can be computed from the same numbers
(ood_compensation.choose), and folded on the same pruned model: `prune --layers <set> --compensate-at
<layer> --ridge <alpha>`, the same solve as auto's for that candidate. Rules:
  interval     the tool's: the strongest ridge among the solutions whose paired interval against the best
               reaches 0, folded only when its interval against the uncompensated model lies below 0;
  layer-first  the best solution's layer, then the strongest ridge tied with the best at that layer; the same
               fold test.
Both use Student's t (the tool's intervals). A pick equal to the tool's reuses the auto run's evaluation; a
pick of none is the pruned model's. Other picks run once, and their records go to
benchmarks/results-runs/<model>/rule-*.json (committed, like the grid's).

    python3 benchmarks/auto_rules_grid.py [--model smollm2] [--bin .build/release/gradmap-dist]

Prints, per rule, the sets folded, how often the news text got worse (paired 95 % interval of compensated −
pruned loss above 0; mean above 0) and the summed loss gains, and every set where the rules differ.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "scripts"))
sys.path.insert(0, HERE)
import results as R  # noqa: E402  (the grid's runner, records and held-out split)
from ood_compensation import choose, paired  # noqa: E402

RULES = ["interval", "layer-first"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2", choices=sorted(R.MODELS))
    p.add_argument("--bin", default=os.path.join(R.ROOT, ".build", "release", "gradmap-dist"))
    p.add_argument("--np", type=int, default=2)
    p.add_argument("--calib-windows", type=int, default=16)
    p.add_argument("--windows", type=int, default=128)
    args = p.parse_args()
    args.report_only = False
    run = R.Runner(args, args.model)
    n = args.windows
    pruned = run.pruned_evaluations()
    autos = [rec for name, rec in run.all_records()
             if name.startswith("set-") and "-auto-" in name and " ".join(R.AUTO_VALIDATION) in rec.get("command", "")]
    stats = {rule: dict(folded=0, worse=0, mean_worse=0, wiki=0.0, news=0.0) for rule in RULES}
    differ = []
    for rec in autos:
        removed = sorted(rec["removed"])
        detail = rec["compensation_detail"]
        base = pruned[frozenset(removed)]
        tool = choose(detail, "interval")
        assert (tool[0] if tool else None) == detail["chosen_layer"], f"{removed}: the tool folded {detail['chosen_layer']}, the rule says {tool}"
        picks = {}
        for rule in RULES:
            pick = choose(detail, rule)
            if pick is None:
                losses = base
            elif pick == tool:
                losses = R.by_domain(rec, "compensated", n)
            else:
                layer, alpha = pick
                r = run.prune(["--layers", ",".join(map(str, removed)), "--compensate-at", str(layer), "--ridge", repr(alpha),
                               "--skip-original-eval", "--skip-pruned-eval"],
                              f"rule-set-{'-'.join(map(str, removed))}-L{layer}-a{alpha:g}")
                losses = R.by_domain(r, "compensated", n)
            picks[rule] = (pick, losses)
            if pick is None:
                continue
            s = stats[rule]
            dn = paired(base["news"], losses["news"])
            dw = paired(base["wiki"], losses["wiki"])
            s["folded"] += 1
            s["worse"] += dn[1] > 0
            s["mean_worse"] += dn[0] > 0
            s["wiki"] -= dw[0]
            s["news"] -= dn[0]
        if picks["interval"][0] != picks["layer-first"][0]:
            differ.append((removed, picks, base))
    print(f"{args.model}: {len(autos)} removed sets, auto on {R.AUTO_VALIDATION[1]} validation windows; gain = pruned − "
          "compensated mean loss, paired over the held-out windows\n")
    print("| rule | sets folded | news worse (interval above 0) | news mean Δ above 0 | Σ wiki gain | Σ news gain |")
    print("|---|---:|---:|---:|---:|---:|")
    for rule in RULES:
        s = stats[rule]
        print(f"| {rule} | {s['folded']} / {len(autos)} | {s['worse']} | {s['mean_worse']} | {s['wiki']:.3f} | {s['news']:.3f} |")
    print("\n| removed | rule | pick (layer, α) | wiki gain [95 %] | news gain [95 %] |")
    print("|---|---|---|---|---|")
    for removed, picks, base in differ:
        for rule in RULES:
            pick, losses = picks[rule]
            cells = []
            for dom in R.DOMAINS:
                m, lo, hi = paired(base[dom], losses[dom])
                cells.append(f"{-m:+.3f} [{-hi:+.3f}, {-lo:+.3f}]")
            print(f"| {' '.join(map(str, removed))} | {rule} | {pick or 'none'} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
