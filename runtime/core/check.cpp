#include "runtime/core/check.h"

namespace lr::detail {

void throw_input_error(const std::string& msg) { throw InputError(msg); }

void throw_runtime_error(const std::string& msg) { throw RuntimeError(msg); }

void throw_internal_error(const char* file, int line, const char* cond, const std::string& msg) {
    std::string full = str_cat("internal error (a bug in longroll) at ", file, ":", line, ": ", cond, " failed");
    if (!msg.empty()) full += str_cat(": ", msg);
    throw InternalError(full);
}

}  // namespace lr::detail
