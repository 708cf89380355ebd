// Causal depthwise conv1d + bias + SiLU over token-major [rows = B*L, Di] data
// (src/predictor/conv.rs): pre[t, d] = bias[d] + sum_k w[d, k] x[t + k - (kw - 1), d],
// left zero padding inside each sequence of `len` rows. Thread per (row, channel):
// adjacent threads read adjacent channels, so every load is coalesced.

__device__ __forceinline__ float conv_pre(
    const float* x, int ldx, const float* w, const float* bias,
    u64 row, int t, int d, int kw) {
    float acc = bias[d];
    for (int k = 0; k < kw; ++k) {
        if (t + k + 1 < kw) continue;  // falls in the left padding
        acc += w[d * kw + k] * x[(row + k + 1 - kw) * (u64)ldx + d];
    }
    return acc;
}

extern "C" __global__ void conv_fwd(
    const float* x, int ldx, const float* w, const float* bias, float* u,
    u64 rows, int di, int len, int kw) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * (u64)di) return;
    u64 row = i / di;
    int d = (int)(i % di);
    u[i] = silu_f(conv_pre(x, ldx, w, bias, row, (int)(row % len), d, kw));
}

// gu <- dL/dpre = gu * silu'(pre), in place.
extern "C" __global__ void conv_bwd_pre(
    const float* x, int ldx, const float* w, const float* bias, float* gu,
    u64 rows, int di, int len, int kw) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * (u64)di) return;
    u64 row = i / di;
    int d = (int)(i % di);
    float s, ds;
    silu_and_grad_f(conv_pre(x, ldx, w, bias, row, (int)(row % len), d, kw), &s, &ds);
    gu[i] *= ds;
}

// Partial weight and bias gradients over row block p, [Di * (kw + 1)] per part: the
// weight's [Di, kw] first (its own layout), then the bias' [Di].
extern "C" __global__ void conv_bwd_wb_partial(
    const float* x, int ldx, const float* gpre, float* part,
    u64 rows, int di, int len, int kw, int rows_per) {
    int d = blockIdx.x * blockDim.x + threadIdx.x;
    int p = blockIdx.y;
    if (d >= di) return;
    u64 r0 = (u64)p * rows_per;
    u64 r1 = min(rows, r0 + rows_per);
    float* out_w = part + (u64)p * di * (kw + 1) + (u64)d * kw;
    float* out_b = part + (u64)p * di * (kw + 1) + (u64)di * kw + d;
    for (int k = 0; k < kw; ++k) out_w[k] = 0.0f;
    float gb = 0.0f;
    for (u64 row = r0; row < r1; ++row) {
        float g = gpre[row * di + d];
        int t = (int)(row % len);
        gb += g;
        for (int k = 0; k < kw; ++k) {
            if (t + k + 1 < kw) continue;
            out_w[k] += g * x[(row + k + 1 - kw) * (u64)ldx + d];
        }
    }
    *out_b = gb;
}

// dL/dx[s, d] = sum_k w[d, k] dL/dpre[s + kw - 1 - k, d] within the sequence: a gather,
// so each output has one writer.
extern "C" __global__ void conv_bwd_x(
    const float* gpre, const float* w, float* gx, int ldgx,
    u64 rows, int di, int len, int kw) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * (u64)di) return;
    u64 row = i / di;
    int d = (int)(i % di);
    int t = (int)(row % len);
    float acc = 0.0f;
    for (int k = 0; k < kw; ++k) {
        int ahead = kw - 1 - k;
        if (t + ahead >= len) continue;
        acc += w[d * kw + k] * gpre[(row + ahead) * di + d];
    }
    gx[row * (u64)ldgx + d] = acc;
}
