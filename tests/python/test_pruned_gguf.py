"""A GGUF written by `gradmap-dist prune --out FILE.gguf` is read by gguf-py (tensor count, blocks renumbered,
block_count), loaded by transformers (`from_pretrained(dir, gguf_file=...)`) with the loss `gradmap-dist eval
--matmul f32` gives for the same file, and `convert` of it gives a folder transformers loads with that loss too.

Runs where torch, transformers (+ accelerate) and gguf are installed; the gradmap-dist binary is taken from
GRADMAP_BIN or .build/debug. Fixture: Tests/Fixtures/gguf/llama_prune.gguf (scripts/make_gguf_prune_fixtures.py).
Tolerance 1e-5 relative: both sides dequantise to the same float32 weights (gguf-py's dequantize, which the
engine matches bit for bit) and run in float32; what is left is the summation order of float32 products and
reductions (a few ulp per op over 2 layers of width 64; ~2e-8 observed, the float32 rounding of the loss itself).
"""
import json
import os
import shutil
import struct
import subprocess
import tempfile

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("GRADMAP_BIN", os.path.join(ROOT, ".build", "debug", "gradmap-dist"))
GGUF_DIR = os.path.join(ROOT, "Tests", "Fixtures", "gguf")
SOURCE = os.path.join(GGUF_DIR, "llama_prune.gguf")
TOKENS = os.path.join(GGUF_DIR, "llama_prune.tokens.bin")
T = 16
TOLERANCE = 1e-5


def windows():
    data = open(TOKENS, "rb").read()
    return torch.tensor(struct.unpack("<%dI" % (len(data) // 4), data)).view(-1, T)


def engine_loss(model):
    r = subprocess.run([BIN, "eval", "--model", model, "--tokens", TOKENS, "--seq-len", str(T), "--matmul", "f32", "--json"],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])["loss"]


def transformers_loss(model):
    ids = windows()
    with torch.no_grad():
        return model(ids, labels=ids).loss.item()


@pytest.mark.parametrize("down", ["f16", "source"])
def test_pruned_gguf_loads_in_gguf_py_and_transformers(down):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "pruned.gguf")
        run = subprocess.run([BIN, "prune", "--model", SOURCE, "--tokens", TOKENS, "--seq-len", str(T), "--calib-windows", "6",
                        "--protect-first", "0", "--protect-last", "0", "--remove", "2", "--compensate-at", "shift",
                        "--gguf-down", down, "--matmul", "f32", "--out", out, "--json"], capture_output=True, text=True, check=True)

        src, r = gguf.GGUFReader(SOURCE), gguf.GGUFReader(out)
        assert r.fields["llama.block_count"].contents() == 2
        blocks = sorted({int(t.name.split(".")[1]) for t in r.tensors if t.name.startswith("blk.")})
        assert blocks == [0, 1]
        per_block = sum(1 for t in src.tensors if t.name.startswith("blk.0."))
        assert len(r.tensors) == len(src.tensors) - 2 * per_block
        # Every tensor keeps its source type but the compensated ffn_down: F16, or re-quantised to its own type.
        result = json.loads(run.stdout.strip().splitlines()[-1])
        j = result["compensation"]["layer"]
        kept = [l for l in range(4) if l not in result["removed"]]
        src_types = {t.name: t.tensor_type.name for t in src.tensors}
        for t in r.tensors:
            parts = t.name.split(".")
            original = ".".join(["blk", str(kept[int(parts[1])])] + parts[2:]) if parts[0] == "blk" else t.name
            want = src_types[original]
            if original == f"blk.{j}.ffn_down.weight" and down == "f16":
                want = "F16"
            assert t.tensor_type.name == want, (t.name, t.tensor_type.name, want)
        assert r.fields["tokenizer.ggml.tokens"].contents() == src.fields["tokenizer.ggml.tokens"].contents()

        model = transformers.AutoModelForCausalLM.from_pretrained(tmp, gguf_file="pruned.gguf", dtype=torch.float32)
        assert model.config.num_hidden_layers == 2
        expected = engine_loss(out)
        loss = transformers_loss(model)
        assert abs(loss - expected) <= TOLERANCE * abs(expected), (loss, expected)

        folder = os.path.join(tmp, "converted")
        subprocess.run([BIN, "convert", "--model", out, "--out", folder], capture_output=True, text=True, check=True)
        converted = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        assert converted.config.num_hidden_layers == 2
        assert abs(transformers_loss(converted) - expected) <= TOLERANCE * abs(expected)
        assert abs(engine_loss(folder) - expected) <= TOLERANCE * abs(expected)
