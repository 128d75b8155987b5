// The tokenizer against Wan's tokenizer path (tests/data/text/tokenizer_cases.json, made by make_fixtures.py from
// wan/modules/tokenizers.py over transformers' AutoTokenizer), and its refusals.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "runtime/core/check.h"
#include "runtime/io/json.h"
#include "runtime/text/mojibake.h"
#include "runtime/text/text_clean.h"
#include "runtime/text/tokenizer.h"

namespace lr {
namespace {

const std::string kDir = std::string(LONGROLL_SOURCE_DIR) + "/tests/data/text/";
const std::string kModel = kDir + "spiece.model";

json::Value read_cases() {
    std::ifstream f(kDir + "tokenizer_cases.json");
    std::stringstream ss;
    ss << f.rdbuf();
    return json::parse(ss.str(), "tokenizer_cases.json");
}

TEST(Tokenizer, IdsEqualWansTokenizerPath) {
    const json::Value doc = read_cases();
    const int64_t vocab = doc.find("encoder_vocab")->as_int64();
    const Umt5Tokenizer tok = Umt5Tokenizer::open(kModel, vocab, "umt5_tiny");
    EXPECT_EQ(tok.piece_count(), doc.find("pieces")->as_int64());
    int compared = 0, truncated = 0;
    for (const json::Value& c : doc.find("cases")->as_array()) {
        const std::string& text = c.find("text")->as_string();
        const int64_t max_len = c.find("max_len")->as_int64();
        std::vector<int32_t> expected;
        for (const json::Value& id : c.find("ids")->as_array()) expected.push_back(static_cast<int32_t>(id.as_int64()));
        EXPECT_EQ(clean_prompt_text(text), c.find("cleaned")->as_string()) << json::quote(text);
        const std::string& cleaned = c.find("cleaned")->as_string();
        if (cleaned.empty()) {  // Wan would encode just </s>; the engine refuses an empty prompt
            EXPECT_THROW(tok.encode(text, max_len, "--prompt"), InputError);
            continue;
        }
        const TokenizedPrompt got = tok.encode(text, max_len, "--prompt");
        EXPECT_EQ(got.ids, expected) << json::quote(text) << " max_len " << max_len;
        if (got.dropped > 0) {
            ++truncated;
            EXPECT_EQ(static_cast<int64_t>(got.ids.size()), max_len);
            EXPECT_EQ(got.dropped + max_len - 1,
                      static_cast<int64_t>(tok.encode(text, 100000, "--prompt").ids.size()) - 1);
        }
        ++compared;
    }
    EXPECT_GE(compared, 30);
    EXPECT_GE(truncated, 2);  // the long prompt at 512 and several at 16
}

TEST(Tokenizer, RefusesEmptyAndNonUtf8Prompts) {
    const json::Value doc = read_cases();
    const Umt5Tokenizer tok = Umt5Tokenizer::open(kModel, doc.find("encoder_vocab")->as_int64(), "enc");
    for (const std::string& bad : {std::string(), std::string(" \t\n\u3000"), std::string("\x1b[0m")}) {
        try {
            tok.encode(bad, 512, "--prompt");
            ADD_FAILURE() << "accepted " << json::quote(bad);
        } catch (const InputError& e) {
            EXPECT_NE(std::string(e.what()).find("--prompt: the prompt is empty"), std::string::npos) << e.what();
        }
    }
    for (const std::string& bad : {std::string("caf\xe9"), std::string("\xed\xa0\x80"),
                                   std::string("a\xc0\xaf"
                                               "b")}) {
        try {
            tok.encode(bad, 512, "jobs.txt:3");
            ADD_FAILURE() << "accepted non-UTF-8";
        } catch (const InputError& e) {
            EXPECT_NE(std::string(e.what()).find("jobs.txt:3: the prompt is not valid UTF-8"), std::string::npos);
        }
    }
}

TEST(Tokenizer, RefusesAnotherModelsVocabularyAndOtherFiles) {
    const json::Value doc = read_cases();
    const int64_t pieces = doc.find("pieces")->as_int64();
    EXPECT_NO_THROW(Umt5Tokenizer::open(kModel, pieces, "enc"));  // no sentinel rows: still this model
    for (int64_t rows : {pieces - 1, pieces + Umt5Tokenizer::kMaxExtraIds + 1, int64_t{256384}}) {
        try {
            Umt5Tokenizer::open(kModel, rows, "enc.safetensors");
            ADD_FAILURE() << rows << " rows accepted";
        } catch (const InputError& e) {
            EXPECT_NE(std::string(e.what()).find("not the same model's"), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find("enc.safetensors"), std::string::npos);
        }
    }
    try {
        Umt5Tokenizer::open(kDir + "umt5_tiny_hf.safetensors", 196, "enc");
        ADD_FAILURE() << "a safetensors file accepted as a tokenizer";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("not a sentencepiece model"), std::string::npos) << e.what();
    }
    EXPECT_THROW(Umt5Tokenizer::open(kDir + "no_such.model", 196, "enc"), InputError);
}

TEST(TextClean, HtmlReferencesAsPythonsUnescape) {
    // Values of Python's html.unescape (twice, as Wan applies it) on the same inputs.
    EXPECT_EQ(clean_prompt_text("&amp;amp;lt;"), "<");
    EXPECT_EQ(clean_prompt_text("<p>&#0;&#x110000;&#1;&#128;&#65&#x41;"), "<p>\uFFFD\uFFFD\u20ACAA");
    EXPECT_EQ(clean_prompt_text("&ampx &nbspy &apos &unknown;"), "&x y &apos &unknown;");
    EXPECT_EQ(clean_prompt_text("a\u00A0\u2003b"), "a b");
}

json::Value read_clean_cases() {
    std::ifstream f(kDir + "clean_cases.json");
    EXPECT_TRUE(f) << kDir << "clean_cases.json is missing (tests/data/text/make_clean_fixtures.py)";
    std::stringstream ss;
    ss << f.rdbuf();
    return json::parse(ss.str(), "clean_cases.json");
}

// tests/data/text/clean_cases.json (make_clean_fixtures.py): html.unescape, unicodedata.normalize("NFC") and Wan's
// whole cleaning with ftfy.fix_text itself, on a corpus of every HTML5 entity, every canonically decomposable
// character, Hangul, random strings of combining marks, and mojibake of many scripts and codecs (with text that only
// looks like it).
TEST(TextClean, MatchesPythonAndFtfyOnTheCorpus) {
    const json::Value doc = read_clean_cases();
    int cases = 0, mojibake = 0;
    for (const json::Value& c : doc.find("cases")->as_array()) {
        const std::string& text = c.find("text")->as_string();
        EXPECT_EQ(html_unescape(text), c.find("html_unescape")->as_string()) << json::quote(text);
        EXPECT_EQ(unicode_nfc(text), c.find("nfc")->as_string()) << json::quote(text);
        const std::string got = clean_prompt_text(text);
        EXPECT_EQ(got, c.find("cleaned")->as_string()) << json::quote(text);
        EXPECT_TRUE(json::is_valid_utf8(got)) << json::quote(text);
        ++cases;
        if (c.find("mojibake")->as_bool()) ++mojibake;
    }
    EXPECT_GT(cases, 2000);
    EXPECT_GT(mojibake, 800);
    std::printf(
        "[ measured ] %d texts (%d repaired by ftfy's fix_encoding): html.unescape, NFC and the cleaning equal "
        "Python's and ftfy's\n",
        cases, mojibake);
}

std::u32string utf32(std::string_view utf8) {
    std::u32string out;
    for (size_t i = 0; i < utf8.size();) {
        const auto b = static_cast<unsigned char>(utf8[i]);
        const size_t n = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
        char32_t c = n == 1 ? b : n == 2 ? (b & 0x1F) : n == 3 ? (b & 0x0F) : (b & 0x07);
        for (size_t k = 1; k < n; ++k) c = (c << 6) | (static_cast<unsigned char>(utf8[i + k]) & 0x3F);
        out.push_back(c);
        i += n;
    }
    return out;
}

// ftfy.badness.is_bad on seeded random strings of its heuristic's characters (clean_cases.json "badness").
TEST(TextClean, MojibakeHeuristicAsFtfys) {
    const json::Value doc = read_clean_cases();
    int strings = 0, bad = 0;
    for (const json::Value& b : doc.find("badness")->as_array()) {
        const std::string& text = b.as_array()[0].as_string();
        const bool expected = b.as_array()[1].as_bool();
        EXPECT_EQ(looks_like_mojibake(utf32(text)), expected) << json::quote(text);
        ++strings;
        bad += expected;
    }
    EXPECT_GT(strings, 1000);
    EXPECT_GT(bad, 300);
    std::printf("[ measured ] %d strings (%d bad): the heuristic equals ftfy.badness.is_bad\n", strings, bad);
}

// Hostile text: every byte sequence the repair may produce is checked as UTF-8, and the repair stays bounded.
TEST(TextClean, MojibakeRepairKeepsUtf8AndEnds) {
    EXPECT_EQ(clean_prompt_text("caf\u00C3\u00A9"), "caf\u00E9");
    std::string hostile;
    for (int i = 0; i < 2000; ++i) hostile += i % 3 ? "\u00C3\u00A9" : "\u00E2\u20AC\u0153\u00C3";
    EXPECT_TRUE(json::is_valid_utf8(clean_prompt_text(hostile)));
    for (char32_t lead : {U'\u00C0', U'\u00ED', U'\u00F4', U'\u00F5', U'\u00E0'}) {
        const std::u32string t = std::u32string(U"caf\u00C3\u00A9 ") + lead + U"\u00A0\u0080\u00BF\u00BF";
        for (char32_t c : fix_mojibake(t)) EXPECT_FALSE(c >= 0xD800 && c <= 0xDFFF);
    }
}

}  // namespace
}  // namespace lr
