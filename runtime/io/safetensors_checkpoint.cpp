// SafetensorsCheckpoint: one .safetensors file, or a sharded checkpoint described by an index file
// (the Hugging Face "*.safetensors.index.json" layout).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "runtime/core/check.h"
#include "runtime/core/dtype.h"
#include "runtime/io/file_io.h"
#include "runtime/io/json.h"
#include "runtime/io/safetensors.h"

namespace lr {
namespace {

// Index files list one line per tensor; even the largest public checkpoints stay far below this.
constexpr uint64_t kMaxIndexBytes = 100'000'000;

bool is_index_path(std::string_view path) {
    constexpr std::string_view kSuffix = ".index.json";
    return path.size() >= kSuffix.size() && path.substr(path.size() - kSuffix.size()) == kSuffix;
}

}  // namespace

SafetensorsCheckpoint SafetensorsCheckpoint::open(const std::string& path) {
    SafetensorsCheckpoint c;
    c.path_ = path;
    if (is_index_path(path)) {
        c.load_index();
    } else {
        c.files_.push_back(SafetensorsFile::open(path));
        for (const auto& e : c.files_[0].entries()) c.tensors_.push_back(Tensor{&e, 0});
        std::sort(c.tensors_.begin(), c.tensors_.end(),
                  [](const Tensor& a, const Tensor& b) { return a.entry->name < b.entry->name; });
        c.metadata_ = c.files_[0].metadata();
    }
    return c;
}

void SafetensorsCheckpoint::load_index() {
    const std::string& path = path_;
    const std::string text = io::read_input_file(path, kMaxIndexBytes, "safetensors index file");
    const json::Value root = json::parse(text, path);
    LR_CHECK(root.is_object(), path, ": expected a JSON object with \"weight_map\", found a JSON ",
             json::type_name(root.type()));

    // The index's metadata ("total_size" and friends); only string values are kept.
    if (const json::Value* meta = root.find("metadata")) {
        LR_CHECK(meta->is_object(), path, ": \"metadata\" is a JSON ", json::type_name(meta->type()),
                 ", expected an object");
        for (const auto& [k, v] : meta->as_object()) {
            if (v.is_string()) metadata_.emplace_back(k, v.as_string());
        }
    }

    const json::Value* weight_map = root.find("weight_map");
    LR_CHECK(weight_map, path, ": missing \"weight_map\"");
    LR_CHECK(weight_map->is_object(), path, ": \"weight_map\" is a JSON ", json::type_name(weight_map->type()),
             ", expected an object {tensor name: shard file}");
    LR_CHECK(!weight_map->as_object().empty(), path, ": \"weight_map\" lists no tensors");

    // Shards are opened in file-name order, so "the first shard" is model-00001-of-0000N.
    std::map<std::string, uint32_t> shard_index;
    for (const auto& [name, shard] : weight_map->as_object()) {
        LR_CHECK(shard.is_string(), path, ": weight_map maps tensor ", json::quote_for_message(name), " to a JSON ",
                 json::type_name(shard.type()), ", expected a shard file name");
        const std::string& file = shard.as_string();
        LR_CHECK(!file.empty() && file.front() != '/', path, ": weight_map maps tensor ", json::quote_for_message(name),
                 " to ", json::quote_for_message(file), ", expected a file name relative to the index");
        shard_index.emplace(file, 0);
    }
    const std::filesystem::path dir = std::filesystem::path(path).parent_path();
    files_.reserve(shard_index.size());
    for (auto& [file, index] : shard_index) {
        index = static_cast<uint32_t>(files_.size());
        try {
            files_.push_back(SafetensorsFile::open((dir / file).string()));
        } catch (const InputError& e) {
            LR_FAIL(path, ": shard ", json::quote_for_message(file), " of weight_map: ", e.what());
        }
    }

    for (const auto& [name, shard] : weight_map->as_object()) {
        const uint32_t file = shard_index.at(shard.as_string());
        const SafetensorsEntry* e = files_[file].find(name);
        LR_CHECK(e, path, ": weight_map maps tensor ", json::quote_for_message(name), " to ", files_[file].path(),
                 ", which has no such tensor");
        tensors_.push_back(Tensor{e, file});
    }
    std::sort(tensors_.begin(), tensors_.end(),
              [](const Tensor& a, const Tensor& b) { return a.entry->name < b.entry->name; });

    // A tensor stored in two shards is ambiguous even when weight_map picks one of them. Tensors that
    // weight_map does not list at all are ignored, as other loaders do.
    for (uint32_t f = 0; f < files_.size(); ++f) {
        for (const auto& e : files_[f].entries()) {
            const Tensor* t = lookup(e.name);
            LR_CHECK(!t || t->file == f, path, ": tensor ", json::quote_for_message(e.name), " is in two shards, ",
                     files_[t->file].path(), " and ", files_[f].path());
        }
    }

    // The index's values win; copies of the keys, because emplace_back below moves metadata_'s strings.
    const std::set<std::string> index_keys = [&] {
        std::set<std::string> keys;
        for (const auto& kv : metadata_) keys.insert(kv.first);
        return keys;
    }();
    for (const auto& [k, v] : files_[0].metadata()) {
        if (!index_keys.contains(k)) metadata_.emplace_back(k, v);
    }
}

const SafetensorsCheckpoint::Tensor* SafetensorsCheckpoint::lookup(std::string_view name) const {
    const auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                                     [](const Tensor& t, std::string_view n) { return t.entry->name < n; });
    if (it == tensors_.end() || it->entry->name != name) return nullptr;
    return &*it;
}

