"""transformers loads a checkpoint written by `gradmap-dist prune` unchanged, and its loss on the calibration
windows equals the engine's in-memory loss of the pruned (and compensated) model.

Runs where torch and transformers are installed (`pip install "torch==2.13.0+cpu" transformers`); the
gradmap-dist binary is taken from GRADMAP_BIN or .build/debug. Tolerance 1e-4 relative: transformers
computes in float32 with other summation orders (the engine's own write/read check holds 1e-5).
"""
import json
import os
import struct
import subprocess
import tempfile

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("GRADMAP_BIN", os.path.join(ROOT, ".build", "debug", "gradmap-dist"))
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures")


def random_tokens(path, vocab, windows, seq_len, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (windows * seq_len,), generator=g).tolist()
    with open(path, "wb") as f:
        f.write(struct.pack("<%dI" % len(ids), *ids))


@pytest.mark.parametrize("fixture,extra", [
    ("llama_sharded_f16", ["--layers", "1", "--compensate-at", "2"]),
    ("qwen2_tied", ["--remove", "1", "--compensate-at", "shift"]),
    ("llama_bf16", ["--layers", "0", "--no-compensate"]),
    ("llama_bf16", ["--layers", "0", "--compensate-at", "1", "--weights", "bf16"]),
])
def test_transformers_loads_pruned_checkpoint(fixture, extra):
    model = os.path.join(FIXTURES, fixture)
    vocab = json.load(open(os.path.join(model, "config.json")))["vocab_size"]
    with tempfile.TemporaryDirectory() as tmp:
        tokens = os.path.join(tmp, "tokens.bin")
        random_tokens(tokens, vocab, 12, 16, 7)
        out = os.path.join(tmp, "pruned")
        cmd = [BIN, "prune", "--model", model, "--tokens", tokens, "--seq-len", "16", "--calib-windows", "6",
               "--protect-first", "0", "--protect-last", "1", "--out", out, "--json",
               "--matmul", "f32"] + extra  # FP32 products: the loss is compared with transformers' float32
        r = subprocess.run(cmd, capture_output=True, text=True, check=True)
        result = json.loads(r.stdout.strip().splitlines()[-1])
        report = json.load(open(os.path.join(out, "pruning_report.json")))
        data = open(tokens, "rb").read()
        ids = torch.tensor(struct.unpack("<%dI" % (len(data) // 4), data)).view(-1, 16)
        calib = ids[report["calibration_windows"]]
        m = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
        cfg = json.load(open(os.path.join(out, "config.json")))
        assert m.config.num_hidden_layers == cfg["num_hidden_layers"]
        with torch.no_grad():
            loss = m(calib, labels=calib).loss.item()
        losses = result["calib_loss"]
        expected = losses["compensated"] if losses["compensated"] is not None else losses["pruned"]
        assert abs(loss - expected) <= 1e-4 * abs(expected), (loss, expected)
