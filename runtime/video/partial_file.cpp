#include "runtime/video/partial_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>

#include "runtime/core/check.h"
#include "runtime/core/interrupt.h"
#include "runtime/core/output_file.h"

namespace lr {
namespace {

namespace fs = std::filesystem;

// The directory holding `path`, as something open() and access() accept.
std::string directory_of(const std::string& path) {
    std::string dir = fs::path(path).parent_path().string();
    return dir.empty() ? std::string(".") : dir;
}

// fsync() of an existing file or directory; the error number, or 0.
int fsync_path(const std::string& path, int open_flags) {
    int fd = ::open(path.c_str(), open_flags | O_CLOEXEC);
    if (fd < 0) return errno;
    int err = ::fsync(fd) == 0 ? 0 : errno;
    ::close(fd);
    return err;
}

}  // namespace

void check_output_location(const std::string& path) {
    LR_CHECK(!path.empty(), "video output path is empty");
    const fs::path p(path);
    LR_CHECK(!p.filename().empty(), "cannot write video '", path, "': the path names a directory, not a file");
    const std::string dir = directory_of(path);
    std::error_code ec;
    const fs::file_status dir_status = fs::status(dir, ec);
    LR_CHECK(fs::exists(dir_status), "cannot write video '", path, "': directory '", dir, "' does not exist");
    LR_CHECK(fs::is_directory(dir_status), "cannot write video '", path, "': '", dir, "' is not a directory");
    LR_CHECK(::access(dir.c_str(), W_OK | X_OK) == 0, "cannot write video '", path, "': directory '", dir,
             "' is not writable (", std::strerror(errno), ")");
    LR_CHECK(!fs::is_directory(fs::status(p, ec)), "cannot write video '", path, "': it is an existing directory");
}

std::string partial_path_for(const std::string& path) { return unique_temp_path_for(path); }

PartialFile::PartialFile(std::string final_path)
    : final_path_(std::move(final_path)),
      temp_path_(partial_path_for(final_path_)),
      cleanup_slot_(register_cleanup_path(temp_path_)) {}

PartialFile::~PartialFile() {
    if (!committed_) std::remove(temp_path_.c_str());
    unregister_cleanup_path(cleanup_slot_);
}

void PartialFile::commit() {
    LR_ASSERT(!committed_, "'", final_path_, "' committed twice");
    // Data before the rename, the directory entry after it: a crash then leaves either the old file or the
    // complete new one at final_path_, never a truncated one.
    const int err = fsync_path(temp_path_, O_RDONLY);
    LR_RUNTIME(err == 0, "cannot flush video '", temp_path_, "' to disk: ", std::strerror(err));
    LR_RUNTIME(std::rename(temp_path_.c_str(), final_path_.c_str()) == 0, "cannot rename '", temp_path_, "' to '",
               final_path_, "': ", std::strerror(errno));
    committed_ = true;
    unregister_cleanup_path(cleanup_slot_);
    cleanup_slot_ = -1;
    // Best effort: some file systems refuse fsync on a directory, and the file itself is already safe.
    fsync_path(directory_of(final_path_), O_RDONLY | O_DIRECTORY);
}

}  // namespace lr
