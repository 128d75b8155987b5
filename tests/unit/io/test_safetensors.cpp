// The safetensors reader: the checked-in corpus (tests/data/safetensors, made by
// tools/make_bad_safetensors.py), header validation and the file-level errors.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <vector>

#include "runtime/io/json.h"
#include "runtime/io/safetensors.h"
#include "tests/unit/io/io_test_util.h"

namespace lr {
namespace {

using test::corpus_file;
using test::input_error_of;

std::set<std::string> corpus_files_with_prefix(const std::string& dir, const std::string& prefix,
                                               const std::string& suffix) {
    std::set<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
        const std::string name = e.path().filename().string();
        if (name.rfind(prefix, 0) == 0 && name.size() > suffix.size() &&
            name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
            out.insert(name);
        }
    }
    return out;
}

// One malformed file per failure class and a distinctive part of the message it must produce.
const std::map<std::string, std::string>& bad_corpus() {
    static const std::map<std::string, std::string> kBad = {
        {"bad_empty_file", "file is 0 bytes, shorter than the 8-byte header length"},
        {"bad_truncated_length", "file is 3 bytes, shorter than the 8-byte header length"},
        {"bad_header_length_zero", "header length is 0"},
        {"bad_header_length_over_limit", "header length 200000000 exceeds the format's 100 MB limit"},
        {"bad_header_length_past_end", "header length 4096 is larger than the"},
        {"bad_json_syntax", "header: invalid JSON at byte 55: expected a string key, found '}'"},
        {"bad_json_trailing_garbage", "trailing characters after the JSON value ('x')"},
        {"bad_json_truncated", "unterminated string"},
        {"bad_header_not_object", "header is a JSON array, expected a JSON object"},
        {"bad_entry_not_object", "tensor \"t\": entry is 5, expected a JSON object"},
        {"bad_metadata_not_object", "__metadata__ is a JSON array, expected a JSON object of strings"},
        {"bad_metadata_non_string", "__metadata__ value \"config\" is a JSON object, expected a string"},
        {"bad_unknown_dtype",
         "tensor \"t\": unknown dtype \"F99\" (known: F64, F32, F16, BF16, F8_E4M3, F8_E5M2, I64, I32, I16, I8, U8, "
         "BOOL)"},
        {"bad_dtype_not_string", "tensor \"t\": \"dtype\" is 32, expected a string"},
        {"bad_missing_shape", "tensor \"t\": missing \"shape\""},
        {"bad_unknown_key", "tensor \"t\": unknown key \"foo\""},
        {"bad_shape_not_array", "\"shape\" is 2, expected an array of integers"},
        {"bad_negative_dim", "shape dimension 0 is negative (-2)"},
        {"bad_dim_not_integer", "shape dimension 0 is 2.0, expected a non-negative integer"},
        {"bad_too_many_dims", "shape has 7 dimensions, at most 6 are supported"},
        {"bad_shape_overflow", "shape dimension 1 (4294967296) makes the element count overflow 64 bits"},
        {"bad_bytes_overflow", "F64 has too many bytes (overflows 64 bits)"},
        {"bad_size_mismatch", "data_offsets [0, 8] hold 8 bytes, but F32[3] needs 12"},
        {"bad_offsets_out_of_range", "data_offsets [0, 16] reach beyond the data section of 8 bytes"},
        {"bad_offsets_reversed", "data_offsets [8, 0] end before they begin"},
        {"bad_offsets_non_integer", "data_offsets[1] is 8.0, expected a non-negative 64-bit integer"},
        {"bad_offsets_negative", "data_offsets[0] is -8, expected a non-negative 64-bit integer"},
        {"bad_offsets_huge", "data_offsets[1] is 18446744073709551616, expected a non-negative 64-bit integer"},
        {"bad_offsets_one_value", "\"data_offsets\" is an array of 1 values, expected [begin, end]"},
        {"bad_overlap", "tensors \"a\" [0, 8) and \"b\" [4, 8) overlap in the data section"},
        {"bad_duplicate_key", "duplicate key \"t\""},
        {"bad_deep_nesting", "nesting deeper than 64 levels"},
        {"bad_invalid_utf8", "invalid UTF-8 in string"},
        {"bad_lone_surrogate", "high surrogate not followed by a low surrogate"},
        {"bad_control_char", "unescaped control character in string"},
        {"bad_leading_zero", "leading zeros are not allowed in numbers"},
        {"bad_empty_name", "a tensor has an empty name"},
    };
    return kBad;
}

TEST(SafetensorsCorpus, EveryBadFileHasAnExpectation) {
    std::set<std::string> expected;
    for (const auto& [stem, _] : bad_corpus()) expected.insert(stem + ".safetensors");
    EXPECT_EQ(corpus_files_with_prefix(test::corpus_dir(), "bad_", ".safetensors"), expected)
        << "rerun tools/make_bad_safetensors.py, and give every new bad_* file an expected message here";
}

TEST(SafetensorsCorpus, BadFilesRejectedWithReason) {
    for (const auto& [stem, reason] : bad_corpus()) {
        const std::string path = corpus_file(stem + ".safetensors");
        for (const bool as_checkpoint : {false, true}) {
            const std::string msg = input_error_of([&] {
                if (as_checkpoint) {
                    SafetensorsCheckpoint::open(path);
                } else {
                    SafetensorsFile::open(path);
                }
            });
            ASSERT_FALSE(msg.empty()) << path << " was accepted";
            EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << "message does not start with the path: " << msg;
            EXPECT_NE(msg.find(reason), std::string::npos) << path << "\n  expected: " << reason << "\n  got: " << msg;
        }
    }
}

// The header parser alone, as the fuzzer drives it, gives the same verdicts.
TEST(SafetensorsCorpus, BadHeadersRejectedByParser) {
    for (const auto& [stem, reason] : bad_corpus()) {
        const std::string where = stem;  // clang 14 cannot capture structured bindings
        const std::string image = test::read_bytes(corpus_file(stem + ".safetensors"));
        const std::string msg = input_error_of([&] {
            const auto* bytes = reinterpret_cast<const uint8_t*>(image.data());
            const uint64_t n = safetensors_header_length({bytes, image.size()}, image.size(), where);
            parse_safetensors_header(std::string_view(image).substr(8, n), image.size() - 8 - n, where);
        });
        EXPECT_NE(msg.find(reason), std::string::npos) << stem << ": " << msg;
    }
}

struct ExpectedTensor {
    std::string name;
    DType dtype;
    Shape shape;
};

void expect_tensors(const SafetensorsFile& f, const std::vector<ExpectedTensor>& expected) {
    ASSERT_EQ(f.entries().size(), expected.size()) << f.path();
    for (const auto& t : expected) {
        const SafetensorsEntry* e = f.find(t.name);
        ASSERT_NE(e, nullptr) << f.path() << ": " << t.name;
        EXPECT_EQ(e->dtype, t.dtype) << t.name;
        EXPECT_EQ(e->shape, t.shape) << t.name << ": " << e->shape.str();
        const TensorView v = f.view(*e);
        EXPECT_EQ(v.dtype, t.dtype);
        EXPECT_EQ(v.shape, t.shape);
        EXPECT_TRUE(v.is_contiguous());
        EXPECT_EQ(static_cast<uint64_t>(v.nbytes()), e->end - e->begin);
    }
    // Entries come sorted by offset.
    for (size_t i = 1; i < f.entries().size(); ++i) {
        EXPECT_LE(f.entries()[i - 1].begin, f.entries()[i].begin);
    }
}

template <typename T>
T element(const TensorView& v, int64_t i) {
    T x;
    std::memcpy(&x, static_cast<const char*>(v.data) + i * static_cast<int64_t>(sizeof(T)), sizeof(T));
    return x;
}

float bf16_element(const TensorView& v, int64_t i) { return bf16_bits_to_f32(element<uint16_t>(v, i)); }
float f16_element(const TensorView& v, int64_t i) { return f16_bits_to_f32(element<uint16_t>(v, i)); }

TEST(SafetensorsCorpus, EveryGoodFileIsTested) {
    EXPECT_EQ(corpus_files_with_prefix(test::corpus_dir(), "good_", ".safetensors"),
              (std::set<std::string>{"good_all_dtypes.safetensors", "good_f32.safetensors",
                                     "good_gaps_and_trailing.safetensors", "good_mixed.safetensors",
                                     "good_no_tensors.safetensors", "good_unicode_names.safetensors",
                                     "good_whitespace_unordered.safetensors"}));
}

TEST(SafetensorsCorpus, GoodF32) {
    const auto f = SafetensorsFile::open(corpus_file("good_f32.safetensors"));
    expect_tensors(f, {{"weight", DType::kF32, {2, 3}}});
    const TensorView v = f.view(*f.find("weight"));
    for (int64_t i = 0; i < 6; ++i) EXPECT_EQ(element<float>(v, i), (i + 1) * 0.5f - 1.25f) << i;
    EXPECT_TRUE(f.metadata().empty());
    EXPECT_EQ(f.find("missing"), nullptr);
}

TEST(SafetensorsCorpus, GoodMixedWithMetadata) {
    const auto f = SafetensorsFile::open(corpus_file("good_mixed.safetensors"));
    expect_tensors(f, {{"a.bf16", DType::kBF16, {4}},
                       {"b.f16", DType::kF16, {2, 2}},
                       {"c.i64", DType::kI64, {3}},
                       {"d.empty", DType::kF32, {0, 3}},
                       {"e.scalar", DType::kF32, {}}});
    const TensorView a = f.view(*f.find("a.bf16"));
    const TensorView b = f.view(*f.find("b.f16"));
    const TensorView c = f.view(*f.find("c.i64"));
    for (int64_t i = 0; i < 4; ++i) {
        EXPECT_EQ(bf16_element(a, i), (i + 1) * 0.25f);
        EXPECT_EQ(f16_element(b, i), (i + 1) * -0.5f + 1.0f);
    }
    EXPECT_EQ(element<int64_t>(c, 0), -(int64_t{1} << 40));
    EXPECT_EQ(element<int64_t>(c, 1), 7);
    EXPECT_EQ(element<int64_t>(c, 2), (int64_t{1} << 62) + 1);
    EXPECT_EQ(element<float>(f.view(*f.find("e.scalar")), 0), 3.5f);
    EXPECT_EQ(f.view(*f.find("e.scalar")).numel(), 1);
    EXPECT_EQ(f.view(*f.find("d.empty")).numel(), 0);

    ASSERT_EQ(f.metadata().size(), 2u);
    EXPECT_EQ(f.metadata()[0].first, "format");
    ASSERT_NE(f.metadata_value("format"), nullptr);
    EXPECT_EQ(*f.metadata_value("format"), "pt");
    EXPECT_EQ(f.metadata_value("nope"), nullptr);
    // The config travels as a JSON string inside the metadata.
    const std::string* config = f.metadata_value("config");
    ASSERT_NE(config, nullptr);
    const json::Value cfg = json::parse(*config, "config");
    EXPECT_EQ(cfg.find("dim")->as_int64(), 64);
    EXPECT_EQ(cfg.find("eps")->as_number(), 1e-6);
    EXPECT_EQ(cfg.find("patch_size")->as_array().size(), 3u);
    EXPECT_EQ(cfg.find("model_type")->as_string(), "t2v");
}

TEST(SafetensorsCorpus, GoodAllDtypes) {
    const auto f = SafetensorsFile::open(corpus_file("good_all_dtypes.safetensors"));
    expect_tensors(f, {{"f64", DType::kF64, {2}},
                       {"f32", DType::kF32, {1}},
                       {"f16", DType::kF16, {1}},
                       {"bf16", DType::kBF16, {1}},
                       {"f8e4m3", DType::kF8E4M3, {3}},
                       {"f8e5m2", DType::kF8E5M2, {3}},
                       {"i64", DType::kI64, {1}},
                       {"i32", DType::kI32, {2}},
                       {"i16", DType::kI16, {1}},
                       {"i8", DType::kI8, {3}},
                       {"u8", DType::kU8, {2}},
                       {"bool", DType::kBool, {2}}});
    EXPECT_EQ(element<double>(f.view(*f.find("f64")), 1), -2.25);
    EXPECT_EQ(element<float>(f.view(*f.find("f32")), 0), 0.125f);
    EXPECT_EQ(f16_element(f.view(*f.find("f16")), 0), 2.0f);
    EXPECT_EQ(bf16_element(f.view(*f.find("bf16")), 0), -4.0f);
    EXPECT_EQ(element<uint8_t>(f.view(*f.find("f8e4m3")), 2), 0xb8);
    EXPECT_EQ(element<int32_t>(f.view(*f.find("i32")), 1), 2147483647);
    EXPECT_EQ(element<int16_t>(f.view(*f.find("i16")), 0), -300);
    EXPECT_EQ(element<int8_t>(f.view(*f.find("i8")), 0), -1);
    EXPECT_EQ(element<uint8_t>(f.view(*f.find("u8")), 1), 255);
    EXPECT_EQ(element<uint8_t>(f.view(*f.find("bool")), 0), 1);
}

TEST(SafetensorsCorpus, GoodGapsTrailingAndEmpty) {
    const auto f = SafetensorsFile::open(corpus_file("good_gaps_and_trailing.safetensors"));
    expect_tensors(f, {{"x", DType::kF32, {2}}, {"y", DType::kI32, {1}}});
    EXPECT_EQ(f.find("y")->begin, 16u);  // 8 bytes of x, then an 8-byte gap
    EXPECT_EQ(element<float>(f.view(*f.find("x")), 1), 2.0f);
    EXPECT_EQ(element<int32_t>(f.view(*f.find("y")), 0), 42);

    const auto empty = SafetensorsFile::open(corpus_file("good_no_tensors.safetensors"));
    EXPECT_TRUE(empty.entries().empty());
    EXPECT_EQ(empty.file_size(), 16u);
}

TEST(SafetensorsCorpus, GoodUnicodeAndWhitespace) {
    const auto f = SafetensorsFile::open(corpus_file("good_unicode_names.safetensors"));
    expect_tensors(f, {{"blocks.0.\xc3\xa9\xc3\xa8", DType::kU8, {2}},
                       {"tab\tname", DType::kU8, {1}},
                       {"emoji.\xf0\x9f\x98\x80", DType::kU8, {0}}});
    EXPECT_EQ(element<uint8_t>(f.view(*f.find("tab\tname")), 0), 3);

    const auto w = SafetensorsFile::open(corpus_file("good_whitespace_unordered.safetensors"));
    expect_tensors(w, {{"first", DType::kF32, {1}}, {"second", DType::kF32, {1}}});
    EXPECT_EQ(w.entries()[0].name, "first");  // sorted by offset, not by document order
    EXPECT_EQ(element<float>(w.view(*w.find("second")), 0), 2.0f);
}

TEST(SafetensorsFile, MoveKeepsTheMapping) {
    auto a = SafetensorsFile::open(corpus_file("good_f32.safetensors"));
    const void* data = a.view(*a.find("weight")).data;
    SafetensorsFile b = std::move(a);
    EXPECT_EQ(b.view(*b.find("weight")).data, data);
    EXPECT_EQ(element<float>(b.view(*b.find("weight")), 5), 6 * 0.5f - 1.25f);
    auto c = SafetensorsFile::open(corpus_file("good_mixed.safetensors"));
    c = std::move(b);
    EXPECT_EQ(c.view(*c.find("weight")).data, data);
    EXPECT_EQ(c.path(), corpus_file("good_f32.safetensors"));
}

TEST(SafetensorsFile, FileSystemErrors) {
    EXPECT_NE(input_error_of([] { SafetensorsFile::open(""); }).find("empty file name"), std::string::npos);
    const std::string missing = test::corpus_dir() + "/does_not_exist.safetensors";
    EXPECT_EQ(input_error_of([&] { SafetensorsFile::open(missing); }),
              missing + ": no such file (expected a safetensors file)");
    EXPECT_EQ(input_error_of([&] { SafetensorsFile::open(test::corpus_dir()); }),
              test::corpus_dir() + ": is a directory, expected a safetensors file");
    const std::string under_file = corpus_file("good_f32.safetensors") + "/x";
    EXPECT_NE(input_error_of([&] { SafetensorsFile::open(under_file); }).find(under_file + ": cannot open: "),
              std::string::npos);
    EXPECT_NE(input_error_of([] { SafetensorsFile::open("/dev/null"); }).find("is not a regular file"),
              std::string::npos);
}

TEST(SafetensorsFile, PermissionDenied) {
    if (::geteuid() == 0) GTEST_SKIP() << "root reads files whatever their mode";
    test::TempDir dir;
    const std::string path = dir.file("locked.safetensors");
    test::write_bytes(path, test::read_bytes(corpus_file("good_f32.safetensors")));
    ASSERT_EQ(::chmod(path.c_str(), 0), 0);
    EXPECT_EQ(input_error_of([&] { SafetensorsFile::open(path); }), path + ": permission denied");
}

// Truncating a good file anywhere must give an InputError, never a crash or a bogus success.
TEST(SafetensorsFile, EveryTruncationRejected) {
    test::TempDir dir;
    const std::string image = test::read_bytes(corpus_file("good_mixed.safetensors"));
    const std::string path = dir.file("cut.safetensors");
    for (size_t n = 0; n < image.size(); ++n) {
        test::write_bytes(path, image.substr(0, n));
        const std::string msg = input_error_of([&] { SafetensorsFile::open(path); });
        EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << "cut at " << n << ": " << msg;
    }
    test::write_bytes(path, image);
    EXPECT_EQ(SafetensorsFile::open(path).entries().size(), 5u);
}

SafetensorsHeader parse(std::string_view json, uint64_t data_size) {
    return parse_safetensors_header(json, data_size, "h.safetensors");
}

std::string header_error(std::string_view json, uint64_t data_size) {
    return input_error_of([&] { parse(json, data_size); });
}

TEST(SafetensorsHeader, ZeroSizeTensorsOverlapNothing) {
    const auto h = parse(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},
                             "z":{"dtype":"F32","shape":[0],"data_offsets":[8,8]},
                             "e":{"dtype":"I8","shape":[2,0],"data_offsets":[16,16]}})",
                         16);
    ASSERT_EQ(h.entries.size(), 3u);
    EXPECT_EQ(h.entries[0].name, "a");
    EXPECT_EQ(h.entries[1].name, "z");
    EXPECT_EQ(h.entries[2].name, "e");
}

