//! The vector operations the scan's forward kernel is written in, for two widths: 8 lanes
//! of `f32` (AVX2 + FMA, [`Avx2`]) and 16 lanes (AVX-512F, [`Avx512`]), and the
//! exponentials built from them.
//!
//! One body of each kernel and of each exponential serves both widths, so the two run the
//! same operations on every lane and give the same bits (tested). Every method is
//! `#[inline(always)]` and is called only from functions compiled with the width's target
//! features (`#[target_feature]` wrappers in the kernels' modules): inlined there, the
//! intrinsics inside are inlined too, and the generic code compiles to what hand-written
//! intrinsics give (on a scan-shaped loop the same time, docs/performance.md).

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::float::{EXP_LN2_HI, EXP_LN2_LO, EXP_POLY};

/// Whether the CPU has AVX-512F and VL, for the [`Avx512`] kernels (which also need
/// AVX2 and FMA: every CPU with AVX-512F has them).
pub(super) fn has_avx512() -> bool {
    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl")
}

/// A vector of `f32` lanes and the operations the kernels use on it.
///
/// # Safety
/// Every method needs the CPU features of its implementation ([`Avx2`]: AVX2 and FMA;
/// [`Avx512`]: those and AVX-512F) and is meant to be inlined into a function compiled
/// with them.
pub(super) trait Simd {
    /// The vector type.
    type V: Copy;
    /// Lanes per vector.
    const LANES: usize;

    /// All lanes zero.
    unsafe fn zero() -> Self::V;
    /// `v` in every lane.
    unsafe fn splat(v: f32) -> Self::V;
    /// `LANES` floats from `p` (any alignment).
    unsafe fn load(p: *const f32) -> Self::V;
    /// `v` to `LANES` floats at `p` (any alignment).
    unsafe fn store(p: *mut f32, v: Self::V);
    /// `v` to `LANES` floats at `p`, 16-byte aligned, with non-temporal stores.
    unsafe fn stream(p: *mut f32, v: Self::V);
    /// `a + b`.
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    /// `a - b`.
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
    /// `a * b`.
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    /// `a / b`.
    unsafe fn div(a: Self::V, b: Self::V) -> Self::V;
    /// `max(a, b)` as `maxps` (`b` where either is NaN).
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V;
    /// `min(a, b)` as `minps`.
    unsafe fn min(a: Self::V, b: Self::V) -> Self::V;
    /// `a * b + c`, rounded once.
    unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `|a|` (the sign bit cleared).
    unsafe fn abs(a: Self::V) -> Self::V;
    /// `if_above` where `x > threshold` (ordered), else `otherwise`.
    unsafe fn select_above(
        x: Self::V,
        threshold: f32,
        if_above: Self::V,
        otherwise: Self::V,
    ) -> Self::V;
    /// `p`'s bits plus `kr`'s shifted left by 23 (see [`Simd::exp2_nonpositive`]).
    unsafe fn add_shifted_exponent(p: Self::V, kr: Self::V) -> Self::V;
    /// `(kr's bits + add) << 23` as floats (see [`Simd::exp`]).
    unsafe fn shifted_sum(kr: Self::V, add: i32) -> Self::V;

    /// `[f(0), .., f(LANES - 1)]` (setup only, outside the loops).
    #[inline(always)]
    unsafe fn lanes(f: impl Fn(usize) -> f32) -> Self::V {
        let v: [f32; 16] = std::array::from_fn(|w| if w < Self::LANES { f(w) } else { 0.0 });
        // SAFETY: 16 readable floats, LANES <= 16.
        unsafe { Self::load(v.as_ptr()) }
    }

    /// `2^x` for `x <= 0`: the scan's decays, `2^(dt A log2(e))`, its innermost and most
    /// frequent operation. In base 2 the range reduction `x = k + f`, `|f| <= 1/2`, is
    /// exact (`f = x - k` needs no split constant), and a degree-5 polynomial fitted to
    /// `2^f` on `[-1/2, 1/2]` (least squares in relative error, reweighted towards
    /// minimax) is within 1.6e-7 of `2^f` in f32 arithmetic, as close as the degree-7
    /// `exp` of [`super::float::exp_f32_with`] with 5 fewer multiply-adds. The factor
    /// `2^k` is added to the polynomial's exponent field with integer instructions rather
    /// than multiplied, off the multiply-add units that the polynomial keeps busy: for
    /// `p` in `[2^-1/2, 2^1/2]` and `kr = k + 1.5 * 2^23` with `k >= -125`, the rounding
    /// constant's bits shift out of the word (its low 9 bits are zero), so `kr << 23` is
    /// `k << 23` itself, and the result stays a normal number.
    #[inline(always)]
    unsafe fn exp2_nonpositive(x: Self::V) -> Self::V {
        // SAFETY: the trait's contract.
        unsafe {
            let x = Self::max(x, Self::splat(EXP2_MIN));
            let kr = Self::add(x, Self::splat(ROUND));
            let f = Self::sub(x, Self::sub(kr, Self::splat(ROUND)));
            let mut p = Self::splat(EXP2_POLY[0]);
            for c in &EXP2_POLY[1..] {
                p = Self::fmadd(p, f, Self::splat(*c));
            }
            Self::add_shifted_exponent(p, kr)
        }
    }

