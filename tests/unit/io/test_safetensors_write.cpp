// The safetensors writer (round trips of random tensors, refusals, no partial files) and checkpoints
// (single files and sharded indexes).
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "runtime/io/json.h"
#include "runtime/io/safetensors.h"
#include "tests/unit/io/io_test_util.h"

namespace lr {
namespace {

using test::corpus_file;
using test::has_partial_file;
using test::input_error_of;
using test::runtime_error_of;
using namespace std::string_literals;

// A host tensor filled with random bytes; BOOL gets 0/1. Never zeros, so a reader that returns the wrong
// bytes (or none) fails the comparison.
HostTensor random_tensor(std::mt19937_64& rng, DType dtype, const Shape& shape) {
    HostTensor t(dtype, shape);
    auto* p = static_cast<uint8_t*>(t.view.data);
    for (int64_t i = 0; i < t.view.nbytes(); ++i) {
        p[i] = dtype == DType::kBool ? static_cast<uint8_t>(rng() & 1) : static_cast<uint8_t>(rng());
    }
    return t;
}

Shape random_shape(std::mt19937_64& rng) {
    const int ndim = static_cast<int>(rng() % 5);  // 0 (a scalar) .. 4
    Shape s;
    for (int d = 0; d < ndim; ++d) s.dims[static_cast<size_t>(s.ndim++)] = static_cast<int64_t>(1 + rng() % 7);
    if (rng() % 8 == 0 && ndim > 0) s.dims[0] = 0;  // a zero-size tensor now and then
    return s;
}

bool same_bytes(const TensorView& a, const TensorView& b) {
    return a.nbytes() == b.nbytes() &&
           (a.nbytes() == 0 || std::memcmp(a.data, b.data, static_cast<size_t>(a.nbytes())) == 0);
}

TEST(SafetensorsWriter, RandomRoundTrips) {
    const DType kDTypes[] = {DType::kF32,  DType::kBF16, DType::kF16, DType::kI64, DType::kU8,
                             DType::kBool, DType::kF64,  DType::kI8,  DType::kI32, DType::kF8E4M3};
    test::TempDir dir;
    for (uint64_t seed = 1; seed <= 8; ++seed) {
        std::mt19937_64 rng(seed);
        std::vector<HostTensor> owned;
        std::vector<NamedTensor> tensors;
        const int count = 1 + static_cast<int>(rng() % 12);
        for (int i = 0; i < count; ++i) {
            const DType dtype = kDTypes[rng() % std::size(kDTypes)];
            owned.push_back(random_tensor(rng, dtype, random_shape(rng)));
            tensors.push_back({"blocks." + std::to_string(i) + ".w" + std::to_string(rng() % 1000), owned.back().view});
        }
        const std::vector<std::pair<std::string, std::string>> metadata = {
            {"format", "pt"},
            {"config", R"({"dim": 64, "eps": 1e-06, "name": "w\u00e9 \"quoted\"\n"})"},
            {"seed", std::to_string(seed)},
            {"control\tchars\x01", "\xe2\x82\xac \\ \x1f"},
        };
        const std::string path = dir.file("round_trip.safetensors");
        write_safetensors(path, tensors, metadata);
        EXPECT_FALSE(has_partial_file(dir.path()));

        const auto f = SafetensorsFile::open(path);
        ASSERT_EQ(f.entries().size(), tensors.size());
        uint64_t data_bytes = 0;
        for (const auto& t : tensors) {
            const SafetensorsEntry* e = f.find(t.name);
            ASSERT_NE(e, nullptr) << t.name;
            EXPECT_EQ(e->dtype, t.view.dtype);
            EXPECT_EQ(e->shape, t.view.shape) << t.name << ": " << e->shape.str() << " vs " << t.view.shape.str();
            EXPECT_EQ(e->begin, data_bytes) << "tensors are written in the given order, contiguous";
            EXPECT_TRUE(same_bytes(f.view(*e), t.view)) << t.name;
            data_bytes += static_cast<uint64_t>(t.view.nbytes());
        }
        EXPECT_EQ(f.metadata(), metadata);

        // The header is padded with spaces so that the data section starts at a multiple of 8.
        const std::string image = test::read_bytes(path);
        uint64_t header_len = 0;
        std::memcpy(&header_len, image.data(), 8);
        EXPECT_EQ(header_len % 8, 0u);
        EXPECT_EQ(image.size(), 8 + header_len + data_bytes);
        EXPECT_EQ(f.file_size(), image.size());
        const std::string header = image.substr(8, header_len);
        EXPECT_EQ(header.find_last_not_of(' '), header.rfind('}'));

        // The checkpoint view of the same file agrees.
        const auto c = SafetensorsCheckpoint::open(path);
        EXPECT_EQ(c.size(), tensors.size());
        EXPECT_EQ(c.total_bytes(), data_bytes);
        EXPECT_EQ(*c.metadata_value("seed"), std::to_string(seed));
        for (const auto& t : tensors) EXPECT_TRUE(same_bytes(c.view(t.name), t.view));
    }
}

TEST(SafetensorsWriter, CopiesFromAMappingAndOverwrites) {
    test::TempDir dir;
    const auto src = SafetensorsFile::open(corpus_file("good_all_dtypes.safetensors"));
    std::vector<NamedTensor> tensors;
    for (const auto& e : src.entries()) tensors.push_back({e.name, src.view(e)});
    const std::string path = dir.file("copy.safetensors");
    write_safetensors(path, {{"old", src.view(src.entries()[0])}});
    auto old_mapping = SafetensorsFile::open(path);  // stays valid: the new file replaces it by rename
    write_safetensors(path, tensors);
    const auto copy = SafetensorsFile::open(path);
    ASSERT_EQ(copy.entries().size(), src.entries().size());
    for (const auto& e : src.entries()) EXPECT_TRUE(same_bytes(copy.view(*copy.find(e.name)), src.view(e))) << e.name;
    EXPECT_EQ(copy.find("old"), nullptr);
    EXPECT_TRUE(same_bytes(old_mapping.view(*old_mapping.find("old")), src.view(src.entries()[0])));

    // No tensors at all is a valid file.
    write_safetensors(path, {});
    EXPECT_TRUE(SafetensorsFile::open(path).entries().empty());
}

TEST(SafetensorsWriter, Refusals) {
    test::TempDir dir;
    std::mt19937_64 rng(7);
    HostTensor a = random_tensor(rng, DType::kF32, {3, 4});
    const std::string path = dir.file("refused.safetensors");
    auto refused = [&](const std::vector<NamedTensor>& tensors,
                       const std::vector<std::pair<std::string, std::string>>& metadata = {}) {
        std::string msg = input_error_of([&] { write_safetensors(path, tensors, metadata); });
        EXPECT_FALSE(std::filesystem::exists(path)) << msg;
        EXPECT_FALSE(has_partial_file(dir.path())) << msg;
        EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
        return msg;
    };
    EXPECT_NE(refused({{"w", a.view}, {"w", a.view}}).find("tensor name \"w\" is used twice"), std::string::npos);
    EXPECT_NE(refused({{"", a.view}}).find("empty name"), std::string::npos);
    EXPECT_NE(refused({{"__metadata__", a.view}}).find("reserved"), std::string::npos);
    EXPECT_NE(refused({{"bad\xff", a.view}}).find("not valid UTF-8"), std::string::npos);

    TensorView transposed = a.view;
    transposed.shape = {4, 3};
    transposed.strides[0] = 1;
    transposed.strides[1] = 4;
    EXPECT_NE(refused({{"t", transposed}}).find("is not contiguous"), std::string::npos);

    TensorView on_gpu = a.view;
    on_gpu.device = Device::kCuda;
    EXPECT_NE(refused({{"g", on_gpu}}).find("copy it to the host"), std::string::npos);

    TensorView negative = a.view;
    negative.shape.dims[0] = -3;
    EXPECT_NE(refused({{"n", negative}}).find("negative dimension"), std::string::npos);

    EXPECT_NE(refused({{"w", a.view}}, {{"k", "1"}, {"k", "2"}}).find("metadata key \"k\" is used twice"),
              std::string::npos);
    EXPECT_NE(refused({{"w", a.view}}, {{"k", "\xc3"}}).find("not valid UTF-8"), std::string::npos);

    EXPECT_NE(input_error_of([&] {
                  write_safetensors("", {{"w", a.view}});
              }).find("empty output file name"),
              std::string::npos);
}

TEST(SafetensorsWriter, UnwritablePathsLeaveNothingBehind) {
    std::mt19937_64 rng(8);
    HostTensor a = random_tensor(rng, DType::kBF16, {5});
    // Run-time I/O failures (exit code 1): generate checks its output locations before any work.
    const std::string msg = runtime_error_of([&] { write_safetensors("/nonexistent/x.safetensors", {{"w", a.view}}); });
    EXPECT_EQ(msg.rfind("/nonexistent/x.safetensors: cannot write: ", 0), 0u) << msg;
    EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;

    // The partial file is created and written, then the rename onto a directory fails: it must go away.
    test::TempDir dir;
    const std::string target = dir.file("is_a_dir.safetensors");
    std::filesystem::create_directory(target);
    const std::string rename_msg = runtime_error_of([&] { write_safetensors(target, {{"w", a.view}}); });
    EXPECT_EQ(rename_msg.rfind(target + ": cannot replace it", 0), 0u) << rename_msg;
    EXPECT_FALSE(has_partial_file(dir.path()));
    EXPECT_TRUE(std::filesystem::is_directory(target));
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);
}

