#!/usr/bin/env python3
"""Fixtures for Wan's prompt cleaning (runtime/text/text_clean.h): tests/data/text/clean_cases.json.

    python3 tests/data/text/make_clean_fixtures.py        # needs ftfy (pip install ftfy) and regex

For every text of a corpus (every HTML5 entity name and ftfy's upper-case ones, numeric references, the corner
cases of html.unescape and of ftfy's own unescaping, every character with a canonical decomposition given
decomposed, Hangul, seeded random strings of combining marks of mixed classes, composition exclusions, width forms,
ligatures, line breaks, terminal escapes, '<' on one line of several; and mojibake: varied text (accents of many
languages, CJK, emoji, curly quotes, Cyrillic, Greek, Arabic, ...) encoded as UTF-8 and decoded with each of ftfy's
single-byte codecs once and twice, with no-break spaces turned to spaces, bytes lost to U+FFFD, CESU-8, Java's
C0 80, runs embedded in good text, several lines, HTML around them; text that looks odd but is not mojibake; and
seeded random strings of the characters those codecs produce):
  html_unescape  html.unescape(text)
  nfc            unicodedata.normalize("NFC", text)
  cleaned        what Wan's tokenizer path feeds sentencepiece (wan/modules/tokenizers.py, clean='whitespace'):
                 regex \\s+ -> ' ' of html.unescape(html.unescape(ftfy.fix_text(text))).strip(), stripped
  mojibake       true when ftfy's encoding repair changed the text (ftfy.fix_text(text, fix_encoding=False)
                 differs): the cases that exercise runtime/text/mojibake.h
and a list `badness` of [text, ftfy.badness.is_bad(text)] for seeded random strings of the characters of ftfy's
badness heuristic, ASCII letters, spaces and punctuation (runtime/text/mojibake.h's looks_like_mojibake).
Records the Python, Unicode and ftfy versions; the engine's tables come from the same Python
(tools/gen_text_tables.py).
"""

import html
import html.entities
import inspect
import json
import os
import random
import re
import sys
import unicodedata

import ftfy
import regex
from ftfy import badness, chardata

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
    return texts + mojibake_corpus()


# Text to break: many scripts, and the punctuation and symbols that Windows code pages hold.
SAMPLES = [
    "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e \u00e0 la carte, d\u00e9j\u00e0 vu",
    "Gr\u00fc\u00dfe aus M\u00fcnchen, sch\u00f6ne Stra\u00dfe",
    "\u00bfD\u00f3nde est\u00e1 la se\u00f1ora? \u00a1Qu\u00e9 ni\u00f1o!",
    "S\u00e3o Paulo \u00e9 \u00f3timo, a\u00e7\u00e3o e cora\u00e7\u00e3o",
    "Za\u017c\u00f3\u0142\u0107 g\u0119\u015bl\u0105 ja\u017a\u0144",
    "P\u0159\u00edli\u0161 \u017elu\u0165ou\u010dk\u00fd k\u016f\u0148 \u00fap\u011bl \u010f\u00e1belsk\u00e9 \u00f3dy",
    "I\u015f\u0131k, \u011f\u00fc\u015f\u00f6\u00e7 \u0130stanbul",
    "Lietuvi\u0173 kalba, latvie\u0161u valoda \u0113\u0146\u0137",
    "\u00c6r\u00f8, \u00c5lesund, sm\u00f8rrebr\u00f8d",
    "\u039a\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1 \u03ba\u03cc\u03c3\u03bc\u03b5, "
    "\u03b5\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! "
    "\u0421\u044a\u0435\u0448\u044c \u0436\u0435 \u0435\u0449\u0451",
    "\u0407\u0436\u0430\u043a \u0491\u0430\u0432\u0430 \u0454",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
    "\u4e2d\u6587\u5b57\u7b26\u6d4b\u8bd5",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
    "Hello \U0001f44b world \U0001f30d \U0001f389",
    "\u2714 No problems \u2764",
    "\u201cQuoted\u201d text \u2014 with \u2018single\u2019 quotes\u2026 and \u2022 bullets",
    "\u20ac100 \u2013 \u00a350 \u2013 \u00a520",
    "50\u00b0 \u00b1 2, \u00bd cup, \u00a9 2024 \u2122 \u00ae",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a",
    "A cat in a b\u00e9ret walks through a caf\u00e9 in Montr\u00e9al \u2014 cinematic lighting",
    "The na\u00efve caf\u00e9 owner said \u201cbonjour\u201d",
    "100\u00a0km \u00e0 pied, voil\u00e0 le travail",
    "\u00af\\_(\u30c4)_/\u00af",
    "\u00c9cole, \u00c0 bient\u00f4t, \u00ceLE, \u00d0",
    "\u00fcber \u00e0 \u00f1",
    # UTF-8 with byte A0 (a no-break space in Latin-1): à, Р, Π, Š, ठ, †, U+1F800
    "voil\u00e0, d\u00e9j\u00e0 l\u00e0-bas \u00e0 Paris",
    "\u0420\u043e\u0441\u0441\u0438\u044f \u0420\u0430\u0431\u043e\u0442\u0430 \u0420\u0438\u043c",
    "\u03a0\u03ac\u03c4\u03c1\u03b1 \u03a0 \u0160ta \u0160ibenik",
    "\u2020 dagger \u2021 \u0920\u0940\u0915 \U0001f800",
]


