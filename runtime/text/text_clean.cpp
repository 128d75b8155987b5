#include "runtime/text/text_clean.h"

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <utility>
#include <vector>

#include "runtime/core/check.h"
#include "runtime/text/mojibake.h"

namespace lr {
namespace {

using Text = std::u32string;

Text decode(std::string_view s) {
    Text out;
    for (size_t i = 0; i < s.size();) {
        const auto b = static_cast<unsigned char>(s[i]);
        const int n = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
        char32_t c = n == 1 ? b : n == 2 ? (b & 0x1F) : n == 3 ? (b & 0x0F) : (b & 0x07);
        for (int k = 1; k < n; ++k) c = (c << 6) | (static_cast<unsigned char>(s[i + static_cast<size_t>(k)]) & 0x3F);
        out.push_back(c);
        i += static_cast<size_t>(n);
    }
    return out;
}

std::string encode(const Text& t) {
    std::string out;
    for (char32_t c : t) {
        if (c < 0x80) {
            out.push_back(static_cast<char>(c));
        } else if (c < 0x800) {
            out.push_back(static_cast<char>(0xC0 | (c >> 6)));
            out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
        } else if (c < 0x10000) {
            out.push_back(static_cast<char>(0xE0 | (c >> 12)));
            out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
            out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
        } else {
            out.push_back(static_cast<char>(0xF0 | (c >> 18)));
            out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
            out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
            out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
        }
    }
    return out;
}

// Windows-1252 bytes 0x80..0x9F; 0 where the code page leaves the byte undefined (it then stays a C1 control).
constexpr char32_t kCp1252High[32] = {0x20AC, 0,      0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
                                      0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0,      0x017D, 0,
                                      0,      0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
                                      0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0,      0x017E, 0x0178};

// Python's html.unescape for a numeric reference.
Text numeric_reference(uint64_t n) {
    if (n == 0) return U"\uFFFD";
    if (n == 0x0D) return U"\r";
    if (n >= 0x80 && n <= 0x9F)
        return Text(1, kCp1252High[n - 0x80] ? kCp1252High[n - 0x80] : static_cast<char32_t>(n));
    if ((n >= 0xD800 && n <= 0xDFFF) || n > 0x10FFFF) return U"\uFFFD";
    const bool invalid = (n >= 0x1 && n <= 0x8) || n == 0xB || (n >= 0xE && n <= 0x1F) || n == 0x7F ||
                         (n >= 0xFDD0 && n <= 0xFDEF) || (n & 0xFFFE) == 0xFFFE;
    if (invalid) return Text();
    return Text(1, static_cast<char32_t>(n));
}

bool is_digit(char32_t c) { return c >= '0' && c <= '9'; }
bool is_hex(char32_t c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool is_alpha(char32_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_alnum(char32_t c) { return is_alpha(c) || is_digit(c); }

// The tables of tools/gen_text_tables.py (from Python's html.entities.html5 and unicodedata).
struct HtmlEntity {
    std::u32string_view name;  // with its ';', or a legacy name without
    char32_t value[3];         // 1 to 3 code points, then zeros
};
struct WidthForm {
    char32_t from;
    char32_t first;
    char32_t second;  // 0: one code point
};
struct CombiningClass {
    char32_t first;
    char32_t last;
    uint8_t ccc;
};
struct Decomposition {
    char32_t from;
    char32_t first;
    char32_t second;  // 0: a singleton
};
struct Composition {
    char32_t first;
    char32_t second;
    char32_t composite;
};
#include "runtime/text/text_tables.inc"

template <size_t N>
const HtmlEntity* find_entity(const HtmlEntity (&table)[N], std::u32string_view s) {
    const auto* it = std::lower_bound(std::begin(table), std::end(table), s,
                                      [](const HtmlEntity& e, std::u32string_view n) { return e.name < n; });
    return it != std::end(table) && it->name == s ? it : nullptr;
}

void append_value(const HtmlEntity& e, Text& out) {
    for (char32_t c : e.value) {
        if (c) out.push_back(c);
    }
}

bool ends_entity_name(char32_t c) {
    return c == U'\t' || c == U'\n' || c == U'\f' || c == U' ' || c == U'<' || c == U'&' || c == U'#' || c == U';';
}

// One pass of Python's html.unescape: "&#NNN", "&#xHH" (the ';' optional) and "&NAME;" / legacy "&NAME", where an
// unknown name whose start is a known one is read as that one followed by the rest ("&ampx" -> "&x").
Text unescape_html(const Text& t) {
    Text out;
    for (size_t i = 0; i < t.size();) {
        if (t[i] != U'&') {
            out.push_back(t[i++]);
            continue;
        }
        if (i + 1 < t.size() && t[i + 1] == U'#') {
            size_t j = i + 2;
            const bool hex = j < t.size() && (t[j] == U'x' || t[j] == U'X');
            if (hex) ++j;
            const size_t digits_begin = j;
            uint64_t n = 0;
            while (j < t.size() && (hex ? is_hex(t[j]) : is_digit(t[j]))) {
                const char32_t c = t[j++];
                const uint64_t v = is_digit(c) ? c - U'0' : (c | 0x20) - U'a' + 10;
                n = std::min<uint64_t>(n * (hex ? 16 : 10) + v, uint64_t{1} << 40);  // saturates past U+10FFFF
            }
            if (j > digits_begin) {
                if (j < t.size() && t[j] == U';') ++j;
                out += numeric_reference(n);
                i = j;
                continue;
            }
            out.push_back(t[i++]);
            continue;
        }
        size_t j = i + 1;
        while (j < t.size() && j - (i + 1) < 32 && !ends_entity_name(t[j])) ++j;
        if (j < t.size() && t[j] == U';') ++j;
        const std::u32string_view s(t.data() + i + 1, j - (i + 1));
        const HtmlEntity* e = s.empty() ? nullptr : find_entity(kHtmlEntities, s);
        size_t used = s.size();
        for (size_t x = s.size() - (s.empty() ? 0 : 1); !e && x >= 2 && x < s.size(); --x) {
            e = find_entity(kHtmlEntities, s.substr(0, x));
            used = x;
        }
        if (!e) {
            out.push_back(t[i++]);
            continue;
        }
        append_value(*e, out);
        i += 1 + used;
    }
    return out;
}

// ftfy's own unescape_html (not html.unescape): every match of "&#?[0-9A-Za-z]{1,24};" that is a name of
// kFtfyEntities becomes its value; a numeric one becomes html.unescape's value unless that leaves a ';' behind
// ("&#65a;" stays); anything else stays as written ("&amp" without ';' too: html.unescape gets it later).
Text ftfy_unescape_html(const Text& t) {
    Text out;
    for (size_t i = 0; i < t.size();) {
        if (t[i] == U'&') {
            const bool numeric = i + 1 < t.size() && t[i + 1] == U'#';
            size_t j = i + (numeric ? 2 : 1);
            const size_t begin = j;
            while (j < t.size() && j - begin < 24 && is_alnum(t[j])) ++j;
            if (j > begin && j < t.size() && t[j] == U';') {
                const Text match = t.substr(i, j + 1 - i);
                if (const HtmlEntity* e =
                        numeric ? nullptr : find_entity(kFtfyEntities, {t.data() + begin, j + 1 - begin})) {
                    append_value(*e, out);
                    i = j + 1;
                    continue;
                }
                if (numeric) {
                    const Text value = unescape_html(match);
                    out += value.find(U';') == Text::npos ? value : match;
                    i = j + 1;
                    continue;
                }
            }
        }
        out.push_back(t[i++]);
    }
    return out;
}

bool contains(const Text& t, char32_t c) { return t.find(c) != Text::npos; }

// ESC [ digits-and-semicolons letter.
Text remove_terminal_escapes(const Text& t) {
    Text out;
    for (size_t i = 0; i < t.size();) {
        if (t[i] == 0x1B && i + 1 < t.size() && t[i + 1] == U'[') {
            size_t j = i + 2;
            while (j < t.size() && (is_digit(t[j]) || t[j] == U';')) ++j;
            if (j < t.size() && is_alpha(t[j])) {
                i = j + 1;
                continue;
            }
        }
        out.push_back(t[i++]);
    }
    return out;
}

std::u32string_view ligature(char32_t c) {
    switch (c) {
        case 0x0132:
            return U"IJ";
        case 0x0133:
            return U"ij";
        case 0x0149:
            return U"\u02BCn";
        case 0x01C4:
            return U"D\u017D";
        case 0x01C5:
            return U"D\u017E";
        case 0x01C6:
            return U"d\u017E";
        case 0x01C7:
            return U"LJ";
        case 0x01C8:
            return U"Lj";
        case 0x01C9:
            return U"lj";
        case 0x01CA:
            return U"NJ";
        case 0x01CB:
            return U"Nj";
        case 0x01CC:
            return U"nj";
        case 0x01F1:
            return U"DZ";
        case 0x01F2:
            return U"Dz";
        case 0x01F3:
            return U"dz";
        case 0xFB00:
            return U"ff";
        case 0xFB01:
            return U"fi";
        case 0xFB02:
            return U"fl";
        case 0xFB03:
            return U"ffi";
        case 0xFB04:
            return U"ffl";
        case 0xFB05:
            return U"\u017Ft";
        case 0xFB06:
            return U"st";
        default:
            return {};
    }
}

// ftfy's fix_character_width: the ideographic space and the half-width and full-width forms.
const WidthForm* width_form(char32_t c) {
    if (c != 0x3000 && (c < 0xFF01 || c > 0xFFEF)) return nullptr;
    const auto* it = std::lower_bound(std::begin(kWidthForms), std::end(kWidthForms), c,
                                      [](const WidthForm& w, char32_t x) { return w.from < x; });
    return it != std::end(kWidthForms) && it->from == c ? it : nullptr;
}

// ---- NFC (Unicode's canonical decomposition, canonical ordering, canonical composition) ------------------------

constexpr char32_t kHangulS = 0xAC00, kHangulL = 0x1100, kHangulV = 0x1161, kHangulT = 0x11A7;
constexpr char32_t kHangulLCount = 19, kHangulVCount = 21, kHangulTCount = 28;
constexpr char32_t kHangulSCount = kHangulLCount * kHangulVCount * kHangulTCount;

int combining_class(char32_t c) {
    if (c < 0x300) return 0;
    const auto* it = std::upper_bound(std::begin(kCombiningClasses), std::end(kCombiningClasses), c,
                                      [](char32_t x, const CombiningClass& r) { return x < r.first; });
    if (it == std::begin(kCombiningClasses)) return 0;
    --it;
    return c <= it->last ? it->ccc : 0;
}

void decompose(char32_t c, Text& out) {
    if (c >= kHangulS && c < kHangulS + kHangulSCount) {
        const char32_t s = c - kHangulS;
        out.push_back(kHangulL + s / (kHangulVCount * kHangulTCount));
        out.push_back(kHangulV + (s % (kHangulVCount * kHangulTCount)) / kHangulTCount);
        if (s % kHangulTCount) out.push_back(kHangulT + s % kHangulTCount);
        return;
    }
    const auto* it = std::lower_bound(std::begin(kDecompositions), std::end(kDecompositions), c,
                                      [](const Decomposition& d, char32_t x) { return d.from < x; });
    if (it == std::end(kDecompositions) || it->from != c) {
        out.push_back(c);
        return;
    }
    decompose(it->first, out);
    if (it->second) decompose(it->second, out);
}

// The primary composite of (a, b), or 0.
char32_t compose(char32_t a, char32_t b) {
    if (a >= kHangulL && a < kHangulL + kHangulLCount && b >= kHangulV && b < kHangulV + kHangulVCount)
        return kHangulS + ((a - kHangulL) * kHangulVCount + (b - kHangulV)) * kHangulTCount;
    if (a >= kHangulS && a < kHangulS + kHangulSCount && (a - kHangulS) % kHangulTCount == 0 && b > kHangulT &&
        b < kHangulT + kHangulTCount)
        return a + (b - kHangulT);
    const auto* it = std::lower_bound(std::begin(kCompositions), std::end(kCompositions), std::pair{a, b},
                                      [](const Composition& m, const std::pair<char32_t, char32_t>& x) {
                                          return m.first < x.first || (m.first == x.first && m.second < x.second);
                                      });
    return it != std::end(kCompositions) && it->first == a && it->second == b ? it->composite : 0;
}

// unicodedata.normalize("NFC", t).
Text nfc(const Text& t) {
    Text d;
    for (char32_t c : t) decompose(c, d);
    // Canonical ordering: a stable sort of every run of non-starters by combining class.
    std::vector<int> cc(d.size());
    for (size_t i = 0; i < d.size(); ++i) cc[i] = combining_class(d[i]);
    for (size_t i = 1; i < d.size(); ++i) {
        for (size_t j = i; j > 0 && cc[j] != 0 && cc[j - 1] > cc[j]; --j) {
            std::swap(d[j], d[j - 1]);
            std::swap(cc[j], cc[j - 1]);
        }
    }
    // Composition: each character joins the last starter unless a character in between blocks it (a starter, or
    // a class at least its own; after the ordering above only the last one in between needs looking at).
    Text out;
    size_t starter = Text::npos;
    int last_class = 0;
    for (size_t i = 0; i < d.size(); ++i) {
        const char32_t c = d[i];
        if (starter != Text::npos) {
            const bool adjacent = out.size() == starter + 1;
            if (adjacent || last_class < cc[i]) {
                if (const char32_t composite = compose(out[starter], c)) {
                    out[starter] = composite;
                    continue;
                }
            }
        }
        if (cc[i] == 0) starter = out.size();
        last_class = cc[i];
        out.push_back(c);
    }
    return out;
}

bool is_ftfy_control(char32_t c) {
    return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) ||
           c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

// The steps of ftfy's fix_and_explain after its HTML unescaping and its encoding repair (fix_mojibake), in its
// order: C1 controls as Windows-1252, Latin ligatures, character widths, curly quotes, line breaks, terminal
// escapes, control characters, NFC.
Text fix_characters(const Text& t) {
    Text a;
    for (char32_t c : t) {
        if (c >= 0x80 && c <= 0x9F && kCp1252High[c - 0x80]) c = kCp1252High[c - 0x80];
        if (const auto lig = ligature(c); !lig.empty()) {
            a += lig;
            continue;
        }
        if (const WidthForm* w = width_form(c)) {
            a.push_back(w->first);
            if (w->second) a.push_back(w->second);
            continue;
        }
        if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B)) c = U'\'';
        if (c >= 0x201C && c <= 0x201F) c = U'"';
        a.push_back(c);
    }
    Text b;
    for (size_t i = 0; i < a.size(); ++i) {
        char32_t c = a[i];
        if (c == U'\r' && i + 1 < a.size() && a[i + 1] == U'\n') continue;  // "\r\n" -> "\n"
        if (c == U'\r' || c == 0x2028 || c == 0x2029 || c == 0x85) c = U'\n';
        b.push_back(c);
    }
    Text d;
    for (char32_t c : remove_terminal_escapes(b)) {
        if (!is_ftfy_control(c)) d.push_back(c);
    }
    return nfc(d);
}

// ftfy.fix_text: line by line (each segment ends after a '\n'), each fixed until it stops changing; HTML is
// unescaped until the first segment that holds a '<' (and in none after it), as ftfy's "auto" setting does.
Text ftfy_fix_text(const Text& text) {
    Text out;
    bool unescape = true;
    for (size_t pos = 0; pos < text.size();) {
        const size_t nl = text.find(U'\n', pos);
        const size_t end = nl == Text::npos ? text.size() : nl + 1;
        Text t = text.substr(pos, end - pos);
        pos = end;
        if (contains(t, U'<')) unescape = false;
        for (int pass = 0; pass < 16; ++pass) {
            Text next = fix_characters(fix_mojibake(unescape ? ftfy_unescape_html(t) : t));
            if (next == t) break;
            t = std::move(next);
        }
        out += t;
    }
    return out;
}

// The `regex` module's \s: Unicode White_Space.
bool is_white_space(char32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Python's str.isspace(), which str.strip() uses: White_Space plus the separators U+001C..U+001F.
bool is_py_space(char32_t c) { return is_white_space(c) || (c >= 0x1C && c <= 0x1F); }

Text strip(const Text& t) {
    size_t b = 0, e = t.size();
    while (b < e && is_py_space(t[b])) ++b;
    while (e > b && is_py_space(t[e - 1])) --e;
    return t.substr(b, e - b);
}

}  // namespace

std::string clean_prompt_text(std::string_view utf8) {
    Text t = ftfy_fix_text(decode(utf8));
    t = strip(unescape_html(unescape_html(t)));
    Text collapsed;
    for (size_t i = 0; i < t.size();) {
        if (is_white_space(t[i])) {
            while (i < t.size() && is_white_space(t[i])) ++i;
            collapsed.push_back(U' ');
        } else {
            collapsed.push_back(t[i++]);
        }
    }
    return encode(strip(collapsed));
}

std::string html_unescape(std::string_view utf8) { return encode(unescape_html(decode(utf8))); }

std::string unicode_nfc(std::string_view utf8) { return encode(nfc(decode(utf8))); }

}  // namespace lr
