// The safetensors reader: header validation (parse_safetensors_header, what the fuzzer drives) and
// SafetensorsFile, the mmap'ed file. Sharded checkpoints are in safetensors_checkpoint.cpp, the writer in
// safetensors_writer.cpp.
#include "runtime/io/safetensors.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <limits>
#include <numeric>
#include <utility>

#include "runtime/core/check.h"
#include "runtime/io/file_io.h"
#include "runtime/io/json.h"

namespace lr {
namespace {

std::string known_dtype_names() {
    std::string out;
    for (int i = 0; i <= static_cast<int>(DType::kBool); ++i) {
        if (i) out += ", ";
        out += dtype_name(static_cast<DType>(i));
    }
    return out;
}

// What a JSON value is, for "expected X, found Y" messages: the number itself, or its type.
std::string describe(const json::Value& v) {
    if (v.is_number()) return v.number_text();
    if (v.is_string()) return str_cat("the string ", json::quote_for_message(v.as_string(), 40));
    return str_cat("a JSON ", json::type_name(v.type()));
}

// Validates one tensor entry: {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}.
SafetensorsEntry parse_entry(const std::string& name, const json::Value& v, uint64_t data_size,
                             std::string_view where) {
    LR_CHECK(!name.empty(), where, ": a tensor has an empty name");
    const std::string qname = json::quote_for_message(name);
#define LR_ENTRY_CHECK(cond, ...) LR_CHECK(cond, where, ": tensor ", qname, ": ", __VA_ARGS__)
    LR_ENTRY_CHECK(v.is_object(), "entry is ", describe(v),
                   ", expected a JSON object with dtype, shape and data_offsets");

    const json::Value* dtype_v = nullptr;
    const json::Value* shape_v = nullptr;
    const json::Value* offsets_v = nullptr;
    for (const auto& [key, value] : v.as_object()) {
        if (key == "dtype") {
            dtype_v = &value;
        } else if (key == "shape") {
            shape_v = &value;
        } else if (key == "data_offsets") {
            offsets_v = &value;
        } else {
            LR_FAIL(where, ": tensor ", qname, ": unknown key ", json::quote_for_message(key, 40),
                    " (expected dtype, shape, data_offsets)");
        }
    }
    LR_ENTRY_CHECK(dtype_v, "missing \"dtype\"");
    LR_ENTRY_CHECK(shape_v, "missing \"shape\"");
    LR_ENTRY_CHECK(offsets_v, "missing \"data_offsets\"");

    SafetensorsEntry e;
    e.name = name;

    LR_ENTRY_CHECK(dtype_v->is_string(), "\"dtype\" is ", describe(*dtype_v), ", expected a string");
    const auto dtype = dtype_from_name(dtype_v->as_string());
    LR_ENTRY_CHECK(dtype.has_value(), "unknown dtype ", json::quote_for_message(dtype_v->as_string(), 40),
                   " (known: ", known_dtype_names(), ")");
    e.dtype = *dtype;

    LR_ENTRY_CHECK(shape_v->is_array(), "\"shape\" is ", describe(*shape_v), ", expected an array of integers");
    const auto& dims = shape_v->as_array();
    LR_ENTRY_CHECK(dims.size() <= static_cast<size_t>(kMaxDims), "shape has ", dims.size(), " dimensions, at most ",
                   kMaxDims, " are supported");
    // The product of the non-zero dimensions must fit, so that Shape::numel never overflows on the way.
    int64_t product = 1;
    for (size_t i = 0; i < dims.size(); ++i) {
        const auto d = dims[i].get_int64();
        LR_ENTRY_CHECK(d.has_value(), "shape dimension ", i, " is ", describe(dims[i]),
                       ", expected a non-negative integer");
        LR_ENTRY_CHECK(*d >= 0, "shape dimension ", i, " is negative (", *d, ")");
        e.shape.dims[i] = *d;
        e.shape.ndim = static_cast<int>(i + 1);
        if (*d > 0) {
            LR_ENTRY_CHECK(!__builtin_mul_overflow(product, *d, &product), "shape dimension ", i, " (", *d,
                           ") makes the element count overflow 64 bits");
        }
    }
    const int64_t numel = e.shape.numel();
    int64_t nbytes = 0;
    LR_ENTRY_CHECK(!__builtin_mul_overflow(numel, static_cast<int64_t>(dtype_size(e.dtype)), &nbytes), "shape ",
                   e.shape.str(), " of ", dtype_name(e.dtype), " has too many bytes (overflows 64 bits)");

    LR_ENTRY_CHECK(
        offsets_v->is_array() && offsets_v->as_array().size() == 2, "\"data_offsets\" is ",
        offsets_v->is_array() ? str_cat("an array of ", offsets_v->as_array().size(), " values") : describe(*offsets_v),
        ", expected [begin, end]");
    const auto& offs = offsets_v->as_array();
    for (size_t i = 0; i < 2; ++i) {
        LR_ENTRY_CHECK(offs[i].get_uint64().has_value(), "data_offsets[", i, "] is ", describe(offs[i]),
                       ", expected a non-negative 64-bit integer");
    }
    e.begin = offs[0].as_uint64();
    e.end = offs[1].as_uint64();
    LR_ENTRY_CHECK(e.begin <= e.end, "data_offsets [", e.begin, ", ", e.end, "] end before they begin");
    LR_ENTRY_CHECK(e.end <= data_size, "data_offsets [", e.begin, ", ", e.end, "] reach beyond the data section of ",
                   data_size, " bytes (truncated file?)");
    LR_ENTRY_CHECK(e.end - e.begin == static_cast<uint64_t>(nbytes), "data_offsets [", e.begin, ", ", e.end, "] hold ",
                   e.end - e.begin, " bytes, but ", dtype_name(e.dtype), e.shape.str(), " needs ", nbytes);
#undef LR_ENTRY_CHECK
    return e;
}

std::string range_str(const SafetensorsEntry& e) { return str_cat("[", e.begin, ", ", e.end, ")"); }

}  // namespace

SafetensorsHeader parse_safetensors_header(std::string_view json_text, uint64_t data_size, std::string_view where) {
    const json::Value root = json::parse(json_text, str_cat(where, ": header"));
    LR_CHECK(root.is_object(), where, ": header is ", describe(root), ", expected a JSON object");

    SafetensorsHeader h;
    for (const auto& [key, value] : root.as_object()) {
        if (key == "__metadata__") {
            LR_CHECK(value.is_object(), where, ": __metadata__ is ", describe(value),
                     ", expected a JSON object of strings");
            for (const auto& [mk, mv] : value.as_object()) {
                LR_CHECK(mv.is_string(), where, ": __metadata__ value ", json::quote_for_message(mk), " is ",
                         describe(mv), ", expected a string");
                h.metadata.emplace_back(mk, mv.as_string());
            }
            continue;
        }
        h.entries.push_back(parse_entry(key, value, data_size, where));
    }

    std::sort(h.entries.begin(), h.entries.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
        if (a.begin != b.begin) return a.begin < b.begin;
        if (a.end != b.end) return a.end < b.end;
        return a.name < b.name;
    });
    // Empty tensors occupy no bytes and overlap nothing; every other range must start at or after the end
    // of all ranges before it.
    const SafetensorsEntry* furthest = nullptr;
    for (const auto& e : h.entries) {
        if (e.begin == e.end) continue;
        if (furthest && e.begin < furthest->end) {
            LR_FAIL(where, ": tensors ", json::quote_for_message(furthest->name), " ", range_str(*furthest), " and ",
                    json::quote_for_message(e.name), " ", range_str(e), " overlap in the data section");
        }
        if (!furthest || e.end > furthest->end) furthest = &e;
    }
    return h;
}