const SafetensorsCheckpoint::Tensor& SafetensorsCheckpoint::require(std::string_view name) const {
    const Tensor* t = lookup(name);
    LR_CHECK(t, path_, ": no tensor named ", json::quote_for_message(name), " (the checkpoint has ", tensors_.size(),
             " tensors)");
    return *t;
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
    std::vector<std::string> out;
    out.reserve(tensors_.size());
    for (const auto& t : tensors_) out.push_back(t.entry->name);
    return out;
}

const SafetensorsEntry* SafetensorsCheckpoint::find(std::string_view name) const {
    const Tensor* t = lookup(name);
    return t ? t->entry : nullptr;
}

TensorView SafetensorsCheckpoint::view(std::string_view name) const {
    const Tensor& t = require(name);
    return files_[t.file].view(*t.entry);
}

const std::string& SafetensorsCheckpoint::file_of(std::string_view name) const {
    return files_[require(name).file].path();
}

const std::string* SafetensorsCheckpoint::metadata_value(std::string_view key) const {
    for (const auto& [k, v] : metadata_) {
        if (k == key) return &v;
    }
    return nullptr;
}

uint64_t SafetensorsCheckpoint::total_bytes() const {
    uint64_t n = 0;
    for (const auto& t : tensors_) n += t.entry->end - t.entry->begin;
    return n;
}

namespace {

// Converts n elements to F32 and says whether any is NaN or Inf: the exponent bits of every value are ANDed with
// all-ones and the results ORed, which the compiler vectorises with the conversion.
template <typename Convert>
bool convert_and_check(int64_t n, float* dst, Convert convert) {
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; ++i) {
        const float v = convert(i);
        dst[i] = v;
        uint32_t bits;
        std::memcpy(&bits, &v, 4);
        bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
    }
    return bad != 0;
}

}  // namespace

void read_finite_f32(const SafetensorsCheckpoint& ckpt, std::string_view name, const TensorView& dst) {
    const TensorView src = ckpt.view(name);
    LR_ASSERT(dst.dtype == DType::kF32 && dst.numel() == src.numel() && dst.is_contiguous(), "read_finite_f32 into ",
              dst.str());
    const int64_t n = src.numel();
    float* out = static_cast<float*>(dst.data);
    bool bad = false;
    switch (src.dtype) {
        case DType::kF32: {
            const auto* in = static_cast<const float*>(src.data);
            bad = convert_and_check(n, out, [in](int64_t i) { return in[i]; });
            break;
        }
        case DType::kBF16: {
            const auto* in = static_cast<const uint16_t*>(src.data);
            bad = convert_and_check(n, out, [in](int64_t i) { return bf16_bits_to_f32(in[i]); });
            break;
        }
        case DType::kF16: {
            const auto* in = static_cast<const uint16_t*>(src.data);
            bad = convert_and_check(n, out, [in](int64_t i) { return f16_bits_to_f32(in[i]); });
            break;
        }
        default:
            LR_CHECK(false, ckpt.file_of(name), ": tensor '", name, "' has dtype ", dtype_name(src.dtype),
                     ", expected F32, BF16 or F16");
    }
    if (!bad) return;
    // Only a refused file pays for the details.
    int64_t first = -1, count = 0;
    for (int64_t i = 0; i < n; ++i) {
        if (std::isfinite(out[i])) continue;
        if (first < 0) first = i;
        ++count;
    }
    std::string index;
    int64_t rest = first;
    for (int d = src.shape.ndim - 1; d >= 0; --d) {
        index = str_cat(rest % src.shape[d], d == src.shape.ndim - 1 ? "" : ", ", index);
        rest /= src.shape[d];
    }
    LR_CHECK(false, ckpt.file_of(name), ": tensor '", name, "' ", src.shape.str(), " holds ", count,
             count == 1 ? " value that is" : " values that are", " NaN or Inf (the first, ",
             std::isnan(out[first]) ? "NaN" : "Inf", ", at [", index,
             "]): the checkpoint is damaged or its training diverged; export it again from a good step");
}

}  // namespace lr
