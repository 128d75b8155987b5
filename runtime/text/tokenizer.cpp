#include "runtime/text/tokenizer.h"

#include <sentencepiece_processor.h>

#include <charconv>

#include "runtime/core/check.h"
#include "runtime/io/json.h"
#include "runtime/text/text_clean.h"

namespace lr {

Umt5Tokenizer::~Umt5Tokenizer() = default;
Umt5Tokenizer::Umt5Tokenizer(Umt5Tokenizer&&) noexcept = default;
Umt5Tokenizer& Umt5Tokenizer::operator=(Umt5Tokenizer&&) noexcept = default;

Umt5Tokenizer Umt5Tokenizer::open(const std::string& path, int64_t encoder_vocab, const std::string& encoder_path) {
    Umt5Tokenizer t;
    t.path_ = path;
    t.encoder_vocab_ = encoder_vocab;
    t.sp_ = std::make_unique<sentencepiece::SentencePieceProcessor>();
    const auto status = t.sp_->Load(path);
    LR_CHECK(status.ok(), "--tokenizer ", path, ": not a sentencepiece model (", status.ToString(),
             "); expected the spiece.model of google/umt5-xxl");
    const int64_t pieces = t.piece_count();
    LR_CHECK(t.sp_->eos_id() >= 0 && t.sp_->pad_id() >= 0, "--tokenizer ", path,
             ": the sentencepiece model has no </s> or <pad> piece, so it is not a T5-family tokenizer");
    LR_CHECK(pieces <= encoder_vocab && encoder_vocab - pieces <= kMaxExtraIds, "--tokenizer ", path, " has ", pieces,
             " pieces but the text encoder ", encoder_path, " has ", encoder_vocab,
             " embedding rows: they are not the same model's (UMT5-XXL: 256000 pieces, 256384 rows)");
    return t;
}

int64_t Umt5Tokenizer::piece_count() const { return sp_->GetPieceSize(); }
int32_t Umt5Tokenizer::eos_id() const { return sp_->eos_id(); }
int32_t Umt5Tokenizer::pad_id() const { return sp_->pad_id(); }

std::vector<int32_t> Umt5Tokenizer::encode_pieces(const std::string& text) const {
    std::vector<int> ids;
    const auto status = sp_->Encode(text, &ids);
    LR_RUNTIME(status.ok(), "sentencepiece (", path_, ") failed: ", status.ToString());
    return {ids.begin(), ids.end()};
}

TokenizedPrompt Umt5Tokenizer::encode(std::string_view text, int64_t max_len, std::string_view where) const {
    LR_ASSERT(max_len >= 2, "tokenizer max_len ", max_len);
    LR_CHECK(json::is_valid_utf8(text), where, ": the prompt is not valid UTF-8 text");
    const std::string clean = clean_prompt_text(text);
    LR_CHECK(!clean.empty(), where, ": the prompt is empty", text.empty() ? "" : " after whitespace cleaning");

    // Split at the special tokens written in the text; the pieces between them are encoded on their own.
    const std::string specials[] = {sp_->IdToPiece(sp_->pad_id()), sp_->IdToPiece(sp_->eos_id()),
                                    sp_->unk_id() >= 0 ? sp_->IdToPiece(sp_->unk_id()) : std::string()};
    const int32_t special_ids[] = {sp_->pad_id(), sp_->eos_id(), sp_->unk_id()};
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
    ids.push_back(sp_->eos_id());
    out.ids = std::move(ids);
    return out;
}

}  // namespace lr
