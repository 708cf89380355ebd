//! The scoring forward's causal convolution, SiLU and `x_proj` in one pass over the rows,
//! in `f32` on AVX2 + FMA.
//!
//! Apart, the generic convolution ran at about 60 cycles per 8 channels (its SiLU through
//! the portable exponential, one vector's chain of dependent operations at a time) and
//! the narrow `x_proj` product (35 or 39 columns at the Lite0 levels) spent as long
//! packing as multiplying (docs/performance.md, "Kernel choices"). Here a task walks
//! consecutive rows: the
//! convolution's source rows are in L1 from the rows before, each row's `u` is projected
//! while it is still in L1, and the projection broadcasts `u`'s values against
//! `x_proj`'s transposed rows, every output one accumulator over the channels in order.

#![cfg(target_arch = "x86_64")]

use rayon::prelude::*;

use super::gemm::SendPtr;
use super::prefetch::prefetch_read;
use super::scan::{applies, LANES};
use super::simd::{has_avx512, Avx2, Avx512, Simd};

/// Rows per task: enough that the three rows before a task's first are the only ones read
/// twice, few enough that the tasks balance.
const ROWS_PER_TASK: usize = 64;

/// Gathered rows ahead of the current one whose source row is prefetched.
const PREFETCH_ROWS: usize = 4;

/// Output vectors of `x_proj` one pass over a row's channels accumulates (registers).
const GROUP: usize = 6;

/// The widest vector's lanes (AVX-512): `x_proj`'s transposed rows are padded to it.
const MAX_LANES: usize = 16;

/// The layer's weights in the layouts the kernel reads.
pub struct ConvProject {
    di: usize,
    kw: usize,
    sx: usize,
    /// conv1d.weight transposed, `[kw, Di]`.
    conv_weight: Vec<f32>,
    /// conv1d.bias, `[Di]`.
    conv_bias: Vec<f32>,
    /// x_proj.weight transposed and padded, `[Di, sx_pad]`, `sx_pad` a multiple of 16.
    x_proj_t: Vec<f32>,
}

impl ConvProject {
    /// From conv1d's `[Di, 1, kw]` weight and `[Di]` bias and x_proj's `[sx, Di]` weight.
    pub fn new(conv_weight: &[f32], conv_bias: &[f32], kw: usize, x_proj: &[f32]) -> Self {
        let di = conv_bias.len();
        assert!(kw >= 1 && conv_weight.len() == di * kw && di.is_multiple_of(LANES));
        assert!(!x_proj.is_empty() && x_proj.len().is_multiple_of(di));
        let sx = x_proj.len() / di;
        let sx_pad = sx.next_multiple_of(MAX_LANES);
        let mut xt = vec![0f32; di * sx_pad];
        for j in 0..sx {
            for d in 0..di {
                xt[d * sx_pad + j] = x_proj[j * di + d];
            }
        }
        ConvProject {
            di,
            kw,
            sx,
            conv_weight: super::conv::transpose(conv_weight, di, kw),
            conv_bias: conv_bias.to_vec(),
            x_proj_t: xt,
        }
    }

    /// `u = silu(conv(x) + bias)` and `x_dbl = u x_proj^T` for sequences of `len` rows
    /// whose row `r` reads row `rows[r]` of `x` (row stride `ldx`, the x half of
    /// in_proj's output): `u` is `[rows, Di]`, `xdbl` `[rows, sx]`. As
    /// [`super::conv::forward_gathered`] followed by [`super::gemm::linear`], up to
    /// rounding. With AVX-512 code where the CPU has it and `Di` is a multiple of 16
    /// (`task_x16`), else AVX2; the same bits either way.
    ///
    /// # Panics
    /// On sizes that do not fit, or where [`super::scan::applies`] does not hold
    /// (AVX2, FMA, `Di` a whole number of vectors).
    pub fn forward_gathered(
        &self,
        x: &[f32],
        ldx: usize,
        rows: &[u32],
        len: usize,
        u: &mut [f32],
        xdbl: &mut [f32],
    ) {
        let wide = has_avx512() && self.di.is_multiple_of(16);
        self.forward_gathered_on(x, ldx, rows, len, u, xdbl, wide);
    }

