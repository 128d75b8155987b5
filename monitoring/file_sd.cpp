#include "monitoring/file_sd.h"

#include <filesystem>
#include <fstream>

#include "runtime/core/check.h"
#include "runtime/io/json.h"

namespace lr {
namespace {

constexpr std::string_view kJsonExt = ".json";

bool ends_with_json(const std::string& path) {
    return path.size() > kJsonExt.size() && path.compare(path.size() - kJsonExt.size(), kJsonExt.size(), kJsonExt) == 0;
}

}  // namespace

std::string file_sd_path_for_rank(const std::string& path, const ProcessInfo& who) {
    LR_CHECK(ends_with_json(path), "monitoring.file_sd_path '", path,
             "': expected a file name ending in .json (Prometheus file_sd picks the format by extension)");
    if (who.world_size <= 1) return path;
    return str_cat(path.substr(0, path.size() - kJsonExt.size()), ".rank", who.rank, kJsonExt);
}

std::string file_sd_run_name(const std::string& path) {
    std::string name = std::filesystem::path(path).filename().string();
    if (ends_with_json(name)) name.resize(name.size() - kJsonExt.size());
    return name;
}

std::string scrape_target(const std::string& bind, const std::string& host, int port) {
    std::string addr = bind;
    if (addr == "0.0.0.0" || addr == "::" || addr == "[::]" || addr.empty()) addr = host;
    if (addr.find(':') != std::string::npos && addr.front() != '[') addr = "[" + addr + "]";
    return str_cat(addr, ":", port);
}

std::string file_sd_json(const std::string& target, const std::vector<std::pair<std::string, std::string>>& labels) {
    std::string out = "[{\"targets\": [" + json::quote(target) + "], \"labels\": {";
    for (size_t i = 0; i < labels.size(); ++i) {
        if (i > 0) out += ", ";
        out += json::quote(labels[i].first) + ": " + json::quote(labels[i].second);
    }
    out += "}}]\n";
    return out;
}

void write_file_atomically(const std::string& path, std::string_view text) {
    const std::string tmp = path + ".partial";
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        LR_CHECK(f.good(), "monitoring.file_sd_path: cannot write '", tmp,
                 "' (does the directory exist, and is it writable?)");
        f.write(text.data(), static_cast<std::streamsize>(text.size()));
        f.close();
        LR_RUNTIME(f.good(), "metrics: writing '", tmp, "' failed");
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
        std::filesystem::remove(tmp, ec);
        LR_RUNTIME(false, "metrics: cannot rename '", tmp, "' to '", path, "'");
    }
}

}  // namespace lr
