#!/usr/bin/env python3
"""Reference 95 % intervals for the perplexity protocol of docs/method.md, computed with numpy and scipy.

Usage:  python3 scripts/make_interval_fixtures.py [--out Tests/Fixtures/intervals/intervals.json]

Independent of the Swift code: numpy's mean and std (ddof=1) and scipy.stats.t.ppf(0.975, n - 1) give
Student's interval of a mean per-window loss, mean +- t * sd / sqrt(n), and its image under exp (perplexity);
the paired case is the same over b - a window by window, with exp giving the perplexity ratio. The samples
are drawn from a seeded numpy Generator (PCG64, seed 16), so re-running writes the same file.
"""
import argparse
import json

import numpy as np
import scipy.stats


def interval(x):
    x = np.asarray(x, dtype=np.float64)
    mean = float(np.mean(x))
    sd = float(np.std(x, ddof=1))
    half = float(scipy.stats.t.ppf(0.975, len(x) - 1)) * sd / np.sqrt(len(x))
    return {"mean": mean, "sd": sd, "lo": mean - half, "hi": mean + half,
            "exp_lo": float(np.exp(mean - half)), "exp_hi": float(np.exp(mean + half))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="Tests/Fixtures/intervals/intervals.json")
    args = ap.parse_args()
    rng = np.random.default_rng(16)
    cases = []
    for n in (2, 4, 7, 128):
        # Per-window losses around a perplexity of ~20 with a spread like real text's.
        a = rng.normal(3.0, 0.4, size=n)
        b = a + rng.normal(0.5, 0.2, size=n)  # a worse setting on the same windows
        cases.append({"a": a.tolist(), "b": b.tolist(), "interval_a": interval(a),
                      "paired_b_minus_a": interval(b - a)})
    with open(args.out, "w") as f:
        t = {str(d): float(scipy.stats.t.ppf(0.975, d)) for d in (1, 2, 3, 4, 6, 15, 30, 127, 1000, 100000)}
        json.dump({"z": float(scipy.stats.norm.ppf(0.975)), "t": t, "cases": cases}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
