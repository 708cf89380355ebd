// The fused selective scan (src/predictor/scan.rs) and its chunked backward.
//
// Layout: one thread per (sequence b, channel d, state n), the N states of a channel on
// `nl` adjacent lanes of a warp (nl = N rounded up to a power of two, at most 32; 16 at
// the default N = 16, so a warp holds two channels). Why not one thread per (b, d) with
// the N states in registers, as the CPU kernel vectorises? At 1022 px a level has only
// B = 4 sequences (the 4 scan directions) of L = 5329 steps and Di = 768 channels:
// 3072 threads, about 1% of an H200's resident threads, each walking 5329 dependent
// steps. Spreading N over lanes gives 16x the threads, one exp and two FMAs per thread
// and step, and the read-out <C_t, h_t> costs log2(nl) = 4 shuffles. B_t and C_t loads
// are then coalesced across the lanes; delta, u and z are broadcasts within the group.
//
// Blocks are SCAN_THREADS threads = SCAN_THREADS / nl channels of one sequence
// (blockIdx.y). No thread returns early: every lane takes part in the shuffles.
//
// Training: the forward stores the state at the start of every chunk of `chunk` steps
// ([B, n_chunks, N, Di], as the CPU tape); the backward walks chunks last to first,
// recomputes the chunk's states from its checkpoint into a per-thread array (at most
// MAX_CHUNK + 1 floats, local memory), then walks them back. dL/dB_t and dL/dC_t are sums
// over channels: each warp sums its channels by shuffles, the block sums its warps
// through shared memory once per chunk, and each block writes its own partial
// [gridDim.x, rows, 2N], which sum_partials adds in a fixed order: the result does not
// depend on scheduling, as on the CPU.

#define MAX_CHUNK 32

extern "C" __global__ void scan_fwd(
    const float* u, const float* delta, const float* xdbl, int ld_xdbl, int b_off,
    const float* z, int ld_z, const float* a_log, const float* dvec,
    float* y, float* ckpt, int len, int di, int ns, int nl, int chunk) {
    const int tid = threadIdx.x;
    const int n = tid % nl;
    const int d = blockIdx.x * (blockDim.x / nl) + tid / nl;
    const int b = blockIdx.y;
    const bool chan = d < di;
    const bool active = chan && n < ns;
    const float a = active ? -expf(a_log[d * ns + n]) : 0.0f;
    const float dd = chan ? dvec[d] : 0.0f;
    const int n_chunks = (len + chunk - 1) / chunk;
    float h = 0.0f;
    // Unrolled so the loads of later steps (independent of h) issue before the current
    // step's FMA chain finishes: the scan is bound by load latency, not arithmetic.
#pragma unroll 4
    for (int t = 0; t < len; ++t) {
        const u64 row = (u64)b * len + t;
        if (ckpt != 0 && active && t % chunk == 0)
            ckpt[(((u64)b * n_chunks + t / chunk) * ns + n) * di + d] = h;
        float dl = 0.0f, uu = 0.0f, bn = 0.0f, cn = 0.0f;
        if (chan) {
            dl = delta[row * di + d];
            uu = u[row * di + d];
        }
        if (active) {
            bn = xdbl[row * ld_xdbl + b_off + n];
            cn = xdbl[row * ld_xdbl + b_off + ns + n];
        }
        h = expf(dl * a) * h + (dl * uu) * bn;
        const float acc = group_sum(cn * h, nl);
        if (chan && n == 0) y[row * di + d] = (acc + dd * uu) * silu_f(z[row * ld_z + d]);
    }
}

