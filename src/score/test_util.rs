//! Helpers shared by the scoring tests.

/// `n` deterministic pseudo-random values in [0, 1).
pub(crate) fn noise(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32
        })
        .collect()
}

/// The largest absolute difference between an f32 result and its f64 twin.
pub(crate) fn max_abs_diff(fast: &[f32], slow: &[f64]) -> f64 {
    assert_eq!(fast.len(), slow.len());
    fast.iter()
        .zip(slow)
        .map(|(&a, &b)| (f64::from(a) - b).abs())
        .fold(0.0, f64::max)
}
