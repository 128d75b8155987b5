#include "kernels/linear.h"

#include "kernels/gemm.h"

namespace lr {

void linear_cpu(const LinearParams& p) {
    GemmParams g;
    g.a = p.x;
    g.b = p.weight;
    g.c = p.y;
    g.bias = p.bias;
    g.m = p.rows;
    g.n = p.out_features;
    g.k = p.in_features;
    g.lda = p.x_stride > 0 ? p.x_stride : p.in_features;
    g.ldb = p.in_features;
    g.ldc = p.y_stride > 0 ? p.y_stride : p.out_features;
    g.b_transposed = true;
    gemm_cpu(g);
}

}  // namespace lr