    /// `exp(x)` for `x <= 0`: the polynomial of [`super::float::exp_f32_with`], without
    /// its upper clamp.
    #[inline(always)]
    unsafe fn exp_nonpositive(x: Self::V) -> Self::V {
        // SAFETY: the trait's contract.
        unsafe { Self::exp_clamped(Self::max(x, Self::splat(-87.0))) }
    }

    /// `exp(x)` over f32's range, as [`super::float::exp_f32_with`].
    #[inline(always)]
    unsafe fn exp(x: Self::V) -> Self::V {
        // SAFETY: the trait's contract.
        unsafe {
            Self::exp_clamped(Self::min(
                Self::max(x, Self::splat(-87.0)),
                Self::splat(88.0),
            ))
        }
    }

    /// The exponential's range reduction and polynomial for `x` in `[-87, 88]`; `2^k`
    /// built from `kr = k + 1.5 * 2^23` with integer adds and a shift.
    #[inline(always)]
    unsafe fn exp_clamped(x: Self::V) -> Self::V {
        // SAFETY: the trait's contract.
        unsafe {
            let kr = Self::fmadd(x, Self::splat(std::f32::consts::LOG2_E), Self::splat(ROUND));
            let k = Self::sub(kr, Self::splat(ROUND));
            let r = Self::fmadd(
                k,
                Self::splat(EXP_LN2_LO),
                Self::fmadd(k, Self::splat(EXP_LN2_HI), x),
            );
            let mut p = Self::splat(EXP_POLY[0]);
            for c in &EXP_POLY[1..] {
                p = Self::fmadd(p, r, Self::splat(*c));
            }
            let p = Self::fmadd(p, Self::mul(r, r), Self::add(r, Self::splat(1.0)));
            Self::mul(p, Self::shifted_sum(kr, 127 - 0x4B40_0000))
        }
    }

    /// `z * sigmoid(z)`.
    #[inline(always)]
    unsafe fn silu(z: Self::V) -> Self::V {
        // SAFETY: the trait's contract.
        unsafe {
            let neg = Self::sub(Self::zero(), z);
            Self::div(z, Self::add(Self::splat(1.0), Self::exp(neg)))
        }
    }

    /// Softplus with [`super::float::softplus`]'s threshold (`x` above 20), else
    /// `max(x, 0) + ln(1 + e)`, `e = exp(-|x|)` in `(0, 1]`, and `ln(1 + e) = 2 atanh(s)`
    /// with `s = e / (2 + e)` in `(0, 1/3]`: the odd series of `atanh` up to `s^13` is
    /// within 2e-8 there, and `2 + e` rounds without the cancellation that `ln` of `1 + e`
    /// must correct for. One division and 7 multiply-adds where `ln(1 + e)` by way of
    /// `1 + e` (as [`super::float::ln_1p_f32`]) took two divisions, blends and twice the
    /// instructions; within 2.2e-7 of libm (measured over `[-20, 30]`).
    #[inline(always)]
    unsafe fn softplus(x: Self::V) -> Self::V {
        // SAFETY: the trait's contract.
        unsafe {
            let e = Self::exp_nonpositive(Self::sub(Self::zero(), Self::abs(x)));
            let s = Self::div(e, Self::add(Self::splat(2.0), e));
            let s2 = Self::mul(s, s);
            let mut p = Self::splat(1.0 / 13.0);
            for c in [1.0 / 11.0, 1.0 / 9.0, 1.0 / 7.0, 0.2, 1.0 / 3.0, 1.0] {
                p = Self::fmadd(p, s2, Self::splat(c));
            }
            let soft = Self::fmadd(Self::add(s, s), p, Self::max(x, Self::zero()));
            Self::select_above(x, 20.0, x, soft)
        }
    }
}

