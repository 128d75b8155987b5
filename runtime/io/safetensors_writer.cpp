// write_safetensors: validate everything first, then write a temporary file unique to this writer
// ("<dir>/.<name>.<pid>-<random>.partial") and rename it over `path`, so
// that a reader never sees a half-written file under the final name.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <set>

#include "runtime/core/check.h"
#include "runtime/core/interrupt.h"
#include "runtime/core/output_file.h"
#include "runtime/io/file_io.h"
#include "runtime/io/json.h"
#include "runtime/io/safetensors.h"

namespace lr {
namespace {

// The temporary file, created by the constructor and removed by the destructor (or a second signal) unless
// commit() renamed it to `path`. Failing to create or rename it is a runtime failure (exit code 1): the caller
// checked the location before any work (check_output_location).
class PartialFile {
  public:
    explicit PartialFile(const std::string& final_path)
        : final_path_(final_path), partial_path_(unique_temp_path_for(final_path)) {
        fd_ = io::UniqueFd(::open(partial_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
        if (fd_.get() < 0) {
            LR_RUNTIME(false, final_path_, ": cannot write: creating ", partial_path_,
                       " failed: ", io::errno_message(errno));
        }
        cleanup_slot_ = register_cleanup_path(partial_path_);
    }
    PartialFile(const PartialFile&) = delete;
    PartialFile& operator=(const PartialFile&) = delete;
    ~PartialFile() {
        unregister_cleanup_path(cleanup_slot_);
        if (committed_) return;
        fd_.reset();
        ::unlink(partial_path_.c_str());
    }

    void write_all(const void* data, uint64_t bytes) {
        const auto* p = static_cast<const char*>(data);
        while (bytes > 0) {
            // Linux writes at most ~2 GiB per call; 1 GiB chunks keep every call well-defined.
            const size_t chunk = static_cast<size_t>(std::min<uint64_t>(bytes, uint64_t{1} << 30));
            const ssize_t n = ::write(fd_.get(), p, chunk);
            if (n < 0 && errno == EINTR) continue;
            LR_RUNTIME(n > 0, final_path_, ": write to ", partial_path_, " failed: ", io::errno_message(errno));
            p += n;
            bytes -= static_cast<uint64_t>(n);
        }
    }

    void commit() {
        LR_RUNTIME(::fsync(fd_.get()) == 0, final_path_, ": fsync failed: ", io::errno_message(errno));
        LR_RUNTIME(::close(fd_.release()) == 0, final_path_, ": close failed: ", io::errno_message(errno));
        if (::rename(partial_path_.c_str(), final_path_.c_str()) != 0) {
            LR_RUNTIME(false, final_path_, ": cannot replace it with the written file: ", io::errno_message(errno));
        }
        committed_ = true;
    }

  private:
    io::UniqueFd fd_;
    std::string final_path_;
    std::string partial_path_;
    bool committed_ = false;
    int cleanup_slot_ = -1;
};

void check_tensor(const std::string& path, const NamedTensor& t) {
    const std::string qname = json::quote_for_message(t.name);
    LR_CHECK(!t.name.empty(), path, ": cannot write a tensor with an empty name");
    LR_CHECK(t.name != "__metadata__", path, ": \"__metadata__\" is reserved and cannot name a tensor");
    LR_CHECK(json::is_valid_utf8(t.name), path, ": tensor name ", qname, " is not valid UTF-8");
    LR_CHECK(t.view.device == Device::kCpu, path, ": tensor ", qname, " is ", t.view.str(),
             "; copy it to the host before writing");
    LR_CHECK(t.view.shape.ndim >= 0 && t.view.shape.ndim <= kMaxDims, path, ": tensor ", qname, " has ",
             t.view.shape.ndim, " dimensions");
    for (int i = 0; i < t.view.shape.ndim; ++i) {
        LR_CHECK(t.view.shape[i] >= 0, path, ": tensor ", qname, " has a negative dimension: ", t.view.shape.str());
    }
    LR_CHECK(t.view.is_contiguous(), path, ": tensor ", qname, " ", t.view.str(),
             " is not contiguous; make a contiguous copy before writing");
    LR_CHECK(t.view.data != nullptr || t.view.numel() == 0, path, ": tensor ", qname, " has no data");
}

}  // namespace

void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       const std::vector<std::pair<std::string, std::string>>& metadata) {
    LR_CHECK(!path.empty(), "write_safetensors: empty output file name");

    // Everything that can be refused is refused before the file is created.
    std::set<std::string_view> names;
    for (const auto& t : tensors) {
        check_tensor(path, t);
        LR_CHECK(names.insert(t.name).second, path, ": tensor name ", json::quote_for_message(t.name),
                 " is used twice");
    }
    std::set<std::string_view> keys;
    for (const auto& [k, v] : metadata) {
        LR_CHECK(json::is_valid_utf8(k) && json::is_valid_utf8(v), path, ": metadata ", json::quote_for_message(k),
                 " is not valid UTF-8");
        LR_CHECK(keys.insert(k).second, path, ": metadata key ", json::quote_for_message(k), " is used twice");
    }

    std::string header = "{";
    if (!metadata.empty()) {
        header += "\"__metadata__\":{";
        for (size_t i = 0; i < metadata.size(); ++i) {
            header += str_cat(i ? "," : "", json::quote(metadata[i].first), ":", json::quote(metadata[i].second));
        }
        header += "}";
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < tensors.size(); ++i) {
        const TensorView& v = tensors[i].view;
        const auto nbytes = static_cast<uint64_t>(v.nbytes());
        header += str_cat(i || !metadata.empty() ? "," : "", json::quote(tensors[i].name), ":{\"dtype\":\"",
                          dtype_name(v.dtype), "\",\"shape\":[");
        for (int d = 0; d < v.shape.ndim; ++d) header += str_cat(d ? "," : "", v.shape[d]);
        header += str_cat("],\"data_offsets\":[", offset, ",", offset + nbytes, "]}");
        offset += nbytes;
    }
    header += "}";
    // The data section then starts at a multiple of 8, so that tensors of 8-byte types can be aligned.
    header.resize((header.size() + 7) / 8 * 8, ' ');
    LR_CHECK(header.size() <= kSafetensorsMaxHeaderBytes, path, ": the header of ", tensors.size(),
             " tensors would be ", header.size(), " bytes, more than the format's 100 MB limit");

    PartialFile out(path);
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(header.size()) >> (8 * i));
    out.write_all(len, sizeof(len));
    out.write_all(header.data(), header.size());
    for (const auto& t : tensors) out.write_all(t.view.data, static_cast<uint64_t>(t.view.nbytes()));
    out.commit();
}

}  // namespace lr