// ---- Checkpoints -------------------------------------------------------------------------------------

std::string sharded(const std::string& name) { return corpus_file("sharded/" + name); }

TEST(SafetensorsCheckpoint, SingleFile) {
    const auto c = SafetensorsCheckpoint::open(corpus_file("good_mixed.safetensors"));
    EXPECT_EQ(c.names(), (std::vector<std::string>{"a.bf16", "b.f16", "c.i64", "d.empty", "e.scalar"}));
    EXPECT_EQ(c.size(), 5u);
    EXPECT_EQ(c.total_bytes(), 8u + 8u + 24u + 0u + 4u);
    ASSERT_NE(c.find("c.i64"), nullptr);
    EXPECT_EQ(c.find("c.i64")->shape, (Shape{3}));
    EXPECT_EQ(c.find("nope"), nullptr);
    EXPECT_EQ(c.file_of("b.f16"), corpus_file("good_mixed.safetensors"));
    EXPECT_EQ(c.view("e.scalar").numel(), 1);
    EXPECT_EQ(*c.metadata_value("format"), "pt");
    EXPECT_EQ(c.metadata().size(), 2u);
    const std::string msg = input_error_of([&] { c.view("blocks.0.nope"); });
    EXPECT_EQ(msg, corpus_file("good_mixed.safetensors") +
                       ": no tensor named \"blocks.0.nope\" (the checkpoint has 5 tensors)");
    EXPECT_NE(input_error_of([&] { c.file_of("x"); }).find("no tensor named \"x\""), std::string::npos);
}

