#include "runtime/text/tokenizer.h"

#include <dlfcn.h>

#include <charconv>
#include <filesystem>
#include <mutex>

#include "runtime/core/check.h"
#include "runtime/io/json.h"
#include "runtime/text/text_clean.h"

namespace lr {
namespace {

// The C interface of spm/spm_shim.cpp, resolved once per process.
struct SpmApi {
    void* (*open)(const char*, char*, size_t) = nullptr;
    void (*close)(void*) = nullptr;
    void (*info)(void*, int*, int*, int*, int*) = nullptr;
    int (*piece)(void*, int, char*, size_t) = nullptr;
    int (*encode)(void*, const char*, size_t, int**, size_t*, char*, size_t) = nullptr;
    void (*free_ids)(int*) = nullptr;
};

const SpmApi& spm_api() {
#ifndef LONGROLL_HAS_SPM
    // InputError: what was asked for is not in this build (exit 2), not a failure of the run.
    throw InputError(
        "text prompts need libsentencepiece, which this longroll was built without: install libsentencepiece-dev "
        "(scripts/deps.sh does) and rebuild, or give --prompt-embeds");
#define LONGROLL_SPM_MODULE ""
#define LONGROLL_SPM_MODULE_NAME ""
#endif
    static SpmApi api;
    static std::once_flag once;
    std::call_once(once, [] {
        std::vector<std::string> candidates;
        std::error_code ec;
        const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
        if (!ec) {
            candidates.push_back((exe.parent_path() / LONGROLL_SPM_MODULE_NAME).string());
            candidates.push_back(
                (exe.parent_path().parent_path() / "lib" / "longroll" / LONGROLL_SPM_MODULE_NAME).string());
        }
        candidates.emplace_back(LONGROLL_SPM_MODULE);
        void* lib = nullptr;
        std::string tried;
        for (const std::string& c : candidates) {
            lib = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
            if (lib) break;
            const char* why = dlerror();
            tried += str_cat("\n  ", c, ": ", why ? why : "not found");
        }
        LR_RUNTIME(lib != nullptr, "cannot load the sentencepiece module ", LONGROLL_SPM_MODULE_NAME,
                   " (libsentencepiece0 installed? scripts/deps.sh installs it):", tried);
        const auto sym = [&](const char* name) {
            void* p = dlsym(lib, name);
            LR_RUNTIME(p != nullptr, "the sentencepiece module lacks ", name);
            return p;
        };
        api.open = reinterpret_cast<decltype(api.open)>(sym("lr_spm_open"));
        api.close = reinterpret_cast<decltype(api.close)>(sym("lr_spm_close"));
        api.info = reinterpret_cast<decltype(api.info)>(sym("lr_spm_info"));
        api.piece = reinterpret_cast<decltype(api.piece)>(sym("lr_spm_piece"));
        api.encode = reinterpret_cast<decltype(api.encode)>(sym("lr_spm_encode"));
        api.free_ids = reinterpret_cast<decltype(api.free_ids)>(sym("lr_spm_free"));
    });
    return api;
}

}  // namespace

struct Umt5Tokenizer::Model {
    void* handle = nullptr;
    ~Model() {
        if (handle) spm_api().close(handle);
    }
};

Umt5Tokenizer::~Umt5Tokenizer() = default;
Umt5Tokenizer::Umt5Tokenizer(Umt5Tokenizer&&) noexcept = default;
Umt5Tokenizer& Umt5Tokenizer::operator=(Umt5Tokenizer&&) noexcept = default;

Umt5Tokenizer Umt5Tokenizer::open(const std::string& path, int64_t encoder_vocab, const std::string& encoder_path) {
    const SpmApi& api = spm_api();
    Umt5Tokenizer t;
    t.path_ = path;
    t.encoder_vocab_ = encoder_vocab;
    t.sp_ = std::make_unique<Model>();
    char err[512] = {};
    t.sp_->handle = api.open(path.c_str(), err, sizeof(err));
    LR_CHECK(t.sp_->handle != nullptr, "--tokenizer ", path, ": not a sentencepiece model (", err,
             "); expected the spiece.model of google/umt5-xxl");
    int pieces = 0, eos = -1, pad = -1, unk = -1;
    api.info(t.sp_->handle, &pieces, &eos, &pad, &unk);
    t.pieces_ = pieces;
    t.eos_ = eos;
    t.pad_ = pad;
    t.unk_ = unk;
    LR_CHECK(eos >= 0 && pad >= 0, "--tokenizer ", path,
             ": the sentencepiece model has no </s> or <pad> piece, so it is not a T5-family tokenizer");
    LR_CHECK(pieces <= encoder_vocab && encoder_vocab - pieces <= kMaxExtraIds, "--tokenizer ", path, " has ", pieces,
             " pieces but the text encoder ", encoder_path, " has ", encoder_vocab,
             " embedding rows: they are not the same model's (UMT5-XXL: 256000 pieces, 256384 rows)");
    return t;
}

int64_t Umt5Tokenizer::piece_count() const { return pieces_; }
int32_t Umt5Tokenizer::eos_id() const { return eos_; }
int32_t Umt5Tokenizer::pad_id() const { return pad_; }

std::string Umt5Tokenizer::piece(int32_t id) const {
    char buf[256];
    const int n = spm_api().piece(sp_->handle, id, buf, sizeof(buf));
    LR_RUNTIME(n >= 0, "sentencepiece (", path_, "): piece ", id, " is too long");
    return std::string(buf, static_cast<size_t>(n));
}

std::vector<int32_t> Umt5Tokenizer::encode_pieces(const std::string& text) const {
    int* ids = nullptr;
    size_t n = 0;
    char err[512] = {};
    const int rc = spm_api().encode(sp_->handle, text.data(), text.size(), &ids, &n, err, sizeof(err));
    LR_RUNTIME(rc == 0, "sentencepiece (", path_, ") failed: ", err);
    std::vector<int32_t> out(ids, ids + n);
    spm_api().free_ids(ids);
    return out;
}

TokenizedPrompt Umt5Tokenizer::encode(std::string_view text, int64_t max_len, std::string_view where) const {
    LR_ASSERT(max_len >= 2, "tokenizer max_len ", max_len);
    LR_CHECK(json::is_valid_utf8(text), where, ": the prompt is not valid UTF-8 text");
    const std::string clean = clean_prompt_text(text);
    LR_CHECK(!clean.empty(), where, ": the prompt is empty", text.empty() ? "" : " after whitespace cleaning");

    // Split at the special tokens written in the text; the pieces between them are encoded on their own.
    const std::string specials[] = {piece(pad_), piece(eos_), unk_ >= 0 ? piece(unk_) : std::string()};
    const int32_t special_ids[] = {pad_, eos_, unk_};
    constexpr std::string_view kSentinel = "<extra_id_";
    std::vector<int32_t> ids;
    size_t segment = 0;
    for (size_t i = 0; i < clean.size(); ++i) {
        if (clean[i] != '<') continue;
        size_t len = 0;
        int32_t id = -1;
        for (size_t s = 0; s < std::size(specials); ++s) {
            if (!specials[s].empty() && clean.compare(i, specials[s].size(), specials[s]) == 0) {
                len = specials[s].size();
                id = special_ids[s];
            }
        }
        if (id < 0 && clean.compare(i, kSentinel.size(), kSentinel) == 0) {
            // <extra_id_N> with N written without leading zeros and below the encoder's sentinel count.
            const char* b = clean.data() + i + kSentinel.size();
            const char* e = clean.data() + clean.size();
            int64_t n = -1;
            const auto [p, ec] = std::from_chars(b, e, n);
            const bool canonical = ec == std::errc() && p > b && (*b != '0' || p == b + 1);
            if (canonical && p < e && *p == '>' && n >= 0 && n < extra_ids()) {
                len = static_cast<size_t>(p + 1 - (clean.data() + i));
                id = static_cast<int32_t>(encoder_vocab_ - 1 - n);
            }
        }
        if (id < 0) continue;
        const std::vector<int32_t> before = encode_pieces(clean.substr(segment, i - segment));
        ids.insert(ids.end(), before.begin(), before.end());
        ids.push_back(id);
        segment = i + len;
        i = segment - 1;
    }
    const std::vector<int32_t> rest = encode_pieces(clean.substr(segment));
    ids.insert(ids.end(), rest.begin(), rest.end());

    TokenizedPrompt out;
    const auto keep = static_cast<size_t>(max_len - 1);
    if (ids.size() > keep) {
        out.dropped = static_cast<int64_t>(ids.size() - keep);
        ids.resize(keep);
    }
    ids.push_back(eos_);
    out.ids = std::move(ids);
    return out;
}

}  // namespace lr
