// RMSNorm with a weight, eps 1e-5 (src/predictor/rmsnorm.rs). One warp per row: C is a
// few hundred channels, so a row is a handful of coalesced loads per lane and one warp
// reduction, with no shared memory. The mean square is accumulated in double, as the CPU
// does, so both sides round the same quantity.

#define RMS_EPS 1e-5

// out = x / rms(x) * w; rstd[row] = 1 / rms when rstd is not null.
extern "C" __global__ void rmsnorm_fwd(
    const float* x, const float* w, float* out, float* rstd, u64 rows, int c) {
    u64 row = ((u64)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x & 31;
    if (row >= rows) return;  // whole warps leave together: rows are per warp
    const float* xr = x + row * c;
    double ss = 0.0;
    for (int i = lane; i < c; i += 32) ss += (double)xr[i] * (double)xr[i];
    for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
    float r = (float)(1.0 / sqrt(ss / c + RMS_EPS));
    float* orow = out + row * c;
    for (int i = lane; i < c; i += 32) orow[i] = xr[i] * r * w[i];
    if (rstd != 0 && lane == 0) rstd[row] = r;
}

// gx += r (g w - x k), k = <g w, x> r^2 / c  (the residual gradient is already in gx).
extern "C" __global__ void rmsnorm_bwd_x(
    const float* x, const float* w, const float* rstd, const float* g, float* gx,
    u64 rows, int c) {
    u64 row = ((u64)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const float* xr = x + row * c;
    const float* gr = g + row * c;
    float dot = 0.0f;
    for (int i = lane; i < c; i += 32) dot += gr[i] * w[i] * xr[i];
    dot = group_sum(dot, 32);
    float r = rstd[row];
    float k = dot * r * r / (float)c;
    float* gxr = gx + row * c;
    for (int i = lane; i < c; i += 32) gxr[i] += r * (gr[i] * w[i] - xr[i] * k);
}

// Partial weight gradients: part[p, i] = sum over rows [p*rows_per, (p+1)*rows_per) of
// g x r. Thread per (part, channel); sum_partials adds the parts in order.
extern "C" __global__ void rmsnorm_bwd_w_partial(
    const float* x, const float* rstd, const float* g, float* part,
    u64 rows, int c, int rows_per) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int p = blockIdx.y;
    if (i >= c) return;
    u64 r0 = (u64)p * rows_per;
    u64 r1 = min(rows, r0 + rows_per);
    float acc = 0.0f;
    for (u64 row = r0; row < r1; ++row) acc += g[row * c + i] * x[row * c + i] * rstd[row];
    part[(u64)p * c + i] = acc;
}
