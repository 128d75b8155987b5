// safetensors files: reading (mmap, validated completely at open), sharded checkpoints (an index file
// plus shards) and writing (atomic: a temporary file renamed when complete).
//
// Layout of a file (https://github.com/huggingface/safetensors):
//   [8 bytes: header length N, little-endian u64] [N bytes: JSON header] [data section]
// The header maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to
// the data section) and may carry "__metadata__", an object of string values.
//
// Everything read from a file is hostile until validated: every problem is an InputError whose message
// starts with the file path and names the tensor, and nothing reads out of bounds or allocates without
// a bound. Gaps between tensors and trailing bytes after the last one are accepted (some writers pad);
// overlapping tensors and ranges outside the data section are not. The reader does not require tensor
// data to be aligned: a view of a file written with unaligned offsets has an unaligned data pointer.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/core/dtype.h"
#include "runtime/core/tensor.h"

namespace lr {

// The spec's limit on the header length; it also bounds what the JSON parser is asked to read.
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

struct SafetensorsEntry {
    std::string name;
    DType dtype = DType::kF32;
    Shape shape;
    uint64_t begin = 0;  // byte offsets within the data section: [begin, end)
    uint64_t end = 0;
};

struct SafetensorsHeader {
    std::vector<SafetensorsEntry> entries;                      // sorted by begin offset (ties: by name)
    std::vector<std::pair<std::string, std::string>> metadata;  // __metadata__, in document order
};

// Parses and fully validates a header (the JSON text after the 8-byte length) against a data section of
// data_size bytes. `where` (the file path) starts every error message. This is what the fuzzer drives.
SafetensorsHeader parse_safetensors_header(std::string_view json, uint64_t data_size, std::string_view where);

// Validates the 8-byte length prefix of a file of file_size bytes whose first bytes are `prefix` (at least
// 8 of them when file_size >= 8) and returns the header length: 0 < N <= kSafetensorsMaxHeaderBytes and
// N <= file_size - 8. The data section is then file_size - 8 - N bytes starting at offset 8 + N.
uint64_t safetensors_header_length(std::span<const uint8_t> prefix, uint64_t file_size, std::string_view where);

// One file, mapped read-only (MAP_PRIVATE) and validated completely at open. Move-only.
class SafetensorsFile {
  public:
    // InputError naming the path (and the tensor) on any problem with the file.
    static SafetensorsFile open(const std::string& path);

    SafetensorsFile(SafetensorsFile&& o) noexcept;
    SafetensorsFile& operator=(SafetensorsFile&& o) noexcept;
    SafetensorsFile(const SafetensorsFile&) = delete;
    SafetensorsFile& operator=(const SafetensorsFile&) = delete;
    ~SafetensorsFile();

    const std::string& path() const { return path_; }
    uint64_t file_size() const { return map_size_; }
    const std::vector<SafetensorsEntry>& entries() const { return header_.entries; }
    // O(log n); nullptr if absent.
    const SafetensorsEntry* find(std::string_view name) const;
    // A contiguous CPU view into the mapping. The data pointer is const_cast from read-only memory:
    // callers must not write through it.
    TensorView view(const SafetensorsEntry& e) const;
    const std::vector<std::pair<std::string, std::string>>& metadata() const { return header_.metadata; }
    const std::string* metadata_value(std::string_view key) const;

  private:
    SafetensorsFile() = default;

    std::string path_;
    const uint8_t* map_ = nullptr;
    uint64_t map_size_ = 0;
    uint64_t data_offset_ = 0;  // 8 + header length
    SafetensorsHeader header_;
    std::vector<uint32_t> by_name_;  // indices into header_.entries, sorted by name
};

class SafetensorsCheckpoint;

// The weight `name` of `ckpt` (F32, BF16 or F16) converted into `dst` (F32, the same element count), refusing NaN
// and Inf: InputError naming the file, the tensor, the first bad element and how many there are. The check rides
// along the conversion every weight goes through anyway (an OR of exponent bits per element), not a second pass.
void read_finite_f32(const SafetensorsCheckpoint& ckpt, std::string_view name, const TensorView& dst);

// A checkpoint: one .safetensors file, or a sharded "*.safetensors.index.json" ({"metadata": {...},
// "weight_map": {tensor: shard file}}) with the shards resolved relative to the index file. Every shard
// is opened and validated; every tensor of weight_map must be in its shard and in no other shard.
class SafetensorsCheckpoint {
  public:
    static SafetensorsCheckpoint open(const std::string& path);

    const std::string& path() const { return path_; }
    std::vector<std::string> names() const;  // sorted
    size_t size() const { return tensors_.size(); }
    const SafetensorsEntry* find(std::string_view name) const;  // nullptr if absent
    TensorView view(std::string_view name) const;               // InputError naming tensor and file if absent
    const std::string& file_of(std::string_view name) const;    // the shard's path; InputError if absent
    // Single file: its __metadata__. Sharded: the index's "metadata" values that are strings, then the keys
    // of the first shard's __metadata__ (shards sorted by file name) that the index does not have.
    const std::vector<std::pair<std::string, std::string>>& metadata() const { return metadata_; }
    const std::string* metadata_value(std::string_view key) const;
    uint64_t total_bytes() const;  // data bytes of all tensors

  private:
    SafetensorsCheckpoint() = default;
    void load_index();  // path_ is a "*.index.json"

    struct Tensor {
        const SafetensorsEntry* entry;  // into files_[file].entries(), whose storage survives moves
        uint32_t file;
    };
    const Tensor* lookup(std::string_view name) const;
    const Tensor& require(std::string_view name) const;

    std::string path_;
    std::vector<SafetensorsFile> files_;
    std::vector<Tensor> tensors_;  // sorted by name
    std::vector<std::pair<std::string, std::string>> metadata_;
};

struct NamedTensor {
    std::string name;
    TensorView view;  // a contiguous CPU tensor
};

// Writes a safetensors file: the header padded with spaces to a multiple of 8 bytes, then the tensors in
// the given order, contiguous. Written to a temporary name unique to this writer ("<dir>/.<name>.<pid>-<random>
// .partial") and renamed over `path` only when complete; the partial file is removed on failure. Empty,
// duplicate or reserved ("__metadata__") names, names or metadata that are not UTF-8, non-contiguous or non-CPU
// views -> InputError. A path that cannot be created or replaced, or a failing write (disk full) -> RuntimeError
// naming it (callers check the location before any work).
void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       const std::vector<std::pair<std::string, std::string>>& metadata = {});

}  // namespace lr
