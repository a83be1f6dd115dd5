"""Tests of scripts/wiki_to_text.py on handwritten markup.
Run: python3 -m pytest scripts/test_wiki_to_text.py   (or: python3 scripts/test_wiki_to_text.py)"""
import bz2
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wiki_to_text as w  # noqa: E402

clean = w.clean_wikitext


class Templates(unittest.TestCase):
    def test_nested_templates_dropped(self):
        self.assertEqual(clean("A {{Infobox|name={{nowrap|{{small|x}}}}|b={{c|{{d}}}}}} B."), "A B.")

    def test_inline_templates_rendered(self):
        self.assertEqual(clean("It is {{convert|1300|mi|km}} long."), "It is 1300 mi long.")
        self.assertEqual(clean("From {{convert|10|to|20|km2|sqmi}} wide."), "From 10 to 20 km² wide.")
        self.assertEqual(clean("Greek {{lang|grc|ἀναρχία}} and {{lang-sq|Shqipëri}}."),
                         "Greek ἀναρχία and Shqipëri.")
        self.assertEqual(clean("{{as of|2014|lc=y}}, many."), "as of 2014, many.")
        self.assertEqual(clean("With {{HMS|Ajax|22|6}}, the vowel {{IPA|/æ/}} and Smith{{'s}} {{nowrap|big {{small|ship}}}}."),
                         "With HMS Ajax, the vowel /æ/ and Smith's big ship.")

    def test_template_with_pipe_before_close(self):
        # "|}}" closes the template; it is not the end of a table
        self.assertEqual(clean("The aardvark ({{IPAc-en|ˈ|ɑr|d|}}; Orycteropus afer) digs."),
                         "The aardvark (Orycteropus afer) digs.")

    def test_empty_brackets_left_by_templates_removed(self):
        self.assertEqual(clean("Albedo ({{IPAc-en|æ|l}}) or reflection."), "Albedo or reflection.")

    def test_braces_in_text_are_not_tables(self):
        self.assertEqual(clean("Characters {{pre|x{|}~}} shown. Then N{ jag har sm|rg}sar."),
                         "Characters shown. Then N{ jag har sm|rg}sar.")

    def test_unclosed_template_kept_literally(self):
        self.assertEqual(clean("A {{broken and text"), "A {{broken and text")


class Tables(unittest.TestCase):
    def test_nested_tables_dropped(self):
        text = ("Before.\n{| class=\"wikitable\"\n|-\n| a || {{flagicon|X}} b\n|-\n|\n{|\n| inner\n|}\n"
                "| c\n|}\nAfter.")
        self.assertEqual(clean(text), "Before.\n\nAfter.")  # a removed block leaves a paragraph break

    def test_table_inside_template(self):
        self.assertEqual(clean("X {{Box|data={|\n| cell\n|}\n}} Y"), "X Y")


class Refs(unittest.TestCase):
    def test_refs_dropped(self):
        text = ('Fact.<ref name="a">{{cite web|url=http://x|title=T}}</ref> More.<ref name=a /> '
                'End.<ref group="n">note [[with link]]</ref>')
        self.assertEqual(clean(text), "Fact. More. End.")

    def test_references_tag_and_comments(self):
        self.assertEqual(clean("A<!-- hidden {{x}} -->B\n<references />\nC"), "AB\n\nC")


class Links(unittest.TestCase):
    def test_internal_links(self):
        self.assertEqual(clean("[[Dog|dogs]] and [[cat]]s and [[Paris (France)|]]"),
                         "dogs and cats and Paris")

    def test_file_link_with_nested_links_in_caption(self):
        text = ("Text [[File:A b.jpg|thumb|220px|The [[School of Athens|school]] by [[Raphael]], "
                "see [[Image:x.png|left|[[y]]]]]] more.")
        self.assertEqual(clean(text), "Text more.")

    def test_category_and_interlanguage_links_dropped(self):
        self.assertEqual(clean("Body.\n[[Category:Things| ]]\n[[fr:Chose]] [[be-x-old:Рэч]]"), "Body.")

    def test_colon_and_interwiki_links_kept(self):
        self.assertEqual(clean("See [[:Category:Foo|the list]] and [[wikt:anarchy|anarchy]]."),
                         "See the list and anarchy.")

    def test_external_links(self):
        self.assertEqual(clean("A [http://example.org/x label text] and [http://example.org/y] end."),
                         "A label text and end.")


