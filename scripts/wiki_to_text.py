#!/usr/bin/env python3
"""Turns a MediaWiki XML dump (.xml or .xml.bz2) into plain text, split by article into a calibration
set and an evaluation set.  Python 3 standard library only.

    python3 scripts/wiki_to_text.py --input enwiki.xml.bz2 --out-dir DIR

writes DIR/articles.jsonl (one line per kept article: title, split, chars = characters of the article's text,
sha1 = sha1 of the title (the split key), text_sha1 = sha1 of the article's text), DIR/calib.txt and
DIR/eval.txt (articles joined with a blank line, in dump order), each through a temporary file and an
atomic rename.  What the cleaning does and does not do, and the split rule, are in docs/data.md.

Split rule: sha1 of the UTF-8 title, read as a hexadecimal number; mod 5 == 0 -> evaluation, else
calibration.
"""
import argparse
import bz2
import hashlib
import html
import json
import os
import re
import sys
import xml.etree.ElementTree as ET

EVAL_MODULUS = 5  # sha1(title) mod EVAL_MODULUS == 0 -> evaluation

# Sections dropped whole (with their subsections): reference lists, link lists, bibliographies.
DROP_SECTIONS = {
    "references", "notes", "footnotes", "citations", "sources", "see also", "external links",
    "further reading", "bibliography", "bibliographies", "works cited", "cited texts",
    "notes and references", "references and notes", "references and further reading",
    "additional references", "secondary references", "reference literature", "selected bibliography",
    "primary sources", "secondary sources", "cited in footnotes", "gallery", "explanatory notes",
    "general references", "external link", "reference", "note",
}

# Link prefixes that are namespaces whose links are not text: dropped with their caption.
DROP_LINK_NAMESPACES = {"file", "image", "category", "media"}
# Interwiki prefixes that look like language codes but are not interlanguage links (kept as text).
INTERWIKI_KEEP = {
    "wikt", "wiktionary", "wikipedia", "wp", "w", "s", "q", "b", "n", "v", "d", "c", "m", "mw",
    "wikisource", "wikiquote", "wikibooks", "wikinews", "wikiversity", "wikivoyage", "wikidata",
    "commons", "meta", "species", "doi", "hdl", "rfc", "iso", "wmf", "oclc", "jstor", "issn", "isbn",
}
INTERLANGUAGE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]+)*")

# Tags dropped with everything inside them.
DROP_TAGS = ("gallery", "source", "syntaxhighlight", "timeline", "imagemap", "score", "hiero",
             "chem", "ce", "graph", "mapframe", "templatedata", "references", "categorytree", "inputbox")
# Tags removed while their inner text is kept (br becomes a line break).
KEEP_TAGS = ("sub", "sup", "small", "big", "code", "tt", "kbd", "samp", "var", "blockquote", "span", "div",
             "center", "poem", "s", "strike", "del", "ins", "u", "b", "i", "em", "strong", "font", "cite",
             "q", "abbr", "li", "ol", "ul", "dl", "dt", "dd", "p", "nowiki", "onlyinclude", "includeonly",
             "noinclude", "section", "hr", "br", "wbr", "pre", "bdi", "mark", "time", "dfn", "ruby", "rt",
             "rp", "table", "tr", "td", "th", "caption", "tbody", "thead")

RE_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.S)
RE_REF_SELF = re.compile(r"<ref\b[^>]*?/\s*>", re.I)
RE_REF = re.compile(r"<ref\b[^>]*>.*?(?:</ref\s*>|$)", re.I | re.S)
RE_DROP_TAGS = re.compile(r"<(%s)\b[^>]*?(?:/\s*>|>.*?(?:</\1\s*>|$))" % "|".join(DROP_TAGS), re.I | re.S)
RE_MATH_DISPLAY = re.compile(r"^[ \t:]*<math\b[^>]*>(?:(?!</math).)*</math\s*>[ \t.,;]*$", re.I | re.S | re.M)
RE_MATH = re.compile(r"<math\b[^>]*>(.*?)</math\s*>|<math\b[^>]*/>", re.I | re.S)
RE_NOWIKI = re.compile(r"<nowiki\s*>(.*?)</nowiki\s*>", re.I | re.S)
RE_PROTECTED = re.compile("\ue000(\\d+)\ue001")
RE_BR = re.compile(r"<br\b[^>]*>", re.I)
RE_KEEP_TAGS = re.compile(r"</?(?:%s)\b[^>]*>" % "|".join(KEEP_TAGS), re.I)
RE_TPL_TOKEN = re.compile(r"\{\{|\}\}|\{\||\|\}")
RE_LINK_TOKEN = re.compile(r"\[\[|\]\]")
RE_EXTLINK = re.compile(r"\[(?:https?://|ftp://|//|mailto:|irc://|news:)[^\s\]]*(?:[ \t]+([^\]\n]*))?\]", re.I)
RE_HEADING = re.compile(r"^(={1,6})[ \t]*(.+?)[ \t]*\1[ \t]*$", re.M)
RE_QUOTES = re.compile(r"'{2,}")
RE_MAGIC = re.compile(r"__[A-Z]+__")
RE_LIST = re.compile(r"^[ \t]*[*#:;]+[ \t]*", re.M)
RE_HR = re.compile(r"^-{4,}[ \t]*$", re.M)

