// The `longroll` command line: subcommand dispatch and the commands themselves. Each command returns the
// process exit code; errors propagate as lr::Error and become codes in run_cli (0 ok, 1 runtime, 2 input).
#pragma once

#include <string>
#include <vector>

namespace lr {

class MpiSession;

// argv[1] is the subcommand. Catches every error, prints one clear message (naming rank and host when
// several ranks run) and returns the exit code.
int run_cli(int argc, char** argv);

int cmd_generate(const std::vector<std::string>& args, const MpiSession& mpi);
int cmd_validate_config(const std::vector<std::string>& args);
int cmd_inspect(const std::vector<std::string>& args);
int cmd_decode(const std::vector<std::string>& args);
int cmd_profile_heads(const std::vector<std::string>& args);
int cmd_version(const std::vector<std::string>& args);

}  // namespace lr