    /// [`Self::forward_gathered`] with the AVX-512 code (`wide`) or the AVX2 code.
    ///
    /// # Panics
    /// As [`Self::forward_gathered`]; when `wide`, also where the CPU lacks AVX-512F/VL
    /// or `Di` is not a multiple of 16.
    #[allow(clippy::too_many_arguments)]
    fn forward_gathered_on(
        &self,
        x: &[f32],
        ldx: usize,
        rows: &[u32],
        len: usize,
        u: &mut [f32],
        xdbl: &mut [f32],
        wide: bool,
    ) {
        let (di, sx) = (self.di, self.sx);
        assert!(
            applies(di),
            "the fused convolution needs AVX2, FMA and Di % 8 == 0"
        );
        assert!(!wide || (has_avx512() && di.is_multiple_of(16)));
        assert!(len > 0 && rows.len().is_multiple_of(len) && ldx >= di);
        assert!(u.len() == rows.len() * di && xdbl.len() == rows.len() * sx);
        assert!(rows.iter().all(|&r| r as usize * ldx + di <= x.len()));
        let xdbl = SendPtr(xdbl.as_mut_ptr());
        u.par_chunks_mut(ROWS_PER_TASK * di)
            .enumerate()
            .for_each(|(task, u_rows)| {
                let src = Source { x, ldx, rows, len };
                let first = task * ROWS_PER_TASK;
                // SAFETY: features checked above; every source row was checked to lie
                // inside `x`; this task alone writes its rows of `xdbl`, which holds
                // `rows.len() * sx` values.
                unsafe {
                    if wide {
                        self.task_x16(&src, first, u_rows, xdbl)
                    } else {
                        self.task_avx2(&src, first, u_rows, xdbl)
                    }
                }
            });
    }