RENDERED_SPACES = {"\xa0": " ", "\u2002": " ", "\u2003": " ", "\u2009": " ", "\u200a": " ", "\u202f": " ",
                   "\u200b": "", "\u200e": "", "\u200f": "", "\ufeff": "", "\u00ad": ""}

UNITS = {
    "km2": "km²", "m2": "m²", "sqkm": "km²", "sqmi": "sq mi", "sqft": "sq ft", "ft2": "sq ft", "mi2": "sq mi",
    "m3": "m³", "km3": "km³", "cuft": "cu ft", "cumi": "cu mi", "C": "°C", "F": "°F", "K": "K",
    "acre": "acres", "ha": "ha", "USgal": "US gal", "impgal": "imp gal", "kmh": "km/h", "km/h": "km/h",
    "mph": "mph", "nmi": "nmi", "ft": "ft", "m": "m", "km": "km", "mi": "mi", "in": "in", "cm": "cm",
    "mm": "mm", "kg": "kg", "lb": "lb", "t": "t", "g": "g", "oz": "oz", "L": "L", "l": "L", "kn": "kn",
    "ST": "short tons", "LT": "long tons", "yd": "yd", "e6acre": "million acres", "e6km2": "million km²",
    "e6sqmi": "million sq mi", "e3km2": "thousand km²", "kW": "kW", "hp": "hp",
}
CONVERT_RANGE = {"-": "–", "–": "–", "to": " to ", "and": " and ", "or": " or ", "by": " by ", "x": " × ",
                 "×": " × ", "+/-": " ± ", "±": " ± ", "to(-)": " to "}


# ---------------------------------------------------------------- templates