TEST(SafetensorsHeader, OverlapWithAnEarlierLongTensor) {
    // "b" touches "a" exactly, "c" overlaps "a" though it does not overlap its predecessor "e" (empty).
    EXPECT_EQ(parse(R"({"a":{"dtype":"U8","shape":[10],"data_offsets":[0,10]},
                        "b":{"dtype":"U8","shape":[5],"data_offsets":[10,15]}})",
                    15)
                  .entries.size(),
              2u);
    const std::string msg = header_error(R"({"a":{"dtype":"U8","shape":[100],"data_offsets":[0,100]},
                                             "e":{"dtype":"U8","shape":[0],"data_offsets":[50,50]},
                                             "c":{"dtype":"U8","shape":[20],"data_offsets":[90,110]}})",
                                         200);
    EXPECT_NE(msg.find("tensors \"a\" [0, 100) and \"c\" [90, 110) overlap"), std::string::npos) << msg;
    const std::string same = header_error(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},
                                              "b":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})",
                                          8);
    EXPECT_NE(same.find("overlap"), std::string::npos) << same;
}

TEST(SafetensorsHeader, ShapeLimits) {
    // Six dims are fine; the product of huge dims with a zero is fine (numel 0) but each dim must fit int64.
    EXPECT_EQ(parse(R"({"t":{"dtype":"U8","shape":[1,2,1,2,1,2],"data_offsets":[0,8]}})", 8).entries[0].shape,
              (Shape{1, 2, 1, 2, 1, 2}));
    EXPECT_EQ(
        parse(R"({"t":{"dtype":"F32","shape":[4611686018427387904,0],"data_offsets":[0,0]}})", 0).entries[0].shape[0],
        int64_t{1} << 62);
    EXPECT_NE(header_error(R"({"t":{"dtype":"F32","shape":[9223372036854775808,0],"data_offsets":[0,0]}})", 0)
                  .find("shape dimension 0 is 9223372036854775808"),
              std::string::npos);
    EXPECT_NE(header_error(R"({"t":{"dtype":"U8","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})", 0)
                  .find("overflow 64 bits"),
              std::string::npos);
    EXPECT_NE(header_error(R"({"t":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})", 8)
                  .find("shape dimension 0 is the string \"2\""),
              std::string::npos);
}

