#include "runtime/io/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "runtime/core/check.h"

namespace lr::io {

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
        reset();
        fd_ = o.release();
    }
    return *this;
}

void UniqueFd::reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

std::string errno_message(int err) { return std::generic_category().message(err); }

InputFile open_input_file(const std::string& path, std::string_view what) {
    LR_CHECK(!path.empty(), "empty file name given for a ", what);
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) {
        const int err = errno;
        LR_CHECK(err != ENOENT, path, ": no such file (expected a ", what, ")");
        LR_CHECK(err != EACCES, path, ": permission denied");
        LR_FAIL(path, ": cannot open: ", errno_message(err));
    }
    struct stat st {};
    LR_RUNTIME(::fstat(fd.get(), &st) == 0, path, ": fstat failed: ", errno_message(errno));
    LR_CHECK(!S_ISDIR(st.st_mode), path, ": is a directory, expected a ", what);
    LR_CHECK(S_ISREG(st.st_mode), path, ": is not a regular file, expected a ", what);
    return InputFile{std::move(fd), static_cast<uint64_t>(st.st_size)};
}

std::string read_input_file(const std::string& path, uint64_t max_bytes, std::string_view what) {
    InputFile f = open_input_file(path, what);
    LR_CHECK(f.size <= max_bytes, path, ": ", f.size, " bytes, more than the ", max_bytes, " expected of a ", what);
    std::string text(f.size, '\0');
    size_t done = 0;
    while (done < text.size()) {
        const ssize_t n = ::read(f.fd.get(), text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        LR_RUNTIME(n >= 0, path, ": read failed: ", errno_message(errno));
        if (n == 0) break;  // shrank while we read it: parse what is there
        done += static_cast<size_t>(n);
    }
    text.resize(done);
    return text;
}

}  // namespace lr::io