def split_params(body):
    """Splits a template body at top-level '|' (pipes inside [[...]] stay)."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(body):
        if body.startswith("[[", i):
            depth += 1
            i += 2
        elif body.startswith("]]", i) and depth:
            depth -= 1
            i += 2
        elif body[i] == "|" and not depth:
            parts.append(body[start:i])
            start = i + 1
            i += 1
        else:
            i += 1
    parts.append(body[start:])
    return parts


RE_NAMED = re.compile(r"^\s*([^=\[\]{}|]+?)\s*=(.*)$", re.S)


def render_template(body):
    """Text of the few inline templates whose output belongs to the sentence; '' for all the others."""
    parts = split_params(body)
    name = re.sub(r"[\s_]+", " ", parts[0]).strip().lower()
    if name.startswith("template:"):
        name = name[9:].strip()
    pos, named = [], {}
    for p in parts[1:]:
        m = RE_NAMED.match(p)
        if m and not m.group(1).strip().isdigit():
            named[m.group(1).strip().lower()] = m.group(2).strip()
        elif m:
            pos.append(m.group(2).strip())
        else:
            pos.append(p.strip())

    def arg(k, default=""):
        return pos[k] if len(pos) > k else default

    if name in ("convert", "cvt"):
        if not pos:
            return ""
        if len(pos) >= 3 and pos[1] in CONVERT_RANGE:
            value, unit = arg(0) + CONVERT_RANGE[pos[1]] + arg(2), arg(3)
        else:
            value, unit = arg(0), arg(1)
        unit = UNITS.get(unit, unit)
        return (value + " " + unit).strip()
    if name == "lang" or name == "script":
        return arg(1)
    if name.startswith("lang-") or name in ("nowrap", "nobr", "small", "smaller", "big", "larger", "nobold",
                                            "noitalic", "smallcaps", "sc", "sub", "sup", "math", "mvar",
                                            "abbr", "not a typo", "visible anchor", "vanchor", "ill",
                                            "interlanguage link", "flag", "flagcountry", "nihongo2", "linktext",
                                            "keypress", "vr", "em", "var", "serif", "sans-serif", "resize"):
        if name in ("linktext", "keypress"):
            return ("+" if name == "keypress" else "").join(pos)
        if name == "resize" and len(pos) > 1:
            return arg(1)
        return arg(0)
    if name in ("transl", "transliteration"):
        return pos[-1] if pos else ""
    if name == "nihongo":
        extra = ", ".join(p for p in pos[1:3] if p)
        return arg(0) + (" (" + extra + ")" if extra else "")
    if name in ("quote", "quotation", "blockquote", "cquote", "quote box", "poem quote"):
        text = named.get("text", named.get("quote", arg(0)))
        return "\n\n" + text + "\n\n" if text else ""
    if name == "as of":
        if not pos:
            return ""
        lead = "as of" if named.get("lc", "") in ("y", "yes") else "As of"
        return lead + " " + " ".join(pos[:1] + ([_month(pos[1])] if len(pos) > 1 and _month(pos[1]) else []))
    if name in ("chem", "chem2", "chem name"):
        return "".join(pos)
    if name == "val":
        return (arg(0) + " " + named.get("u", named.get("ul", ""))).strip()
    if name in ("frac", "sfrac"):
        if len(pos) == 3:
            return pos[0] + " " + pos[1] + "/" + pos[2]
        if len(pos) == 2:
            return pos[0] + "/" + pos[1]
        return "1/" + arg(0) if pos else ""
    if name in ("angle bracket", "angbr"):
        return "⟨" + arg(0) + "⟩"
    if name in ("ndash", "snd", "spaced ndash", "spnd", "sndash"):
        return "–" if name == "ndash" else " – "
    if name in ("mdash", "spaced mdash", "spmd"):
        return "—" if name == "mdash" else " — "
    if name in ("nbsp", "space"):
        return " "
    if name == "eqm":
        return "⇌"
    if name in ("sic",):
        return pos[-1] if pos else ""
    if name == "ipa":  # a phoneme written in the sentence; pronunciation templates (IPAc-en, IPA-xx) are dropped
        return arg(0)
    if name in ("hms", "uss", "hmnzs", "hmas", "hmcs", "ss", "rms", "sms"):
        return (name.upper() + " " + arg(0)).strip()
    if name in ("'s", "'", "' \"", "\" '", "-\""):
        return name.replace("-", "")
    if name in ("mdashb",):
        return "—"
    if name == "e":
        return "×10^" + arg(0)
    if name == "music":
        return {"flat": "♭", "sharp": "♯", "natural": "♮"}.get(arg(0), "")
    if name in ("rtl-lang",):
        return arg(1)
    if name == "bibleref":
        return " ".join(pos[:2])
    if name == "spaces":
        return " "
    return ""


def _month(m):
    months = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
              "October", "November", "December")
    return months[int(m) - 1] if m.isdigit() and 1 <= int(m) <= 12 else ""


def strip_templates_and_tables(s):
    """Replaces templates {{...}} (nested, innermost first) by render_template and drops tables {| ... |}
    (nested; a table may sit inside a template and templates inside tables). An opener that is never
    closed is kept as literal text."""
    out = [[]]
    kinds = []
    pos = 0
    while True:
        m = RE_TPL_TOKEN.search(s, pos)
        if m is None:
            break
        tok, i = m.group(0), m.start()
        if tok == "{{":
            out[-1].append(s[pos:i])
            kinds.append("tpl")
            out.append([])
        elif tok == "{|":
            # a table starts a line, or (inside a template) a parameter value: "| data = {|"
            line_start = s.rfind("\n", 0, i) + 1
            before = s[line_start:i].rstrip()
            if not (before == "" or (kinds and kinds[-1] == "tpl" and before[-1:] in ("=", "|"))):
                out[-1].append(s[pos:i + 1])
                pos = i + 1
                continue
            out[-1].append(s[pos:i])
            kinds.append("tbl")
            out.append([])
        elif tok == "}}":
            if not kinds or kinds[-1] != "tpl":
                out[-1].append(s[pos:i + 1])
                pos = i + 1
                continue
            out[-1].append(s[pos:i])
            body = "".join(out.pop())
            kinds.pop()
            out[-1].append(render_template(body))
        else:  # "|}": closes a table only when a table is the innermost construct ("|}}" ends a template)
            if not kinds or kinds[-1] != "tbl":
                out[-1].append(s[pos:i + 1])
                pos = i + 1
                continue
            out[-1].append(s[pos:i])
            out.pop()
            kinds.pop()
        pos = m.end()
    out[-1].append(s[pos:])
    while kinds:
        kind = kinds.pop()
        body = "".join(out.pop())
        out[-1].append(("{{" if kind == "tpl" else "{|") + body)
    return "".join(out[0])


# ---------------------------------------------------------------- links

def render_link(body):
    body = body.strip()
    colon = body.startswith(":")
    if colon:
        body = body[1:].lstrip()
    if ":" in body and not colon:
        prefix = body.split(":", 1)[0].strip().lower()
        if prefix in DROP_LINK_NAMESPACES:
            return ""
        if INTERLANGUAGE.fullmatch(prefix) and prefix not in INTERWIKI_KEEP:
            return ""
    if "|" in body:
        target, label = body.split("|", 1)
        if label.strip():
            return label
        # pipe trick: [[Foo (bar)|]] -> Foo; [[ns:Foo|]] -> Foo
        target = target.split(":", 1)[-1]
        return re.sub(r"\s*\([^)]*\)\s*$", "", target).strip()
    return body


def strip_links(s):
    """[[target|label]] -> label, [[target]] -> target; File/Image/Category/Media links and interlanguage
    links are dropped whole, including captions with links nested in them."""
    out = [[]]
    pos = 0
    while True:
        m = RE_LINK_TOKEN.search(s, pos)
        if m is None:
            break
        i = m.start()
        if m.group(0) == "[[":
            out[-1].append(s[pos:i])
            out.append([])
        else:
            if len(out) == 1:  # a stray "]]"
                out[-1].append(s[pos:i + 1])
                pos = i + 1
                continue
            out[-1].append(s[pos:i])
            body = "".join(out.pop())
            out[-1].append(render_link(body))
        pos = m.end()
    out[-1].append(s[pos:])
    while len(out) > 1:
        body = "".join(out.pop())
        out[-1].append("[[" + body)
    return "".join(out[0])


# ---------------------------------------------------------------- sections, whole pipeline

def heading_key(text):
    return re.sub(r"[\W_]+", " ", text).strip().lower()


def drop_sections(s):
    """Drops the sections whose heading is in DROP_SECTIONS, down to the next heading of the same or a
    higher level."""
    out, drop_level, pos = [], None, 0
    for m in RE_HEADING.finditer(s):
        level = len(m.group(1))
        if drop_level is None:
            out.append(s[pos:m.start()])
        elif level <= drop_level:
            drop_level = None
        if drop_level is None and heading_key(m.group(2)) in DROP_SECTIONS:
            drop_level = level
        elif drop_level is None:
            out.append(m.group(0))
        pos = m.end()
    if drop_level is None:
        out.append(s[pos:])
    return "".join(out)


HEAD_MARK = "\x00H"


def clean_wikitext(text):
    """Plain text of one article's wiki markup (see docs/data.md for what is kept and dropped)."""
    s = text.replace("\r\n", "\n")
    s = RE_COMMENT.sub("", s)
    s = re.sub(r"<nowiki\s*/>", "", s, flags=re.I)
    # inline formulas keep their TeX source, hidden from the markup passes; display formulas (a line of
    # their own) are dropped; <nowiki> text is kept verbatim
    protected = []

    def protect(text):
        protected.append(text)
        return "\ue000%d\ue001" % (len(protected) - 1)

    s = RE_NOWIKI.sub(lambda m: protect(m.group(1)), s)
    s = RE_MATH_DISPLAY.sub("", s)
    s = RE_MATH.sub(lambda m: protect(" ".join((m.group(1) or "").split())), s)
    s = RE_REF_SELF.sub("", s)
    s = RE_REF.sub("", s)
    s = RE_DROP_TAGS.sub("", s)
    s = strip_templates_and_tables(s)
    s = drop_sections(s)
    s = strip_links(s)
    s = RE_EXTLINK.sub(lambda m: m.group(1) or "", s)
    s = RE_BR.sub("\n", s)
    s = RE_KEEP_TAGS.sub("", s)
    s = RE_MAGIC.sub("", s)
    s = RE_QUOTES.sub("", s)
    s = RE_HR.sub("", s)
    s = RE_HEADING.sub(lambda m: "\n%s%d\x00%s\n" % (HEAD_MARK, len(m.group(1)), m.group(2).strip()), s)
    s = RE_LIST.sub("", s)
    s = html.unescape(s)
    for k, v in RENDERED_SPACES.items():
        s = s.replace(k, v)
    # artefacts of removed templates and refs: empty brackets, stray separators, space before punctuation
    s = re.sub(r"[ \t]*\([\s,;:–—-]*\)", "", s)
    s = re.sub(r"\([\s,;:]+", "(", s)
    s = re.sub(r"[\s,;:]+\)", ")", s)
    s = re.sub(r"[ \t]+", " ", s)
    s = re.sub(r"(?<=\S) +(?=[,.;:](?:\s|$))", "", s)
    s = RE_PROTECTED.sub(lambda m: html.unescape(protected[int(m.group(1))]), s)
    lines = []
    for line in s.split("\n"):
        line = line.strip()
        if line.startswith(HEAD_MARK) or re.search(r"\w", line):
            lines.append(line)
        else:
            lines.append("")
    # headings: kept as their own paragraph, unless nothing follows them before a heading of the same or
    # a higher level (a section left empty by the cleaning)
    keep = [True] * len(lines)
    for i, line in enumerate(lines):
        if line.startswith(HEAD_MARK):
            level = int(line[len(HEAD_MARK)])
            empty = True
            for nxt in lines[i + 1:]:
                if not nxt:
                    continue
                if nxt.startswith(HEAD_MARK) and int(nxt[len(HEAD_MARK)]) <= level:
                    break
                empty = False
                break
            if empty:
                keep[i] = False
            else:
                lines[i] = "\n" + line.split("\x00", 2)[2] + "\n"
    s = "\n".join(line for line, k in zip(lines, keep) if k)
    s = re.sub(r"\n{3,}", "\n\n", s)
    return s.strip()


