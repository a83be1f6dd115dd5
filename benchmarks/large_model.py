"""The real 1.5B model for the benchmarks (run_engine.py and run_memory.py --preset qwen1.5b): where its GGUF
and tokens are, its config as the benchmarks name it, and a wait for enough free memory before each big run.

The model is Qwen2.5-Coder-1.5B-Instruct Q4_K_M (launch/fetch-assets --large, docs/data.md). The engine reads
the GGUF itself; PyTorch loads it through transformers' gguf_file= (dequantised to the dtype asked for). Its
f32 gradient step needs ~15 GB on one rank (inspect's plan) and PyTorch's ~12-14 GB, on a machine whose
24 GiB other engineers share: the two never run at the same time, and each waits for the memory it needs.
"""
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GGUF_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
GIB = 2**30


def assets():
    return os.path.join(os.environ.get("GRADMAP_CACHE", os.path.join(ROOT, ".cache")), "assets")


def model_and_tokens(binary):
    """(GGUF path, tokens path): the evaluation text tokenised by the engine with this GGUF's tokenizer, as
    scripts/check_large_model.py writes it (identical to transformers' ids, docs/data.md)."""
    gguf = os.path.join(assets(), GGUF_NAME)
    if not os.path.exists(gguf):
        sys.exit(f"{gguf}: missing; fetch it with launch/fetch-assets --large")
    tokens = os.path.join(assets(), "wiki", "eval.qwen2.5-coder.bin")
    if not os.path.exists(tokens):
        text = os.path.join(assets(), "wiki", "eval.txt")
        subprocess.run([binary, "tokenize", "--model", gguf, "--text", text, "--out", tokens], check=True,
                       stdout=subprocess.DEVNULL)
    return gguf, tokens


def inspect(binary, model, ranks, weights, seq_len, micro_batch=1):
    r = subprocess.run([binary, "inspect", "--model", model, "--ranks", str(ranks), "--seq-len", str(seq_len),
                        "--micro-batch", str(micro_batch), "--weights", weights, "--json"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"inspect failed on {model}:\n{r.stderr}")
    return json.loads(r.stdout)


def hf_config(summary):
    """inspect's "model" object under the Hugging Face names run_engine.py's FLOP count reads."""
    return {"hidden_size": summary["hidden_size"], "intermediate_size": summary["intermediate_size"],
            "num_hidden_layers": summary["layers"], "num_attention_heads": summary["heads"],
            "num_key_value_heads": summary["kv_heads"], "head_dim": summary["head_dim"],
            "vocab_size": summary["vocab_size"], "tie_word_embeddings": summary["tie_word_embeddings"]}


def available_bytes():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def wait_for_memory(need_bytes, what, max_wait=300, poll=10):
    """Sleep until MemAvailable covers need_bytes (other engineers' builds come and go), at most max_wait
    seconds; then exit naming the run, since a run that swaps or is killed measures nothing. Returns the
    available bytes seen, which the results record."""
    waited = 0
    while True:
        free = available_bytes()
        if free >= need_bytes:
            return free
        if waited >= max_wait:
            sys.exit(f"{what}: needs {need_bytes / GIB:.1f} GiB, {free / GIB:.1f} GiB available after waiting "
                     f"{waited} s; rerun when the machine is quieter or with --weights bf16")
        print(f"{what}: waiting for memory ({free / GIB:.1f} of {need_bytes / GIB:.1f} GiB available)",
              file=sys.stderr, flush=True)
        time.sleep(poll)
        waited += poll


def load_average():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])
