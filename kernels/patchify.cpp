#include "kernels/patchify.h"

#include "runtime/core/check.h"

namespace lr {
namespace {

void check_shape(const PatchShape& s) {
    LR_ASSERT(s.pt > 0 && s.ph > 0 && s.pw > 0 && s.frames % s.pt == 0 && s.height % s.ph == 0 && s.width % s.pw == 0,
              "patchify: latent [", s.frames, ", ", s.channels, ", ", s.height, ", ", s.width,
              "] is not a whole number of patches (", s.pt, ", ", s.ph, ", ", s.pw, ")");
}

}  // namespace

void patchify_cpu(const PatchifyParams& p) {
    const PatchShape& s = p.shape;
    check_shape(s);
    const int64_t gf = s.frames / s.pt, gh = s.height / s.ph, gw = s.width / s.pw;
    const int64_t row = s.patch_size();
    for (int64_t f = 0; f < gf; ++f) {
        for (int64_t i = 0; i < gh; ++i) {
            for (int64_t j = 0; j < gw; ++j) {
                float* dst = p.patches + ((f * gh + i) * gw + j) * row;
                for (int64_t c = 0; c < s.channels; ++c) {
                    for (int64_t kt = 0; kt < s.pt; ++kt) {
                        for (int64_t kh = 0; kh < s.ph; ++kh) {
                            const float* src =
                                p.x + (((f * s.pt + kt) * s.channels + c) * s.height + (i * s.ph + kh)) * s.width +
                                j * s.pw;
                            for (int64_t kw = 0; kw < s.pw; ++kw) *dst++ = src[kw];
                        }
                    }
                }
            }
        }
    }
}

void unpatchify_cpu(const UnpatchifyParams& p) {
    const PatchShape& s = p.shape;
    check_shape(s);
    const int64_t gf = s.frames / s.pt, gh = s.height / s.ph, gw = s.width / s.pw;
    const int64_t row = s.patch_size();
    for (int64_t f = 0; f < gf; ++f) {
        for (int64_t i = 0; i < gh; ++i) {
            for (int64_t j = 0; j < gw; ++j) {
                const float* src = p.patches + ((f * gh + i) * gw + j) * row;
                for (int64_t kt = 0; kt < s.pt; ++kt) {
                    for (int64_t kh = 0; kh < s.ph; ++kh) {
                        for (int64_t kw = 0; kw < s.pw; ++kw) {
                            for (int64_t c = 0; c < s.channels; ++c) {
                                p.x[(((f * s.pt + kt) * s.channels + c) * s.height + (i * s.ph + kh)) * s.width +
                                    j * s.pw + kw] = *src++;
                            }
                        }
                    }
                }
            }
        }
    }
}

}  // namespace lr