TEST(SafetensorsCheckpoint, Sharded) {
    const std::string index = sharded("model.safetensors.index.json");
    const auto c = SafetensorsCheckpoint::open(index);
    EXPECT_EQ(c.path(), index);
    EXPECT_EQ(c.names(), (std::vector<std::string>{"blocks.0.b", "blocks.0.w", "blocks.1.w", "head"}));
    EXPECT_EQ(c.total_bytes(), 40u);
    EXPECT_EQ(c.file_of("blocks.0.w"), sharded("model-00001-of-00002.safetensors"));
    EXPECT_EQ(c.file_of("head"), sharded("model-00002-of-00002.safetensors"));
    EXPECT_EQ(c.find("extra"), nullptr);  // lives in dup-shard.safetensors, which this index does not use

    const TensorView w1 = c.view("blocks.1.w");
    ASSERT_EQ(w1.shape, (Shape{3}));
    for (int64_t i = 0; i < 3; ++i) EXPECT_EQ(w1.as<float>()[i], (i + 1) * 2.0f) << i;
    const TensorView head = c.view("head");
    int32_t h[2];
    std::memcpy(h, head.data, sizeof(h));
    EXPECT_EQ(h[0], 9);
    EXPECT_EQ(h[1], -9);

    // The index's string metadata first (total_size is a number and is dropped), then shard 1's other keys.
    ASSERT_EQ(c.metadata().size(), 3u);
    EXPECT_EQ(c.metadata()[0], (std::pair<std::string, std::string>{"format", "index-pt"}));
    EXPECT_EQ(c.metadata()[1].first, "config");
    EXPECT_EQ(c.metadata()[2], (std::pair<std::string, std::string>{"shard", "1"}));
    EXPECT_EQ(c.metadata_value("total_size"), nullptr);
    EXPECT_EQ(json::parse(*c.metadata_value("config"), "config").find("num_layers")->as_int64(), 2);
}

