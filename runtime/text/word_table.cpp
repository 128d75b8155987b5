#include "runtime/text/word_table.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cast.h"
#include "runtime/core/check.h"
#include "runtime/io/json.h"
#include "runtime/io/safetensors.h"

namespace lr {

WordTable WordTable::open(const std::string& path, int64_t text_dim) {
    const SafetensorsCheckpoint f = SafetensorsCheckpoint::open(path);
    const SafetensorsEntry* e = f.find("word_embeddings");
    LR_CHECK(e != nullptr, path, ": no tensor 'word_embeddings' (expected the default model's word table, F32 [vocab, ",
             text_dim, "], written by tools/train/train.py export)");
    LR_CHECK(e->dtype == DType::kF32, path, ": tensor 'word_embeddings' has dtype ", dtype_name(e->dtype),
             ", expected F32");
    LR_CHECK(e->shape.ndim == 2 && e->shape[0] >= 1 && e->shape[1] == text_dim, path,
             ": tensor 'word_embeddings' has shape ", e->shape.str(), ", expected [vocab, ", text_dim,
             "] (the DiT's text_dim)");
    const std::string* vocab_json = f.metadata_value("vocab");
    LR_CHECK(vocab_json != nullptr, path, ": no 'vocab' in the metadata (the words of the table's rows, a JSON list)");
    const json::Value v = json::parse(*vocab_json, path + " metadata 'vocab'");
    LR_CHECK(v.is_array(), path, ": metadata 'vocab' is a JSON ", json::type_name(v.type()), ", expected a list");
    WordTable t;
    t.path_ = path;
    t.dim_ = text_dim;
    for (const json::Value& w : v.as_array()) {
        LR_CHECK(w.is_string() && !w.as_string().empty(), path, ": metadata 'vocab' holds a ",
                 w.is_string() ? "n empty string" : str_cat(" ", json::type_name(w.type())), ", expected words");
        LR_CHECK(std::find(t.vocab_.begin(), t.vocab_.end(), w.as_string()) == t.vocab_.end(), path,
                 ": metadata 'vocab' lists '", w.as_string(), "' twice");
        t.vocab_.push_back(w.as_string());
    }
    LR_CHECK(static_cast<int64_t>(t.vocab_.size()) == e->shape[0], path, ": metadata 'vocab' has ", t.vocab_.size(),
             " words but 'word_embeddings' has ", e->shape[0], " rows");
    if (const std::string* g = f.metadata_value("grammar")) t.grammar_ = *g;
    HostTensor rows(DType::kF32, e->shape);
    cast(f.view("word_embeddings"), rows.view);
    const float* r = rows.as<float>();
    for (int64_t i = 0; i < rows.view.numel(); ++i) {
        LR_CHECK(std::isfinite(r[i]), path, ": tensor 'word_embeddings' holds ", std::isnan(r[i]) ? "NaN" : "Inf",
                 " in the row of '", t.vocab_[static_cast<size_t>(i / text_dim)], "'");
    }
    t.rows_.assign(r, r + rows.view.numel());
    return t;
}

HostTensor WordTable::encode(std::string_view text, int64_t max_words, std::string_view where) const {
    std::vector<std::string> words;
    std::string cur;
    for (const char c : text) {
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
            if (!cur.empty()) words.push_back(std::move(cur));
            cur.clear();
        } else {
            cur.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
        }
    }
    if (!cur.empty()) words.push_back(std::move(cur));
    std::string known;
    for (const std::string& w : vocab_) known += str_cat(known.empty() ? "" : " ", w);
    const std::string grammar = grammar_.empty() ? std::string() : str_cat("; its captions read '", grammar_, "'");
    LR_CHECK(!words.empty(), where, ": the prompt has no words (the model ", path_, " knows: ", known, grammar, ")");
    std::vector<size_t> ids;
    std::string unknown;
    for (const std::string& w : words) {
        const auto it = std::find(vocab_.begin(), vocab_.end(), w);
        if (it == vocab_.end()) {
            unknown += str_cat(unknown.empty() ? "" : ", ", json::quote_for_message(w, 40));
        } else {
            ids.push_back(static_cast<size_t>(it - vocab_.begin()));
        }
    }
    LR_CHECK(unknown.empty(), where, ": words the model does not know: ", unknown, " (", path_,
             " is a table of one vector per word; it knows: ", known, grammar, ")");
    LR_CHECK(static_cast<int64_t>(words.size()) <= max_words, where, ": ", words.size(),
             " words, but the model takes at most model.text_len = ", max_words);
    HostTensor ctx(DType::kF32, Shape{static_cast<int64_t>(ids.size()), dim_});
    for (size_t i = 0; i < ids.size(); ++i) {
        std::memcpy(ctx.as<float>() + static_cast<int64_t>(i) * dim_, rows_.data() + ids[i] * dim_,
                    static_cast<size_t>(dim_) * sizeof(float));
    }
    return ctx;
}

}  // namespace lr
