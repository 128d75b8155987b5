// ftfy's mojibake repair (ftfy 6.x fix_encoding), the step of ftfy.fix_text that undoes text decoded with the wrong
// codec: "cafÃ©" was UTF-8 read as Latin-1 and becomes "café" again. text_clean.cpp runs it where fix_text does,
// after ftfy's HTML unescaping and before its character fixes, on every line.
//
// ftfy decides from a heuristic (its badness regex) whether text looks like mojibake at all, then tries, in its
// order, to encode it back to bytes with one of ten single-byte codecs (latin-1, its sloppy windows-1252/1251/1250/
// 1253/1254/1257, iso-8859-2, macroman, cp437) and decode those as UTF-8 (CESU-8 and Java's "\xc0\x80" accepted),
// first putting back a no-break space that became a space, and turning continuation bytes lost to U+FFFD into
// U+FFFD; failing that it repairs the UTF-8-looking runs inside otherwise good text one by one, then C1 controls
// as Windows-1252; repeated until the text stops changing. Its tables (the codecs, the heuristic's character
// classes) are generated from the installed ftfy by tools/gen_text_tables.py into mojibake_tables.inc; the
// heuristic and the byte patterns are re-expressed in mojibake.cpp, each saying which part of ftfy it mirrors.
#pragma once

#include <string>
#include <string_view>

namespace lr {

// ftfy.fix_encoding(text) on one line of text (no '\n' inside but at its end). The result never holds a surrogate:
// a decode that would is refused, as Python refuses it. Bounded: repeated at most 16 times per call, as fix_text's
// passes are in text_clean.cpp, with a budget on the nested repairs of embedded runs (ftfy loops without bound).
std::u32string fix_mojibake(std::u32string_view text);

// ftfy.badness.is_bad(text): whether the text holds a character sequence that ftfy takes for mojibake.
bool looks_like_mojibake(std::u32string_view text);

}  // namespace lr
