// Replays tools/wan_reference_forward.py's forwards (the real 1.3B shape, seeded random weights, Self-Forcing's
// CausalWanModel run by PyTorch on the same GPU) through longroll's model and compares the outputs.
//
//   python3 tools/wan_reference_forward.py --out DIR          # weights, prompt, inputs, reference outputs
//   reference_check --dir DIR [--backend cuda|cpu] [--max-rel-err 3e-2] [--json FILE] [--commit SHA]
//
// DIR/forward.safetensors lists calls (label, start_frame, frames, t) that share one KV cache (window
// local_attn_size, sink, absolute RoPE): an empty-cache forward, clean passes that fill the cache, a forward over the
// full window and a second denoising step of the same frames. Each call's output (the predicted flow) is compared with
// the reference's fp32 output (the oracle: fp32 throughout, TF32 off) and its bf16 output (what Self-Forcing runs),
// as ||ours - ref|| / ||ref|| and max |ours - ref|; the reference's own bf16-vs-fp32 error is printed beside them.
//
// --backend cuda (the default in CUDA builds): CudaWanModel built from the checkpoint (bf16 weights, as the engine
// runs). --backend cpu: the fp32 CPU reference model (WanModel + KvCache); minutes per forward at 1.3B, so it is for
// checking the files and this program on small shapes (tools/wan_reference_forward.py --config tiny).
//
// Exit 0 when every call's relative error vs the fp32 output (vs bf16 when the file has no fp32 outputs) is below
// --max-rel-err, 1 otherwise, 2 on bad input.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "cache/kv_cache.h"
#include "kernels/cast.h"
#include "runtime/core/check.h"
#include "runtime/io/json.h"
#include "runtime/io/safetensors.h"
#include "runtime/model/wan_model.h"

#ifdef LONGROLL_HAS_CUDA
#include "runtime/model/wan_model_cuda.h"
#endif

namespace lr {
namespace {

struct Options {
    std::string dir;
    std::string backend;
    double max_rel_err = 3e-2;
    std::string json;
    std::string commit;
};

Options parse(int argc, char** argv) {
    Options o;
#ifdef LONGROLL_HAS_CUDA
    o.backend = "cuda";
#else
    o.backend = "cpu";
#endif
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string {
            LR_CHECK(i + 1 < argc, a, " needs a value");
            return argv[++i];
        };
        if (a == "--dir")
            o.dir = next();
        else if (a == "--backend")
            o.backend = next();
        else if (a == "--max-rel-err")
            o.max_rel_err = std::stod(next());
        else if (a == "--json")
            o.json = next();
        else if (a == "--commit")
            o.commit = next();
        else {
            std::fprintf(stderr,
                         "usage: reference_check --dir DIR [--backend cuda|cpu] [--max-rel-err X] [--json FILE]\n"
                         "                       [--commit SHA]\n");
            std::exit(a == "--help" || a == "-h" ? 0 : 2);
        }
    }
    LR_CHECK(!o.dir.empty(), "reference_check: --dir DIR is required (made by tools/wan_reference_forward.py)");
    LR_CHECK(o.backend == "cuda" || o.backend == "cpu", "--backend: cuda or cpu, not '", o.backend, "'");
#ifndef LONGROLL_HAS_CUDA
    LR_CHECK(o.backend == "cpu", "--backend cuda: this build has no CUDA");
#endif
    LR_CHECK(o.max_rel_err > 0, "--max-rel-err must be > 0");
    return o;
}

std::vector<float> as_f32(const TensorView& v) {
    std::vector<float> out(static_cast<size_t>(v.numel()));
    cast(v, TensorView(out.data(), DType::kF32, v.shape));
    return out;
}

double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        const double d = double(a[i]) - double(b[i]);
        num += d * d;
        den += double(b[i]) * double(b[i]);
    }
    return std::sqrt(num / (den > 0 ? den : 1.0));
}

double max_abs(const std::vector<float>& a, const std::vector<float>& b) {
    double m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - double(b[i])));
    return m;
}

struct Call {
    std::string label;
    int64_t start = 0, frames = 0;
    double t = 0;
    std::vector<float> x, ts, want_fp32, want_bf16;
};

// The model under test: one forward at a time over its own KV cache, output to the host.
class Runner {
  public:
    virtual ~Runner() = default;
    virtual std::vector<float> forward(const Call& c) = 0;
};