/// `1.5 * 2^23`: adding it rounds to an integer kept in the low mantissa bits.
pub(super) const ROUND: f32 = 12_582_912.0;
/// Where the decays stop falling: `2^-125` (3e-38) keeps
/// [`Simd::exp2_nonpositive`]'s result a normal number, and is far below anything a state
/// can notice (`exp` stops at `e^-87`, about `2^-125.5`, likewise).
pub(super) const EXP2_MIN: f32 = -125.0;
/// The degree-5 polynomial for `2^f` on `[-1/2, 1/2]`, highest degree first.
// The fitted linear coefficient sits next to ln 2, and is not it.
#[allow(clippy::approx_constant)]
pub(super) const EXP2_POLY: [f32; 6] = [
    1.326_472_7e-3,
    9.671_513e-3,
    5.550_733_6e-2,
    2.402_224_2e-1,
    0.693_147,
    1.0,
];

/// 8 lanes: AVX2 and FMA.
pub(super) struct Avx2;

impl Simd for Avx2 {
    type V = __m256;
    const LANES: usize = 8;

    #[inline(always)]
    unsafe fn zero() -> __m256 {
        // SAFETY: the trait's contract (here and below).
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> __m256 {
        unsafe { _mm256_set1_ps(v) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn stream(p: *mut f32, v: __m256) {
        // AVX2 has no unaligned 8-lane non-temporal store: two 4-lane ones.
        unsafe {
            _mm_stream_ps(p, _mm256_castps256_ps128(v));
            _mm_stream_ps(p.add(4), _mm256_extractf128_ps::<1>(v));
        }
    }
    #[inline(always)]
    unsafe fn add(a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn sub(a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_sub_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn mul(a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_mul_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn div(a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_div_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn max(a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_max_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn min(a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_min_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m256, b: __m256, c: __m256) -> __m256 {
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn abs(a: __m256) -> __m256 {
        unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), a) }
    }
    #[inline(always)]
    unsafe fn select_above(
        x: __m256,
        threshold: f32,
        if_above: __m256,
        otherwise: __m256,
    ) -> __m256 {
        unsafe {
            let above = _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_set1_ps(threshold));
            _mm256_blendv_ps(otherwise, if_above, above)
        }
    }
    #[inline(always)]
    unsafe fn add_shifted_exponent(p: __m256, kr: __m256) -> __m256 {
        unsafe {
            _mm256_castsi256_ps(_mm256_add_epi32(
                _mm256_castps_si256(p),
                _mm256_slli_epi32::<23>(_mm256_castps_si256(kr)),
            ))
        }
    }
    #[inline(always)]
    unsafe fn shifted_sum(kr: __m256, add: i32) -> __m256 {
        unsafe {
            _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
                _mm256_castps_si256(kr),
                _mm256_set1_epi32(add),
            )))
        }
    }
}

/// 16 lanes: AVX-512F (with AVX2 and FMA).
pub(super) struct Avx512;

impl Simd for Avx512 {
    type V = __m512;
    const LANES: usize = 16;

    #[inline(always)]
    unsafe fn zero() -> __m512 {
        // SAFETY: the trait's contract (here and below).
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> __m512 {
        unsafe { _mm512_set1_ps(v) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn stream(p: *mut f32, v: __m512) {
        // The 16-lane non-temporal store needs 64-byte alignment; four 4-lane ones need
        // only the 16 bytes that the callers check.
        unsafe {
            _mm_stream_ps(p, _mm512_extractf32x4_ps::<0>(v));
            _mm_stream_ps(p.add(4), _mm512_extractf32x4_ps::<1>(v));
            _mm_stream_ps(p.add(8), _mm512_extractf32x4_ps::<2>(v));
            _mm_stream_ps(p.add(12), _mm512_extractf32x4_ps::<3>(v));
        }
    }
    #[inline(always)]
    unsafe fn add(a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn sub(a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_sub_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn mul(a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn div(a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_div_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn max(a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_max_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn min(a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_min_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn abs(a: __m512) -> __m512 {
        unsafe { _mm512_abs_ps(a) }
    }
    #[inline(always)]
    unsafe fn select_above(
        x: __m512,
        threshold: f32,
        if_above: __m512,
        otherwise: __m512,
    ) -> __m512 {
        unsafe {
            let above = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, _mm512_set1_ps(threshold));
            _mm512_mask_blend_ps(above, otherwise, if_above)
        }
    }
    #[inline(always)]
    unsafe fn add_shifted_exponent(p: __m512, kr: __m512) -> __m512 {
        unsafe {
            _mm512_castsi512_ps(_mm512_add_epi32(
                _mm512_castps_si512(p),
                _mm512_slli_epi32::<23>(_mm512_castps_si512(kr)),
            ))
        }
    }
    /// The 8-lane sequence's values with two fewer instructions: `k` rounded to the
    /// nearest integer by `vrndscaleps` (the same even-rounding as adding and subtracting
    /// [`ROUND`]), and `p 2^k` by `vscalefps`, exact for the normal results that the clamp
    /// at [`EXP2_MIN`] leaves (the same bits as adding to the exponent field; tested).
    /// Two instructions fewer per state entry shorten the scan where it is bound by them
    /// (docs/performance.md, "Kernel choices").
    #[inline(always)]
    unsafe fn exp2_nonpositive(x: __m512) -> __m512 {
        unsafe {
            let x = _mm512_max_ps(x, _mm512_set1_ps(EXP2_MIN));
            let k = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x);
            let f = _mm512_sub_ps(x, k);
            let mut p = _mm512_set1_ps(EXP2_POLY[0]);
            for c in &EXP2_POLY[1..] {
                p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(*c));
            }
            _mm512_scalef_ps(p, k)
        }
    }
    #[inline(always)]
    unsafe fn shifted_sum(kr: __m512, add: i32) -> __m512 {
        unsafe {
            _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(
                _mm512_castps_si512(kr),
                _mm512_set1_epi32(add),
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `f` of `xs` on `S`'s lanes, as bits.
    ///
    /// # Safety
    /// The CPU features of `S`.
    unsafe fn apply<S: Simd>(xs: &[f32], f: unsafe fn(S::V) -> S::V) -> Vec<u32> {
        let mut out = vec![0f32; xs.len()];
        for (x, o) in xs
            .chunks_exact(S::LANES)
            .zip(out.chunks_exact_mut(S::LANES))
        {
            // SAFETY: the caller's contract; LANES floats in and out.
            unsafe { S::store(o.as_mut_ptr(), f(S::load(x.as_ptr()))) };
        }
        out.into_iter().map(f32::to_bits).collect()
    }

    #[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
    fn both_widths(all: &[f32], nonpositive: &[f32]) -> [[Vec<u32>; 2]; 5] {
        // SAFETY: the CPU has the features of both (this function's).
        unsafe {
            [
                [
                    apply::<Avx2>(nonpositive, Avx2::exp2_nonpositive),
                    apply::<Avx512>(nonpositive, Avx512::exp2_nonpositive),
                ],
                [
                    apply::<Avx2>(nonpositive, Avx2::exp_nonpositive),
                    apply::<Avx512>(nonpositive, Avx512::exp_nonpositive),
                ],
                [
                    apply::<Avx2>(all, Avx2::exp),
                    apply::<Avx512>(all, Avx512::exp),
                ],
                [
                    apply::<Avx2>(all, Avx2::silu),
                    apply::<Avx512>(all, Avx512::silu),
                ],
                [
                    apply::<Avx2>(all, Avx2::softplus),
                    apply::<Avx512>(all, Avx512::softplus),
                ],
            ]
        }
    }

    #[test]
    fn sixteen_lanes_compute_what_eight_do() {
        if !(is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512vl"))
        {
            eprintln!("skipped: this CPU lacks AVX-512F/VL");
            return;
        }
        // Across every branch: the clamps (below -125 and -87, above 88), softplus's
        // threshold at 20 and either side of it, zero and both signs, and the halves where
        // the exponentials' rounding to an integer goes to the even one.
        let mut all: Vec<f32> = (0..16 * 400).map(|i| -140.0 + 0.0573 * i as f32).collect();
        all.extend([
            0.0, -0.0, 20.0, 20.000_002, 19.999_998, 1e-30, -1e-30, 88.0, -87.0,
        ]);
        all.extend((0..64).map(|i| -0.5 - i as f32));
        let sixteens = |mut v: Vec<f32>| {
            v.resize(v.len().next_multiple_of(16), -1.0);
            v
        };
        let nonpositive = sixteens(all.iter().copied().filter(|x| *x <= 0.0).collect());
        let all = sixteens(all);
        let names = [
            "exp2_nonpositive",
            "exp_nonpositive",
            "exp",
            "silu",
            "softplus",
        ];
        // SAFETY: the features were checked above.
        for (name, [eight, sixteen]) in names.iter().zip(unsafe { both_widths(&all, &nonpositive) })
        {
            assert_eq!(eight, sixteen, "{name}");
        }
    }
}
