#include "runtime/text/mojibake.h"

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

namespace lr {
namespace {

using Text = std::u32string;
using Bytes = std::string;  // bytes of a single-byte codec or of UTF-8, read through byte()

uint8_t byte(const Bytes& b, size_t i) { return static_cast<uint8_t>(b[i]); }

// The character classes of ftfy.badness.MOJIBAKE_CATEGORIES (the classes of its badness regex) and of
// ftfy.chardata.UTF8_CLUES (the classes of its UTF8_DETECTOR_RE), one bit each; a character may be in several.
enum MojibakeClass : uint32_t {
    kCommon = 1u << 0,
    kC1 = 1u << 1,
    kBad = 1u << 2,
    kLaw = 1u << 3,
    kCurrency = 1u << 4,
    kStartPunctuation = 1u << 5,
    kEndPunctuation = 1u << 6,
    kNumeric = 1u << 7,
    kKaomoji = 1u << 8,
    kUpperAccented = 1u << 9,
    kLowerAccented = 1u << 10,
    kUpperCommon = 1u << 11,
    kLowerCommon = 1u << 12,
    kBox = 1u << 13,
    kUtf8FirstOf2 = 1u << 14,
    kUtf8FirstOf3 = 1u << 15,
    kUtf8FirstOf4 = 1u << 16,
    kUtf8Continuation = 1u << 17,
    kUtf8ContinuationStrict = 1u << 18,
};

struct Charmap {
    std::string_view name;  // ftfy's name of the codec
    char32_t to_unicode[256];
};
struct MojibakeChar {
    char32_t cp;
    uint32_t classes;
};
struct CodepointRange {
    char32_t first;
    char32_t last;
};
#include "runtime/text/mojibake_tables.inc"

uint32_t classes_of(char32_t c) {
    const auto* it = std::lower_bound(std::begin(kMojibakeChars), std::end(kMojibakeChars), c,
                                      [](const MojibakeChar& m, char32_t x) { return m.cp < x; });
    return it != std::end(kMojibakeChars) && it->cp == c ? it->classes : 0;
}

// Python re's \w on str patterns.
bool is_word(char32_t c) {
    const auto* it = std::upper_bound(std::begin(kWordRanges), std::end(kWordRanges), c,
                                      [](char32_t x, const CodepointRange& r) { return x < r.first; });
    return it != std::begin(kWordRanges) && c <= std::prev(it)->last;
}

// Python re's \s on str patterns (str.isspace): White_Space plus U+001C..U+001F.
bool is_space(char32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool is_ascii_lower(char32_t c) { return c >= U'a' && c <= U'z'; }
bool is_ascii_letter(char32_t c) { return is_ascii_lower(c) || (c >= U'A' && c <= U'Z'); }
bool one_of(char32_t c, std::u32string_view set) { return set.find(c) != std::u32string_view::npos; }

// ---- ftfy.badness.BADNESS_RE, searched (is_bad) -----------------------------------------------------------------

constexpr char32_t kNone = 0xFFFFFFFF;  // past the end: in no class, equal to no character
constexpr uint32_t kAccented = kLowerAccented | kUpperAccented;

// Whether one of BADNESS_RE's alternatives matches at position i (is_bad only asks whether any does, so their
// order does not matter; they are kept in the regex's). Each `if` is one alternative over the classes of
// MojibakeClass, with the regex's literal characters as escapes and the regex's spelling in the comment.
bool bad_at(std::u32string_view t, const uint32_t* cls, size_t i) {
    const size_t n = t.size();
    const auto k = [&](size_t d) -> uint32_t { return i + d < n ? cls[i + d] : 0; };
    const auto ch = [&](size_t d) -> char32_t { return i + d < n ? t[i + d] : kNone; };
    const uint32_t k0 = k(0), k1 = k(1), k2 = k(2);
    const char32_t c0 = ch(0), c1 = ch(1), c2 = ch(2);

    if (k0 & kC1) return true;  // [c1]
    constexpr uint32_t kSymbols = kBox | kStartPunctuation | kEndPunctuation | kCurrency | kNumeric | kLaw;
    if ((k0 & (kBad | kAccented | kSymbols)) && (k1 & kBad)) return true;  // [bad accented box ... law][bad]
    if (is_ascii_letter(c0) && (k1 & (kLowerCommon | kUpperCommon)) && (k2 & kBad)) return true;
    if ((k0 & kBad) && (k1 & (kAccented | kSymbols))) return true;
    if ((k0 & (kLowerAccented | kLowerCommon | kBox | kEndPunctuation | kCurrency | kNumeric)) && (k1 & kUpperAccented))
        return true;
    if ((k0 & (kBox | kEndPunctuation | kCurrency | kNumeric)) && (k1 & kLowerAccented)) return true;
    if ((k0 & (kLowerAccented | kBox | kEndPunctuation)) && (k1 & kCurrency)) return true;
    if (is_space(c0) && (k1 & kUpperAccented) && (k2 & kCurrency)) return true;  // \s [upper][currency]
    if ((k0 & (kUpperAccented | kBox)) && (k1 & (kNumeric | kLaw))) return true;
    if ((k0 & (kAccented | kBox | kCurrency | kEndPunctuation)) && (k1 & kStartPunctuation) && (k2 & kNumeric))
        return true;
    if ((k0 & (kAccented | kCurrency | kNumeric | kBox | kLaw)) && (k1 & kEndPunctuation) && (k2 & kStartPunctuation))
        return true;
    if ((k0 & (kCurrency | kNumeric | kBox)) && (k1 & kStartPunctuation)) return true;
    if (is_ascii_lower(c0) && (k1 & kUpperAccented) && (k2 & (kStartPunctuation | kCurrency))) return true;
    if ((k0 & kBox) && (k1 & kKaomoji)) return true;
    if ((k0 & (kAccented | kCurrency | kNumeric | kStartPunctuation | kEndPunctuation | kLaw)) && (k1 & kBox))
        return true;
    if ((k0 & kBox) && (k1 & kEndPunctuation)) return true;
    if ((k0 & kAccented) && (k1 & (kStartPunctuation | kEndPunctuation)) && i + 2 < n && is_word(c2)) return true;
    if ((c0 == 0x152 || c0 == 0x153) && i + 1 < n && !is_ascii_letter(c1)) return true;  // [Œœ][^A-Za-z]
    if ((k0 & kUpperAccented) && c1 == 0xB0) return true;                                // [upper]°
    // [ÂÃÎÐ][€œŠš¢£Ÿž\xa0\xad®©°·»{start_punctuation}{end_punctuation}–—´]
    if (one_of(c0, U"\u00C2\u00C3\u00CE\u00D0") &&
        (one_of(c1,
                U"\u20AC\u0153\u0160\u0161\u00A2\u00A3\u0178\u017E\u00A0\u00AD\u00AE\u00A9\u00B0\u00B7\u00BB"
                U"\u2013\u2014\u00B4") ||
         (k1 & (kStartPunctuation | kEndPunctuation))))
        return true;
    if (c0 == 0xD7 && one_of(c1, U"\u00B2\u00B3")) return true;  // ×[²³]
    // Arabic as Windows-1252: [ØÙ][{common}{currency}{bad}{numeric}{start_punctuation}ŸŠ®°µ»], twice.
    const auto arabic_second = [&](size_t d) {
        return (k(d) & (kCommon | kCurrency | kBad | kNumeric | kStartPunctuation)) ||
               one_of(ch(d), U"\u0178\u0160\u00AE\u00B0\u00B5\u00BB");
    };
    if (one_of(c0, U"\u00D8\u00D9") && arabic_second(1) && one_of(c2, U"\u00D8\u00D9") && arabic_second(3)) return true;
    if (c0 == 0xE0 && one_of(c1, U"\u00B2\u00B5\u00B9\u00BC\u00BD\u00BE")) return true;  // à[²µ¹¼½¾]
    // MacRoman: √[±∂†≠®™´≤≥¥µø], ≈[°¢], ‚Ä[ìîïòôúùû†°¢π], ‚[âó][àä°ê]
    if (c0 == 0x221A && one_of(c1, U"\u00B1\u2202\u2020\u2260\u00AE\u2122\u00B4\u2264\u2265\u00A5\u00B5\u00F8"))
        return true;
    if (c0 == 0x2248 && one_of(c1, U"\u00B0\u00A2")) return true;
    if (c0 == 0x201A && c1 == 0xC4 &&
        one_of(c2, U"\u00EC\u00EE\u00EF\u00F2\u00F4\u00FA\u00F9\u00FB\u2020\u00B0\u00A2\u03C0"))
        return true;
    if (c0 == 0x201A && one_of(c1, U"\u00E2\u00F3") && one_of(c2, U"\u00E0\u00E4\u00B0\u00EA")) return true;
    if (c0 == 0x432 && c1 == 0x402) return true;  // вЂ: Windows-1251 of U+2000..
    // [ВГРС][{c1}{bad}{start_punctuation}{end_punctuation}{currency}°µ][ВГРС]
    constexpr uint32_t kMid = kC1 | kBad | kStartPunctuation | kEndPunctuation | kCurrency;
    if (one_of(c0, U"\u0412\u0413\u0420\u0421") && ((k1 & kMid) || one_of(c1, U"\u00B0\u00B5")) &&
        one_of(c2, U"\u0412\u0413\u0420\u0421"))
        return true;
    // ГўВЂВ.[A-Za-z ]
    if (t.substr(i, 5) == U"\u0413\u045E\u0412\u0402\u0412" && i + 5 < n && t[i + 5] != U'\n' &&
        (is_ascii_letter(ch(6)) || ch(6) == U' '))
        return true;
    if (c0 == 0xC3 && one_of(c1, U"\u00A0\u00A1")) return true;  // Ã[\xa0¡]
    // [a-z]\s?[ÃÂ][ ]  (the optional space taken or not)
    if (is_ascii_lower(c0) &&
        ((one_of(c1, U"\u00C3\u00C2") && c2 == U' ') || (is_space(c1) && one_of(c2, U"\u00C3\u00C2") && ch(3) == U' ')))
        return true;
    if (i == 0 && one_of(c0, U"\u00C3\u00C2") && c1 == U' ') return true;  // ^[ÃÂ][ ]
    // [a-z.,?!{end_punctuation}] Â [ {start_punctuation}{end_punctuation}]
    if ((is_ascii_lower(c0) || one_of(c0, U".,?!") || (k0 & kEndPunctuation)) && c1 == 0xC2 &&
        (c2 == U' ' || (k2 & (kStartPunctuation | kEndPunctuation))))
        return true;
    // Windows-1253: β€[™\xa0Ά\xad®°], [ΒΓΞΟ][{c1}{bad}{start_punctuation}{end_punctuation}{currency}°][ΒΓΞΟ]
    if (c0 == 0x3B2 && c1 == 0x20AC && one_of(c2, U"\u2122\u00A0\u0386\u00AD\u00AE\u00B0")) return true;
    if (one_of(c0, U"\u0392\u0393\u039E\u039F") && ((k1 & kMid) || c1 == 0xB0) &&
        one_of(c2, U"\u0392\u0393\u039E\u039F"))
        return true;
    return c0 == 0x101 && c1 == 0x20AC;  // ā€: Windows-1257 of U+2000.. (also [lower_accented][currency])
}

std::vector<uint32_t> classes_of_text(std::u32string_view t) {
    std::vector<uint32_t> cls(t.size());
    for (size_t i = 0; i < t.size(); ++i) cls[i] = classes_of(t[i]);
    return cls;
}

bool is_bad(std::u32string_view t) {
    const std::vector<uint32_t> cls = classes_of_text(t);
    for (size_t i = 0; i < t.size(); ++i) {
        if (bad_at(t, cls.data(), i)) return true;
    }
    return false;
}

// ---- Codecs ------------------------------------------------------------------------------------------------------

const Charmap& charmap(std::string_view name) {
    const auto* it =
        std::find_if(std::begin(kCharmaps), std::end(kCharmaps), [&](const Charmap& m) { return m.name == name; });
    return *it;
}

// text.encode(codec), or nothing where a character is not in it (ftfy's possible_encoding() is false). The tables
// are one-to-one and pass ASCII but byte 0x1A through (the generator checks), which sloppy codecs map to U+FFFD.
std::optional<Bytes> encode_charmap(std::u32string_view t, const Charmap& m) {
    Bytes out;
    out.reserve(t.size());
    for (char32_t c : t) {
        if (c < 0x80 && c != 0x1A) {
            out.push_back(static_cast<char>(c));
            continue;
        }
        const auto* it = std::find(std::begin(m.to_unicode), std::end(m.to_unicode), c);
        if (it == std::end(m.to_unicode)) return std::nullopt;
        out.push_back(static_cast<char>(it - std::begin(m.to_unicode)));
    }
    return out;
}

bool is_cont(uint8_t b) { return b >= 0x80 && b <= 0xBF; }

// bytes.decode("utf-8-variants") of ftfy.bad_codecs, or nothing where it raises. It is Python's strict UTF-8 (no
// overlong forms, no surrogates, nothing above U+10FFFF) plus two sequences: CESU-8, a surrogate pair written as
// two 3-byte sequences (ED A0..AF xx ED B0..BF xx), and Java's C0 80 for U+0000. ftfy decodes with plain UTF-8
// unless a byte ED or C0 is present; without those the two are the same, so this serves for both.
// Its regexes end their sequences with `([\x80-\xbf]|$)`, and Python's $ also matches before a final "\n": so
// C0 "\n" at the very end reads as U+0000, and a CESU-8 pair whose last byte is that final "\n" as a code point.
std::optional<Text> decode_utf8_variants(const Bytes& b) {
    Text out;
    const size_t n = b.size();
    const auto at = [&](size_t i) -> uint8_t { return i < n ? byte(b, i) : 0; };
    for (size_t i = 0; i < n;) {
        const uint8_t b0 = byte(b, i);
        if (b0 < 0x80) {
            out.push_back(b0);
            ++i;
            continue;
        }
        if (b0 == 0xC0 && i + 1 < n && (at(i + 1) == 0x80 || (i + 2 == n && at(i + 1) == '\n'))) {
            out.push_back(0);
            i += 2;
            continue;
        }
        if (b0 == 0xED && i + 6 <= n && at(i + 1) >= 0xA0 && at(i + 1) <= 0xAF && is_cont(at(i + 2)) &&
            at(i + 3) == 0xED && at(i + 4) >= 0xB0 && at(i + 4) <= 0xBF &&
            (is_cont(at(i + 5)) || (i + 6 == n && at(i + 5) == '\n'))) {
            out.push_back(0x10000 + ((at(i + 1) & 0x0Fu) << 16) + ((at(i + 2) & 0x3Fu) << 10) +
                          ((at(i + 4) & 0x0Fu) << 6) + (at(i + 5) & 0x3Fu));
            i += 6;
            continue;
        }
        // Strict UTF-8: the lead byte fixes the length and the range of the second byte.
        int len = 0;
        uint8_t lo = 0x80, hi = 0xBF;
        if (b0 >= 0xC2 && b0 <= 0xDF) {
            len = 2;
        } else if (b0 >= 0xE0 && b0 <= 0xEF) {
            len = 3;
            if (b0 == 0xE0) lo = 0xA0;
            if (b0 == 0xED) hi = 0x9F;
        } else if (b0 >= 0xF0 && b0 <= 0xF4) {
            len = 4;
            if (b0 == 0xF0) lo = 0x90;
            if (b0 == 0xF4) hi = 0x8F;
        } else {
            return std::nullopt;
        }
        if (i + static_cast<size_t>(len) > n || at(i + 1) < lo || at(i + 1) > hi) return std::nullopt;
        char32_t c = b0 & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
        for (int j = 1; j < len; ++j) {
            const uint8_t x = at(i + static_cast<size_t>(j));
            if (!is_cont(x)) return std::nullopt;
            c = (c << 6) | (x & 0x3Fu);
        }
        out.push_back(c);
        i += static_cast<size_t>(len);
    }
    return out;
}

// ---- The byte-level fixes of ftfy.fixes, used between encoding and decoding ---------------------------------------

bool starts_with_at(const Bytes& b, size_t i, std::string_view s) { return b.compare(i, s.size(), s) == 0; }

// [\x80-\x84\x86-\x9f\xa1-\xbf]: a continuation byte, but not one that a space or "..." may have replaced.
bool is_cont_not_85_a0(uint8_t b) { return is_cont(b) && b != 0x85 && b != 0xA0; }

// ftfy.chardata.ALTERED_UTF8_RE: the length of its match at i (its alternatives in order), or 0. UTF-8 sequences
// whose byte A0 became a space.
size_t altered_utf8_at(const Bytes& b, size_t i) {
    const size_t n = b.size();
    const auto at = [&](size_t d) -> int { return i + d < n ? byte(b, i + d) : -1; };
    const int b0 = at(0);
    const auto cont = [&](size_t d) { return at(d) >= 0 && is_cont(static_cast<uint8_t>(at(d))); };
    const auto cont_strict = [&](size_t d) { return at(d) >= 0 && is_cont_not_85_a0(static_cast<uint8_t>(at(d))); };
    if ((b0 == 0xC2 || b0 == 0xC3 || b0 == 0xC5 || b0 == 0xCE || b0 == 0xD0 || b0 == 0xD9) && at(1) == ' ') return 2;
    if ((b0 == 0xE2 || b0 == 0xE3) && at(1) == ' ' && cont_strict(2)) return 3;
    if (b0 >= 0xE0 && b0 <= 0xE3 && cont_strict(1) && at(2) == ' ') return 3;
    if (b0 == 0xF0 && at(1) == ' ' && cont(2) && cont(3)) return 4;
    if (b0 == 0xF0 && cont(1) && at(2) == ' ' && cont(3)) return 4;
    if (b0 == 0xF0 && cont(1) && cont(2) && at(3) == ' ') return 4;
    return 0;
}

bool has_altered_utf8(const Bytes& b) {
    for (size_t i = 0; i < b.size(); ++i) {
        if (altered_utf8_at(b, i)) return true;
    }
    return false;
}

// ftfy.fixes.restore_byte_a0: "\xc3 " becomes "\xc3\xa0 " (à before a word: A_GRAVE_WORD_RE, not before a space or
// Portuguese "quele", "quela", "quilo", "s "), then the spaces inside ALTERED_UTF8_RE's matches become A0.
Bytes restore_byte_a0(const Bytes& in) {
    Bytes b;
    for (size_t i = 0; i < in.size();) {
        if (byte(in, i) == 0xC3 && starts_with_at(in, i + 1, " ")) {
            const size_t j = i + 2;
            const bool excluded = starts_with_at(in, j, " ") || starts_with_at(in, j, "quele") ||
                                  starts_with_at(in, j, "quela") || starts_with_at(in, j, "quilo") ||
                                  starts_with_at(in, j, "s ");
            if (!excluded) {
                b += "\xC3\xA0 ";
                i = j;
                continue;
            }
        }
        b.push_back(in[i++]);
    }
    Bytes out;
    for (size_t i = 0; i < b.size();) {
        if (const size_t len = altered_utf8_at(b, i)) {
            for (size_t j = i; j < i + len; ++j) out.push_back(b[j] == ' ' ? '\xA0' : b[j]);
            i += len;
        } else {
            out.push_back(b[i++]);
        }
    }
    return out;
}

// ftfy.chardata.LOSSY_UTF8_RE: the length of its match at i (its alternatives in order), or 0. UTF-8 sequences of
// which some bytes were lost: byte 1A (what the sloppy codecs encode U+FFFD to) or, once, '?'.
size_t lossy_utf8_at(const Bytes& b, size_t i) {
    const size_t n = b.size();
    const auto at = [&](size_t d) -> int { return i + d < n ? byte(b, i + d) : -1; };
    const auto in = [&](size_t d, int lo, int hi) { return at(d) >= lo && at(d) <= hi; };
    const auto lost = [&](size_t d) { return at(d) == 0x1A || at(d) == '?'; };               // [\x1a?]
    const auto lost_or_cont = [&](size_t d) { return at(d) == 0x1A || in(d, 0x80, 0xBF); };  // [\x1a\x80-\xbf]
    const auto any = [&](size_t d) { return lost(d) || in(d, 0x80, 0xBF); };                 // [\x1a?\x80-\xbf]
    if (in(0, 0xC2, 0xDF) && at(1) == 0x1A) return 2;
    if (in(0, 0xC2, 0xC3) && at(1) == '?') return 2;
    if (at(0) == 0xED && in(1, 0xA0, 0xAF) && lost(2) && at(3) == 0xED && in(4, 0xB0, 0xBF) && any(5)) return 6;
    if (at(0) == 0xED && in(1, 0xA0, 0xAF) && any(2) && at(3) == 0xED && in(4, 0xB0, 0xBF) && lost(5)) return 6;
    if (in(0, 0xE0, 0xEF) && lost(1) && lost_or_cont(2)) return 3;
    if (in(0, 0xE0, 0xEF) && lost_or_cont(1) && lost(2)) return 3;
    if (in(0, 0xF0, 0xF4) && lost(1) && lost_or_cont(2) && lost_or_cont(3)) return 4;
    if (in(0, 0xF0, 0xF4) && lost_or_cont(1) && lost(2) && lost_or_cont(3)) return 4;
    if (in(0, 0xF0, 0xF4) && lost_or_cont(1) && lost_or_cont(2) && lost(3)) return 4;
    return at(0) == 0x1A ? 1 : 0;
}

// ftfy.fixes.replace_lossy_sequences: each match of LOSSY_UTF8_RE becomes the UTF-8 of U+FFFD.
Bytes replace_lossy_sequences(const Bytes& b) {
    Bytes out;
    for (size_t i = 0; i < b.size();) {
        if (const size_t len = lossy_utf8_at(b, i)) {
            out += "\xEF\xBF\xBD";
            i += len;
        } else {
            out.push_back(b[i++]);
        }
    }
    return out;
}

// ---- fix_encoding ------------------------------------------------------------------------------------------------

// ftfy loops until nothing changes; here every call of one_step() spends one unit of a budget per top-level call,
// so that nested repairs of embedded runs stay bounded on hostile text. Real text uses a handful.
struct Budget {
    int steps_left = 512;
};

Text fix_encoding(std::u32string_view text, Budget& budget);

// ftfy.chardata.UTF8_DETECTOR_RE at i: the length of its match, or 0. Not after a strict continuation character
// (its lookbehind), then one or more of: a first-of-2 character and a continuation, a first-of-3 and two, a
// first-of-4 and three (the three first-of classes are disjoint, so the alternatives' order does not matter).
size_t utf8_detector_at(const uint32_t* cls, size_t n, size_t i) {
    if (i > 0 && (cls[i - 1] & kUtf8ContinuationStrict)) return 0;
    const auto cont = [&](size_t from, size_t count) {
        for (size_t j = from; j < from + count; ++j) {
            if (j >= n || !(cls[j] & kUtf8Continuation)) return false;
        }
        return true;
    };
    size_t pos = i;
    while (pos < n) {
        const size_t tail = (cls[pos] & kUtf8FirstOf2)   ? 1
                            : (cls[pos] & kUtf8FirstOf3) ? 2
                            : (cls[pos] & kUtf8FirstOf4) ? 3
                                                         : 0;
        if (tail == 0 || !cont(pos + 1, tail)) break;
        pos += 1 + tail;
    }
    return pos - i;
}

// ftfy.fixes.decode_inconsistent_utf8: each run the detector finds, shorter than the text and bad by the
// heuristic, is fixed on its own with fix_encoding.
Text decode_inconsistent_utf8(std::u32string_view t, const std::vector<uint32_t>& cls, Budget& budget) {
    Text out;
    for (size_t i = 0; i < t.size();) {
        const size_t len = utf8_detector_at(cls.data(), t.size(), i);
        if (len == 0) {
            out.push_back(t[i++]);
            continue;
        }
        const std::u32string_view run = t.substr(i, len);
        out += len < t.size() && is_bad(run) ? fix_encoding(run, budget) : Text(run);
        i += len;
    }
    return out;
}

// ftfy's _fix_encoding_one_step_and_explain.
Text one_step(std::u32string_view t, Budget& budget) {
    if (t.empty() || budget.steps_left <= 0) return Text(t);
    --budget.steps_left;
    if (std::all_of(t.begin(), t.end(), [](char32_t c) { return c < 0x80; }) || !is_bad(t)) return Text(t);
    // UTF-8 read as a single-byte codec: the first codec that encodes the text and whose bytes then decode.
    for (const Charmap& m : kCharmaps) {
        std::optional<Bytes> bytes = encode_charmap(t, m);
        if (!bytes) continue;
        if (m.name != "macroman" && has_altered_utf8(*bytes)) *bytes = restore_byte_a0(*bytes);
        if (m.name.starts_with("sloppy")) *bytes = replace_lossy_sequences(*bytes);
        if (std::optional<Text> fixed = decode_utf8_variants(*bytes)) return std::move(*fixed);
    }
    const std::vector<uint32_t> cls = classes_of_text(t);
    bool detected = false;
    for (size_t i = 0; i < t.size() && !detected; ++i) detected = utf8_detector_at(cls.data(), t.size(), i) > 0;
    if (detected) {
        Text fixed = decode_inconsistent_utf8(t, cls, budget);
        if (fixed != t) return fixed;
    }
    // ftfy then reads Latin-1 text as Windows-1252 (where every C1 control present is defined there), else calls
    // fix_c1_controls where a C1 control is present: both give the C1 controls' sloppy-windows-1252 characters.
    Text fixed(t);
    const Charmap& cp1252 = charmap("sloppy-windows-1252");
    for (char32_t& c : fixed) {
        if (c >= 0x80 && c <= 0x9F) c = cp1252.to_unicode[c];
    }
    return fixed;
}

Text fix_encoding(std::u32string_view text, Budget& budget) {
    Text t(text);
    for (int pass = 0; pass < 16; ++pass) {
        Text next = one_step(t, budget);
        if (next == t) break;
        t = std::move(next);
    }
    return t;
}

}  // namespace

std::u32string fix_mojibake(std::u32string_view text) {
    Budget budget;
    return fix_encoding(text, budget);
}

bool looks_like_mojibake(std::u32string_view text) { return is_bad(text); }

}  // namespace lr
