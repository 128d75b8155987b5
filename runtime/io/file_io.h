// POSIX file helpers shared by the safetensors reader, the checkpoint index reader and the writer: an owned
// file descriptor, opening an input file with messages a user can act on, and bounded whole-file reads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace lr::io {

// Owns a file descriptor; closes it on destruction. Move-only.
class UniqueFd {
  public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
    UniqueFd& operator=(UniqueFd&& o) noexcept;
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }

    int get() const { return fd_; }
    int release() {
        const int fd = fd_;
        fd_ = -1;
        return fd;
    }
    void reset();

  private:
    int fd_ = -1;
};

struct InputFile {
    UniqueFd fd;
    uint64_t size = 0;
};

// Opens a regular file for reading. InputError "<path>: no such file" / "permission denied" / "is a
// directory, expected a <what>" / ...; `what` names the kind of file ("safetensors file").
InputFile open_input_file(const std::string& path, std::string_view what);

// The whole file, refusing files larger than max_bytes.
std::string read_input_file(const std::string& path, uint64_t max_bytes, std::string_view what);

// errno as text ("No such file or directory"), thread-safe.
std::string errno_message(int err);

}  // namespace lr::io
