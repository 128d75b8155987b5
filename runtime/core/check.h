// Error types and check macros (STYLE.md rule 5).
//
//   LR_CHECK(cond, msg...)   bad input, config or usage: throws InputError, which `main` turns into exit code 2.
//   LR_FAIL(msg...)          an unconditional InputError.
//   LR_RUNTIME(cond, msg...) something failed at run time that is not the user's input (I/O, encoder):
//                            throws RuntimeError, exit code 1.
//   LR_ASSERT(cond, msg...)  a broken invariant, i.e. a bug in longroll: throws InternalError, exit code 1.
//
// Messages say what was expected, what was found and where (file, tensor name, field, rank). The message
// parts are streamed, so `LR_CHECK(n > 0, "tensor '", name, "': expected n > 0, found ", n)` works.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace lr {

// Base of every longroll error; what() is the whole user-facing message.
class Error : public std::runtime_error {
  public:
    explicit Error(const std::string& msg) : std::runtime_error(msg) {}
    virtual int exit_code() const { return 1; }
};

// The user's input (flags, config, files) is wrong. Exit code 2.
class InputError : public Error {
  public:
    using Error::Error;
    int exit_code() const override { return 2; }
};

// A runtime failure that is not the user's fault (out of memory, I/O, a library call). Exit code 1.
class RuntimeError : public Error {
  public:
    using Error::Error;
};

// A broken invariant: a bug in longroll. Exit code 1.
class InternalError : public Error {
  public:
    using Error::Error;
};

template <typename... Args>
std::string str_cat(const Args&... args) {
    std::ostringstream os;
    (os << ... << args);
    return os.str();
}

namespace detail {
[[noreturn]] void throw_input_error(const std::string& msg);
[[noreturn]] void throw_runtime_error(const std::string& msg);
[[noreturn]] void throw_internal_error(const char* file, int line, const char* cond, const std::string& msg);
}  // namespace detail

}  // namespace lr

#define LR_CHECK(cond, ...)                                              \
    do {                                                                 \
        if (!(cond)) [[unlikely]] {                                      \
            ::lr::detail::throw_input_error(::lr::str_cat(__VA_ARGS__)); \
        }                                                                \
    } while (0)

#define LR_FAIL(...) ::lr::detail::throw_input_error(::lr::str_cat(__VA_ARGS__))

#define LR_RUNTIME(cond, ...)                                              \
    do {                                                                   \
        if (!(cond)) [[unlikely]] {                                        \
            ::lr::detail::throw_runtime_error(::lr::str_cat(__VA_ARGS__)); \
        }                                                                  \
    } while (0)

#define LR_ASSERT(cond, ...)                                                                  \
    do {                                                                                      \
        if (!(cond)) [[unlikely]] {                                                           \
            ::lr::detail::throw_internal_error(__FILE__, __LINE__, #cond,                     \
                                               ::lr::str_cat("" __VA_OPT__(, ) __VA_ARGS__)); \
        }                                                                                     \
    } while (0)
