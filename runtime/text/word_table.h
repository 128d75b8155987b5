// The text encoder of the embedded default model (models/tiny-shapes/, tools/train/): a table of one learned
// vector per word of its caption grammar. text.safetensors holds `word_embeddings` F32 [vocab, text_dim] and, in
// its metadata, `vocab` (a JSON list of the words, row order) and optionally `grammar` (for messages). A prompt's
// context is the rows of its words in order, F32 [words, text_dim], which the DiT zero-pads to text_len, exactly
// as tools/train/caption_embeds.py writes it: lower-cased (ASCII), split on whitespace. `--prompt TEXT` on the
// default model goes through it, with no UMT5 and no Python.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/tensor.h"

namespace lr {

class WordTable {
  public:
    // InputError naming `path` when the file is not such a table or its width is not `text_dim`.
    static WordTable open(const std::string& path, int64_t text_dim);

    // F32 [words, text_dim]. InputError naming `where` for an empty prompt, words outside the vocabulary (all of
    // them listed, with the vocabulary and the grammar), or more than `max_words` words.
    HostTensor encode(std::string_view text, int64_t max_words, std::string_view where) const;

    const std::string& path() const { return path_; }
    const std::vector<std::string>& vocab() const { return vocab_; }
    int64_t dim() const { return dim_; }

  private:
    std::string path_;
    std::vector<std::string> vocab_;
    std::string grammar_;
    std::vector<float> rows_;  // [vocab, dim]
    int64_t dim_ = 0;
};

}  // namespace lr
