#include "launch/cli.h"

#include <cstdio>
#include <exception>
#include <new>

#include "dist/fault.h"
#include "dist/process.h"
#include "launch/cli_args.h"
#include "runtime/core/build_info.h"
#include "runtime/core/check.h"
#include "runtime/core/device.h"
#include "runtime/video/video_writer.h"

namespace lr {
namespace {

constexpr const char* kTopHelp =
    "longroll: long videos from autoregressive video diffusion models (Wan2.1 architecture)\n"
    "\n"
    "Usage: longroll <command> [flags]\n"
    "\n"
    "Commands:\n"
    "  generate          generate a video (or latents) from a config, weights and prompt embeddings\n"
    "  validate-config   parse and check a config file; exit 2 with file:line:col on an error\n"
    "  inspect           list the tensors of a safetensors file or sharded index; exit 2 if malformed\n"
    "  decode            decode saved latents (generate --save-latents) to a video through the VAE\n"
    "  profile-heads     profile a model's heads for attention.policy FORCING_KV (a short dense CPU rollout)\n"
    "  version           version, git commit and what this build supports\n"
    "\n"
    "`longroll <command> --help` describes each command's flags.\n"
    "Exit codes: 0 ok, 1 runtime failure, 2 usage, config or input error.\n";

}  // namespace

int cmd_version(const std::vector<std::string>& args) {
    const ParsedArgs a = parse_args("version", {}, args);
    if (a.has("help")) {
        std::printf(
            "%s",
            format_help("version", "", "Prints the version, the git commit and the build's backends.", {}).c_str());
        return 0;
    }
    LR_CHECK(a.positional().empty(), "longroll version: unexpected argument '", a.positional()[0], "'");
    std::printf("longroll %s (git %s)\n", kVersion, kGitSha);
#ifdef LONGROLL_HAS_CUDA
    const int n = cuda_device_count();
    std::printf("cuda: yes (built for %s), %d device%s visible%s%s\n", kCudaArchitectures, n, n == 1 ? "" : "s",
                n > 0 ? ": " : "", n > 0 ? cuda_device_description(0).c_str() : "");
#else
    std::printf("cuda: no (CPU-only build)\n");
#endif
    std::printf("mp4: %s\n", mp4_supported() ? "yes (libavcodec, H.264)" : "no (Y4M output only)");
    return 0;
}

int run_cli(int argc, char** argv) {
    std::vector<std::string> args(argv + (argc > 1 ? 2 : argc), argv + argc);
    const std::string command = argc > 1 ? argv[1] : "";
    ProcessInfo who = process_info_from_env();
    try {
        if (command.empty() || command == "--help" || command == "-h" || command == "help") {
            std::printf("%s", kTopHelp);
            return command.empty() ? 2 : 0;
        }
        if (command == "--version") return cmd_version({});
        if (command == "version") return cmd_version(args);
        if (command == "validate-config") return cmd_validate_config(args);
        if (command == "inspect") return cmd_inspect(args);
        if (command == "decode") return cmd_decode(args);
        if (command == "profile-heads") return cmd_profile_heads(args);
        if (command == "generate") {
            // MPI starts only for the command that uses it, and only under an MPI launcher. One rank failing
            // must not leave the others waiting: run_rank_guarded aborts the job naming the rank and host.
            MpiSession mpi;
            who = mpi.info();
            if (mpi.active()) install_exit_guard(who);
            return run_rank_guarded(mpi, [&] { return cmd_generate(args, mpi); });
        }
        LR_FAIL(
            "unknown command '", command,
            "' (commands: generate, validate-config, inspect, decode, profile-heads, version; see longroll --help)");
    } catch (const Error& e) {
        if (who.world_size > 1) {
            std::fprintf(stderr, "longroll: error on rank %d (host %s): %s\n", who.rank, who.host.c_str(), e.what());
        } else {
            std::fprintf(stderr, "longroll: error: %s\n", e.what());
        }
        return e.exit_code();
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "longroll: error: out of host memory\n");
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "longroll: error: %s\n", e.what());
        return 1;
    }
}

}  // namespace lr
