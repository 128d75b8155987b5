// Wan's prompt cleaning before tokenization (wan/modules/tokenizers.py, clean='whitespace'):
//   whitespace_clean(basic_clean(text)) = collapse(strip(html.unescape(html.unescape(ftfy.fix_text(text)))))
// with collapse = every run of Unicode whitespace to one space, then strip.
//
// ftfy.fix_text is a large heuristic library; the parts that change ordinary prompts are reproduced here, repeated
// until the text stops changing as ftfy does: HTML entities (when the text has no '<'), terminal escape sequences
// removed, C1 controls read as Windows-1252 (U+0085 -> '...'), Latin ligatures split (U+FB01 -> "fi"), full-width
// ASCII, the ideographic space and ftfy's other width forms folded, curly quotes straightened, "\r\n" and other line
// breaks to "\n", and ftfy's control characters removed. Not reproduced: ftfy's mojibake repair (text that was
// decoded with the wrong codec, e.g. "cafÃ©"), its NFC normalization and its half-width katakana / hangul folding;
// T5-family sentencepiece models normalize with NFKC themselves, which covers the last two. HTML entities: numeric
// references exactly as Python's html.unescape; named ones for amp, lt, gt, quot, apos and nbsp only (others are
// kept as written).
#pragma once

#include <string>
#include <string_view>

namespace lr {

// `utf8` must be well-formed UTF-8 (the caller checks and names the flag or file); so is the result.
std::string clean_prompt_text(std::string_view utf8);

}  // namespace lr