TEST(SafetensorsHeader, MissingFieldsAndMetadataPlacement) {
    EXPECT_NE(header_error(R"({"t":{"shape":[1],"data_offsets":[0,4]}})", 4).find("missing \"dtype\""),
              std::string::npos);
    EXPECT_NE(header_error(R"({"t":{"dtype":"F32","shape":[1]}})", 4).find("missing \"data_offsets\""),
              std::string::npos);
    EXPECT_NE(header_error(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":{"0":4}}})", 4)
                  .find("\"data_offsets\" is a JSON object, expected [begin, end]"),
              std::string::npos);
    // __metadata__ may come anywhere in the header and may be empty.
    const auto h = parse(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"__metadata__":{}})", 4);
    EXPECT_EQ(h.entries.size(), 1u);
    EXPECT_TRUE(h.metadata.empty());
    // A hostile name in a message is escaped and cut short.
    const std::string long_name(10000, '\x01');
    const std::string msg = header_error("{" + json::quote(long_name) + ":1}", 0);
    EXPECT_LT(msg.size(), 1000u);
    EXPECT_EQ(msg.find('\x01'), std::string::npos);
}

TEST(SafetensorsHeader, LengthPrefix) {
    const uint8_t len100m[8] = {0x00, 0xe1, 0xf5, 0x05, 0, 0, 0, 0};  // 100'000'000
    EXPECT_EQ(safetensors_header_length(len100m, 200'000'000, "f"), 100'000'000u);
    const uint8_t len100m1[8] = {0x01, 0xe1, 0xf5, 0x05, 0, 0, 0, 0};
    EXPECT_NE(input_error_of([&] { safetensors_header_length(len100m1, 200'000'000, "f"); }).find("100 MB limit"),
              std::string::npos);
    const uint8_t len_max[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    EXPECT_NE(input_error_of([&] { safetensors_header_length(len_max, 16, "f"); }).find("100 MB limit"),
              std::string::npos);
    const uint8_t len8[8] = {8, 0, 0, 0, 0, 0, 0, 0};
    EXPECT_EQ(safetensors_header_length(len8, 16, "f"), 8u);
    EXPECT_NE(input_error_of([&] { safetensors_header_length(len8, 15, "f"); }).find("larger than the 7 bytes"),
              std::string::npos);
}

}  // namespace
}  // namespace lr
