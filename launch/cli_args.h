// A small, strict command-line parser: `--flag value` and `--flag=value`, boolean switches, repeatable
// flags, positional arguments. Unknown flags, missing values and repeated single flags are usage errors
// (InputError, exit code 2) that name the command and point at --help.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lr {

struct FlagSpec {
    std::string name;        // without the leading "--"
    std::string value_name;  // "FILE", "N", ...; empty for a boolean switch
    std::string help;
    bool repeatable = false;
};

class ParsedArgs {
  public:
    bool has(std::string_view flag) const;
    std::optional<std::string> get(std::string_view flag) const;  // the value of a single flag
    std::vector<std::string> get_all(std::string_view flag) const;
    // Typed getters: InputError "--seed: expected an integer, found 'x'" on bad values.
    std::optional<int64_t> get_int(std::string_view flag, int64_t min, int64_t max) const;
    std::optional<double> get_double(std::string_view flag, double min, double max) const;
    const std::vector<std::string>& positional() const { return positional_; }

  private:
    friend ParsedArgs parse_args(std::string_view, const std::vector<FlagSpec>&, const std::vector<std::string>&);
    std::map<std::string, std::vector<std::string>, std::less<>> values_;
    std::vector<std::string> positional_;
};

// Parses `args` (after the subcommand) against `specs`. `-h`/`--help` are recognised as the flag "help".
ParsedArgs parse_args(std::string_view command, const std::vector<FlagSpec>& specs,
                      const std::vector<std::string>& args);

// "Usage: longroll <command> <usage>\n\n<summary>\n\nFlags:\n  --config FILE  ..." aligned.
std::string format_help(std::string_view command, std::string_view usage, std::string_view summary,
                        const std::vector<FlagSpec>& specs);

}  // namespace lr
