// Write-then-rename for output files: a writer fills "<dir>/.<name>.<pid>-<random>.partial" and commit() moves it to
// the final path, so `path` only ever holds a complete file (a previous file there stays intact until then).
#pragma once

#include <string>

namespace lr {

// Checks, before anything is created, that a file can be written at `path`: the directory exists, is a
// directory and is writable, and `path` itself is not a directory. InputError naming the path otherwise.
void check_output_location(const std::string& path);

// "<dir>/.<name>.<pid>-<random>.partial" for "<dir>/<name>" (unique_temp_path_for): two writers never share one.
std::string partial_path_for(const std::string& path);

// Owns the temporary file of one output. It creates nothing itself (the writer opens temp_path() with
// its own I/O); a second signal (runtime/core/interrupt.h) or its destructor removes the temporary file unless commit()
// succeeded.
class PartialFile {
  public:
    explicit PartialFile(std::string final_path);
    ~PartialFile();
    PartialFile(const PartialFile&) = delete;
    PartialFile& operator=(const PartialFile&) = delete;

    const std::string& final_path() const { return final_path_; }
    const std::string& temp_path() const { return temp_path_; }
    bool committed() const { return committed_; }

    // Flushes the (closed) temporary file to stable storage and renames it to final_path(), replacing any
    // file there. RuntimeError on failure, and the temporary file is then still removed by the destructor.
    void commit();

  private:
    std::string final_path_;
    std::string temp_path_;
    bool committed_ = false;
    int cleanup_slot_ = -1;  // a second signal removes temp_path_
};

}  // namespace lr