class CpuRunner final : public Runner {
  public:
    CpuRunner(const WanModel& m, const TensorView& context, int64_t h, int64_t w, int64_t window, int64_t sink)
        : m_(m),
          h_(h),
          w_(w),
          prompt_(m.encode_prompt(context)),
          cache_(m.kv_cache_config(h, w, window, sink, window)) {}
    std::vector<float> forward(const Call& c) override {
        std::vector<float> out(c.x.size());
        WanForwardArgs a;
        a.x = c.x.data();
        a.t = c.ts.data();
        a.frames = c.frames;
        a.height = h_;
        a.width = w_;
        a.start_frame = c.start;
        a.prompt = &prompt_;
        a.cache = &cache_;
        a.rope = RopePositions::kAbsolute;
        m_.forward(a, out.data());
        return out;
    }

  private:
    const WanModel& m_;
    int64_t h_, w_;
    WanPrompt prompt_;
    KvCache cache_;
};

#ifdef LONGROLL_HAS_CUDA
class CudaRunner final : public Runner {
  public:
    CudaRunner(const WanModel& host, const TensorView& context, const CudaModelOptions& mo)
        : m_(host, mo), prompt_(m_.encode_prompt(context)) {
        const size_t n = static_cast<size_t>(mo.max_forward_frames * host.config().dims.in_dim * mo.height * mo.width);
        buf_ = DeviceBuffer(2 * n * sizeof(float));
        x_ = static_cast<float*>(buf_.data());
        out_ = x_ + n;
    }
    std::vector<float> forward(const Call& c) override {
        const size_t bytes = c.x.size() * sizeof(float);
        LR_CUDA_CHECK(cudaMemcpyAsync(x_, c.x.data(), bytes, cudaMemcpyHostToDevice, m_.stream()));
        CudaForwardArgs a;
        a.x = x_;
        a.t = c.ts.data();
        a.frames = c.frames;
        a.start_frame = c.start;
        a.prompt = &prompt_;
        a.out = out_;
        m_.forward(a);
        std::vector<float> out(c.x.size());
        LR_CUDA_CHECK(cudaMemcpyAsync(out.data(), out_, bytes, cudaMemcpyDeviceToHost, m_.stream()));
        LR_CUDA_CHECK(cudaStreamSynchronize(m_.stream()));
        return out;
    }

  private:
    CudaWanModel m_;
    CudaPrompt prompt_;
    DeviceBuffer buf_;
    float* x_ = nullptr;
    float* out_ = nullptr;
};
#endif

