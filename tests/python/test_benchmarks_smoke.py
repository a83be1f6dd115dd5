"""The benchmark scripts run end to end at the tiny size (their numbers mean nothing there; docs/benchmarks.md
has the real runs), and what they report holds: every rank count gives the same loss, and inspect's memory
estimate is within the benchmark's 20 % of the measured peak once the process baseline is small against it.

Uses the gradmap-dist binary from GRADMAP_BIN or .build/debug, and torch/transformers (make_random_model.py).
"""
import json
import os
import subprocess
import sys
import tempfile

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("GRADMAP_BIN", os.path.join(ROOT, ".build", "debug", "gradmap-dist"))


def script(name, *args, env=None):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", name), "--binary", BIN, *args],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_run_memory_tiny():
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "memory.json")
        # One BLAS thread per rank for every run: the same-bits promise across stage splits is made for a fixed
        # thread count (README), since no BLAS promises identical bits across thread counts.
        text = script("run_memory.py", "--preset", "tiny", "--windows", "2", "--seq-len", "32", "--stages", "1,2",
                      "--budget-gib", "1", "--out", out, env=dict(os.environ, GRADMAP_BLAS_THREADS="1"))
        assert "Peak memory per rank" in text
        res = json.load(open(out))
    runs = res["runs"]
    assert {(r["stages"], r["weights"]) for r in runs} == {(1, "f32"), (1, "bf16"), (2, "f32"), (2, "bf16")}
    for w in ("f32", "bf16"):
        losses = {r["loss"] for r in runs if r["weights"] == w}
        assert len(losses) == 1, (w, losses)  # the same loss for 1 and 2 stages
    # Each rank's reported f32 parameter bytes is what the plan counts.
    for r in runs:
        for have, planned in zip(r["ranks"], r["estimate"]):
            assert have["parameter_bytes"] == planned["parameter_bytes_f32"]
    assert res["prune"]["removed"] and len(res["prune"]["peaks"]) == res["prune"]["stages"]


def test_run_pipeline_tiny_replicas():
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "pipeline.json")
        script("run_pipeline.py", "--preset", "tiny", "--seq-len", "16", "--windows", "8", "--runs", "1",
               "--sections", "replicas", "--out", out)
        res = json.load(open(out))
    losses = {round(r["loss"], 9) for r in res["replicas"]}
    assert len(res["replicas"]) >= 1 and len(losses) == 1, res["replicas"]


def bf16():
    """Whether the CPU has BF16 matrix products (oneDNN's AVX512-BF16 or AMX kernels): the bf16 rows must run."""
    flags = open("/proc/cpuinfo").read().split()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def test_run_engine_tiny_passes():
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "engine.json")
        text = script("run_engine.py", "--preset", "tiny", "--runs", "1", "--gemm-seconds", "0.02",
                      "--micro-batches", "1", "--out", out)
        assert "engine / PyTorch (same work)" in text
        res = json.load(open(out))
    row = res["engine"][0]
    expected = {"eval", "grad-stats", "decision"} | ({"decision-wgrad-bf16", "eval-bf16", "decision-bf16"} if bf16() else set())
    assert expected <= set(row), sorted(row)
    # f32 passes and wgrad-bf16 share the forward: the same loss; bf16 within BF16 rounding of it.
    f32 = row["eval"]["loss"]
    assert row["grad-stats"]["loss"] == f32 and row["decision"]["loss"] == f32
    if bf16():
        assert row["decision-wgrad-bf16"]["loss"] == f32
        assert row["decision-bf16"]["loss"] != f32 and abs(row["decision-bf16"]["loss"] - f32) < 1e-2
    torch_fp32 = [r for r in res["torch"] if not r["bf16_autocast"]][0]
    assert abs(torch_fp32["grad_layers"]["loss"] - f32) < 1e-4
    assert row["decision"]["flops"] < row["grad-stats"]["flops"]
    # Every pass has its own product reference (the rates of its products' forms, shapes and arithmetic).
    for cmd in expected:
        assert row[cmd]["product_ref_gflops"] > 0 and 0 < row[cmd]["product_seconds"], (cmd, row[cmd])


def test_run_pruning_tiny_modes():
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "model")
        subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "make_random_model.py"), "--preset", "tiny",
                        "--layers", "6", "--out", model], check=True, capture_output=True)
        out = os.path.join(tmp, "pruning.json")
        modes = "f32,wgrad-bf16,bf16" if bf16() else "f32"
        script("run_pruning.py", "--model", model, "--calib-windows", "2", "--seq-len", "16", "--metrics", "gradmap,sleb",
               "--matmul", modes, "--out", out)
        res = json.load(open(out))
    assert list(res["by_matmul"]) == modes.split(",")
    for mode, runs in res["by_matmul"].items():
        assert len(runs["gradmap"]["removed"]) == len(runs["sleb"]["removed"]) == 1, (mode, runs)  # K = 6 // 4
    # sleb has no weight-gradient products: wgrad-bf16 leaves it exactly as f32.
    if bf16():
        assert res["by_matmul"]["wgrad-bf16"]["sleb"]["removed"] == res["by_matmul"]["f32"]["sleb"]["removed"]
        assert res["by_matmul"]["wgrad-bf16"]["sleb"]["loss"] == res["by_matmul"]["f32"]["sleb"]["loss"]
