// libFuzzer target: the input is a whole safetensors file image (8-byte little-endian header length,
// header, data). Validation must end in a result or an lr::Error; any other exception, a crash or a
// sanitizer report is a bug. Accepted headers are also checked against the invariants callers rely on.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "runtime/core/check.h"
#include "runtime/io/json.h"
#include "runtime/io/safetensors.h"

namespace {

void check_invariants(const lr::SafetensorsHeader& h, uint64_t data_size) {
    uint64_t furthest_end = 0;
    for (size_t i = 0; i < h.entries.size(); ++i) {
        const lr::SafetensorsEntry& e = h.entries[i];
        if (e.name.empty() || e.begin > e.end || e.end > data_size) std::abort();
        if (e.shape.ndim < 0 || e.shape.ndim > lr::kMaxDims) std::abort();
        for (int d = 0; d < e.shape.ndim; ++d) {
            if (e.shape[d] < 0) std::abort();
        }
        if (static_cast<uint64_t>(e.shape.numel()) * static_cast<uint64_t>(lr::dtype_size(e.dtype)) !=
            e.end - e.begin) {
            std::abort();
        }
        if (i > 0 && h.entries[i - 1].begin > e.begin) std::abort();  // sorted by begin
        if (e.begin != e.end) {
            if (e.begin < furthest_end) std::abort();  // overlap slipped through
            furthest_end = e.end;
        }
        // Names survive quoting: what a writer would put in a header parses back to the same name.
        if (lr::json::parse(lr::json::quote(e.name), "name").as_string() != e.name) std::abort();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        const uint64_t header_len = lr::safetensors_header_length({data, size}, size, "fuzz.safetensors");
        const std::string_view header(reinterpret_cast<const char*>(data) + 8, header_len);
        const uint64_t data_size = size - 8 - header_len;
        check_invariants(lr::parse_safetensors_header(header, data_size, "fuzz.safetensors"), data_size);
    } catch (const lr::Error&) {
        // A rejected input: the expected outcome for most of them.
    }
    return 0;
}