int run(int argc, char** argv) {
    const Options o = parse(argc, argv);
    namespace fs = std::filesystem;
    const std::string fwd_path = (fs::path(o.dir) / "forward.safetensors").string();
    LR_CHECK(fs::exists(fwd_path), fwd_path, " does not exist (make it with tools/wan_reference_forward.py --out ",
             o.dir, ")");
    const SafetensorsCheckpoint f = SafetensorsCheckpoint::open(fwd_path);
    const std::string* case_text = f.metadata_value("case");
    LR_CHECK(case_text != nullptr, fwd_path, ": no __metadata__[\"case\"]");
    const json::Value cs = json::parse(*case_text, fwd_path);
    const int64_t h = cs.find("latent_height")->as_int64(), w = cs.find("latent_width")->as_int64();
    const int64_t window = cs.find("local_attn_size")->as_int64(), sink = cs.find("sink_size")->as_int64();
    LR_CHECK(cs.find("rope_mode")->as_string() == "absolute", fwd_path, ": only absolute RoPE cases are supported");

    std::vector<Call> calls;
    int64_t max_frames = 1;
    bool have32 = true, have16 = true;
    for (const json::Value& jc : cs.find("calls")->as_array()) {
        const size_t i = calls.size();
        Call c;
        c.label = jc.find("label")->as_string();
        c.start = jc.find("start_frame")->as_int64();
        c.frames = jc.find("frames")->as_int64();
        c.t = jc.find("t")->as_number();
        c.x = as_f32(f.view("x." + std::to_string(i)));
        c.ts = as_f32(f.view("t." + std::to_string(i)));
        LR_CHECK(static_cast<int64_t>(c.ts.size()) == c.frames, fwd_path, ": t.", i, " has ", c.ts.size(),
                 " values for ", c.frames, " frames");
        if (f.find("out_fp32." + std::to_string(i)))
            c.want_fp32 = as_f32(f.view("out_fp32." + std::to_string(i)));
        else
            have32 = false;
        if (f.find("out_bf16." + std::to_string(i)))
            c.want_bf16 = as_f32(f.view("out_bf16." + std::to_string(i)));
        else
            have16 = false;
        max_frames = std::max(max_frames, c.frames);
        calls.push_back(std::move(c));
    }
    LR_CHECK(!calls.empty() && (have32 || have16), fwd_path, ": no calls with reference outputs");

    const auto t_load = std::chrono::steady_clock::now();
    const SafetensorsCheckpoint wf =
        SafetensorsCheckpoint::open((fs::path(o.dir) / cs.find("weights")->as_string()).string());
    bool found = false;
    const WanModelConfig cfg = wan_model_config_from_metadata(wf, WanModelConfig{}, &found);
    LR_CHECK(found, wf.path(), ": no model config in __metadata__[\"config\"]");
    const WanModel host = WanModel::from_checkpoint(wf, cfg);
    const SafetensorsCheckpoint pf =
        SafetensorsCheckpoint::open((fs::path(o.dir) / cs.find("prompt")->as_string()).string());
    const TensorView context = pf.view("context");
    std::unique_ptr<Runner> runner;
    if (o.backend == "cpu") {
        runner = std::make_unique<CpuRunner>(host, context, h, w, window, sink);
    } else {
#ifdef LONGROLL_HAS_CUDA
        CudaModelOptions mo;
        mo.height = h;
        mo.width = w;
        mo.max_forward_frames = max_frames;
        mo.window_frames = window;
        mo.sink_frames = sink;
        mo.max_frames = window;
        mo.rope = RopePositions::kAbsolute;
        runner = std::make_unique<CudaRunner>(host, context, mo);
#endif
    }
    std::fprintf(stderr,
                 "[reference_check] %s backend: model dim %lld x %lld layers, latent %lldx%lld, loaded in %.1f s\n",
                 o.backend.c_str(), static_cast<long long>(cfg.dims.dim), static_cast<long long>(cfg.dims.num_layers),
                 static_cast<long long>(h), static_cast<long long>(w), bench::seconds_since(t_load));

    bench::JsonObject results;
    bool pass = true;
    double worst = 0;
    std::printf("%-4s %-8s %6s %8s  %12s %12s  %12s  %14s\n", "call", "label", "start", "t", "rel vs fp32",
                "maxabs fp32", "rel vs bf16", "ref bf16/fp32");
    for (size_t i = 0; i < calls.size(); ++i) {
        const Call& c = calls[i];
        const auto t0 = std::chrono::steady_clock::now();
        const std::vector<float> got = runner->forward(c);
        const double secs = bench::seconds_since(t0);
        const double e32 = have32 ? rel_err(got, c.want_fp32) : NAN;
        const double m32 = have32 ? max_abs(got, c.want_fp32) : NAN;
        const double e16 = have16 ? rel_err(got, c.want_bf16) : NAN;
        const double ref = have32 && have16 ? rel_err(c.want_bf16, c.want_fp32) : NAN;
        const double judged = have32 ? e32 : e16;
        const bool ok = std::isfinite(judged) && judged <= o.max_rel_err;
        pass = pass && ok;
        worst = std::max(worst, std::isfinite(judged) ? judged : INFINITY);
        std::printf("%-4zu %-8s %6lld %8.2f  %12.3e %12.3e  %12.3e  %14.3e  %s\n", i, c.label.c_str(),
                    static_cast<long long>(c.start), c.t, e32, m32, e16, ref, ok ? "ok" : "FAIL");
        bench::JsonObject j;
        j.add("label", c.label)
            .add("start_frame", c.start)
            .add("t", c.t)
            .add("rel_err_vs_fp32", e32)
            .add("max_abs_vs_fp32", m32)
            .add("rel_err_vs_bf16", e16)
            .add("reference_bf16_vs_fp32", ref)
            .add("seconds", secs)
            .add("pass", ok);
        results.add("call." + std::to_string(i), j);
    }
    bench::JsonObject doc = bench::header("bench/reference_check", o.commit);
    doc.add("backend", o.backend)
        .add("dir", o.dir)
        .add("latent_height", h)
        .add("latent_width", w)
        .add("window_frames", window)
        .add("max_rel_err", o.max_rel_err)
        .add("worst_rel_err", worst)
        .add("judged_against", have32 ? "fp32" : "bf16")
        .add("pass", pass);
    if (const std::string* prov = f.metadata_value("provenance")) {
        try {
            json::parse(*prov, fwd_path);  // embed the generator's JSON as is when it is JSON
            doc.raw("reference_provenance", *prov);
        } catch (const InputError&) {
            doc.add("reference_provenance", *prov);
        }
    }
    doc.add("results", results);
    std::printf("%s: worst relative error %.3e vs the reference %s output (bound %.1e)\n", pass ? "PASS" : "FAIL",
                worst, have32 ? "fp32" : "bf16", o.max_rel_err);
    if (!o.json.empty() && !bench::write_json(o.json, doc)) return 1;
    return pass ? 0 : 1;
}

}  // namespace
}  // namespace lr

int main(int argc, char** argv) {
    try {
        return lr::run(argc, argv);
    } catch (const lr::Error& e) {
        std::fprintf(stderr, "reference_check: %s\n", e.what());
        return e.exit_code();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "reference_check: %s\n", e.what());
        return 1;
    }
}
