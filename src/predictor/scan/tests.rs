use super::*;
use crate::predictor::rng::SplitMix64;

struct Case<T> {
    s: ScanDims,
    a_log: Vec<T>,
    d: Vec<T>,
    delta: Vec<T>,
    xdbl: Vec<T>,
    z: Vec<T>,
    u: Vec<T>,
    gy: Vec<T>,
}

fn case<T: Float>(
    batch: usize,
    len: usize,
    di: usize,
    ns: usize,
    chunk: usize,
    seed: u64,
) -> Case<T> {
    let mut r = SplitMix64::new(seed);
    let mut v = |n: usize, lo: f64, hi: f64| {
        (0..n)
            .map(|_| T::from_f64(r.uniform(lo, hi)))
            .collect::<Vec<T>>()
    };
    let rows = batch * len;
    let s = ScanDims {
        batch,
        len,
        d_inner: di,
        d_state: ns,
        b_offset: 3,
        ld_xdbl: 3 + 2 * ns + 1,
        chunk,
    };
    Case {
        a_log: v(di * ns, -1.0, 2.5),
        d: v(di, -1.0, 1.0),
        delta: v(rows * di, 1e-3, 0.5),
        xdbl: v(rows * s.ld_xdbl, -1.0, 1.0),
        z: v(rows * 2 * di, -3.0, 3.0),
        u: v(rows * di, -2.0, 2.0),
        gy: v(rows * di, -1.0, 1.0),
        s,
    }
}

fn inputs<T: Float>(c: &Case<T>) -> ScanInputs<'_, T> {
    ScanInputs {
        a_log: &c.a_log,
        d: &c.d,
        delta: &c.delta,
        xdbl: &c.xdbl,
        z: &c.z[c.s.d_inner..],
        ld_z: 2 * c.s.d_inner,
    }
}

fn close<T: Float>(what: &str, x: &[T], y: &[T], tol: f64) {
    assert_eq!(x.len(), y.len());
    let scale = y
        .iter()
        .map(|v| v.to_f64().abs())
        .fold(0.0, f64::max)
        .max(1e-30);
    for (i, (p, q)) in x.iter().zip(y).enumerate() {
        let e = (p.to_f64() - q.to_f64()).abs() / scale;
        assert!(e < tol, "{what}[{i}]: {p:?} vs {q:?} (rel {e:e})");
    }
}

fn check_forward<T: Float>(c: &Case<T>, tol: f64) {
    let inp = inputs(c);
    let mut fast = vec![T::ZERO; c.u.len()];
    let mut ck = vec![T::ZERO; c.s.ckpt_len()];
    forward(&c.s, &inp, &c.u, &mut fast, Some(&mut ck));
    let mut slow = fast.clone();
    forward_naive(&c.s, &inp, &c.u, &mut slow);
    close("y", &fast, &slow, tol);
    let mut inplace = c.u.clone();
    forward_in_place(&c.s, &inp, &mut inplace);
    close("y in place", &inplace, &slow, tol);
}

/// The backward kernels under test.
#[derive(Clone, Copy, PartialEq)]
enum Kernel {
    /// [`backward`] (AVX2 where it applies).
    Dispatched,
    /// [`backward_portable`].
    Portable,
    /// [`backward_naive`].
    Naive,
}

/// Every output of the backward kernel `k` for case `c`, after the training forward
/// (whose output is also returned, last).
fn backward_outputs<T: Float>(c: &Case<T>, k: Kernel) -> [Vec<T>; 9] {
    backward_outputs_strided(c, k, 2 * c.s.d_inner)
}

/// [`backward_outputs`] with `dL/dz` written at row stride `ld_gz` (from column `Di`
/// of each row, as into in_proj's gradient), returned as `[rows, Di]`.
fn backward_outputs_strided<T: Float>(c: &Case<T>, k: Kernel, ld_gz: usize) -> [Vec<T>; 9] {
    let inp = inputs(c);
    let (rows, di, ns) = (c.s.batch * c.s.len, c.s.d_inner, c.s.d_state);
    let mut y = vec![T::ZERO; c.u.len()];
    let mut ck = vec![T::ZERO; c.s.ckpt_len()];
    forward(&c.s, &inp, &c.u, &mut y, Some(&mut ck));
    let mut gy = c.gy.clone();
    let mut gz = vec![T::ZERO; rows * ld_gz];
    let mut gu = vec![T::ZERO; rows * di];
    let mut gdelta = vec![T::ZERO; rows * di];
    let mut gxdbl = vec![T::ZERO; rows * c.s.ld_xdbl];
    let mut ga = vec![T::ZERO; di * ns];
    let mut gd = vec![T::ZERO; di];
    let mut gbias = vec![T::ZERO; di];
    let g = ScanGrads {
        gy_then_y: &mut gy,
        gz: &mut gz[di..],
        ld_gz,
        gu: &mut gu,
        gdelta: &mut gdelta,
        gxdbl: &mut gxdbl,
        ga_log: &mut ga,
        gd: &mut gd,
        gbias: &mut gbias,
    };
    match k {
        Kernel::Dispatched => backward(&c.s, &inp, &c.u, &ck, g),
        Kernel::Portable => backward_portable(&c.s, &inp, &c.u, &ck, g),
        Kernel::Naive => backward_naive(&c.s, &inp, &c.u, g),
    }
    let gz = gz
        .chunks(ld_gz)
        .flat_map(|r| r[di..2 * di].to_vec())
        .collect();
    [gy, gz, gu, gdelta, gxdbl, ga, gd, gbias, y]
}

