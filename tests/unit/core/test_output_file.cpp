// Output locks and temporary names: two runs never write one file, a finished or killed run frees its lock, and the
// second signal's cleanup table removes registered files.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "runtime/core/check.h"
#include "runtime/core/interrupt.h"
#include "runtime/core/output_file.h"

namespace lr {
namespace {

namespace fs = std::filesystem;

struct TempDir {
    TempDir() {
        char tmpl[] = "/tmp/lr_output_file_XXXXXX";
        path = ::mkdtemp(tmpl);
    }
    ~TempDir() { fs::remove_all(path); }
    std::string file(const std::string& name) const { return path + "/" + name; }
    std::string path;
};

TEST(OutputLock, SecondLockOnOneOutputIsRefusedUntilTheFirstIsReleased) {
    TempDir dir;
    const std::string out = dir.file("v.mp4");
    {
        OutputLock first(out, "--out");
        EXPECT_TRUE(fs::exists(dir.file(".v.mp4.lock")));
        // flock locks belong to the open file description: a second open in this process conflicts like another
        // process would.
        try {
            OutputLock second(out, "--out");
            ADD_FAILURE() << "a second lock on one output was granted";
        } catch (const InputError& e) {
            const std::string msg = e.what();
            EXPECT_NE(msg.find("another longroll run is writing it"), std::string::npos) << msg;
            EXPECT_NE(msg.find(std::to_string(::getpid())), std::string::npos) << msg;  // the holder's pid
        }
        OutputLock other(dir.file("w.mp4"), "--out");  // another output is independent
    }
    EXPECT_FALSE(fs::exists(dir.file(".v.mp4.lock")));  // removed on release
    OutputLock again(out, "--out");
}

TEST(OutputLock, AKilledHoldersLockIsFree) {
    TempDir dir;
    const std::string out = dir.file("v.y4m");
    const pid_t child = ::fork();
    if (child == 0) {
        OutputLock held(out, "--out");
        ::pause();
        ::_exit(0);
    }
    for (int i = 0; i < 200 && !fs::exists(dir.file(".v.y4m.lock")); ++i) ::usleep(10000);
    ::usleep(50000);
    EXPECT_THROW(OutputLock(out, "--out"), InputError);
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    EXPECT_NO_THROW(OutputLock(out, "--out"));  // the lock file stayed, but its lock went with the process
}

TEST(OutputFile, TemporaryNamesAreUniqueHiddenSiblings) {
    const std::string a = unique_temp_path_for("/data/out/v.mp4");
    const std::string b = unique_temp_path_for("/data/out/v.mp4");
    EXPECT_NE(a, b);
    EXPECT_EQ(a.rfind("/data/out/.v.mp4." + std::to_string(::getpid()) + "-", 0), 0u) << a;
    EXPECT_TRUE(a.ends_with(".partial")) << a;
}

TEST(OutputFile, StaleTemporariesOfOneOutputAreRemovedAndNothingElse) {
    TempDir dir;
    const std::string out = dir.file("v.mp4");
    std::ofstream(unique_temp_path_for(out)) << "stale";
    std::ofstream(unique_temp_path_for(dir.file("other.mp4"))) << "someone else's";
    std::ofstream(out) << "the previous video";
    remove_stale_temporaries(out);
    int partials = 0;
    for (const auto& e : fs::directory_iterator(dir.path)) partials += e.path().string().ends_with(".partial");
    EXPECT_EQ(partials, 1);
    EXPECT_TRUE(fs::exists(out));
}

TEST(Interrupt, SecondSignalRemovesRegisteredFilesAndExitsWith128PlusTheSignal) {
    TempDir dir;
    const std::string temp = dir.file(".v.y4m.1-2.partial");
    const std::string kept = dir.file("v.y4m");
    std::ofstream(temp) << "half a video";
    std::ofstream(kept) << "a finished video";
    const pid_t child = ::fork();
    if (child == 0) {
        install_interrupt_handlers();
        register_cleanup_path(temp);
        const int done = register_cleanup_path(kept);
        unregister_cleanup_path(done);  // committed: no longer the handler's to remove
        ::raise(SIGTERM);
        if (interrupt_signal() != SIGTERM) ::_exit(3);  // the first signal only sets the flag
        ::raise(SIGINT);
        ::_exit(4);  // not reached: the second signal exits
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 128 + SIGTERM);
    EXPECT_FALSE(fs::exists(temp));
    EXPECT_TRUE(fs::exists(kept));
}

}  // namespace
}  // namespace lr
