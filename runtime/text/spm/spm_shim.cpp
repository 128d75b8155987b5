// A C interface to Debian's libsentencepiece, built as its own shared module and loaded with
// dlopen(RTLD_LOCAL | RTLD_DEEPBIND) by runtime/text/tokenizer.cpp.
//
// Why a separate module: Debian builds libsentencepiece with its own copy of protobuf-lite 3.14 and exports those
// symbols. Linked into `longroll`, which also links the system libprotobuf (3.21, the config schema), one copy
// interposes the other and sentencepiece aborts with "compiled against 3.14.0 ... not compatible with 3.21.12".
// Deep binding makes the module and libsentencepiece resolve their symbols among themselves first.
#include <sentencepiece_processor.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

namespace {

void set_error(char* err, size_t len, const std::string& msg) {
    if (err == nullptr || len == 0) return;
    std::strncpy(err, msg.c_str(), len - 1);
    err[len - 1] = '\0';
}

}  // namespace

extern "C" {

// A loaded model, or nullptr with the reason in `err`.
void* lr_spm_open(const char* path, char* err, size_t err_len) {
    auto* sp = new (std::nothrow) sentencepiece::SentencePieceProcessor();
    if (sp == nullptr) return nullptr;
    const auto status = sp->Load(path);
    if (!status.ok()) {
        set_error(err, err_len, status.ToString());
        delete sp;
        return nullptr;
    }
    return sp;
}

void lr_spm_close(void* h) { delete static_cast<sentencepiece::SentencePieceProcessor*>(h); }

// Piece count and the special ids (-1 where the model has none).
void lr_spm_info(void* h, int* pieces, int* eos, int* pad, int* unk) {
    const auto* sp = static_cast<sentencepiece::SentencePieceProcessor*>(h);
    *pieces = sp->GetPieceSize();
    *eos = sp->eos_id();
    *pad = sp->pad_id();
    *unk = sp->unk_id();
}

// The piece of `id`, NUL-terminated in `buf`; its length, or -1 when it does not fit.
int lr_spm_piece(void* h, int id, char* buf, size_t len) {
    const std::string p = static_cast<sentencepiece::SentencePieceProcessor*>(h)->IdToPiece(id);
    if (p.size() + 1 > len) return -1;
    std::memcpy(buf, p.c_str(), p.size() + 1);
    return static_cast<int>(p.size());
}

// Encodes `text` (len bytes): *ids (malloc-ed, free with lr_spm_free) and *n; 0, or -1 with the reason in `err`.
int lr_spm_encode(void* h, const char* text, size_t len, int** ids, size_t* n, char* err, size_t err_len) {
    std::vector<int> out;
    const auto status =
        static_cast<sentencepiece::SentencePieceProcessor*>(h)->Encode(std::string_view(text, len), &out);
    if (!status.ok()) {
        set_error(err, err_len, status.ToString());
        return -1;
    }
    *n = out.size();
    *ids = static_cast<int*>(std::malloc(std::max<size_t>(1, out.size()) * sizeof(int)));
    if (*ids == nullptr) return -1;
    std::memcpy(*ids, out.data(), out.size() * sizeof(int));
    return 0;
}

void lr_spm_free(int* ids) { std::free(ids); }

}  // extern "C"
