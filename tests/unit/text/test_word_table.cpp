// The default model's word-table text encoder (runtime/text/word_table.h): a prompt's context is the table rows of
// its words, in order, as tools/train/caption_embeds.py writes them; and every malformed table or prompt is
// refused by name.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "runtime/core/check.h"
#include "runtime/io/safetensors.h"
#include "runtime/text/word_table.h"
#include "tests/common/error_capture.h"

namespace lr {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kDim = 4;
const std::vector<std::string> kWords = {"a", "red", "square", "moves", "left"};

// Row i, column c of the table: a value that names both (so a wrong row or column shows).
float value(int64_t row, int64_t col) { return static_cast<float>(row) + 0.125f * static_cast<float>(col + 1); }

std::string write_table(const std::string& name, const std::vector<float>& rows, Shape shape, DType dtype,
                        const std::vector<std::pair<std::string, std::string>>& metadata) {
    const std::string path = (fs::temp_directory_path() / ("lr_word_table_" + name + ".safetensors")).string();
    HostTensor t(dtype, shape);
    if (dtype == DType::kF32) {
        for (size_t i = 0; i < rows.size() && static_cast<int64_t>(i) < t.view.numel(); ++i) t.as<float>()[i] = rows[i];
    }
    write_safetensors(path, {{"word_embeddings", t.view}}, metadata);
    return path;
}

std::vector<float> good_rows(int64_t n = static_cast<int64_t>(kWords.size())) {
    std::vector<float> r;
    for (int64_t i = 0; i < n; ++i) {
        for (int64_t c = 0; c < kDim; ++c) r.push_back(value(i, c));
    }
    return r;
}

const std::string kVocab = R"(["a", "red", "square", "moves", "left"])";

TEST(WordTable, ContextIsTheRowsOfTheWordsInOrder) {
    const std::string path = write_table("good", good_rows(), Shape{5, kDim}, DType::kF32,
                                         {{"vocab", kVocab}, {"grammar", "a COLOUR KIND moves DIRECTION"}});
    const WordTable t = WordTable::open(path, kDim);
    EXPECT_EQ(t.vocab(), kWords);
    // Case folded, any whitespace between words, repeated words repeat their row.
    const std::string prompt = "  A red\tSQUARE\nmoves left red ";
    const std::vector<int64_t> want = {0, 1, 2, 3, 4, 1};
    const HostTensor ctx = t.encode(prompt, 16, "--prompt");
    ASSERT_EQ(ctx.view.dtype, DType::kF32);
    ASSERT_EQ(ctx.view.shape.ndim, 2);
    ASSERT_EQ(ctx.view.shape[0], static_cast<int64_t>(want.size()));
    ASSERT_EQ(ctx.view.shape[1], kDim);
    for (size_t i = 0; i < want.size(); ++i) {
        for (int64_t c = 0; c < kDim; ++c) {
            EXPECT_EQ(ctx.as<float>()[static_cast<int64_t>(i) * kDim + c], value(want[i], c)) << "word " << i;
        }
    }
    // Exactly text_len words fit; one more is refused.
    EXPECT_EQ(t.encode("a red square", 3, "x").view.shape[0], 3);
    EXPECT_NE(test::input_error_of([&] { (void)t.encode("a red square moves", 3, "--prompt"); })
                  .find("4 words, but the model takes "
                        "at most model.text_len = 3"),
              std::string::npos);
}

TEST(WordTable, BadPromptsAreRefusedByName) {
    const std::string path =
        write_table("good2", good_rows(), Shape{5, kDim}, DType::kF32, {{"vocab", kVocab}, {"grammar", "G R A M"}});
    const WordTable t = WordTable::open(path, kDim);
    const std::string unknown =
        test::input_error_of([&] { (void)t.encode("a purple square eats", 16, "--switch-prompt 3:"); });
    EXPECT_NE(unknown.find("--switch-prompt 3:"), std::string::npos) << unknown;
    EXPECT_NE(unknown.find("\"purple\", \"eats\""), std::string::npos) << unknown;
    EXPECT_NE(unknown.find("it knows: a red square moves left"), std::string::npos) << unknown;
    EXPECT_NE(unknown.find("G R A M"), std::string::npos) << unknown;
    EXPECT_NE(test::input_error_of([&] { (void)t.encode(" \t\n", 16, "--prompt"); }).find("the prompt has no words"),
              std::string::npos);
}

TEST(WordTable, MalformedTablesAreRefusedNamingTheFile) {
    struct Case {
        std::string name, want;
        std::vector<float> rows;
        Shape shape;
        DType dtype;
        std::vector<std::pair<std::string, std::string>> meta;
    };
    std::vector<float> nan_rows = good_rows();
    nan_rows[2 * kDim + 1] = std::numeric_limits<float>::quiet_NaN();
    const std::vector<Case> cases = {
        {"bf16", "has dtype BF16, expected F32", {}, Shape{5, kDim}, DType::kBF16, {{"vocab", kVocab}}},
        {"width", "expected [vocab, 4]", good_rows(), Shape{4, 5}, DType::kF32, {{"vocab", kVocab}}},
        {"novocab", "no 'vocab' in the metadata", good_rows(), Shape{5, kDim}, DType::kF32, {}},
        {"notlist", "expected a list", good_rows(), Shape{5, kDim}, DType::kF32, {{"vocab", R"({"a": 1})"}}},
        {"badjson", "metadata 'vocab'", good_rows(), Shape{5, kDim}, DType::kF32, {{"vocab", "[\"a\", "}}},
        {"count",
         "has 4 words but 'word_embeddings' has 5 rows",
         good_rows(),
         Shape{5, kDim},
         DType::kF32,
         {{"vocab", R"(["a", "red", "square", "moves"])"}}},
        {"dup",
         "lists 'red' twice",
         good_rows(),
         Shape{5, kDim},
         DType::kF32,
         {{"vocab", R"(["a", "red", "square", "red", "left"])"}}},
        {"empty",
         "empty string",
         good_rows(),
         Shape{5, kDim},
         DType::kF32,
         {{"vocab", R"(["a", "", "square", "moves", "left"])"}}},
        {"nan", "holds NaN in the row of 'square'", nan_rows, Shape{5, kDim}, DType::kF32, {{"vocab", kVocab}}},
    };
    for (const Case& c : cases) {
        const std::string path = write_table(c.name, c.rows, c.shape, c.dtype, c.meta);
        const std::string e = test::input_error_of([&] { (void)WordTable::open(path, kDim); });
        EXPECT_NE(e.find(path), std::string::npos) << c.name << ": " << e;
        EXPECT_NE(e.find(c.want), std::string::npos) << c.name << ": " << e;
    }
    // Another tensor name: the file is not a word table.
    const std::string other = (fs::temp_directory_path() / "lr_word_table_other.safetensors").string();
    HostTensor x(DType::kF32, Shape{2, kDim});
    write_safetensors(other, {{"context", x.view}}, {{"vocab", kVocab}});
    EXPECT_NE(test::input_error_of([&] { (void)WordTable::open(other, kDim); }).find("no tensor 'word_embeddings'"),
              std::string::npos);
}

}  // namespace
}  // namespace lr
