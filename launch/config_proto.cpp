// Conversion between the protobuf schema and the plain structs. Defaults are the structs' member
// initializers: a field the message does not set keeps them, except where the default depends on
// another field (model.out_dim, parallel.vae_ranks).
#include <string>

#include "launch/config_detail.h"

namespace lr::config_detail {

namespace {

// Copies a set proto field into the struct member; an absent one leaves the member's default.
#define LR_TAKE(msg, cfg, field)         \
    do {                                 \
        if ((msg).has_##field()) {       \
            (cfg).field = (msg).field(); \
        }                                \
    } while (0)

// An enum number the schema does not name (proto3 enums accept any number in text format).
template <typename Enum>
void unknown_enum(const char* path, const google::protobuf::EnumDescriptor& desc, Enum value,
                  std::vector<Issue>* issues) {
    issues->push_back(
        {path, -1, str_cat("expected one of ", enum_value_names(desc), ", found ", static_cast<int>(value))});
}

void require(bool present, const char* path, const char* example, std::vector<Issue>* issues) {
    if (!present) issues->push_back({path, -1, str_cat("required, not set (", example, ")")});
}

ModelConfig model_from_proto(const pb::Model& m, std::vector<Issue>* issues) {
    ModelConfig c;
    require(m.has_dim(), "model.dim", "1536 for Wan2.1 1.3B, 5120 for 14B", issues);
    require(m.has_ffn_dim(), "model.ffn_dim", "8960 for Wan2.1 1.3B, 13824 for 14B", issues);
    require(m.has_num_heads(), "model.num_heads", "12 for Wan2.1 1.3B, 40 for 14B", issues);
    require(m.has_num_layers(), "model.num_layers", "30 for Wan2.1 1.3B, 40 for 14B", issues);
    LR_TAKE(m, c, dim);
    LR_TAKE(m, c, ffn_dim);
    LR_TAKE(m, c, num_heads);
    LR_TAKE(m, c, num_layers);
    LR_TAKE(m, c, in_dim);
    // Wan's latent channels are the same in and out for text-to-video.
    c.out_dim = m.has_out_dim() ? m.out_dim() : c.in_dim;
    LR_TAKE(m, c, text_dim);
    LR_TAKE(m, c, text_len);
    LR_TAKE(m, c, freq_dim);
    LR_TAKE(m, c, eps);
    if (m.patch_size_size() == 3) {
        for (int i = 0; i < 3; ++i) c.patch_size[i] = m.patch_size(i);
    } else if (m.patch_size_size() != 0) {
        issues->push_back(
            {"model.patch_size", -1, str_cat("expected 3 values (t, h, w), found ", m.patch_size_size())});
    }
    LR_TAKE(m, c, model_type);
    LR_TAKE(m, c, qk_norm);
    LR_TAKE(m, c, cross_attn_norm);
    return c;
}

RolloutConfig rollout_from_proto(const pb::Rollout& m, std::vector<Issue>* issues) {
    RolloutConfig c;
    LR_TAKE(m, c, frames_per_chunk);
    if (m.denoising_steps_size() > 0) c.denoising_steps.assign(m.denoising_steps().begin(), m.denoising_steps().end());
    LR_TAKE(m, c, timestep_shift);
    LR_TAKE(m, c, context_noise);
    LR_TAKE(m, c, local_attn_size);
    LR_TAKE(m, c, sink_size);
    if (m.has_rope_mode()) {
        switch (m.rope_mode()) {
            case pb::Rollout::ABSOLUTE:
                c.rope_mode = RopeMode::kAbsolute;
                break;
            case pb::Rollout::WINDOW_RELATIVE:
                c.rope_mode = RopeMode::kWindowRelative;
                break;
            default:
                unknown_enum("rollout.rope_mode", *pb::Rollout::RopeMode_descriptor(), m.rope_mode(), issues);
        }
    }
    LR_TAKE(m, c, num_train_timesteps);
    if (m.has_sampler()) {
        switch (m.sampler()) {
            case pb::Rollout::SELF_FORCING:
                c.sampler = Sampler::kSelfForcing;
                break;
            case pb::Rollout::EULER:
                c.sampler = Sampler::kEuler;
                break;
            default:
                unknown_enum("rollout.sampler", *pb::Rollout::Sampler_descriptor(), m.sampler(), issues);
        }
    }
    return c;
}

VideoConfig video_from_proto(const pb::Video& m) {
    VideoConfig c;
    LR_TAKE(m, c, width);
    LR_TAKE(m, c, height);
    LR_TAKE(m, c, fps);
    LR_TAKE(m, c, crop_height);
    return c;
}

AttentionConfig attention_from_proto(const pb::Attention& m, std::vector<Issue>* issues) {
    AttentionConfig c;
    if (m.has_policy()) {
        switch (m.policy()) {
            case pb::Attention::DENSE:
                c.policy = AttentionPolicy::kDense;
                break;
            case pb::Attention::SINK_WINDOW:
                c.policy = AttentionPolicy::kSinkWindow;
                break;
            case pb::Attention::SPARSE_FORCING:
                c.policy = AttentionPolicy::kSparseForcing;
                break;
            case pb::Attention::LIGHT_FORCING:
                c.policy = AttentionPolicy::kLightForcing;
                break;
            case pb::Attention::FORCING_KV:
                c.policy = AttentionPolicy::kForcingKv;
                break;
            case pb::Attention::LVSA:
                c.policy = AttentionPolicy::kLvsa;
                break;
            default:
                unknown_enum("attention.policy", *pb::Attention::Policy_descriptor(), m.policy(), issues);
        }
    }
    LR_TAKE(m, c, block_size);
    LR_TAKE(m.sparse_forcing(), c.sparse_forcing, persistent_blocks);
    LR_TAKE(m.sparse_forcing(), c.sparse_forcing, topk_blocks);
    LR_TAKE(m.light_forcing(), c.light_forcing, chunk_aware_growth);
    LR_TAKE(m.light_forcing(), c.light_forcing, near_frames);
    LR_TAKE(m.light_forcing(), c.light_forcing, topk_frames);
    LR_TAKE(m.light_forcing(), c.light_forcing, topk_blocks);
    LR_TAKE(m.forcing_kv(), c.forcing_kv, static_head_threshold);
    LR_TAKE(m.forcing_kv(), c.forcing_kv, recent_frames);
    LR_TAKE(m.forcing_kv(), c.forcing_kv, dynamic_keep_ratio);
    LR_TAKE(m.forcing_kv(), c.forcing_kv, head_profile);
    LR_TAKE(m.lvsa(), c.lvsa, window_frames);
    LR_TAKE(m.lvsa(), c.lvsa, anchor_interval);
    return c;
}

ParallelConfig parallel_from_proto(const pb::Parallel& m, std::vector<Issue>* issues) {
    ParallelConfig c;
    LR_TAKE(m, c, ulysses);
    LR_TAKE(m, c, spatial);
    LR_TAKE(m, c, data_parallel);
    LR_TAKE(m, c, overlap_groups);
    if (m.has_vae()) {
        switch (m.vae()) {
            case pb::Parallel::SAME_RANKS:
                c.vae = VaePlacement::kSameRanks;
                break;
            case pb::Parallel::DEDICATED_RANKS:
                c.vae = VaePlacement::kDedicatedRanks;
                break;
            default:
                unknown_enum("parallel.vae", *pb::Parallel::VaePlacement_descriptor(), m.vae(), issues);
        }
    }
    // One decoder rank per group unless told otherwise; no VAE ranks of their own when the VAE shares.
    c.vae_ranks = m.has_vae_ranks() ? m.vae_ranks() : (c.vae == VaePlacement::kDedicatedRanks ? 1 : 0);
    if (m.has_transport()) {
        switch (m.transport()) {
            case pb::Parallel::AUTO:
                c.transport = Transport::kAuto;
                break;
            case pb::Parallel::MPI:
                c.transport = Transport::kMpi;
                break;
            case pb::Parallel::NCCL:
                c.transport = Transport::kNccl;
                break;
            default:
                unknown_enum("parallel.transport", *pb::Parallel::Transport_descriptor(), m.transport(), issues);
        }
    }
    return c;
}

OutputConfig output_from_proto(const pb::Output& m, std::vector<Issue>* issues) {
    OutputConfig c;
    if (m.has_codec()) {
        switch (m.codec()) {
            case pb::Output::H264:
                c.codec = VideoCodec::kH264;
                break;
            default:
                unknown_enum("output.codec", *pb::Output::Codec_descriptor(), m.codec(), issues);
        }
    }
    LR_TAKE(m, c, crf);
    LR_TAKE(m, c, preset);
    LR_TAKE(m, c, save_config);
    LR_TAKE(m, c, checkpoint_every);
    return c;
}

MonitoringConfig monitoring_from_proto(const pb::Monitoring& m) {
    MonitoringConfig c;
    LR_TAKE(m, c, enabled);
    LR_TAKE(m, c, port);
    LR_TAKE(m, c, bind);
    LR_TAKE(m, c, file_sd_path);
    return c;
}

RuntimeConfig runtime_from_proto(const pb::Runtime& m, std::vector<Issue>* issues) {
    RuntimeConfig c;
    if (m.has_device()) {
        switch (m.device()) {
            case pb::Runtime::AUTO:
                c.device = DeviceChoice::kAuto;
                break;
            case pb::Runtime::CPU:
                c.device = DeviceChoice::kCpu;
                break;
            case pb::Runtime::CUDA:
                c.device = DeviceChoice::kCuda;
                break;
            default:
                unknown_enum("runtime.device", *pb::Runtime::Device_descriptor(), m.device(), issues);
        }
    }
    LR_TAKE(m, c, seed);
    if (m.has_dtype()) {
        switch (m.dtype()) {
            case pb::Runtime::BF16:
                c.dtype = DType::kBF16;
                break;
            case pb::Runtime::F16:
                c.dtype = DType::kF16;
                break;
            case pb::Runtime::F32:
                c.dtype = DType::kF32;
                break;
            default:
                unknown_enum("runtime.dtype", *pb::Runtime::DType_descriptor(), m.dtype(), issues);
        }
    }
    return c;
}

TextConfig text_from_proto(const pb::Text& m) {
    TextConfig c;
    LR_TAKE(m, c, encoder);
    LR_TAKE(m, c, tokenizer);
    LR_TAKE(m, c, keep_encoder_in_host_memory);
    return c;
}

#undef LR_TAKE

pb::Rollout::Sampler to_proto(Sampler v) {
    switch (v) {
        case Sampler::kSelfForcing:
            return pb::Rollout::SELF_FORCING;
        case Sampler::kEuler:
            return pb::Rollout::EULER;
    }
    bad_enum("sampler", static_cast<int>(v));
}

pb::Rollout::RopeMode to_proto(RopeMode v) {
    switch (v) {
        case RopeMode::kAbsolute:
            return pb::Rollout::ABSOLUTE;
        case RopeMode::kWindowRelative:
            return pb::Rollout::WINDOW_RELATIVE;
    }
    bad_enum("rope mode", static_cast<int>(v));
}

pb::Attention::Policy to_proto(AttentionPolicy v) {
    switch (v) {
        case AttentionPolicy::kDense:
            return pb::Attention::DENSE;
        case AttentionPolicy::kSinkWindow:
            return pb::Attention::SINK_WINDOW;
        case AttentionPolicy::kSparseForcing:
            return pb::Attention::SPARSE_FORCING;
        case AttentionPolicy::kLightForcing:
            return pb::Attention::LIGHT_FORCING;
        case AttentionPolicy::kForcingKv:
            return pb::Attention::FORCING_KV;
        case AttentionPolicy::kLvsa:
            return pb::Attention::LVSA;
    }
    bad_enum("attention policy", static_cast<int>(v));
}

pb::Parallel::VaePlacement to_proto(VaePlacement v) {
    switch (v) {
        case VaePlacement::kSameRanks:
            return pb::Parallel::SAME_RANKS;
        case VaePlacement::kDedicatedRanks:
            return pb::Parallel::DEDICATED_RANKS;
    }
    bad_enum("VAE placement", static_cast<int>(v));
}

pb::Parallel::Transport to_proto(Transport v) {
    switch (v) {
        case Transport::kAuto:
            return pb::Parallel::AUTO;
        case Transport::kMpi:
            return pb::Parallel::MPI;
        case Transport::kNccl:
            return pb::Parallel::NCCL;
    }
    bad_enum("transport", static_cast<int>(v));
}

pb::Output::Codec to_proto(VideoCodec v) {
    switch (v) {
        case VideoCodec::kH264:
            return pb::Output::H264;
    }
    bad_enum("codec", static_cast<int>(v));
}

pb::Runtime::Device to_proto(DeviceChoice v) {
    switch (v) {
        case DeviceChoice::kAuto:
            return pb::Runtime::AUTO;
        case DeviceChoice::kCpu:
            return pb::Runtime::CPU;
        case DeviceChoice::kCuda:
            return pb::Runtime::CUDA;
    }
    bad_enum("device", static_cast<int>(v));
}

pb::Runtime::DType dtype_to_proto(DType v) {
    switch (v) {
        case DType::kBF16:
            return pb::Runtime::BF16;
        case DType::kF16:
            return pb::Runtime::F16;
        case DType::kF32:
            return pb::Runtime::F32;
        default:
            break;
    }
    // validate_config refuses other types, so only an unvalidated struct gets here.
    LR_FAIL("runtime.dtype: expected BF16, F16 or F32, found ", dtype_name(v));
}

}  // namespace

Config config_from_proto(const pb::Config& msg, std::vector<Issue>* issues) {
    Config c;
    if (msg.has_model()) {
        c.model = model_from_proto(msg.model(), issues);
    } else {
        issues->push_back({"model", -1,
                           "required, not set: the file needs a model { dim ffn_dim num_heads num_layers } "
                           "section (see configs/*.textproto)"});
    }
    c.rollout = rollout_from_proto(msg.rollout(), issues);
    c.video = video_from_proto(msg.video());
    c.attention = attention_from_proto(msg.attention(), issues);
    c.parallel = parallel_from_proto(msg.parallel(), issues);
    c.output = output_from_proto(msg.output(), issues);
    c.monitoring = monitoring_from_proto(msg.monitoring());
    c.runtime = runtime_from_proto(msg.runtime(), issues);
    c.text = text_from_proto(msg.text());
    return c;
}

pb::Config config_to_proto(const Config& cfg) {
    pb::Config msg;

    pb::Model* m = msg.mutable_model();
    const ModelConfig& mc = cfg.model;
    m->set_dim(mc.dim);
    m->set_ffn_dim(mc.ffn_dim);
    m->set_num_heads(mc.num_heads);
    m->set_num_layers(mc.num_layers);
    m->set_in_dim(mc.in_dim);
    m->set_out_dim(mc.out_dim);
    m->set_text_dim(mc.text_dim);
    m->set_text_len(mc.text_len);
    m->set_freq_dim(mc.freq_dim);
    m->set_eps(mc.eps);
    for (int64_t p : mc.patch_size) m->add_patch_size(p);
    m->set_model_type(mc.model_type);
    m->set_qk_norm(mc.qk_norm);
    m->set_cross_attn_norm(mc.cross_attn_norm);

    pb::Rollout* r = msg.mutable_rollout();
    const RolloutConfig& rc = cfg.rollout;
    r->set_frames_per_chunk(rc.frames_per_chunk);
    for (int t : rc.denoising_steps) r->add_denoising_steps(t);
    r->set_timestep_shift(rc.timestep_shift);
    r->set_context_noise(rc.context_noise);
    r->set_local_attn_size(rc.local_attn_size);
    r->set_sink_size(rc.sink_size);
    r->set_rope_mode(to_proto(rc.rope_mode));
    r->set_num_train_timesteps(rc.num_train_timesteps);
    r->set_sampler(to_proto(rc.sampler));

    pb::Video* v = msg.mutable_video();
    v->set_width(cfg.video.width);
    v->set_height(cfg.video.height);
    v->set_fps(cfg.video.fps);
    v->set_crop_height(cfg.video.crop_height);

    pb::Attention* a = msg.mutable_attention();
    const AttentionConfig& ac = cfg.attention;
    a->set_policy(to_proto(ac.policy));
    a->set_block_size(ac.block_size);
    a->mutable_sparse_forcing()->set_persistent_blocks(ac.sparse_forcing.persistent_blocks);
    a->mutable_sparse_forcing()->set_topk_blocks(ac.sparse_forcing.topk_blocks);
    a->mutable_light_forcing()->set_chunk_aware_growth(ac.light_forcing.chunk_aware_growth);
    a->mutable_light_forcing()->set_near_frames(ac.light_forcing.near_frames);
    a->mutable_light_forcing()->set_topk_frames(ac.light_forcing.topk_frames);
    a->mutable_light_forcing()->set_topk_blocks(ac.light_forcing.topk_blocks);
    a->mutable_forcing_kv()->set_static_head_threshold(ac.forcing_kv.static_head_threshold);
    a->mutable_forcing_kv()->set_recent_frames(ac.forcing_kv.recent_frames);
    a->mutable_forcing_kv()->set_dynamic_keep_ratio(ac.forcing_kv.dynamic_keep_ratio);
    a->mutable_forcing_kv()->set_head_profile(ac.forcing_kv.head_profile);
    a->mutable_lvsa()->set_window_frames(ac.lvsa.window_frames);
    a->mutable_lvsa()->set_anchor_interval(ac.lvsa.anchor_interval);

    pb::Parallel* p = msg.mutable_parallel();
    p->set_ulysses(cfg.parallel.ulysses);
    p->set_spatial(cfg.parallel.spatial);
    p->set_data_parallel(cfg.parallel.data_parallel);
    p->set_vae(to_proto(cfg.parallel.vae));
    p->set_vae_ranks(cfg.parallel.vae_ranks);
    p->set_transport(to_proto(cfg.parallel.transport));
    p->set_overlap_groups(cfg.parallel.overlap_groups);

    pb::Output* o = msg.mutable_output();
    o->set_codec(to_proto(cfg.output.codec));
    o->set_crf(cfg.output.crf);
    o->set_preset(cfg.output.preset);
    o->set_save_config(cfg.output.save_config);
    o->set_checkpoint_every(cfg.output.checkpoint_every);

    pb::Monitoring* mon = msg.mutable_monitoring();
    mon->set_enabled(cfg.monitoring.enabled);
    mon->set_port(cfg.monitoring.port);
    mon->set_bind(cfg.monitoring.bind);
    mon->set_file_sd_path(cfg.monitoring.file_sd_path);

    pb::Runtime* rt = msg.mutable_runtime();
    rt->set_device(to_proto(cfg.runtime.device));
    rt->set_seed(cfg.runtime.seed);
    rt->set_dtype(dtype_to_proto(cfg.runtime.dtype));

    pb::Text* t = msg.mutable_text();
    t->set_encoder(cfg.text.encoder);
    t->set_tokenizer(cfg.text.tokenizer);
    // Written only when set, so that the printed config (and a resumed run's fingerprint of it) stays as before.
    if (cfg.text.keep_encoder_in_host_memory) t->set_keep_encoder_in_host_memory(true);
    return msg;
}

}  // namespace lr::config_detail
