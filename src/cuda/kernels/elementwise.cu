// Elementwise parts of a block: dt's softplus, sums of per-task partials, AdamW.

// delta[row, d] = softplus(delta[row, d] + bias[d]) over rows x di.
extern "C" __global__ void softplus_bias(float* delta, const float* bias, u64 rows, int di) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * (u64)di) return;
    delta[i] = softplus_f(delta[i] + bias[i % di]);
}

// out[i] (+)= sum_p part[p * part_stride + i], p in order, so the result does not depend
// on timing. `accumulate` = 0 overwrites `out`. `out` has row stride `ld_out` per `width`
// values (for writing into a column range of a wider matrix); vectors use width = n.
extern "C" __global__ void sum_partials(
    float* out, const float* part, int n_parts, u64 part_stride, u64 n, int width, int ld_out,
    int accumulate) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float acc = 0.0f;
    for (int p = 0; p < n_parts; ++p) acc += part[(u64)p * part_stride + i];
    u64 o = (i / width) * (u64)ld_out + i % width;
    out[o] = accumulate ? out[o] + acc : acc;
}

// One AdamW step over n values, as src/train/adamw.rs computes it (torch.optim.AdamW):
// the host computes the bias corrections in f64 and passes them as f32, as the CPU does.
extern "C" __global__ void adamw_step(
    float* w, const float* g, float* m, float* v, u64 n,
    float shrink, float b1, float b2, float step_size, float bias2_sqrt, float eps) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float gv = g[i];
    float wv = w[i] * shrink;
    float mv = b1 * m[i] + (1.0f - b1) * gv;
    float vv = b2 * v[i] + (1.0f - b2) * gv * gv;
    m[i] = mv;
    v[i] = vv;
    w[i] = wv - step_size * mv / (sqrtf(vv) / bias2_sqrt + eps);
}
