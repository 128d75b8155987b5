// Capture the message of the error a call throws, for tests that check what a refusal says.
#pragma once

#include <functional>
#include <string>

#include "runtime/core/check.h"

namespace lr::test {

// The message of the InputError that `f` throws (exit code 2: bad input); "" when it throws none. Other
// exceptions propagate, so an unexpected kind of error fails the test rather than passing as a message.
inline std::string input_error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const InputError& e) {
        return e.what();
    }
    return "";
}

// The message of the RuntimeError `f` throws (exit code 1: I/O at run time), or "" if it throws none.
inline std::string runtime_error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const RuntimeError& e) {
        return e.what();
    }
    return "";
}

}  // namespace lr::test
