#!/usr/bin/env python3
"""Fixtures for Wan's prompt cleaning (runtime/text/text_clean.h): tests/data/text/clean_cases.json.

    python3 tests/data/text/make_clean_fixtures.py        # needs ftfy (pip install ftfy) and regex

For every text of a corpus (every HTML5 entity name and ftfy's upper-case ones, numeric references, the corner
cases of html.unescape and of ftfy's own unescaping, every character with a canonical decomposition given
decomposed, Hangul, seeded random strings of combining marks of mixed classes, composition exclusions, width forms,
ligatures, line breaks, terminal escapes, '<' on one line of several):
  html_unescape  html.unescape(text)
  nfc            unicodedata.normalize("NFC", text)
  cleaned        what Wan's tokenizer path feeds sentencepiece (wan/modules/tokenizers.py, clean='whitespace'):
                 regex \\s+ -> ' ' of html.unescape(html.unescape(ftfy.fix_text(text))).strip(), stripped
  mojibake       true when ftfy's encoding repair changed the text (ftfy.fix_text(text, fix_encoding=False)
                 differs): the one ftfy step the engine does not reproduce, so `cleaned` is not compared there
Records the Python, Unicode and ftfy versions; the engine's tables come from the same Python
(tools/gen_text_tables.py).
"""

import html
import html.entities
import json
import os
import random
import sys
import unicodedata

import ftfy
import regex

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clean_cases.json")


def wan_clean(t):
    t = html.unescape(html.unescape(ftfy.fix_text(t))).strip()
    return regex.sub(r"\s+", " ", t).strip()


def chunks(items, n):
    return [items[i:i + n] for i in range(0, len(items), n)]


def corpus():
    texts = []
    names = sorted(html.entities.html5)
    # Every HTML5 name as written (with ';' or a legacy one without), then followed by letters (legacy prefixes).
    texts += [" ".join("&" + n for n in c) for c in chunks(names, 40)]
    texts += [" ".join("&" + n + "x" for n in c if not n.endswith(";")) for c in chunks(names, 80)]
    # ftfy's upper-case spellings, and some that it does not know.
    texts += [" ".join("&" + n.upper() for n in c if n.endswith(";")) for c in chunks(names, 60)]
    texts += ["P&EACUTE;REZ BUNDESSTRA&SZLIG;E &NTILDE; &nTILDE; &FFILIG;", "&AMP;lt; &Amp; &aMP;"]
    # Numeric references and the edges of both unescapers.
    texts += ["&#65;&#x41;&#X41;&#65&#x41 &#0; &#1; &#128; &#x80; &#159; &#x110000; &#xD800; &#65a; &#xZZ; &#;",
              "&ampx &nbspy &apos &apos; &unknown; &amp;amp;lt; &lt;&amp;amp;amp;amp; &#x201C &#x201C; &#8220x",
              "&" + "a" * 30 + "; &notit; &notin; &not it &copy2020 &copy; &COPY; &Copy;",
              "a <b>&amp;</b> c", "line one &amp; two\nline &lt; three\n<tag>\nafter &amp;amp; tag",
              "&amp;\r\n&lt;\rx\u2028y\u2029z\u0085w", "\x1b[31mred\x1b[0m &amp; \x1b[1;2mbold",
              "\uff21\uff22\uff23 \uff11\uff12 \uff08\uff09 \u3000x \uff71\uff72\uff73 \uffa1\uffa4 \uff9e\uff9f",
              "\ufb01\ufb02\ufb00 \u0132\u01c4 \u201cquoted\u201d \u2018it\u2019s\u2019 \u02bc \u00ab\u00bb",
              "ctrl\x01\x02\x7f\u206a\ufeff\ufff9x", "c1 \x80\x85\x91\x92\x93\x94\x9d"]
    # Every character with a canonical decomposition, decomposed (NFC must compose it back or leave it, as Python).
    decomposable = [chr(c) for c in range(0x110000) if unicodedata.decomposition(chr(c))
                    and not unicodedata.decomposition(chr(c)).startswith("<")]
    texts += [unicodedata.normalize("NFD", "".join(c)) for c in chunks(decomposable, 60)]
    texts += ["".join(c) for c in chunks(decomposable, 60)]
    # Hangul: syllables, conjoining jamo sequences (L V, L V T, LV T, stray T), compatibility jamo.
    texts += ["\ud55c\uad6d\uc5b4 \u1112\u1161\u11ab \u1100\u1161 \uac00\u11a8 \u11a8\u1100 \u3131\u314f",
              "".join(chr(0xAC00 + i) for i in range(0, 11172, 97))]
    # Random strings from a pool of starters, composites and marks of mixed combining classes.
    pool = ([chr(c) for c in range(0x41, 0x5B)] + list("\u00c0\u00c5\u00e9\u01d5\u1e69\u0390\u03b1\u0434\u05d0") +
            [chr(c) for c in range(0x300, 0x370)] + ["\u0591", "\u05b0", "\u05bc", "\u0651", "\u0670", "\u093c",
                                                     "\u094d", "\u0b47", "\u0b3e", "\u0b57", "\u0f71", "\u0f72",
                                                     "\u0f80", "\u1dc0", "\u20d0", "\u302a", "\u3099", "\u309a"] +
            ["\u304b", "\u30cf", "\u1100", "\u1161", "\u11a8", "\uac00", "\u2126", "\u212b", "\u0958", "\ufb1d",
             "\u0344", "\u0f73", "\uf900", "\u2adc", "\u1026", "\u102e", "\u0cc6", "\u0cc2", "\u0cd5"])
    rng = random.Random(16)
    texts += ["".join(rng.choice(pool) for _ in range(rng.randint(1, 14))) for _ in range(600)]
    return texts


def main():
    cases = []
    for t in corpus():
        cases.append({"text": t, "html_unescape": html.unescape(t), "nfc": unicodedata.normalize("NFC", t),
                      "cleaned": wan_clean(t), "mojibake": ftfy.fix_text(t) != ftfy.fix_text(t, fix_encoding=False)})
    doc = {"script": "tests/data/text/make_clean_fixtures.py", "python": sys.version.split()[0],
           "unicode": unicodedata.unidata_version, "ftfy": ftfy.__version__, "cases": cases}
    with open(OUT, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=True, indent=0)
    print(f"wrote {OUT}: {len(cases)} cases, {sum(c['mojibake'] for c in cases)} changed by ftfy's encoding repair "
          f"(Python {doc['python']}, Unicode {doc['unicode']}, ftfy {doc['ftfy']})")


if __name__ == "__main__":
    main()
