// Shared helpers of the predictor kernels. Every kernel file is compiled after this
// one in a single NVRTC program (see src/cuda/kernels.rs), so no #include is needed and
// NVRTC needs no include path.
//
// Numerics follow src/predictor/float.rs exactly in form (same softplus threshold, same
// SiLU expression, softplus' from its output via expm1), with libm-accurate expf/log1pf:
// parity with the CPU is 1e-4 relative, and nothing here is compiled with fast math.

typedef unsigned long long u64;

// Dynamic shared memory by name. The CPU emulator (src/cuda/emulator/) defines it as a
// pointer into its per-block buffer, since `extern __shared__` has no host equivalent.
#ifndef DYNAMIC_SHARED
#define DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

__device__ __forceinline__ float silu_f(float x) { return x / (1.0f + expf(-x)); }

// (silu(x), silu'(x)) sharing one exponential, as silu_and_grad on the CPU.
__device__ __forceinline__ void silu_and_grad_f(float x, float* s_out, float* g_out) {
    float s = 1.0f / (1.0f + expf(-x));
    *s_out = x * s;
    *g_out = s * (1.0f + x * (1.0f - s));
}

// torch's threshold: x itself above 20.
__device__ __forceinline__ float softplus_f(float x) {
    return x > 20.0f ? x : fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x)));
}

// sigmoid(x) from s = softplus(x): 1 - e^{-s}, via expm1 for small dt.
__device__ __forceinline__ float softplus_grad_from_output_f(float s) {
    return s > 20.0f ? 1.0f : -expm1f(-s);
}

// Sum over groups of `width` adjacent lanes (width a power of two <= 32); every lane of
// the group gets the sum. All 32 lanes must call it (inactive ones with 0).
__device__ __forceinline__ float group_sum(float v, int width) {
    for (int off = width >> 1; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}
