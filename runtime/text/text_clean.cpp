#include "runtime/text/text_clean.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "runtime/core/check.h"

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

// The named references this file knows: with ';', and the legacy names also without it (HTML5 keeps both spellings).
struct NamedEntity {
    std::u32string_view name;  // with the ';' where one is required
    char32_t value;
};
constexpr NamedEntity kNamed[] = {{U"amp;", U'&'},   {U"amp", U'&'},   {U"lt;", U'<'},   {U"lt", U'<'},
                                  {U"gt;", U'>'},    {U"gt", U'>'},    {U"quot;", U'"'}, {U"quot", U'"'},
                                  {U"apos;", U'\''}, {U"nbsp;", 0xA0}, {U"nbsp", 0xA0}};

const NamedEntity* find_named(std::u32string_view s) {
    for (const NamedEntity& e : kNamed) {
        if (e.name == s) return &e;
    }
    return nullptr;
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
        const NamedEntity* e = s.empty() ? nullptr : find_named(s);
        size_t used = s.size();
        for (size_t x = s.size() - (s.empty() ? 0 : 1); !e && x >= 2 && x < s.size(); --x) {
            e = find_named(s.substr(0, x));
            used = x;
        }
        if (!e) {
            out.push_back(t[i++]);
            continue;
        }
        out.push_back(e->value);
        i += 1 + used;
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

// ftfy's width folding, without the half-width katakana and hangul (see the header).
std::u32string_view width_form(char32_t c) {
    switch (c) {
        case 0x3000:
            return U" ";
        case 0xFF5F:
            return U"\u2985";
        case 0xFF60:
            return U"\u2986";
        case 0xFF61:
            return U"\u3002";
        case 0xFF62:
            return U"\u300C";
        case 0xFF63:
            return U"\u300D";
        case 0xFF64:
            return U"\u3001";
        case 0xFFE0:
            return U"\u00A2";
        case 0xFFE1:
            return U"\u00A3";
        case 0xFFE2:
            return U"\u00AC";
        case 0xFFE3:
            return U" \u0304";
        case 0xFFE4:
            return U"\u00A6";
        case 0xFFE5:
            return U"\u00A5";
        case 0xFFE6:
            return U"\u20A9";
        case 0xFFE8:
            return U"\u2502";
        case 0xFFE9:
            return U"\u2190";
        case 0xFFEA:
            return U"\u2191";
        case 0xFFEB:
            return U"\u2192";
        case 0xFFEC:
            return U"\u2193";
        case 0xFFED:
            return U"\u25A0";
        case 0xFFEE:
            return U"\u25CB";
        default:
            return {};
    }
}

bool is_ftfy_control(char32_t c) {
    return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) ||
           c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

// Character-level fixes of one ftfy pass, in ftfy's order: C1 controls, ligatures, widths, quotes, line breaks,
// control characters.
Text fix_characters(const Text& t) {
    Text a;
    for (char32_t c : t) {
        if (c >= 0x80 && c <= 0x9F && kCp1252High[c - 0x80]) c = kCp1252High[c - 0x80];
        if (const auto lig = ligature(c); !lig.empty()) {
            a += lig;
            continue;
        }
        if (c >= 0xFF01 && c <= 0xFF5E) c = c - 0xFF01 + 0x21;
        if (const auto w = width_form(c); !w.empty()) {
            a += w;
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
        if (is_ftfy_control(c)) continue;
        b.push_back(c);
    }
    return b;
}

Text ftfy_subset(Text t) {
    for (int pass = 0; pass < 16; ++pass) {
        Text next = contains(t, U'<') ? t : unescape_html(t);
        next = fix_characters(remove_terminal_escapes(next));
        if (next == t) break;
        t = std::move(next);
    }
    return t;
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
    Text t = ftfy_subset(decode(utf8));
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

}  // namespace lr