class Formatting(unittest.TestCase):
    def test_bold_italic_entities_magic(self):
        self.assertEqual(clean("__NOTOC__'''Bold''' and ''it'' &amp; x&nbsp;y &ndash; &#39;q&#39;"),
                         "Bold and it & x y – 'q'")

    def test_entities_do_not_become_markup(self):
        self.assertEqual(clean("a &lt;ref&gt;b&lt;/ref&gt; &#123;&#123;c}}"), "a <ref>b</ref> {{c}}")

    def test_tags(self):
        self.assertEqual(clean("H<sub>2</sub>O is<br/>water <gallery>\nA.jpg|x\n</gallery>"),
                         "H2O is\nwater")

    def test_math_inline_kept_display_dropped(self):
        self.assertEqual(clean("The mean <math>\\bar{x}</math> of n values is\n:<math>\\frac{1}{n}}}</math>\nEnd."),
                         "The mean \\bar{x} of n values is\n\nEnd.")

    def test_math_source_untouched(self):
        self.assertEqual(clean("Let <math>f() = {{a}} '' x</math> (as <math>g(\\lt)</math>) hold."),
                         "Let f() = {{a}} '' x (as g(\\lt)) hold.")

    def test_lists_and_headings(self):
        text = "Intro.\n\n== History ==\nOld.\n=== Early ===\n* one\n# two\n: three\n\n\n\nEnd."
        self.assertEqual(clean(text), "Intro.\n\nHistory\n\nOld.\n\nEarly\n\none\ntwo\nthree\n\nEnd.")

    def test_reference_sections_dropped(self):
        text = ("Body.\n== See also ==\n* [[X]]\n== Life ==\nLived.\n== References ==\n{{reflist}}\n"
                "=== Sources ===\n* A book\n== External links ==\n* [http://x X]\n[[Category:C]]")
        self.assertEqual(clean(text), "Body.\n\nLife\n\nLived.")

    def test_empty_section_heading_dropped(self):
        self.assertEqual(clean("A.\n== Gallery of things ==\n<gallery>\nx.jpg\n</gallery>\n== B ==\nb."),
                         "A.\n\nB\n\nb.")


class Pages(unittest.TestCase):
    def test_redirects(self):
        self.assertTrue(w.is_redirect("#REDIRECT [[Computer accessibility]]"))
        self.assertTrue(w.is_redirect("  #redirect[[X]]"))
        self.assertFalse(w.is_redirect("A #REDIRECT in text"))

    def test_split_rule(self):
        import hashlib
        for title in ("Anarchism", "Albedo", "Aa River", "Zebra"):
            h = int(hashlib.sha1(title.encode()).hexdigest(), 16)
            self.assertEqual(w.split_of(title), "eval" if h % 5 == 0 else "calib")

    def test_dump_end_to_end(self):
        xml = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/">
  <page><title>Redirected</title><ns>0</ns><id>1</id><redirect title="Target" />
    <revision><id>1</id><text>#REDIRECT [[Target]]</text></revision></page>
  <page><title>Sneaky</title><ns>0</ns><id>2</id>
    <revision><id>2</id><text>#Redirect [[Target]]</text></revision></page>
  <page><title>Wikipedia:Project</title><ns>4</ns><id>3</id>
    <revision><id>3</id><text>Project page.</text></revision></page>
  <page><title>Albedo</title><ns>0</ns><id>4</id>
    <revision><id>4</id><text>'''Albedo''' is [[light|reflected light]].&lt;ref&gt;x&lt;/ref&gt;</text></revision></page>
  <page><title>Anarchism</title><ns>0</ns><id>5</id>
    <revision><id>5</id><text>{{Infobox}}'''Anarchism''' is a philosophy &amp; more.</text></revision></page>
</mediawiki>"""
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "dump.xml.bz2")
            with bz2.open(path, "wt", encoding="utf-8") as f:
                f.write(xml)
            self.assertEqual(w.main(["--input", path, "--out-dir", d]), 0)
            rows = [json.loads(line) for line in open(os.path.join(d, "articles.jsonl"), encoding="utf-8")]
            self.assertEqual([r["title"] for r in rows], ["Albedo", "Anarchism"])
            self.assertEqual(rows[0]["chars"], len("Albedo\n\nAlbedo is reflected light."))
            texts = {s: open(os.path.join(d, s + ".txt"), encoding="utf-8").read() for s in ("calib", "eval")}
            articles = {"Albedo": "Albedo\n\nAlbedo is reflected light.",
                        "Anarchism": "Anarchism\n\nAnarchism is a philosophy & more."}
            for split in ("calib", "eval"):
                want = [articles[r["title"]] for r in rows if r["split"] == split]
                self.assertEqual(texts[split], "\n\n".join(want) + "\n")


if __name__ == "__main__":
    unittest.main()