uint64_t safetensors_header_length(std::span<const uint8_t> prefix, uint64_t file_size, std::string_view where) {
    LR_CHECK(file_size >= 8, where, ": file is ", file_size,
             " bytes, shorter than the 8-byte header length (truncated, or not a safetensors file)");
    LR_ASSERT(prefix.size() >= 8, "safetensors_header_length needs the first 8 bytes");
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | prefix[static_cast<size_t>(i)];
    LR_CHECK(n != 0, where, ": header length is 0 (not a safetensors file?)");
    LR_CHECK(n <= kSafetensorsMaxHeaderBytes, where, ": header length ", n, " exceeds the format's 100 MB limit",
             " (not a safetensors file?)");
    LR_CHECK(n <= file_size - 8, where, ": header length ", n, " is larger than the ", file_size - 8,
             " bytes that follow the length field (truncated file?)");
    return n;
}

// ---- SafetensorsFile -------------------------------------------------------------------------------

SafetensorsFile SafetensorsFile::open(const std::string& path) {
    io::InputFile in = io::open_input_file(path, "safetensors file");
    SafetensorsFile f;
    f.path_ = path;
    // A file shorter than the length field is rejected (this throws) before mmap, which cannot map 0 bytes.
    if (in.size < 8) safetensors_header_length({}, in.size, path);
    LR_CHECK(in.size <= std::numeric_limits<size_t>::max(), path, ": too large to map");
    void* p = ::mmap(nullptr, static_cast<size_t>(in.size), PROT_READ, MAP_PRIVATE, in.fd.get(), 0);
    LR_RUNTIME(p != MAP_FAILED, path, ": mmap of ", format_bytes(in.size), " failed: ", io::errno_message(errno));
    f.map_ = static_cast<const uint8_t*>(p);
    f.map_size_ = in.size;  // from here on the destructor unmaps, also when validation below throws

    const uint64_t header_len = safetensors_header_length({f.map_, 8}, f.map_size_, path);
    f.data_offset_ = 8 + header_len;
    const std::string_view header(reinterpret_cast<const char*>(f.map_ + 8), header_len);
    f.header_ = parse_safetensors_header(header, f.map_size_ - f.data_offset_, path);

    f.by_name_.resize(f.header_.entries.size());
    std::iota(f.by_name_.begin(), f.by_name_.end(), 0u);
    const auto& entries = f.header_.entries;
    std::sort(f.by_name_.begin(), f.by_name_.end(),
              [&](uint32_t a, uint32_t b) { return entries[a].name < entries[b].name; });
    return f;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept
    : path_(std::move(o.path_)),
      map_(std::exchange(o.map_, nullptr)),
      map_size_(std::exchange(o.map_size_, 0)),
      data_offset_(std::exchange(o.data_offset_, 0)),
      header_(std::move(o.header_)),
      by_name_(std::move(o.by_name_)) {}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
    if (this != &o) {
        if (map_) ::munmap(const_cast<uint8_t*>(map_), static_cast<size_t>(map_size_));
        path_ = std::move(o.path_);
        map_ = std::exchange(o.map_, nullptr);
        map_size_ = std::exchange(o.map_size_, 0);
        data_offset_ = std::exchange(o.data_offset_, 0);
        header_ = std::move(o.header_);
        by_name_ = std::move(o.by_name_);
    }
    return *this;
}