extern "C" __global__ void scan_bwd(
    const float* u, const float* delta, const float* xdbl, int ld_xdbl, int b_off,
    const float* z, int ld_z, const float* a_log, const float* dvec, const float* ckpt,
    const float* gy, float* y_out, float* gz, int ld_gz, float* gu, float* gdelta,
    float* bc_part, float* ga_part, float* gd_part, float* gbias_part,
    int batch, int len, int di, int ns, int nl, int chunk) {
    DYNAMIC_SHARED(float, smem);  // [warps][chunk][2 ns]
    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int nwarps = blockDim.x >> 5;
    const int n = tid % nl;
    const int d = blockIdx.x * (blockDim.x / nl) + tid / nl;
    const int b = blockIdx.y;
    const bool chan = d < di;
    const bool active = chan && n < ns;
    const float a = active ? -expf(a_log[d * ns + n]) : 0.0f;
    const float dd = chan ? dvec[d] : 0.0f;
    const int n_chunks = (len + chunk - 1) / chunk;
    const u64 rows = (u64)batch * len;
    const int two_n = 2 * ns;
    float hs[MAX_CHUNK + 1];
    float dh = 0.0f, g_a = 0.0f, g_d = 0.0f, g_bias = 0.0f;
    for (int c = n_chunks - 1; c >= 0; --c) {
        const int t0 = c * chunk;
        const int t1 = min(t0 + chunk, len);
        hs[0] = active ? ckpt[(((u64)b * n_chunks + c) * ns + n) * di + d] : 0.0f;
        // Recompute the chunk's states: hs[j + 1] is the state after step t0 + j.
#pragma unroll 4
        for (int t = t0; t < t1; ++t) {
            const u64 row = (u64)b * len + t;
            float dl = 0.0f, uu = 0.0f, bn = 0.0f;
            if (chan) {
                dl = delta[row * di + d];
                uu = u[row * di + d];
            }
            if (active) bn = xdbl[row * ld_xdbl + b_off + n];
            hs[t - t0 + 1] = expf(dl * a) * hs[t - t0] + (dl * uu) * bn;
        }
        // Walk it backwards.
        for (int t = t1 - 1; t >= t0; --t) {
            const int j = t - t0;
            const u64 row = (u64)b * len + t;
            float dl = 0.0f, uu = 0.0f, zz = 0.0f, gyv = 0.0f, bn = 0.0f, cn = 0.0f;
            if (chan) {
                dl = delta[row * di + d];
                uu = u[row * di + d];
                zz = z[row * ld_z + d];
                gyv = gy[row * di + d];
            }
            if (active) {
                bn = xdbl[row * ld_xdbl + b_off + n];
                cn = xdbl[row * ld_xdbl + b_off + ns + n];
            }
            float sz, dsz;
            silu_and_grad_f(zz, &sz, &dsz);
            const float gys = gyv * sz;
            const float h_now = hs[j + 1];
            const float h_prev = hs[j];
            const float e = expf(dl * a);
            const float dhn = gys * cn + dh;
            // dL/d(decay) * decay: the decay's factor of both dt and A.
            const float gdec = dhn * h_prev * e;
            g_a += gdec * dl;
            float pb = dhn * (dl * uu);
            float pc = gys * h_now;
            dh = dhn * e;
            const float ys = group_sum(cn * h_now, nl) + dd * uu;
            const float gdl = group_sum(gdec * a, nl);
            // sum_n dL/dh[n] B[n]: dh_t/d dt and dh_t/du share it.
            const float q = group_sum(dhn * bn, nl);
            // dB/dC: sum over the warp's channels (lanes nl apart hold the same n).
            for (int off = nl; off < 32; off <<= 1) {
                pb += __shfl_xor_sync(0xffffffffu, pb, off);
                pc += __shfl_xor_sync(0xffffffffu, pc, off);
            }
            if (lane < nl && n < ns) {
                smem[((u64)warp * chunk + j) * two_n + n] = pb;
                smem[((u64)warp * chunk + j) * two_n + ns + n] = pc;
            }
            if (chan && n == 0) {
                y_out[row * di + d] = ys * sz;
                gz[row * ld_gz + d] = gyv * ys * dsz;
                gu[row * di + d] = q * dl + gys * dd;
                // Through the softplus: d dt / d raw from dt itself.
                const float graw = (q * uu + gdl) * softplus_grad_from_output_f(dl);
                gdelta[row * di + d] = graw;
                g_bias += graw;
                g_d += gys * uu;
            }
        }
        __syncthreads();
        for (int idx = tid; idx < (t1 - t0) * two_n; idx += blockDim.x) {
            const int j = idx / two_n;
            const int k = idx % two_n;
            float s = 0.0f;
            for (int w = 0; w < nwarps; ++w) s += smem[((u64)w * chunk + j) * two_n + k];
            bc_part[((u64)blockIdx.x * rows + (u64)b * len + t0 + j) * two_n + k] = s;
        }
        __syncthreads();
    }
    if (active) ga_part[((u64)b * di + d) * ns + n] = g_a * a;  // dL/dA_log = dL/dA * A
    if (chan && n == 0) {
        gd_part[(u64)b * di + d] = g_d;
        gbias_part[(u64)b * di + d] = g_bias;
    }
}