TEST(SafetensorsCheckpoint, BadIndexes) {
    const std::map<std::string, std::string> kBad = {
        {"bad_missing_tensor", "weight_map maps tensor \"blocks.9.w\" to " +
                                   sharded("model-00001-of-00002.safetensors") + ", which has no such tensor"},
        {"bad_missing_shard", "shard \"model-00003-of-00003.safetensors\" of weight_map: " +
                                  sharded("model-00003-of-00003.safetensors") + ": no such file"},
        {"bad_tensor_in_two_shards", "tensor \"head\" is in two shards, "},
        {"bad_shard_not_string", "weight_map maps tensor \"head\" to a JSON number"},
        {"bad_no_weight_map", "missing \"weight_map\""},
        {"bad_index_json", "invalid JSON at byte 37: expected a string key, found '}'"},
    };
    std::set<std::string> on_disk;
    for (const auto& e : std::filesystem::directory_iterator(test::corpus_dir() + "/sharded")) {
        const std::string name = e.path().filename().string();
        if (name.rfind("bad_", 0) == 0) on_disk.insert(name);
    }
    std::set<std::string> expected;
    for (const auto& [stem, _] : kBad) expected.insert(stem + ".safetensors.index.json");
    EXPECT_EQ(on_disk, expected);

    for (const auto& [stem, reason] : kBad) {
        const std::string path = sharded(stem + ".safetensors.index.json");
        const std::string msg = input_error_of([&] { SafetensorsCheckpoint::open(path); });
        EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
        EXPECT_NE(msg.find(reason), std::string::npos) << stem << "\n  expected: " << reason << "\n  got: " << msg;
    }
}

TEST(SafetensorsCheckpoint, IndexWithBadShardsAndPaths) {
    test::TempDir dir;
    std::mt19937_64 rng(11);
    HostTensor a = random_tensor(rng, DType::kF32, {2, 2});
    write_safetensors(dir.file("ok.safetensors"), {{"a", a.view}});
    test::write_bytes(dir.file("broken.safetensors"), "\x08\0\0\0\0\0\0\0{\"x\":1} "s);
    auto open_index = [&](const std::string& text) {
        test::write_bytes(dir.file("m.safetensors.index.json"), text);
        return input_error_of([&] { SafetensorsCheckpoint::open(dir.file("m.safetensors.index.json")); });
    };
    // A malformed shard: the message names the index, the shard and the shard's problem.
    const std::string bad_shard = open_index(R"({"weight_map": {"a": "ok.safetensors", "x": "broken.safetensors"}})");
    EXPECT_EQ(bad_shard.rfind(dir.file("m.safetensors.index.json") + ": shard \"broken.safetensors\"", 0), 0u)
        << bad_shard;
    EXPECT_NE(bad_shard.find(dir.file("broken.safetensors") + ": tensor \"x\": entry is 1"), std::string::npos)
        << bad_shard;
    EXPECT_NE(open_index(R"({"weight_map": {"a": "/etc/passwd"}})").find("expected a file name relative to the index"),
              std::string::npos);
    EXPECT_NE(open_index(R"({"weight_map": {}})").find("lists no tensors"), std::string::npos);
    EXPECT_NE(
        open_index(R"({"weight_map": {"a": "ok.safetensors"}, "metadata": []})").find("\"metadata\" is a JSON array"),
        std::string::npos);
    EXPECT_NE(open_index("[]").find("expected a JSON object with \"weight_map\""), std::string::npos);
    EXPECT_EQ(open_index(R"({"weight_map": {"a": "ok.safetensors"}, "other": 1})"), "");  // extra keys are fine
    EXPECT_NE(input_error_of([&] {
                  SafetensorsCheckpoint::open(dir.file("none.safetensors.index.json"));
              }).find("no such file (expected a safetensors index file)"),
              std::string::npos);
}

}  // namespace
}  // namespace lr
