// The strict JSON parser behind safetensors headers and index files.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <string>

#include "runtime/core/check.h"
#include "runtime/io/json.h"

namespace lr::json {
namespace {

Value parse_ok(std::string_view text) { return parse(text, "test.json"); }

// The InputError message of parsing `text`, or "" when it parses.
std::string parse_error(std::string_view text) {
    try {
        parse(text, "test.json");
    } catch (const InputError& e) {
        return e.what();
    }
    return "";
}

#define EXPECT_PARSE_ERROR(text, substring)                                                                 \
    do {                                                                                                    \
        const std::string msg_ = parse_error(text);                                                         \
        EXPECT_NE(msg_.find(substring), std::string::npos) << "input: " << (text) << "\nmessage: " << msg_; \
    } while (0)

TEST(Json, Literals) {
    EXPECT_TRUE(parse_ok("null").is_null());
    EXPECT_TRUE(parse_ok("true").as_bool());
    EXPECT_FALSE(parse_ok(" false ").as_bool());
    EXPECT_PARSE_ERROR("tru", "invalid literal");
    EXPECT_PARSE_ERROR("nulll", "trailing characters");
    EXPECT_PARSE_ERROR("True", "unexpected 'T'");
    EXPECT_PARSE_ERROR("NaN", "unexpected 'N'");
    EXPECT_PARSE_ERROR("Infinity", "unexpected 'I'");
}

TEST(Json, ErrorMessageNamesWhereAndByte) {
    const std::string msg = parse_error("{\"a\": 1,, }");
    EXPECT_EQ(msg.rfind("test.json: invalid JSON at byte 8: ", 0), 0u) << msg;
    EXPECT_PARSE_ERROR("", "byte 0: unexpected end of input");
    EXPECT_PARSE_ERROR("   \n", "byte 4: unexpected end of input");
}

TEST(Json, TrailingGarbageRejected) {
    EXPECT_PARSE_ERROR("{} x", "trailing characters");
    EXPECT_PARSE_ERROR("[1] [2]", "trailing characters");
    EXPECT_PARSE_ERROR("1 2", "trailing characters");
    EXPECT_PARSE_ERROR(std::string_view("{}\0", 3), "trailing characters after the JSON value (byte 0x00)");
    EXPECT_PARSE_ERROR("\xef\xbb\xbf{}", "unexpected byte 0xef");  // a UTF-8 BOM is not JSON
    EXPECT_TRUE(parse_ok(" \t\r\n{} \t\r\n").is_object());
    EXPECT_PARSE_ERROR("\v{}", "unexpected byte 0x0b");  // only RFC 8259 whitespace
}

TEST(Json, StringEscapes) {
    EXPECT_EQ(parse_ok(R"("a\"b\\c\/d\be\ff\ng\rh\ti")").as_string(), "a\"b\\c/d\be\ff\ng\rh\ti");
    EXPECT_EQ(parse_ok(R"("\u0041\u00e9\u20AC")").as_string(), "A\xc3\xa9\xe2\x82\xac");
    EXPECT_EQ(parse_ok(R"("\u0000x")").as_string(), std::string("\0x", 2));
    EXPECT_PARSE_ERROR(R"("\x41")", "invalid escape sequence: backslash followed by 'x'");
    EXPECT_PARSE_ERROR(R"("\u12")", "truncated \\u escape");
    EXPECT_PARSE_ERROR(R"("\u12g4")", "invalid hex digit");
    EXPECT_PARSE_ERROR("\"abc", "unterminated string");
    EXPECT_PARSE_ERROR("\"abc\\", "unterminated string");
    EXPECT_PARSE_ERROR("\"a\nb\"", "unescaped control character");
    EXPECT_PARSE_ERROR("\"a\x1f\"", "unescaped control character");
    EXPECT_EQ(parse_ok("\"a\x7f\"").as_string(), "a\x7f");  // DEL is not a control character in JSON
}

TEST(Json, SurrogatePairs) {
    // U+1F600 = F0 9F 98 80; U+10FFFF = F4 8F BF BF.
    EXPECT_EQ(parse_ok(R"("\ud83d\ude00")").as_string(), "\xf0\x9f\x98\x80");
    EXPECT_EQ(parse_ok(R"("\uDBFF\uDFFF")").as_string(), "\xf4\x8f\xbf\xbf");
    EXPECT_PARSE_ERROR(R"("\ud83d")", "high surrogate not followed by a low surrogate");
    EXPECT_PARSE_ERROR(R"("\ud83dx")", "high surrogate not followed by a low surrogate");
    EXPECT_PARSE_ERROR(R"("\ud83d\u0041")", "high surrogate not followed by a low surrogate");
    EXPECT_PARSE_ERROR(R"("\ud83d\ud83d")", "high surrogate not followed by a low surrogate");
    EXPECT_PARSE_ERROR(R"("\ude00")", "lone low surrogate");
}

TEST(Json, RawUtf8Validated) {
    EXPECT_EQ(parse_ok("\"\xc3\xa9\xf0\x9f\x98\x80\"").as_string(), "\xc3\xa9\xf0\x9f\x98\x80");
    EXPECT_PARSE_ERROR("\"\xff\"", "invalid UTF-8");
    EXPECT_PARSE_ERROR("\"\xc3\"", "invalid UTF-8");              // truncated sequence
    EXPECT_PARSE_ERROR("\"\xc0\xaf\"", "invalid UTF-8");          // overlong '/'
    EXPECT_PARSE_ERROR("\"\xe0\x80\xaf\"", "invalid UTF-8");      // overlong, 3 bytes
    EXPECT_PARSE_ERROR("\"\xed\xa0\x80\"", "invalid UTF-8");      // UTF-8 encoded surrogate D800
    EXPECT_PARSE_ERROR("\"\xf4\x90\x80\x80\"", "invalid UTF-8");  // above U+10FFFF
    EXPECT_PARSE_ERROR("\"\x80\"", "invalid UTF-8");              // lone continuation byte
    EXPECT_TRUE(is_valid_utf8("plain \xe2\x82\xac"));
    EXPECT_FALSE(is_valid_utf8("\xe2\x82"));
}

TEST(Json, Numbers) {
    EXPECT_EQ(parse_ok("0").as_number(), 0.0);
    EXPECT_EQ(parse_ok("-0").as_int64(), 0);
    EXPECT_EQ(parse_ok("-0").as_uint64(), 0u);
    EXPECT_EQ(parse_ok("-1.5e-3").as_number(), -1.5e-3);
    EXPECT_EQ(parse_ok("1E+5").as_number(), 1e5);
    EXPECT_EQ(parse_ok("2.5").as_number(), 2.5);
    EXPECT_EQ(parse_ok("1e5").number_text(), "1e5");
    EXPECT_PARSE_ERROR("01", "leading zeros");
    EXPECT_PARSE_ERROR("-01", "leading zeros");
    EXPECT_PARSE_ERROR("1.", "expected a digit after the decimal point");
    EXPECT_PARSE_ERROR(".5", "unexpected '.'");
    EXPECT_PARSE_ERROR("+1", "unexpected '+'");
    EXPECT_PARSE_ERROR("-", "expected a digit");
    EXPECT_PARSE_ERROR("1e", "expected a digit in the exponent");
    EXPECT_PARSE_ERROR("1e+", "expected a digit in the exponent");
    EXPECT_PARSE_ERROR("0x10", "trailing characters");
    // Grammatical but beyond a double: parses (the text is kept), as_number refuses.
    const Value huge = parse_ok("1e400");
    EXPECT_THROW(huge.as_number(), InputError);
}

TEST(Json, IntegersAreExact) {
    // 2^53 + 1 is not representable as a double; the token keeps it exact.
    EXPECT_EQ(parse_ok("9007199254740993").as_int64(), 9007199254740993LL);
    EXPECT_EQ(parse_ok("9223372036854775807").as_int64(), std::numeric_limits<int64_t>::max());
    EXPECT_EQ(parse_ok("-9223372036854775808").as_int64(), std::numeric_limits<int64_t>::min());
    EXPECT_EQ(parse_ok("18446744073709551615").as_uint64(), std::numeric_limits<uint64_t>::max());
    EXPECT_FALSE(parse_ok("9223372036854775808").get_int64().has_value());
    EXPECT_EQ(parse_ok("9223372036854775808").as_uint64(), uint64_t{1} << 63);
    EXPECT_FALSE(parse_ok("18446744073709551616").get_uint64().has_value());
    EXPECT_THROW(parse_ok("18446744073709551616").as_uint64(), InputError);
    EXPECT_FALSE(parse_ok("-1").get_uint64().has_value());
    EXPECT_TRUE(parse_ok("-12").is_integer());
    EXPECT_FALSE(parse_ok("1.0").is_integer());
    EXPECT_FALSE(parse_ok("1e3").is_integer());
    EXPECT_FALSE(parse_ok("\"1\"").is_integer());
    EXPECT_THROW(parse_ok("1.0").as_int64(), InputError);

    // Random 64-bit values survive text -> parse exactly.
    std::mt19937_64 rng(1234);
    for (int i = 0; i < 200; ++i) {
        const uint64_t u = rng();
        const auto s = static_cast<int64_t>(rng());
        EXPECT_EQ(parse_ok(std::to_string(u)).as_uint64(), u);
        EXPECT_EQ(parse_ok(std::to_string(s)).as_int64(), s);
    }
}

TEST(Json, ObjectsKeepDocumentOrder) {
    const Value v = parse_ok(R"({"z": 1, "a": [true, null, "s"], "m": {"k": {}}})");
    ASSERT_TRUE(v.is_object());
    const auto& o = v.as_object();
    ASSERT_EQ(o.size(), 3u);
    EXPECT_EQ(o[0].first, "z");
    EXPECT_EQ(o[1].first, "a");
    EXPECT_EQ(o[2].first, "m");
    ASSERT_NE(v.find("a"), nullptr);
    const auto& a = v.find("a")->as_array();
    ASSERT_EQ(a.size(), 3u);
    EXPECT_TRUE(a[0].as_bool());
    EXPECT_TRUE(a[1].is_null());
    EXPECT_EQ(a[2].as_string(), "s");
    EXPECT_TRUE(v.find("m")->find("k")->as_object().empty());
    EXPECT_EQ(v.find("missing"), nullptr);
    EXPECT_EQ(a[0].find("a"), nullptr);  // not an object
    EXPECT_TRUE(parse_ok("[]").as_array().empty());
    EXPECT_TRUE(parse_ok("{ }").as_object().empty());
}

TEST(Json, WrongTypeAccessThrows) {
    const Value v = parse_ok(R"({"n": 1, "s": "x"})");
    EXPECT_THROW(v.find("n")->as_string(), InputError);
    EXPECT_THROW(v.find("s")->as_number(), InputError);
    EXPECT_THROW(v.as_array(), InputError);
    EXPECT_THROW(v.find("s")->as_bool(), InputError);
    try {
        v.find("s")->as_int64();
        FAIL() << "as_int64 of a string did not throw";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("found a string"), std::string::npos) << e.what();
    }
}

TEST(Json, StructuralErrors) {
    EXPECT_PARSE_ERROR("[1,]", "unexpected ']', expected a value");
    EXPECT_PARSE_ERROR("[1 2]", "expected ',' or ']'");
    EXPECT_PARSE_ERROR("{\"a\" 1}", "expected ':'");
    EXPECT_PARSE_ERROR("{\"a\":1,}", "expected a string key, found '}'");
    EXPECT_PARSE_ERROR("{a:1}", "expected a string key, found 'a'");
    EXPECT_PARSE_ERROR("{\"a\":1", "unexpected end of input in object");
    EXPECT_PARSE_ERROR("[1", "unexpected end of input in array");
    EXPECT_PARSE_ERROR("{\"a\":}", "unexpected '}', expected a value");
}

TEST(Json, DuplicateKeysRejected) {
    EXPECT_PARSE_ERROR(R"({"a": 1, "b": 2, "a": 3})", "at byte 17: duplicate key \"a\"");
    // Nested objects: positions stay exact on both levels (a fuzzer-found bug had them out of step).
    EXPECT_PARSE_ERROR(R"({"o": {"k": 1, "k": 2}})", "at byte 15: duplicate key \"k\"");
    EXPECT_PARSE_ERROR(R"({"a": {"x": {}}, "b": 1, "a": 2})", "at byte 25: duplicate key \"a\"");
    EXPECT_PARSE_ERROR(R"({"a": {"x": {"y": 1}, "z": [{"q": 1}]}, "b": {"c": {}}, "d": 1, "b": 2})",
                       "at byte 64: duplicate key \"b\"");
    // Keys equal after unescaping are duplicates too.
    EXPECT_PARSE_ERROR(R"({"A": 1, "\u0041": 2})", "duplicate key \"A\"");
    // The same key in different objects is fine, and so are many distinct keys.
    EXPECT_TRUE(parse_ok(R"([{"a": 1}, {"a": 2}])").is_array());
    std::string big = "{";
    for (int i = 0; i < 5000; ++i) big += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":" + std::to_string(i);
    EXPECT_EQ(parse_ok(big + "}").as_object().size(), 5000u);
    EXPECT_PARSE_ERROR(big + ",\"k4321\":0}", "duplicate key \"k4321\"");
}

TEST(Json, DepthLimit) {
    auto nested = [](int depth) {
        return std::string(static_cast<size_t>(depth), '[') + std::string(static_cast<size_t>(depth), ']');
    };
    EXPECT_TRUE(parse_ok(nested(kMaxDepth)).is_array());
    EXPECT_PARSE_ERROR(nested(kMaxDepth + 1), "nesting deeper than 64 levels");
    EXPECT_PARSE_ERROR(nested(100000), "nesting deeper than 64 levels");  // no stack overflow
    std::string objects;
    for (int i = 0; i <= kMaxDepth; ++i) objects += "{\"a\":";
    EXPECT_PARSE_ERROR(objects + "1", "nesting deeper than 64 levels");
}

TEST(Json, ValueCountLimit) {
    std::string text = "[";
    text.reserve(2 * kMaxValues + 8);
    for (size_t i = 0; i < kMaxValues; ++i) text += i ? ",0" : "0";
    EXPECT_PARSE_ERROR(text + "]", "more than 4194304 values");  // the array itself is one value too
}

TEST(Json, QuoteRoundTrips) {
    EXPECT_EQ(quote("a\"b\\c\n\x01"), R"("a\"b\\c\n\u0001")");
    std::mt19937 rng(99);
    for (int i = 0; i < 500; ++i) {
        // Random ASCII including every control character, plus some fixed multi-byte UTF-8.
        std::string s;
        const int n = static_cast<int>(rng() % 40);
        for (int j = 0; j < n; ++j) s += static_cast<char>(rng() % 128);
        s += "\xc3\xa9\xf0\x9f\x98\x80";
        EXPECT_EQ(parse_ok(quote(s)).as_string(), s);
    }
    EXPECT_EQ(quote_for_message(std::string(500, 'x')).size(), 200u + 2 + 3);
    // Never cut inside a UTF-8 sequence.
    std::string e;
    for (int i = 0; i < 150; ++i) e += "\xc3\xa9";
    EXPECT_TRUE(is_valid_utf8(quote_for_message(e)));
}

}  // namespace
}  // namespace lr::json