    /// [`Self::task`] on 8 lanes.
    ///
    /// # Safety
    /// As [`Self::task`]; the CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn task_avx2(&self, src: &Source, first: usize, u_rows: &mut [f32], xdbl: SendPtr<f32>) {
        // SAFETY: the caller's contract.
        unsafe { self.task::<Avx2, Avx2, 2>(src, first, u_rows, xdbl) }
    }

    /// [`Self::task`] on CPUs with AVX-512: the convolution on 16 lanes, the projection
    /// on 8 lanes three rows at a time. At x_proj's widths (35 and 39 outputs at the Lite0
    /// levels) 16-lane output vectors padded 40 lanes to 48; with 32 registers, three rows
    /// of 8-lane accumulators fit instead (faster where the pass is bound by arithmetic,
    /// the stride-16 level; docs/performance.md). Same bits as on AVX2.
    ///
    /// # Safety
    /// As [`Self::task`]; the CPU has AVX-512F and VL, `Di` is a multiple of 16.
    #[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
    unsafe fn task_x16(&self, src: &Source, first: usize, u_rows: &mut [f32], xdbl: SendPtr<f32>) {
        // SAFETY: the caller's contract.
        unsafe { self.task::<Avx512, Avx2, 3>(src, first, u_rows, xdbl) }
    }

    /// Rows `first ..` of `u` (as many as `u_rows` holds) and of `xdbl`: the convolution
    /// on `S`'s vectors, the projection on `P`'s, `R` rows at a time.
    ///
    /// # Safety
    /// Every source row lies inside `src.x`; `xdbl` holds those rows, which nothing else
    /// accesses; the CPU features of `S` and `P`, and `Di` a multiple of `S`'s lanes.
    #[inline(always)]
    unsafe fn task<S: Simd, P: Simd, const R: usize>(
        &self,
        src: &Source,
        first: usize,
        u_rows: &mut [f32],
        xdbl: SendPtr<f32>,
    ) {
        let (di, sx) = (self.di, self.sx);
        // `R` rows at a time: their projections share each load of x_proj.
        for (i, pair) in u_rows.chunks_mut(R * di).enumerate() {
            let row = first + R * i;
            for (k, ur) in pair.chunks_exact_mut(di).enumerate() {
                if let Some(&ahead) = src.rows.get(row + k + PREFETCH_ROWS) {
                    prefetch_read(src.x, ahead as usize * src.ldx, di);
                }
                // SAFETY: the caller's contract.
                unsafe { self.conv_row::<S>(src, row + k, ur) };
            }
            let n = pair.len() / di;
            // SAFETY: the caller's contract: rows `row .. row + n` of `xdbl` are this task's.
            unsafe {
                let out = std::slice::from_raw_parts_mut(xdbl.get().add(row * sx), n * sx);
                self.project_rows::<P, R>(pair, out);
            }
        }
    }

    /// One row of `u`: the row at sequence position `t = row % len` reads rows
    /// `row - kw + 1 ..= row` (those before the sequence's start are the zero padding).
    /// The pre-activations of the whole row first, then the SiLU over them: with both in
    /// one pass per vector, each vector's chain of dependent operations (4 multiply-adds,
    /// the exponential, a division) ran nearly alone, at 60-90 cycles a vector (`perf
    /// annotate`).
    ///
    /// # Safety
    /// As [`Self::task`].
    #[inline(always)]
    unsafe fn conv_row<S: Simd>(&self, src: &Source, row: usize, ur: &mut [f32]) {
        let (di, kw, t) = (self.di, self.kw, row % src.len);
        ur.copy_from_slice(&self.conv_bias);
        for k in (kw - 1).saturating_sub(t)..kw {
            let x = &src.x[src.rows[row + k + 1 - kw] as usize * src.ldx..][..di];
            let w = &self.conv_weight[k * di..(k + 1) * di];
            for d0 in (0..di).step_by(S::LANES) {
                // SAFETY: d0 + LANES <= di, the length of all three slices; the caller's
                // features.
                unsafe {
                    let acc = S::load(ur.as_ptr().add(d0));
                    let wv = S::load(w.as_ptr().add(d0));
                    let xv = S::load(x.as_ptr().add(d0));
                    S::store(ur.as_mut_ptr().add(d0), S::fmadd(wv, xv, acc));
                }
            }
        }
        for d0 in (0..di).step_by(S::LANES) {
            // SAFETY: as above.
            unsafe {
                let pre = S::load(ur.as_ptr().add(d0));
                S::store(ur.as_mut_ptr().add(d0), S::silu(pre));
            }
        }
    }

    /// `out = ur x_proj^T` for up to `R` rows `ur` (`[rows, Di]` in, `[rows, sx]` out),
    /// up to `GROUP` output vectors per pass over the rows; fewer than `R` rows go one at
    /// a time. `R` rows share every load of `x_proj` and keep `R` times the accumulators
    /// busy: one row's chain of dependent multiply-adds per output vector had the units
    /// wait on their latency. Each output sums its channels in the same order whatever
    /// the rows and the width.
    ///
    /// # Safety
    /// The CPU features of `S`.
    #[inline(always)]
    unsafe fn project_rows<S: Simd, const R: usize>(&self, ur: &[f32], out: &mut [f32]) {
        let (di, sx) = (self.di, self.sx);
        let rows = ur.len() / di;
        debug_assert!((1..=R).contains(&rows) && out.len() == rows * sx);
        if rows < R {
            for (u1, o1) in ur.chunks_exact(di).zip(out.chunks_exact_mut(sx)) {
                // SAFETY: the caller's contract.
                unsafe { self.project_rows::<S, 1>(u1, o1) };
            }
            return;
        }
        let vectors = sx.div_ceil(S::LANES);
        let mut v0 = 0;
        while v0 < vectors {
            let n = (vectors - v0).min(GROUP);
            let mut lanes = [[0f32; GROUP * MAX_LANES]; R];
            // SAFETY: v0 + n vectors fit in a row of x_proj_t (padded to MAX_LANES);
            // `ur` holds `R` rows; the caller's features.
            unsafe {
                match n {
                    6 => self.project_group::<S, 6, R>(ur, v0, &mut lanes),
                    5 => self.project_group::<S, 5, R>(ur, v0, &mut lanes),
                    4 => self.project_group::<S, 4, R>(ur, v0, &mut lanes),
                    3 => self.project_group::<S, 3, R>(ur, v0, &mut lanes),
                    2 => self.project_group::<S, 2, R>(ur, v0, &mut lanes),
                    _ => self.project_group::<S, 1, R>(ur, v0, &mut lanes),
                }
            }
            let (col, end) = (v0 * S::LANES, ((v0 + n) * S::LANES).min(sx));
            for (o, l) in out.chunks_exact_mut(sx).zip(&lanes) {
                o[col..end].copy_from_slice(&l[..end - col]);
            }
            v0 += n;
        }
    }

    /// Output vectors `v0 .. v0 + G` of `ur x_proj^T` for `R` rows of `ur` into `lanes`:
    /// fixed counts, so the accumulators stay in registers.
    ///
    /// # Safety
    /// `(v0 + G) * LANES` must not exceed a row of `x_proj_t`; `G <= GROUP`; `ur` must
    /// hold `R` rows of `Di` values; the CPU features of `S`.
    #[inline(always)]
    unsafe fn project_group<S: Simd, const G: usize, const R: usize>(
        &self,
        ur: &[f32],
        v0: usize,
        lanes: &mut [[f32; GROUP * MAX_LANES]; R],
    ) {
        let (di, sx_pad) = (self.di, self.x_proj_t.len() / self.di);
        // SAFETY: the caller's contract; x_proj_t has Di rows.
        unsafe {
            let mut acc = [[S::zero(); G]; R];
            let wp = self.x_proj_t.as_ptr().add(v0 * S::LANES);
            let up = ur.as_ptr();
            for d in 0..di {
                let w = wp.add(d * sx_pad);
                let b: [S::V; R] = std::array::from_fn(|r| S::splat(*up.add(r * di + d)));
                for j in 0..G {
                    let wv = S::load(w.add(j * S::LANES));
                    for (a, br) in acc.iter_mut().zip(&b) {
                        a[j] = S::fmadd(*br, wv, a[j]);
                    }
                }
            }
            for (a, l) in acc.iter().zip(lanes.iter_mut()) {
                for (j, v) in a.iter().enumerate() {
                    S::store(l.as_mut_ptr().add(j * S::LANES), *v);
                }
            }
        }
    }
}

