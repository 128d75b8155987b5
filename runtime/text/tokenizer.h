// The UMT5 tokenizer as Wan runs it (wan/modules/tokenizers.py: transformers' AutoTokenizer on google/umt5-xxl,
// clean='whitespace', seq_len = text_len, add_special_tokens): Wan's text cleaning (text_clean.h), then the
// sentencepiece model (Debian's libsentencepiece, loaded through spm/spm_shim.cpp), with
//   - the special tokens written in the text taken as tokens, as transformers does: the model's "<pad>", "</s>",
//     "<unk>" pieces and the sentinels "<extra_id_N>" (N < encoder vocab - pieces; <extra_id_0> is the encoder's
//     last id, counting down); the text between them is encoded piece by piece;
//   - "</s>" appended, and the ids cut to max_len - 1 before it (transformers' truncation keeps the </s>).
// The attention mask of the reference is 1 on these ids and 0 on the padding up to text_len; the encoder and the DiT
// need only the length (see umt5_encoder.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace lr {

struct TokenizedPrompt {
    std::vector<int32_t> ids;  // the prompt's tokens then </s>: the positions the mask keeps
    int64_t dropped = 0;       // tokens cut by the max_len truncation
};

class Umt5Tokenizer {
  public:
    // Loads a sentencepiece model (the spiece.model of google/umt5-xxl) for an encoder with `encoder_vocab` embedding
    // rows. InputError naming `path` when it is not a sentencepiece model, has no </s> or <pad> piece, or does not
    // match the encoder (more pieces than rows, or more than kMaxExtraIds rows left over: another model's
    // tokenizer), naming `encoder_path` too.
    static Umt5Tokenizer open(const std::string& path, int64_t encoder_vocab, const std::string& encoder_path);
    ~Umt5Tokenizer();
    Umt5Tokenizer(Umt5Tokenizer&&) noexcept;
    Umt5Tokenizer& operator=(Umt5Tokenizer&&) noexcept;

    // T5-family encoders add sentinel rows after the sentencepiece vocabulary: T5 100 (+28 padding), mT5 12, UMT5 384.
    static constexpr int64_t kMaxExtraIds = 1024;

    const std::string& path() const { return path_; }
    int64_t piece_count() const;
    int64_t extra_ids() const { return encoder_vocab_ - piece_count(); }
    int32_t eos_id() const;
    int32_t pad_id() const;

    // Cleans and tokenizes one prompt (max_len >= 2: the reference's text_len). `where` names the source in errors
    // ("--prompt", "jobs.txt:3"): InputError for text that is not UTF-8 or is empty after cleaning.
    TokenizedPrompt encode(std::string_view text, int64_t max_len, std::string_view where) const;

  private:
    Umt5Tokenizer() = default;
    std::vector<int32_t> encode_pieces(const std::string& text) const;
    std::string piece(int32_t id) const;

    struct Model;  // the loaded sentencepiece model, behind runtime/text/spm/spm_shim.cpp
    std::string path_;
    int64_t encoder_vocab_ = 0;
    std::unique_ptr<Model> sp_;
    int32_t pieces_ = 0, eos_ = -1, pad_ = -1, unk_ = -1;
};

}  // namespace lr
