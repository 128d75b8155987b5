// The weights fingerprint a resume checks (launch/run_guard.h): a change anywhere a checkpoint of the same shapes
// would differ (the data after the header, a shard of a sharded index) changes it; the same bytes give the same.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "launch/run_guard.h"
#include "runtime/core/tensor.h"
#include "runtime/io/safetensors.h"

namespace lr {
namespace {

namespace fs = std::filesystem;

std::string write_tensor(const fs::path& dir, const std::string& file, const std::string& name, float value,
                         int64_t n) {
    HostTensor t(DType::kF32, Shape{n});
    for (int64_t i = 0; i < n; ++i) t.as<float>()[i] = value + static_cast<float>(i % 7);
    const std::string path = (dir / file).string();
    write_safetensors(path, {{name, t.view}}, {});
    return path;
}

TEST(RunGuard, WeightsFingerprintSeesDataAndShards) {
    const fs::path dir = fs::temp_directory_path() / ("lr_run_guard_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    // One file: the same bytes, the same fingerprint; one value changed 100 MiB in, another.
    const int64_t big = (100ll << 20) / 4 + 1000;
    const std::string a = write_tensor(dir, "a.safetensors", "w", 1.0f, big);
    const std::string a_copy = write_tensor(dir, "a2.safetensors", "w", 1.0f, big);
    EXPECT_EQ(file_fingerprint(a), file_fingerprint(a_copy));
    {
        std::fstream f(a_copy, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(64ll << 20);  // inside the data, past the first MiB, on a sampled stride
        const char x = 0x5a;
        f.write(&x, 1);
    }
    EXPECT_NE(file_fingerprint(a), file_fingerprint(a_copy));
    // A sharded index: two sets of shards under one identical index file differ.
    for (const float v : {2.0f, 3.0f}) {
        const fs::path sub = dir / ("set" + std::to_string(static_cast<int>(v)));
        fs::create_directories(sub);
        write_tensor(sub, "m-1.safetensors", "x", v, 1000);
        write_tensor(sub, "m-2.safetensors", "y", v, 1000);
        std::ofstream(sub / "m.safetensors.index.json")
            << R"({"metadata": {}, "weight_map": {"x": "m-1.safetensors", "y": "m-2.safetensors"}})";
    }
    const std::string i2 = (dir / "set2" / "m.safetensors.index.json").string();
    const std::string i3 = (dir / "set3" / "m.safetensors.index.json").string();
    EXPECT_NE(file_fingerprint(i2), file_fingerprint(i3));
    EXPECT_EQ(file_fingerprint(i2), file_fingerprint(i2));
    fs::remove_all(dir);
}

}  // namespace
}  // namespace lr
