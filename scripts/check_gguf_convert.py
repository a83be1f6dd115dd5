#!/usr/bin/env python3
"""Hand check of `gradmap-dist convert` output against transformers reading the GGUF itself.

Usage:
  python3 scripts/check_gguf_convert.py --gguf FILE.gguf --converted DIR [--text FILE] [--expected FILE.json]
      [--tokens OUT.bin] [--seq-len T --windows N]

Not part of the test suite (it needs torch, transformers + accelerate, tokenizers, safetensors, gguf).
Checks, as far as DIR has the files:
  tokenizer.json  loads with tokenizers.Tokenizer.from_file and AutoTokenizer.from_pretrained(DIR); encodes the
                  sample texts (and --text) like transformers' tokenizer built from the GGUF
                  (AutoTokenizer.from_pretrained(dir, gguf_file=...)); differences are printed, not hidden.
                  With --expected (a fixture's *.expected.json) the ids must equal its "cases".
  model.safetensors  AutoModelForCausalLM.from_pretrained(DIR) loads; every tensor equals transformers' GGUF
                  load bit for bit.
  --tokens        writes --text tokenized with DIR's tokenizer.json as uint32 ids (for `gradmap-dist eval`),
                  and with --seq-len/--windows prints transformers' loss on those windows (mean over windows
                  of the mean next-token NLL, as `gradmap-dist eval` reports it).
"""

import argparse
import json
import math
import os

import numpy as np

SAMPLES = [
    "Hello world!",
    "The quick brown fox, in 2024, ate 12345 apples.",
    "  leading spaces and\ttabs\nnew lines  ",
    "<|im_start|>user\nHi there<|im_end|>",
    "naïve café — ünïcödé ✓ 東京",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--converted", required=True)
    ap.add_argument("--text")
    ap.add_argument("--expected")
    ap.add_argument("--tokens")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--windows", type=int, default=0)
    args = ap.parse_args()
    gdir, gname = os.path.split(os.path.abspath(args.gguf))
    conv = args.converted
    text = open(args.text).read() if args.text else None

    if os.path.exists(os.path.join(conv, "tokenizer.json")):
        from tokenizers import Tokenizer
        from transformers import AutoTokenizer
        ours = Tokenizer.from_file(os.path.join(conv, "tokenizer.json"))
        auto = AutoTokenizer.from_pretrained(conv)
        samples = SAMPLES + ([text] if text else [])
        if args.expected:
            for case in json.load(open(args.expected))["cases"]:
                got = ours.encode(case["text"]).ids
                assert got == case["ids"], (case["text"], got, case["ids"])
            print("tokenizer: every expected case matches")
        try:
            ref = AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
        except Exception as e:  # noqa: BLE001 -- reported, the other checks still run
            ref = None
            print("transformers cannot build a tokenizer from the GGUF:", e)
        for s in samples:
            a = ours.encode(s).ids
            b = auto(s)["input_ids"]
            assert a == b, ("AutoTokenizer(DIR) differs from tokenizers", s[:60])
            if ref is not None:
                r = ref(s)["input_ids"]
                same = a == r
                label = repr(s[:50]) + ("..." if len(s) > 50 else "")
                print(f"tokenizer {'==' if same else '!='} transformers-from-GGUF on {label}: {len(a)} vs {len(r)} ids")
                if not same:
                    diff = next(i for i in range(min(len(a), len(r))) if a[i] != r[i]) if a[:len(r)] != r[:len(a)] else min(len(a), len(r))
                    print("   first difference at", diff, ours.decode(a[max(0, diff - 3):diff + 5]), "|", a[diff:diff + 5], r[diff:diff + 5])
            if "<|" not in s:
                assert ours.decode(a, skip_special_tokens=True) == s, ("decode does not give the text back", s[:60])

    model = None
    if os.path.exists(os.path.join(conv, "model.safetensors")):
        import torch
        from safetensors.torch import load_file
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gname, dtype=torch.float32)
        sd = model.state_dict()
        ours = load_file(os.path.join(conv, "model.safetensors"))
        worst = max((sd[k] - v).abs().max().item() for k, v in ours.items())
        extra = sorted(set(sd) - set(ours) - ({"lm_head.weight"} if model.config.tie_word_embeddings else set()))
        print(f"weights: {len(ours)} tensors, max |diff| vs transformers' GGUF load {worst}; missing {extra}")
        assert worst == 0 and not extra
        back = AutoModelForCausalLM.from_pretrained(conv, dtype=torch.float32)
        assert back.config.tie_word_embeddings == model.config.tie_word_embeddings
        print("converted folder loads with AutoModelForCausalLM:", type(back).__name__)

    if args.tokens and text:
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(os.path.join(conv, "tokenizer.json"))
        ids = np.array(tok.encode(text).ids, dtype=np.uint32)
        ids.tofile(args.tokens)
        print(f"wrote {args.tokens}: {len(ids)} tokens ({len(text)} chars)")
        if args.windows:
            import torch
            from transformers import AutoModelForCausalLM
            if model is None:
                model = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gname, dtype=torch.float32)
            T, n = args.seq_len, args.windows
            assert len(ids) >= T * n, "not enough tokens"
            windows = torch.tensor(ids[: T * n].astype(np.int64)).view(n, T)
            losses = []
            with torch.no_grad():
                for w in windows:
                    losses.append(model(w[None], labels=w[None]).loss.item())
            loss = sum(losses) / n
            print(f"transformers (GGUF, float32): windows {n}  tokens {n * T}  loss {loss:.6f}  ppl {math.exp(loss):.4f}")


if __name__ == "__main__":
    main()