def cesu8(s):
    """CESU-8: each astral character as the UTF-8 of its two UTF-16 surrogates."""
    out = b""
    for ch in s:
        if ord(ch) > 0xFFFF:
            hi, lo = divmod(ord(ch) - 0x10000, 0x400)
            out += (chr(0xD800 + hi) + chr(0xDC00 + lo)).encode("utf-8", "surrogatepass")
        else:
            out += ch.encode("utf-8")
    return out


def mojibake_corpus():
    texts = []
    for s in SAMPLES:
        utf8 = s.encode("utf-8")
        for enc in chardata.CHARMAP_ENCODINGS:
            once = utf8.decode(enc)
            texts.append(once)
            texts.append(once.encode("utf-8").decode(enc))  # twice
            if enc != "latin-1":
                texts.append(once.encode("utf-8").decode("sloppy-windows-1252"))  # then as Windows-1252
        once = utf8.decode("sloppy-windows-1252")
        texts.append(once.replace("\xa0", " "))  # no-break spaces lost
        texts.append(utf8.decode("latin-1").replace("\xa0", " "))
        texts.append(utf8.decode("sloppy-windows-1250").replace("\xa0", " "))
        texts.append(utf8.decode("windows-1252", errors="replace"))  # undefined bytes lost to U+FFFD
        texts.append(utf8.decode("windows-1252", errors="replace").replace("\ufffd", "?"))
        texts.append("Fine text \u2713 then " + once + " and " + s)  # embedded in good text
        texts.append(s + " / " + utf8.decode("latin-1"))
        texts.append(once + "\n" + s + "\n" + utf8.decode("sloppy-windows-1251") + "\n")
    for s in ["Hello \U0001f44b world", "\U0001f600 smile", "x\U0001f389"]:
        for enc in ["latin-1", "sloppy-windows-1252"]:
            texts.append(cesu8(s).decode(enc))
            texts.append(cesu8("caf\u00e9 " + s).decode(enc))
    texts += [
        b"caf\xc3\xa9 null\xc0\x80 here".decode("latin-1"),
        b"caf\xc3\xa9 \xc0\x80".decode("sloppy-windows-1252"),
        # Python's $ before a final newline inside the utf-8-variants codec's patterns
        b"caf\xc3\xa9 \xc0\n".decode("latin-1"),
        b"caf\xc3\xa9 \xed\xa0\xbd\xed\xb8\n".decode("latin-1"),
        b"caf\xc3\xa9 \xed\xa0\xbd\xed\xb8".decode("latin-1"),
        b"caf\xc3\xa9 \xed\xa0\x80 lone surrogate".decode("latin-1"),
        b"caf\xc3\xa9 \xed\x9f\xbf hangul".decode("latin-1"),
        b"caf\xc3\xa9 overlong \xc1\xbf \xe0\x80\xbf".decode("latin-1"),
        b"caf\xc3\xa9 \xf4\x90\x80\x80 too high".decode("latin-1"),
        b"\xe2\x80\x9cquoted\xe2\x80\x9d".decode("windows-1252", errors="replace"),
        "\u00e2\u20ac\u0153 like this \u00e2\u20ac\ufffd",
        "\u00e2\u20ac? like this \u00e2?\u009d",
        "The Mona Lisa doesn\u00e2\u20ac\u2122t have eyebrows.",
        "&macr;\\_(\u00e3\u0083\u0084)_/&macr;",
        "caf\u00c3&copy; cr\u00c3&uml;me",
        "<p>caf\u00c3\u00a9 &amp; cr\u00c3\u00a8me</p>",
        "l\u00c3\u00a0 o\u00c3\u00b9 \u00c3 quele \u00c3 s vis",
        "f\u00c3 cil \u00c3 la \u00c3  espa\u00c3\u00b1ol",
        "caf\u00c3\u00a9 \u00c3 quilo, \u00c3 quela, \u00c3 quele, \u00c3 s dez, \u00c3 sa, \u00c3 quil",
        "\u00c3 ",
        "voil\u00c3 le travail",
        "\u00e2\u0080\u0099 \u00c2\u0080 c1 \u0080\u0081\u008d\u0090\u009d\u0085",
        "\u00c2\u00a3 5 for a pint",
        "The price is \u00c2\u00a35 in the shop",
        "PORTUGAL: S\u00c3O TOM\u00c9 E PR\u00cdNCIPE",
        "\u00c3 \u00e9 uma letra, \u00c2 tamb\u00e9m",
        "\u00c0 la carte \u00bfqu\u00e9? \u00a1no!",
        "\u0394 = 5\u00b0C, na\u00efve co\u00f6perate, M\u00f6tley Cr\u00fce",
        "(\u256f\u00b0\u25a1\u00b0)\u256f\ufe35 \u253b\u2501\u253b",
        "\u00bd \u00d7 \u00bc = \u215b, 100 \u00b5g, \u00d1and\u00fa",
        "\u00cele-de-France, \u00d0or\u0111e, \u00d8 and \u00d9",
        "\u00e2\u0153\u201d No problems",
        "\u00e3\u0192\u00bc\u00e3\u201a\u00ba\u00e3\u0192\u00bb",
        "\u0420\u045f\u0421\u0402\u0420\u0451\u0420\u0406\u0420\u00b5\u0421\u201a",
        "\u00d0\u00bf\u00d1\u20ac\u00d0\u00b8\u00d0\u00b2\u00d0\u00b5\u00d1\u201a",
        "\u00f0\u0178\u02dc\u20ac \u00f0\u0178\u2018\u008d",
        "\u00c3\u0192\u00c2\u00a9t\u00c3\u0192\u00c2\u00a9",
        "\u00c3\u00a9\u00c3\u00a9\u00c3\u00a9" * 20,
        "ascii only, nothing to do",
        "",
    ]
    # Seeded random strings of the characters the single-byte codecs produce, among ASCII.
    pool = sorted(set("".join(bytes(range(0x80, 0x100)).decode(enc) for enc in chardata.CHARMAP_ENCODINGS)))
    ascii_pool = list("abcdefghijklmnopqrstuvwxyz ABCXYZ.,?!") + [" ", " ", "\u00a0"]
    rng = random.Random(1252)
    for _ in range(500):
        n = rng.randint(1, 12)
        texts.append("".join(rng.choice(pool) if rng.random() < 0.6 else rng.choice(ascii_pool) for _ in range(n)))
    # ... and random UTF-8 mojibake: random characters of many scripts, encoded, decoded with a random codec.
    scripts = [(0xA0, 0x17F), (0x370, 0x3FF), (0x400, 0x45F), (0x2010, 0x2044), (0x3040, 0x30FF), (0x4E00, 0x4FFF),
               (0xAC00, 0xAD00), (0x1F300, 0x1F64F)]
    for _ in range(300):
        lo, hi = rng.choice(scripts)
        s = "".join(chr(rng.randint(lo, hi)) if rng.random() < 0.5 else rng.choice("abc de")
                    for _ in range(rng.randint(1, 8)))
        enc = rng.choice(chardata.CHARMAP_ENCODINGS)
        try:
            texts.append(s.encode("utf-8").decode(enc))
        except UnicodeDecodeError:
            pass
    return texts