/// Where a task's convolution reads: row `r` of the gathered sequences is row `rows[r]`
/// of `x` (row stride `ldx`), sequences `len` rows long.
struct Source<'a> {
    x: &'a [f32],
    ldx: usize,
    rows: &'a [u32],
    len: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictor::conv;
    use crate::predictor::gemm::linear;
    use crate::predictor::rng::SplitMix64;

    fn random(n: usize, rng: &mut SplitMix64) -> Vec<f32> {
        (0..n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect()
    }

    /// [`ConvProject::project_rows`] on 8 lanes, `R` rows at a time, compiled for them.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn project_rows_avx2<const R: usize>(cp: &ConvProject, ur: &[f32], out: &mut [f32]) {
        // SAFETY: the caller's contract.
        unsafe { cp.project_rows::<Avx2, R>(ur, out) }
    }

    #[test]
    fn rows_project_together_as_each_alone() {
        if !applies(LANES) {
            eprintln!("skipped: this CPU lacks AVX2/FMA");
            return;
        }
        let mut rng = SplitMix64::new(9);
        // x_proj widths of one partial group, one full group and a group and a half; two
        // rows (AVX2) and three (AVX-512), and two rows where three are taken together.
        for (di, sx) in [(16, 5), (24, 48), (80, 73)] {
            let cp = ConvProject::new(&random(di, &mut rng), &random(di, &mut rng), 1, &{
                random(sx * di, &mut rng)
            });
            let ur = random(3 * di, &mut rng);
            let mut alone = vec![0f32; 3 * sx];
            let (mut two, mut three, mut short) = (alone.clone(), alone.clone(), alone.clone());
            // SAFETY: AVX2 and FMA checked above.
            unsafe {
                for r in 0..3 {
                    let one = &mut alone[r * sx..(r + 1) * sx];
                    project_rows_avx2::<1>(&cp, &ur[r * di..(r + 1) * di], one);
                }
                project_rows_avx2::<2>(&cp, &ur[..2 * di], &mut two[..2 * sx]);
                project_rows_avx2::<2>(&cp, &ur[2 * di..], &mut two[2 * sx..]);
                project_rows_avx2::<3>(&cp, &ur, &mut three);
                project_rows_avx2::<3>(&cp, &ur[..2 * di], &mut short[..2 * sx]);
                project_rows_avx2::<3>(&cp, &ur[2 * di..], &mut short[2 * sx..]);
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            for (what, got) in [("two", &two), ("three", &three), ("short", &short)] {
                assert_eq!(bits(got), bits(&alone), "{what} rows, Di {di}, sx {sx}");
            }
        }
    }

    /// The fused pass against the convolution and the product it replaces, on gathered
    /// rows in several orders, with `x_proj` widths below, at and above one group of
    /// output vectors and not a multiple of 8.
    #[test]
    fn fused_pass_matches_conv_then_projection() {
        if !applies(LANES) {
            eprintln!("skipped: this CPU lacks AVX2/FMA");
            return;
        }
        let mut rng = SplitMix64::new(5);
        for &(di, sx, kw, len, seqs) in &[
            (8, 3, 4, 5, 1),
            (16, 35, 4, 13, 3),
            (80, 35, 4, 40, 4),
            (24, 49, 2, 9, 2),
            (32, 57, 1, 7, 2),
            (8, 96, 3, 2, 4),
        ] {
            let tokens = len + 1;
            let ldx = 2 * di + 3;
            let x = random(tokens * ldx, &mut rng);
            let w = random(di * kw, &mut rng);
            let bias = random(di, &mut rng);
            let x_proj = random(sx * di, &mut rng);
            // Sequence s reads the tokens in a rotated, partly reversed order.
            let rows: Vec<u32> = (0..seqs)
                .flat_map(|s| {
                    (0..len).map(move |l| {
                        let i = (l * (2 * s + 1) + s) % tokens;
                        (if s % 2 == 1 { tokens - 1 - i } else { i }) as u32
                    })
                })
                .collect();
            let n = rows.len();
            let (mut u_want, mut xdbl_want) = (vec![0f32; n * di], vec![0f32; n * sx]);
            conv::forward_gathered(&x, ldx, &rows, &w, &bias, len, kw, &mut u_want);
            linear(n, di, sx, &u_want, di, &x_proj, 0.0, &mut xdbl_want, sx);
            let (mut u, mut xdbl) = (vec![f32::NAN; n * di], vec![f32::NAN; n * sx]);
            ConvProject::new(&w, &bias, kw, &x_proj)
                .forward_gathered(&x, ldx, &rows, len, &mut u, &mut xdbl);
            for (what, got, want) in [("u", &u, &u_want), ("x_dbl", &xdbl, &xdbl_want)] {
                for (i, (g, e)) in got.iter().zip(want.iter()).enumerate() {
                    assert!(
                        (g - e).abs() <= 1e-5 * (1.0 + e.abs()),
                        "{what}[{i}] (Di {di}, sx {sx}, kw {kw}): {g} vs {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_avx512_pass_gives_the_bits_of_the_avx2_one() {
        if !applies(LANES) || !has_avx512() {
            eprintln!("skipped: this CPU lacks AVX-512F/VL");
            return;
        }
        let mut rng = SplitMix64::new(13);
        // x_proj widths below one 16-lane vector, of whole vectors, and past a group of
        // six; kernel widths 4 and 1; an odd number of rows per task's end.
        for &(di, sx, kw, len, seqs) in &[(16, 3, 4, 5, 1), (32, 35, 4, 13, 3), (80, 112, 1, 67, 2)]
        {
            let tokens = len + 1;
            let ldx = 2 * di + 5;
            let x = random(tokens * ldx, &mut rng);
            let cp = ConvProject::new(
                &random(di * kw, &mut rng),
                &random(di, &mut rng),
                kw,
                &random(sx * di, &mut rng),
            );
            let rows: Vec<u32> = (0..seqs * len)
                .map(|r| ((r * 7 + 3) % tokens) as u32)
                .collect();
            let n = rows.len();
            let run = |wide: bool| {
                let (mut u, mut xdbl) = (vec![f32::NAN; n * di], vec![f32::NAN; n * sx]);
                cp.forward_gathered_on(&x, ldx, &rows, len, &mut u, &mut xdbl, wide);
                [u, xdbl].map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
            };
            assert_eq!(run(true), run(false), "Di {di}, sx {sx}, kw {kw}");
        }
    }
}
