//! The scalar type the predictor computes in.
//!
//! Production runs in `f32`; the finite-difference gradient tests run the very same code in
//! `f64`, where central differences are accurate enough to catch a wrong backward term.
//! Keeping one generic implementation (rather than an f64 twin) means the tests check the
//! code that ships.

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// A floating-point element type: `f32` (production) or `f64` (gradient tests).
pub trait Float:
    Copy
    + Send
    + Sync
    + 'static
    + Default
    + PartialOrd
    + Debug
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + Sum
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// Converts from `f64`, rounding to nearest.
    fn from_f64(v: f64) -> Self;
    /// Converts to `f64` exactly.
    fn to_f64(self) -> f64;
    /// The correctly rounded (libm) exponential.
    fn exp(self) -> Self;
    /// An exponential the compiler can vectorise: a polynomial of about 2 ulp in `f32`
    /// (hot loops call it millions of times per sequence), the libm one in `f64` so the
    /// gradient tests see exact arithmetic.
    fn fast_exp(self) -> Self;
    /// [`Float::fast_exp`] with its multiply-adds fused when `F`: only for code compiled
    /// with FMA enabled.
    fn fast_exp_fused<const F: bool>(self) -> Self;
    /// `ln(1 + self)`, accurate for small arguments.
    fn ln_1p(self) -> Self;
    /// [`Float::ln_1p`] for `self >= 0` that the compiler can vectorise in `f32` (about
    /// 1e-7 relative error); libm's in `f64`.
    fn fast_ln_1p(self) -> Self;
    /// [`Float::exp_m1`] that the compiler can vectorise in `f32`; libm's in `f64`.
    fn fast_exp_m1(self) -> Self;
    /// `self * a + b`, fused (one rounding). Only for code compiled with FMA enabled:
    /// elsewhere it is a slow library call.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// The larger of two values (no NaN handling needed by callers).
    #[inline(always)]
    fn max_of(self, other: Self) -> Self {
        if self > other {
            self
        } else {
            other
        }
    }
    /// The absolute value.
    #[inline(always)]
    fn abs_val(self) -> Self {
        if self < Self::ZERO {
            -self
        } else {
            self
        }
    }
    /// `exp(self) - 1`, accurate for small arguments.
    fn exp_m1(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// General matrix multiply `C = alpha A B + beta C` with arbitrary strides (in
    /// elements), single-threaded; `beta = 0` overwrites `C` without reading it.
    ///
    /// # Safety
    /// The pointers with their strides must address valid `m x k`, `k x n` and `m x n`
    /// matrices, and `C` must not overlap `A` or `B`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn exp(self) -> Self {
        f64::exp(self)
    }
    #[inline(always)]
    fn fast_exp(self) -> Self {
        f64::exp(self)
    }
    #[inline(always)]
    fn fast_exp_fused<const F: bool>(self) -> Self {
        f64::exp(self)
    }
    #[inline(always)]
    fn ln_1p(self) -> Self {
        f64::ln_1p(self)
    }
    #[inline(always)]
    fn fast_ln_1p(self) -> Self {
        f64::ln_1p(self)
    }
    #[inline(always)]
    fn fast_exp_m1(self) -> Self {
        f64::exp_m1(self)
    }
    #[inline(always)]
    fn exp_m1(self) -> Self {
        f64::exp_m1(self)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        f64::mul_add(self, a, b)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        f64::ln(self)
    }
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: forwarded from the caller's contract.
        unsafe {
            matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
        }
    }
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn exp(self) -> Self {
        f32::exp(self)
    }
    #[inline(always)]
    fn fast_exp(self) -> Self {
        exp_f32(self)
    }
    #[inline(always)]
    fn fast_exp_fused<const F: bool>(self) -> Self {
        exp_f32_with::<F>(self)
    }
    #[inline(always)]
    fn ln_1p(self) -> Self {
        f32::ln_1p(self)
    }
    #[inline(always)]
    fn fast_ln_1p(self) -> Self {
        ln_1p_f32(self)
    }
    #[inline(always)]
    fn fast_exp_m1(self) -> Self {
        // Taylor to x^7 near 0 (where exp(x) - 1 would cancel), exp(x) - 1 elsewhere.
        let x = self;
        let t = x
            * (1.0
                + x * (0.5
                    + x * (1.0 / 6.0
                        + x * (1.0 / 24.0
                            + x * (1.0 / 120.0 + x * (1.0 / 720.0 + x * (1.0 / 5040.0)))))));
        if x.abs() < 0.3 {
            t
        } else {
            exp_f32(x) - 1.0
        }
    }
    #[inline(always)]
    fn exp_m1(self) -> Self {
        f32::exp_m1(self)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        f32::mul_add(self, a, b)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        f32::ln(self)
    }
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: forwarded from the caller's contract.
        unsafe {
            matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
        }
    }
}