def is_redirect(text):
    return text.lstrip()[:9].upper() == "#REDIRECT"


def iter_pages(path):
    """(title, ns, is_redirect_element, text) for every <page> of a dump, streaming."""
    opener = bz2.open if path.endswith(".bz2") else open
    with opener(path, "rb") as f:
        for _, el in ET.iterparse(f, events=("end",)):
            tag = el.tag.rsplit("}", 1)[-1]
            if tag != "page":
                continue
            ns_name = el.tag[:-4]
            title = el.findtext(ns_name + "title") or ""
            ns = (el.findtext(ns_name + "ns") or "0").strip()
            redirect = el.find(ns_name + "redirect") is not None
            text = ""
            for rev in el.iter(ns_name + "revision"):
                text = rev.findtext(ns_name + "text") or ""
            yield title, ns, redirect, text
            el.clear()


def split_of(title):
    return "eval" if int(hashlib.sha1(title.encode("utf-8")).hexdigest(), 16) % EVAL_MODULUS == 0 else "calib"


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(data)
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", required=True, help="MediaWiki XML dump, .xml or .xml.bz2")
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    texts = {"calib": [], "eval": []}
    meta = []
    pages = redirects = other_ns = empty = 0
    for title, ns, redirect, text in iter_pages(args.input):
        pages += 1
        if ns != "0":
            other_ns += 1
            continue
        if redirect or is_redirect(text):
            redirects += 1
            continue
        body = clean_wikitext(text)
        if not body:
            empty += 1
            continue
        article = title + "\n\n" + body
        split = split_of(title)
        texts[split].append(article)
        meta.append({"title": title, "split": split, "chars": len(article),
                     "sha1": hashlib.sha1(title.encode("utf-8")).hexdigest(),
                     "text_sha1": hashlib.sha1(article.encode("utf-8")).hexdigest()})
    if not meta:
        print("wiki_to_text: no articles found in %s" % args.input, file=sys.stderr)
        return 1
    write_atomic(os.path.join(args.out_dir, "articles.jsonl"),
                 "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in meta))
    for split in ("calib", "eval"):
        write_atomic(os.path.join(args.out_dir, split + ".txt"), "\n\n".join(texts[split]) + "\n")
    print("wiki_to_text: %d pages: %d articles (%d calibration, %d evaluation), %d redirects, %d in other "
          "namespaces, %d empty after cleaning; characters: calibration %d, evaluation %d"
          % (pages, len(meta), len(texts["calib"]), len(texts["eval"]), redirects, other_ns, empty,
             sum(m["chars"] for m in meta if m["split"] == "calib"),
             sum(m["chars"] for m in meta if m["split"] == "eval")), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