const OUTPUTS: [&str; 8] = ["y", "gz", "gu", "gdelta", "gxdbl", "gA_log", "gD", "gbias"];

fn check_backward<T: Float>(c: &Case<T>, tol: f64) {
    let (f, n) = (
        backward_outputs(c, Kernel::Dispatched),
        backward_outputs(c, Kernel::Naive),
    );
    close("y from backward", &f[0], &f[8], tol);
    for (i, name) in OUTPUTS.iter().enumerate() {
        close(name, &f[i], &n[i], tol);
    }
}

#[test]
fn fused_forward_matches_naive() {
    // 16-lane blocks plus remainder channels; f32 (fast exp) and f64.
    check_forward(&case::<f32>(2, 37, 35, 16, 8, 1), 2e-5);
    check_forward(&case::<f64>(2, 37, 35, 5, 8, 2), 1e-12);
}

/// The portable kernel's output and checkpoints for case `c`.
fn portable<T: Float>(c: &Case<T>, delta: &[T]) -> (Vec<T>, Vec<T>) {
    let inp = ScanInputs { delta, ..inputs(c) };
    let mut y = vec![T::ZERO; c.u.len()];
    let mut ck = vec![T::ZERO; c.s.ckpt_len()];
    // SAFETY: u and y hold rows * Di elements; y is exclusively borrowed.
    unsafe { forward_portable(&c.s, &inp, c.u.as_ptr(), y.as_mut_ptr(), Some(&mut ck)) };
    (y, ck)
}

