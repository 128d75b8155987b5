// Helpers shared by the config tests: preset paths, temporary config files, and catching InputErrors.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "launch/config.h"
#include "runtime/core/check.h"

namespace lr::test {

inline std::string source_path(std::string_view rel) {
    return std::string(LONGROLL_SOURCE_DIR) + "/" + std::string(rel);
}

// The message of the InputError that `fn` throws; a test failure and "" when it throws none.
template <typename Fn>
std::string input_error(Fn&& fn) {
    try {
        fn();
    } catch (const InputError& e) {
        return e.what();
    }
    ADD_FAILURE() << "expected an lr::InputError, none was thrown";
    return "";
}

// gtest predicate formatters, so a failure prints both strings in full.
inline ::testing::AssertionResult contains_pred(const char* hay_expr, const char* needle_expr, const std::string& hay,
                                                const std::string& needle) {
    if (hay.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << hay_expr << " does not contain " << needle_expr << "\n  text:   " << hay
                                         << "\n  wanted: " << needle;
}
inline ::testing::AssertionResult lacks_pred(const char* hay_expr, const char* needle_expr, const std::string& hay,
                                             const std::string& needle) {
    if (hay.find(needle) == std::string::npos) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << hay_expr << " contains " << needle_expr << "\n  text: " << hay;
}
inline ::testing::AssertionResult starts_with_pred(const char* hay_expr, const char* prefix_expr,
                                                   const std::string& hay, const std::string& prefix) {
    if (hay.starts_with(prefix)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << hay_expr << " does not start with " << prefix_expr << "\n  text:   " << hay
                                         << "\n  wanted: " << prefix;
}
#define EXPECT_CONTAINS(hay, needle) EXPECT_PRED_FORMAT2(::lr::test::contains_pred, hay, needle)
#define EXPECT_LACKS(hay, needle) EXPECT_PRED_FORMAT2(::lr::test::lacks_pred, hay, needle)
#define EXPECT_STARTS_WITH(hay, prefix) EXPECT_PRED_FORMAT2(::lr::test::starts_with_pred, hay, prefix)

// A fresh directory under the system temp dir, removed with the object.
class TempDir {
  public:
    TempDir() {
        static std::atomic<int> counter{0};
        path_ = std::filesystem::temp_directory_path() /
                ("longroll_config_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        std::filesystem::create_directories(path_);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::permissions(path_, std::filesystem::perms::owner_all, ec);
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    std::string path() const { return path_.string(); }
    // Writes `text` to `name` in the directory and returns the file's path.
    std::string write(const std::string& name, std::string_view text) const {
        const std::filesystem::path file = path_ / name;
        std::ofstream out(file, std::ios::binary);
        out << text;
        return file.string();
    }

  private:
    std::filesystem::path path_;
};

// The smallest valid model section: six lines, so a test's own text starts on line 7.
inline constexpr std::string_view kModel =
    "model {\n"
    "  dim: 64\n"
    "  ffn_dim: 128\n"
    "  num_heads: 2\n"
    "  num_layers: 2\n"
    "}\n";

}  // namespace lr::test