SafetensorsFile::~SafetensorsFile() {
    if (map_) ::munmap(const_cast<uint8_t*>(map_), static_cast<size_t>(map_size_));
}

const SafetensorsEntry* SafetensorsFile::find(std::string_view name) const {
    const auto& entries = header_.entries;
    const auto it = std::lower_bound(by_name_.begin(), by_name_.end(), name,
                                     [&](uint32_t i, std::string_view n) { return entries[i].name < n; });
    if (it == by_name_.end() || entries[*it].name != name) return nullptr;
    return &entries[*it];
}

TensorView SafetensorsFile::view(const SafetensorsEntry& e) const {
    const auto& entries = header_.entries;
    const std::less<const SafetensorsEntry*> before;  // a total order, also for pointers into other vectors
    LR_ASSERT(!entries.empty() && !before(&e, entries.data()) && before(&e, entries.data() + entries.size()), "tensor ",
              json::quote_for_message(e.name), " is not an entry of ", path_);
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-const-cast): read-only mapping, documented in the header
    return TensorView(const_cast<uint8_t*>(map_ + data_offset_ + e.begin), e.dtype, e.shape, Device::kCpu);
}

const std::string* SafetensorsFile::metadata_value(std::string_view key) const {
    for (const auto& [k, v] : header_.metadata) {
        if (k == key) return &v;
    }
    return nullptr;
}

}  // namespace lr