/// `x` itself when `T` is `f32`: lets generic code hand its buffers to kernels written
/// for `f32` only.
pub(crate) fn as_f32<T: Float>(x: &[T]) -> Option<&[f32]> {
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        // SAFETY: T is f32, so the slice's memory is the same `[f32]`.
        .then(|| unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<f32>(), x.len()) })
}

/// [`as_f32`] for a mutable slice.
pub(crate) fn as_f32_mut<T: Float>(x: &mut [T]) -> Option<&mut [f32]> {
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        // SAFETY: T is f32, so the slice's memory is the same `[f32]`; the borrow moves.
        .then(|| unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast::<f32>(), x.len()) })
}

/// Defines `pub(crate) fn $name<T: Float>(args)` that runs the `#[inline(always)]`
/// function `$body` compiled for AVX2 + FMA when the CPU has them (8-lane vectors), and
/// for the crate's baseline x86-64 (4-lane SSE2) otherwise. A closure-based helper would
/// be simpler but LLVM does not reliably inline a closure into a `#[target_feature]`
/// function, and then the loops stay scalar.
///
/// `multiversion!(fma fn ...)` is for bodies with a `const F: bool` after `T`: the AVX2 +
/// FMA clone runs `body::<T, true>` (multiply-adds fused), the fallback `body::<T, false>`
/// (where `mul_add` would be a library call).
macro_rules! multiversion {
    ($(#[$m:meta])* fn $name:ident => $body:ident($($a:ident: $t:ty),* $(,)?)) => {
        $crate::predictor::float::multiversion!(
            @clones [$(#[$m])*] $name, [$body::<T>], [$body::<T>], ($($a: $t),*)
        );
    };
    ($(#[$m:meta])* fma fn $name:ident => $body:ident($($a:ident: $t:ty),* $(,)?)) => {
        $crate::predictor::float::multiversion!(
            @clones [$(#[$m])*] $name, [$body::<T, true>], [$body::<T, false>], ($($a: $t),*)
        );
    };
    (@clones [$($m:tt)*] $name:ident, [$($fast:tt)*], [$($plain:tt)*], ($($a:ident: $t:ty),*)) => {
        $($m)*
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn $name<T: Float>($($a: $t),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2<T: Float>($($a: $t),*) {
                    $($fast)*($($a),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has the features `avx2` is compiled for.
                    return unsafe { avx2::<T>($($a),*) };
                }
            }
            $($plain)*($($a),*)
        }
    };
}
pub(crate) use multiversion;

/// `exp` for `f32` as straight-line arithmetic, so loops over it vectorise (libm's `expf`
/// is an opaque call). Cephes' range reduction `x = k ln2 + r`, `|r| <= ln2/2`, and its
/// degree-7 polynomial: relative error below 2e-7 over the clamped range.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    exp_f32_with::<false>(x)
}

/// `-ln 2` in two parts for [`exp_f32_with`]'s range reduction (Cephes'): the high part
/// has few enough bits that `k * EXP_LN2_HI` is exact for every `k` in range.
pub(crate) const EXP_LN2_HI: f32 = -0.693_359_4;
/// The low part of `-ln 2` (see [`EXP_LN2_HI`]).
pub(crate) const EXP_LN2_LO: f32 = 2.121_944_4e-4;
/// [`exp_f32_with`]'s polynomial in `r` (Cephes' `expf`), highest degree first; the
/// result is `p r^2 + r + 1`.
pub(crate) const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// [`exp_f32`], its multiply-adds fused when `F` (only for code compiled with FMA): the
/// polynomial then costs 7 instructions instead of 14 in the scan's innermost loop.
#[inline(always)]
pub fn exp_f32_with<const F: bool>(x: f32) -> f32 {
    // Below -87 the result is under f32's smallest normal; clamping keeps 2^k a normal
    // number instead of branching to handle denormals (the scan's decays then read 1e-38
    // instead of a denormal, far below anything that matters). Plain selects rather than
    // `clamp`, whose NaN handling does not vectorise.
    let x = if x < -87.0 { -87.0 } else { x };
    let x = if x > 88.0 { 88.0 } else { x };
    // Adding 1.5 * 2^23 rounds to the nearest integer k and leaves k in the low mantissa
    // bits (0x4B40_0000 + k): 2^k is then built with integer adds and a shift, which
    // vectorise, where a float-to-int cast (saturating in Rust) would not.
    const ROUND: f32 = 12_582_912.0;
    let kr = fma_if::<f32, F>(x, std::f32::consts::LOG2_E, ROUND);
    let k = kr - ROUND;
    let r = fma_if::<f32, F>(k, EXP_LN2_LO, fma_if::<f32, F>(k, EXP_LN2_HI, x));
    let mut p = EXP_POLY[0];
    for c in &EXP_POLY[1..] {
        p = fma_if::<f32, F>(p, r, *c);
    }
    let p = fma_if::<f32, F>(p, r * r, r + 1.0);
    let bits = kr.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127) << 23;
    p * f32::from_bits(bits)
}

/// `ln(1 + x)` for `x >= 0` as straight-line arithmetic. `u = 1 + x` rounds, so the
/// result is corrected by `x / (u - 1)` (Goldberg's trick), which keeps full relative
/// precision for tiny `x`; `ln u` for `u` in `[1, 2]` is reduced to `[1/sqrt2, sqrt2]` and
/// evaluated by the atanh series `2 (s + s^3/3 + .. + s^9/9)`, `s = (m-1)/(m+1)`.
#[inline(always)]
pub fn ln_1p_f32(x: f32) -> f32 {
    let u = 1.0 + x;
    let big = u > std::f32::consts::SQRT_2;
    let m = if big { u * 0.5 } else { u };
    let k = if big { std::f32::consts::LN_2 } else { 0.0 };
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let ln_m =
        2.0 * s * (1.0 + s2 * (1.0 / 3.0 + s2 * (0.2 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0)))));
    let ln_u = k + ln_m;
    let d = u - 1.0;
    if d == 0.0 {
        x
    } else {
        ln_u * (x / d)
    }
}

/// Numerically stable softplus with torch's threshold: `x` itself above 20, where
/// `ln(1 + e^x)` equals `x` to f32 precision.
#[inline(always)]
pub fn softplus<T: Float>(x: T) -> T {
    if x > T::from_f64(20.0) {
        x
    } else {
        // Same value as ln(1 + e^x), with e^-|x| <= 1 so the vectorisable ln_1p applies.
        x.max_of(T::ZERO) + (-x.abs_val()).fast_exp().fast_ln_1p()
    }
}

/// The derivative of softplus at `x`, written in terms of `s = softplus(x)` so the
/// backward pass needs only the stored `dt`: `sigmoid(x) = 1 - e^{-s}`, computed as
/// `-expm1(-s)` to keep full precision for small `dt`.
#[inline(always)]
pub fn softplus_grad_from_output<T: Float>(s: T) -> T {
    if s > T::from_f64(20.0) {
        T::ONE
    } else {
        -(-s).fast_exp_m1()
    }
}

#[cfg(any(test, feature = "internals"))]
/// SiLU `x * sigmoid(x)`, using the vectorisable exponential.
#[inline(always)]
pub fn silu<T: Float>(x: T) -> T {
    silu_with::<T, false>(x)
}

/// [`silu`] with the exponential's multiply-adds fused when `F` (only for code compiled
/// with FMA enabled).
#[inline(always)]
pub fn silu_with<T: Float, const F: bool>(x: T) -> T {
    x / (T::ONE + (-x).fast_exp_fused::<F>())
}

#[cfg(any(test, feature = "internals"))]
/// `(silu(x), silu'(x))`, sharing one exponential.
#[inline(always)]
pub fn silu_and_grad<T: Float>(x: T) -> (T, T) {
    silu_and_grad_with::<T, false>(x)
}

/// [`silu_and_grad`] with the exponential's multiply-adds fused when `F` (only for code
/// compiled with FMA enabled).
#[inline(always)]
pub fn silu_and_grad_with<T: Float, const F: bool>(x: T) -> (T, T) {
    let s = T::ONE / (T::ONE + (-x).fast_exp_fused::<F>());
    (x * s, s * (T::ONE + x * (T::ONE - s)))
}

/// `a * b + c`, fused when `F` (code compiled for FMA), a multiply and an add otherwise
/// (where `mul_add` would be a slow library call). The generic kernels' multiply-adds.
#[inline(always)]
pub fn fma_if<T: Float, const F: bool>(a: T, b: T, c: T) -> T {
    if F {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_matches_libm() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            // The fused variant rounds differently; both must be this close.
            for got in [exp_f32(x), exp_f32_with::<true>(x)] {
                worst = worst.max(((got as f64 - want) / want).abs());
            }
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
    }

    #[test]
    fn fast_ln_1p_and_exp_m1_match_libm() {
        let mut worst = 0f64;
        let mut x = 1e-30f32;
        while x < 1.0 {
            let want = (x as f64).ln_1p();
            worst = worst.max(((ln_1p_f32(x) as f64 - want) / want).abs());
            x *= 1.01;
        }
        assert!(worst < 3e-7, "ln_1p worst relative error {worst}");
        let mut worst = 0f64;
        let mut x = -30.0f32;
        while x < 10.0 {
            let want = (x as f64).exp_m1();
            let got = x.fast_exp_m1() as f64;
            if want != 0.0 {
                worst = worst.max(((got - want) / want).abs());
            }
            x += 0.00731;
        }
        assert!(worst < 3e-7, "exp_m1 worst relative error {worst}");
    }

    #[test]
    fn softplus_is_stable_and_its_grad_is_sigmoid() {
        for &x in &[-50.0f64, -3.0, -1e-3, 0.0, 0.5, 7.0, 19.9, 25.0, 100.0] {
            let s = softplus(x);
            let want = x.max(0.0) + (-x.abs()).exp().ln_1p();
            assert!((s - want).abs() <= 1e-12 * want.abs().max(1e-300), "{x}");
            let sig = 1.0 / (1.0 + (-x).exp());
            let g = softplus_grad_from_output(s);
            assert!((g - sig).abs() < 1e-8, "{x}: {g} vs {sig}");
        }
    }

    #[test]
    fn silu_grad_matches_difference() {
        for &x in &[-30.0f64, -2.0, -0.1, 0.0, 0.3, 4.0] {
            let (s, g) = silu_and_grad(x);
            assert!((s - x / (1.0 + (-x).exp())).abs() < 1e-14);
            let h = 1e-6;
            let fd = (silu(x + h) - silu(x - h)) / (2.0 * h);
            assert!((g - fd).abs() < 1e-8, "{x}: {g} vs {fd}");
        }
    }
}