#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_forward_matches_portable_kernel() {
    if !applies(8) {
        eprintln!("skipped: this CPU lacks AVX2/FMA");
        return;
    }
    // N = 16, 8 and 4 run kernels compiled for that N; 5 and 7 the run-time one (7
    // also the tail after the groups of four states).
    for ns in [16usize, 8, 4, 5, 7] {
        let c = case::<f32>(3, 77, 40, ns, 16, 5 + ns as u64);
        let (want_y, want_ck) = portable(&c, &c.delta);
        let mut y = vec![0f32; c.u.len()];
        let mut ck = vec![0f32; c.s.ckpt_len()];
        forward(&c.s, &inputs(&c), &c.u, &mut y, Some(&mut ck));
        close(&format!("y, N {ns}"), &y, &want_y, 2e-6);
        close(&format!("checkpoints, N {ns}"), &ck, &want_ck, 2e-6);
        let mut inplace = c.u.clone();
        forward_in_place(&c.s, &inputs(&c), &mut inplace);
        assert_eq!(inplace, y);
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn the_avx512_builds_of_the_forward_give_the_same_bits() {
    if !applies(8) || !crate::predictor::simd::has_avx512() {
        eprintln!("skipped: this CPU lacks AVX-512F/VL");
        return;
    }
    // Stored and computed dt (with dt and checkpoints kept, streamed), each N the
    // kernels are compiled for and one known only at run time, in place and not; 48
    // channels run the 16-lane kernel, 24 the 8-lane one compiled for AVX-512.
    for (ns, di) in [16usize, 8, 4, 5]
        .into_iter()
        .flat_map(|n| [(n, 48), (n, 24)])
    {
        let c = case::<f32>(2, 45, di, ns, 8, 11 + (ns + di) as u64);
        let rows = c.s.batch * c.s.len;
        let weight: Vec<f32> = c.a_log[..c.s.d_inner * c.s.b_offset].to_vec();
        let bias: Vec<f32> = c.d.iter().map(|v| 4.0 * v).collect();
        let low_rank = Delta::LowRank {
            weight: &weight,
            bias: &bias,
        };
        let run = |avx512: bool, computed: bool, in_place: bool| {
            let fast = if computed {
                inputs(&c).with_delta_f32(low_rank).unwrap()
            } else {
                inputs(&c).as_f32().unwrap()
            };
            let mut y = if in_place {
                c.u.clone()
            } else {
                vec![0f32; c.u.len()]
            };
            let mut ck = vec![0f32; c.s.ckpt_len()];
            let mut delta = vec![0f32; rows * c.s.d_inner];
            let u = if in_place { y.as_ptr() } else { c.u.as_ptr() };
            let keep = !in_place;
            // SAFETY: u and y hold rows * Di elements; y is exclusively borrowed.
            unsafe {
                avx2::forward_raw_on(
                    &c.s,
                    &fast,
                    u,
                    y.as_mut_ptr(),
                    keep.then_some(&mut ck[..]),
                    (keep && computed).then_some(&mut delta[..]),
                    avx512,
                )
            };
            [y, ck, delta].map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
        };
        for computed in [false, true] {
            for in_place in [false, true] {
                assert_eq!(
                    run(true, computed, in_place),
                    run(false, computed, in_place),
                    "N {ns}, Di {di}, dt computed {computed}, in place {in_place}"
                );
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_forward_computes_dt_as_dt_proj_and_softplus() {
    let c = case::<f32>(2, 50, 24, 16, 8, 7);
    if !applies(c.s.d_inner) {
        eprintln!("skipped: this CPU lacks AVX2/FMA");
        return;
    }
    let (rows, di, rank) = (c.s.batch * c.s.len, c.s.d_inner, c.s.b_offset);
    let mut r = SplitMix64::new(3);
    let weight: Vec<f32> = (0..di * rank)
        .map(|_| r.uniform(-1.0, 1.0) as f32)
        .collect();
    // Biases from far below zero to above softplus' threshold of 20.
    let bias: Vec<f32> = (0..di)
        .map(|d| -8.0 + 30.0 * d as f32 / di as f32)
        .collect();
    let want_delta: Vec<f32> = (0..rows * di)
        .map(|i| {
            let (row, d) = (i / di, i % di);
            let raw = bias[d] as f64
                + (0..rank)
                    .map(|k| (c.xdbl[row * c.s.ld_xdbl + k] * weight[d * rank + k]) as f64)
                    .sum::<f64>();
            (if raw > 20.0 { raw } else { raw.exp().ln_1p() }) as f32
        })
        .collect();
    let fast = inputs(&c)
        .with_delta_f32(Delta::LowRank {
            weight: &weight,
            bias: &bias,
        })
        .unwrap();
    let mut y = vec![0f32; c.u.len()];
    let mut ck = vec![0f32; c.s.ckpt_len()];
    let mut delta = vec![0f32; rows * di];
    // SAFETY: u and y hold rows * Di elements; y is exclusively borrowed.
    unsafe {
        avx2::forward_raw(
            &c.s,
            &fast,
            c.u.as_ptr(),
            y.as_mut_ptr(),
            Some(&mut ck),
            Some(&mut delta),
        )
    };
    for (i, (got, want)) in delta.iter().zip(&want_delta).enumerate() {
        let e = ((got - want) / want).abs();
        assert!(e < 2e-6, "dt[{i}]: {got} vs {want}");
    }
    let (want_y, want_ck) = portable(&c, &want_delta);
    close("y", &y, &want_y, 1e-5);
    close("checkpoints", &ck, &want_ck, 1e-5);
}

#[test]
fn chunked_backward_matches_naive() {
    // L below, equal to, and above a multiple of the chunk.
    for (len, chunk) in [(5usize, 8usize), (16, 8), (29, 8), (40, 64)] {
        check_backward(&case::<f64>(2, len, 19, 4, chunk, len as u64), 1e-11);
    }
    check_backward(&case::<f32>(3, 50, 33, 16, 16, 9), 5e-5);
}

#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_backward_matches_portable_kernel() {
    if !applies(8) {
        eprintln!("skipped: this CPU lacks AVX2/FMA");
        return;
    }
    // One partial channel group; two groups, the last partial (Di 800); an odd N
    // (the dB/dC sums' remainder path, and the kernel for N known at run time); N = 8
    // and 4 (kernels compiled for them, as for 16); L below, at and past a chunk
    // boundary.
    for (batch, len, di, ns, chunk) in [
        (2usize, 45usize, 40usize, 16usize, 16usize),
        (3, 32, 200, 5, 16),
        (2, 20, 800, 16, 16),
        (1, 7, 96, 16, 64),
        (2, 20, 48, 8, 16),
        (1, 33, 24, 4, 16),
    ] {
        let c = case::<f32>(batch, len, di, ns, chunk, (len * di) as u64);
        let (f, p) = (
            backward_outputs(&c, Kernel::Dispatched),
            backward_outputs(&c, Kernel::Portable),
        );
        let naive = backward_outputs(&c, Kernel::Naive);
        for (i, name) in OUTPUTS.iter().enumerate() {
            let what = format!("{name} (B {batch}, L {len}, Di {di}, N {ns})");
            close(&what, &f[i], &p[i], 2e-5);
            close(&what, &f[i], &naive[i], 5e-5);
        }
        // The recomputed output is the training forward's (its states are, bit for
        // bit; the read-out sums in another order).
        close("y from backward", &f[0], &f[8], 1e-6);
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_backward_streams_its_outputs_without_changing_them() {
    let c = case::<f32>(2, 70, 48, 16, 16, 21);
    if !applies(c.s.d_inner) {
        eprintln!("skipped: this CPU lacks AVX2/FMA");
        return;
    }
    // A row stride of `dL/dz` that is a multiple of 4 floats lets the kernel stream
    // (every buffer here is 16-byte aligned); one that is not makes it copy plainly.
    let run = |ld_gz: usize| backward_outputs_strided(&c, Kernel::Dispatched, ld_gz);
    let di = c.s.d_inner;
    let (streamed, plain) = (run(2 * di), run(2 * di + 1));
    for (name, (a, b)) in OUTPUTS.iter().zip(streamed.iter().zip(&plain)) {
        assert_eq!(a, b, "{name}");
    }
}