def regex_literals():
    """The characters that BADNESS_RE names itself (not through a category), read from ftfy's source."""
    src = inspect.getsource(badness)
    template = src[src.index("BADNESS_RE = re.compile("):]
    template = re.sub(r"\{[a-z_0-9]+\}", "", template[:template.index(".format(")])
    template = template.replace(r"\xa0", "\xa0").replace(r"\xad", "\xad")
    return sorted({c for c in template if ord(c) > 0x7F})


def badness_corpus():
    """Strings for ftfy.badness.is_bad: every pair of the characters its regex names, seeded random strings of those
    and of its categories' characters among ASCII letters, spaces and punctuation, and the edges of its contexts."""
    every = "".join(chr(c) for c in range(0x20, 0x10000) if not 0xD800 <= c <= 0xDFFF)
    classed = sorted({c for cls in list(badness.MOJIBAKE_CATEGORIES.values()) + list(chardata.UTF8_CLUES.values())
                      for c in (m.group() for m in re.finditer(f"[{cls}]", every))})
    literals = regex_literals()
    other = list("aAzZqQ .,?!_09\n\t") + ["\u2003", "\u00e9", "\u4e2d", "\u00a0", "\u0152"]
    rng = random.Random(7)
    texts = [a + b for a in literals for b in literals]
    for _ in range(4000):
        n = rng.randint(1, 6)
        texts.append("".join(rng.choice(classed) if rng.random() < 0.65 else rng.choice(other) for _ in range(n)))
    for _ in range(3000):
        n = rng.randint(3, 5)
        texts.append("".join(rng.choice(literals) if rng.random() < 0.8 else rng.choice("az .\n") for _ in range(n)))
    texts += ["\u0413\u045e\u0412\u0402\u0412" + tail for tail in ["xa", "x ", "x1", "\nx", "xa", ".Z", ""]]
    texts += ["a \u00c3 ", "a\u2003\u00c2 ", "a\u00c3 ", "a  \u00c3 ", "\u00c3 x", "x\u00c3 x", " \u00c3 ", "\u00c2 ",
              "\u00d8\u0160\u00d9\u00ae", "\u00d8 \u00d9\u00b5", "\u00d8\u00a0\u00d9\u00a0", "\u0152", "\u0152a",
              "\u0153\n", "\u00c9\u00ac\u00e9", "\u00e9\u00bb\u4e2d", "\u00e9\u00bb_", "\u00e9\u00bb ", "\u00e9\u00ae9"]
    return [[t, badness.is_bad(t)] for t in texts]


def main():
    cases = []
    for t in corpus():
        cases.append({"text": t, "html_unescape": html.unescape(t), "nfc": unicodedata.normalize("NFC", t),
                      "cleaned": wan_clean(t), "mojibake": ftfy.fix_text(t) != ftfy.fix_text(t, fix_encoding=False)})
    seen = set()
    cases = [c for c in cases if not (c["text"] in seen or seen.add(c["text"]))]
    doc = {"script": "tests/data/text/make_clean_fixtures.py", "python": sys.version.split()[0],
           "unicode": unicodedata.unidata_version, "ftfy": ftfy.__version__, "cases": cases,
           "badness": badness_corpus()}
    with open(OUT, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=True, indent=0)
    print(f"wrote {OUT}: {len(cases)} cases, {sum(c['mojibake'] for c in cases)} changed by ftfy's encoding repair, "
          f"{len(doc['badness'])} badness strings ({sum(b for _, b in doc['badness'])} bad) "
          f"(Python {doc['python']}, Unicode {doc['unicode']}, ftfy {doc['ftfy']})")


if __name__ == "__main__":
    main()
