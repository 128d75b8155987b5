// Wan's prompt cleaning before tokenization (wan/modules/tokenizers.py, clean='whitespace'):
//   whitespace_clean(basic_clean(text)) = collapse(strip(html.unescape(html.unescape(ftfy.fix_text(text)))))
// with collapse = every run of Unicode whitespace to one space, then strip.
//
// ftfy.fix_text (6.x) is reproduced in its order, line by line and repeated until the text stops changing as ftfy
// does: its own HTML unescaping (names ending in ';' and their upper-case spellings, numeric references with ';';
// off from the first line holding a '<'), its mojibake repair (fix_encoding: text decoded with the wrong codec,
// "cafÃ©" -> "café", guessed from ftfy's heuristic and its ten single-byte codecs; mojibake.h), C1 controls read
// as Windows-1252 (U+0085 -> '...'), Latin ligatures split (U+FB01 -> "fi"), the ideographic space and the
// half-width and full-width forms folded, curly quotes straightened, "\r\n" and other line breaks to "\n", terminal
// escape sequences and ftfy's control characters removed, and NFC. Then Python's html.unescape twice (every HTML5
// named reference, the legacy ones without ';' too, and numeric ones). Not reproduced: fix_text's cut of lines
// longer than a million characters into separate pieces. The tables (HTML5 entities, Unicode composition data,
// widths; ftfy's codecs and character classes) are generated from Python's standard library and the installed ftfy
// by tools/gen_text_tables.py into text_tables.inc and mojibake_tables.inc (Unicode 14.0 of Python 3.11, ftfy 6.3).
#pragma once

#include <string>
#include <string_view>

namespace lr {

// `utf8` must be well-formed UTF-8 (the caller checks and names the flag or file); so is the result.
std::string clean_prompt_text(std::string_view utf8);

// Its steps on their own (well-formed UTF-8 in and out), for tests against Python:
std::string html_unescape(std::string_view utf8);  // html.unescape
std::string unicode_nfc(std::string_view utf8);    // unicodedata.normalize("NFC", ...)

}  // namespace lr
