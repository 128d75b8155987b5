// Prometheus file-based service discovery (file_sd_configs): the JSON file a rank writes so that Prometheus
// finds its exporter, ephemeral port included. Format (Prometheus docs, <file_sd_config>):
//   [{"targets": ["host:port"], "labels": {"run": "sd", "host": "node7"}}]
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dist/process.h"

namespace lr {

// The file this rank writes: `path` itself when the job has one rank; with several, the world rank inserted
// before the ".json" extension ("/x/sd.json" -> "/x/sd.rank3.json"), so that one glob ("/x/sd*.json") matches
// either. InputError when `path` does not end in ".json" (Prometheus picks the format by extension).
std::string file_sd_path_for_rank(const std::string& path, const ProcessInfo& who);

// The run name the targets are labelled with: the file name without directory and ".json" ("/x/sd.json" -> "sd").
std::string file_sd_run_name(const std::string& path);

// "host:port" as Prometheus should scrape it: the bind address unless it is a wildcard (0.0.0.0, ::), then
// the host name; IPv6 addresses in brackets.
std::string scrape_target(const std::string& bind, const std::string& host, int port);

// One target group: [{"targets": [target], "labels": {...}}], strings escaped.
std::string file_sd_json(const std::string& target, const std::vector<std::pair<std::string, std::string>>& labels);

// Writes `text` to `<path>.partial`, then renames it over `path`: Prometheus (which watches the directory)
// never reads half a file, and the temporary name does not match a "*.json" glob. RuntimeError on failure.
void write_file_atomically(const std::string& path, std::string_view text);

}  // namespace lr
