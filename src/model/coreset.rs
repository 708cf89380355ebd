//! Greedy k-center coreset selection (the rule PatchCore uses to shrink its memory bank):
//! a bank of `k` tokens that covers every normal token as closely as `k` tokens can,
//! instead of a random draw that leaves rare normal patterns out. Selection runs on a
//! seeded random projection of the tokens when they are wide, for speed.

use rayon::prelude::*;

use crate::predictor::rng::SplitMix64;

/// A `dims_in x dims_out` Gaussian projection matrix (entries `N(0, 1/dims_out)`, which
/// keeps squared distances in expectation), from `seed`.
pub fn random_projection(dims_in: usize, dims_out: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    let scale = (1.0 / dims_out as f64).sqrt();
    (0..dims_in * dims_out)
        .map(|_| {
            // Box-Muller; 1 - u keeps the logarithm finite.
            let (u, v) = (1.0 - rng.next_f64(), rng.next_f64());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos() * scale) as f32
        })
        .collect()
}

/// `a [m x k] * b [k x n]`, row-major, through matrixmultiply's GEMM.
pub fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    gemm(a, (b, (n as isize, 1)), m, k, n)
}

/// `a [m x k] * b^T` for `b [n x k]` row-major: `[m x n]`, row-major.
pub fn matmul_transposed(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    gemm(a, (b, (1, k as isize)), m, k, n)
}

/// `a [m x k]` (row-major) times the `[k x n]` matrix `b` read with the (row, column)
/// strides given, through matrixmultiply's GEMM; `[m x n]`, row-major.
fn gemm(a: &[f32], (b, (rsb, csb)): (&[f32], (isize, isize)), m: usize, k: usize, n: usize) -> Vec<f32> {
    assert!(a.len() >= m * k && b.len() >= k * n, "gemm: operands too short");
    let mut c = vec![0f32; m * n];
    // SAFETY: `a` holds m*k values read row-major; `b` holds k*n values and both callers'
    // strides address exactly those (row-major b, or row-major b^T read transposed); `c`
    // holds m*n values.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            rsb,
            csb,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    c
}

/// `tokens [n x dims_in]` times the projection `p [dims_in x dims_out]`, in parallel
/// blocks of rows.
pub fn project(tokens: &[f32], p: &[f32], dims_in: usize, dims_out: usize) -> Vec<f32> {
    const ROWS: usize = 4096;
    let mut out = vec![0f32; tokens.len() / dims_in * dims_out];
    out.par_chunks_mut(ROWS * dims_out)
        .zip(tokens.par_chunks(ROWS * dims_in))
        .for_each(|(o, t)| {
            o.copy_from_slice(&matmul(t, p, t.len() / dims_in, dims_in, dims_out));
        });
    out
}

/// Squared Euclidean distance, summed in eight lanes so that the compiler can keep it in
/// vector registers (a single running sum is a dependency chain it may not reorder).
/// Both selections use it, so they round alike.
#[inline]
fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (a8.remainder(), b8.remainder());
    for (x, y) in a8.zip(b8) {
        for l in 0..8 {
            let d = x[l] - y[l];
            lanes[l] += d * d;
        }
    }
    let mut sum: f32 = lanes.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        sum += (x - y) * (x - y);
    }
    sum
}

/// Greedy k-center selection of `k` of the `tokens.len() / dims` rows: start at `start`,
/// then repeatedly take the row farthest from everything taken so far (ties to the lowest
/// index, so the result is the same for any thread count).
///
/// Each row remembers which centre is nearest to it. A new centre `c` cannot come closer
/// to a row `x` whose nearest centre is `a` when `|a - c| >= 2 |x - a|` (triangle
/// inequality), so such rows are skipped without reading their values: late in a
/// selection nearly every row is, and the work per step falls from all rows' values to
/// two numbers a row. A chunk's farthest row is found again only when one of its rows got
/// closer. The choices are those of [`greedy_coreset_naive`]; the skip keeps a small
/// margin so that rounding cannot make them differ.
pub fn greedy_coreset(tokens: &[f32], dims: usize, k: usize, start: usize) -> Vec<usize> {
    const CHUNK: usize = 1024;
    // Skip only when the squared centre gap exceeds 4 (1 + margin) times the row's squared
    // distance: then the new distance is above the old one by far more than rounding.
    const SKIP: f32 = 4.0 * (1.0 + 1e-4);
    const NONE: u32 = u32::MAX;
    let n = tokens.len() / dims.max(1);
    let k = k.min(n);
    if k == 0 {
        return Vec::new();
    }
    let squared = squared_distance;
    let mut chosen: Vec<usize> = Vec::with_capacity(k);
    let mut nearest = vec![f32::INFINITY; n];
    let mut owner = vec![NONE; n];
    let mut farthest = vec![(f32::NEG_INFINITY, usize::MAX); n.div_ceil(CHUNK)];
    let mut gaps: Vec<f32> = Vec::with_capacity(k);
    let mut next = start.min(n - 1);
    for _ in 0..k {
        let centre = &tokens[next * dims..(next + 1) * dims];
        let me = chosen.len() as u32;
        // Squared distance from the new centre to every earlier one.
        gaps.clear();
        gaps.par_extend(
            chosen
                .par_iter()
                .map(|&c| squared(&tokens[c * dims..(c + 1) * dims], centre)),
        );
        chosen.push(next);
        let gaps = &gaps;
        nearest
            .par_chunks_mut(CHUNK)
            .zip(owner.par_chunks_mut(CHUNK))
            .zip(farthest.par_iter_mut())
            .zip(tokens.par_chunks(CHUNK * dims))
            .enumerate()
            .for_each(|(c, (((near, own), far), rows))| {
                let mut changed = false;
                for (i, row) in rows.chunks_exact(dims).enumerate() {
                    if own[i] != NONE && gaps[own[i] as usize] > SKIP * near[i] {
                        continue;
                    }
                    let dist = squared(row, centre);
                    if dist < near[i] {
                        near[i] = dist;
                        own[i] = me;
                        changed = true;
                    }
                }
                if changed {
                    let mut best = (f32::NEG_INFINITY, usize::MAX);
                    for (i, &d) in near.iter().enumerate() {
                        if d > best.0 {
                            best = (d, c * CHUNK + i);
                        }
                    }
                    *far = best;
                }
            });
        // The farthest row overall, ties to the lowest index.
        let far = farthest.iter().fold((f32::NEG_INFINITY, usize::MAX), |a, &b| {
            if b.0 > a.0 || (b.0 == a.0 && b.1 < a.1) {
                b
            } else {
                a
            }
        });
        if far.1 == usize::MAX {
            break;
        }
        next = far.1;
    }
    chosen
}

/// [`greedy_coreset`] as its definition reads: every step measures every row against the
/// new centre. The twin the pruned selection is tested and benchmarked against.
#[cfg(any(test, feature = "internals"))]
pub fn greedy_coreset_naive(tokens: &[f32], dims: usize, k: usize, start: usize) -> Vec<usize> {
    let n = tokens.len() / dims;
    let k = k.min(n);
    if k == 0 {
        return Vec::new();
    }
    let mut chosen = Vec::with_capacity(k);
    let mut nearest = vec![f32::INFINITY; n];
    let mut next = start.min(n - 1);
    const CHUNK: usize = 1024;
    for _ in 0..k {
        chosen.push(next);
        let centre = &tokens[next * dims..(next + 1) * dims];
        // Update every row's distance to the chosen set and find the farthest row, per
        // chunk in parallel, reduced in chunk order.
        let (_, far) = nearest
            .par_chunks_mut(CHUNK)
            .zip(tokens.par_chunks(CHUNK * dims))
            .enumerate()
            .map(|(c, (near, rows))| {
                let mut best = (f32::NEG_INFINITY, usize::MAX);
                for (i, (d, row)) in near.iter_mut().zip(rows.chunks_exact(dims)).enumerate() {
                    let dist = squared_distance(row, centre);
                    if dist < *d {
                        *d = dist;
                    }
                    if *d > best.0 {
                        best = (*d, c * CHUNK + i);
                    }
                }
                best
            })
            .reduce(
                || (f32::NEG_INFINITY, usize::MAX),
                |a, b| {
                    if b.0 > a.0 || (b.0 == a.0 && b.1 < a.1) {
                        b
                    } else {
                        a
                    }
                },
            );
        if far == usize::MAX {
            break;
        }
        next = far;
    }
    chosen
}

/// `k` rows of `tokens` (`[n, dims]`) by greedy k-center selection, starting from a row
/// drawn with `seed`; on a random projection to `projection_dims` when the rows are
/// wider. The chosen rows' indices, ascending.
pub fn select(tokens: &[f32], dims: usize, k: usize, projection_dims: usize, seed: u64) -> Vec<usize> {
    let n = tokens.len() / dims.max(1);
    if n == 0 || k == 0 {
        return Vec::new();
    }
    if k >= n {
        return (0..n).collect();
    }
    let start = (SplitMix64::new(seed).next_u64() % n as u64) as usize;
    let mut chosen = if dims > projection_dims {
        let p = random_projection(dims, projection_dims, seed);
        greedy_coreset(&project(tokens, &p, dims, projection_dims), projection_dims, k, start)
    } else {
        greedy_coreset(tokens, dims, k, start)
    };
    chosen.sort_unstable();
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = SplitMix64::new(seed);
        (0..n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect()
    }

    #[test]
    fn coreset_is_deterministic_and_spreads_out() {
        let tokens = noise(3000 * 16, 4);
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| greedy_coreset(&tokens, 16, 50, 7))
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one.len(), 50);
        assert_eq!(one[0], 7);
        let mut unique = one.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 50);
        // Two tight clusters: the second pick is in the other cluster.
        let mut two = vec![0f32; 20 * 2];
        for i in 10..20 {
            two[i * 2] = 100.0;
        }
        let picks = greedy_coreset(&two, 2, 2, 0);
        assert!(picks[1] >= 10, "{picks:?}");
        assert_eq!(greedy_coreset(&two, 2, 100, 0).len(), 20);
    }

    #[test]
    fn pruned_selection_chooses_what_the_definition_chooses() {
        // Clustered rows (where the pruning skips most of them) and plain noise, narrow
        // and wide, with selections long enough that late steps skip nearly everything.
        for (rows, dims, k, seed) in [(4000, 8, 600, 1), (2500, 40, 400, 2), (1500, 64, 1500, 3)] {
            let centres = noise(20 * dims, seed + 10);
            let spread = noise(rows * dims, seed);
            let clustered: Vec<f32> = (0..rows * dims)
                .map(|i| centres[(i / dims % 20) * dims + i % dims] * 5.0 + spread[i] * 0.3)
                .collect();
            for tokens in [&clustered, &spread] {
                let fast = greedy_coreset(tokens, dims, k, 5);
                assert_eq!(fast, greedy_coreset_naive(tokens, dims, k, 5), "{rows} x {dims}, k {k}");
            }
        }
    }

    #[test]
    fn projection_is_seeded_and_keeps_distances_roughly() {
        assert_eq!(random_projection(8, 4, 1), random_projection(8, 4, 1));
        assert_ne!(random_projection(8, 4, 1), random_projection(8, 4, 2));
        let p = random_projection(256, 128, 9);
        let x = noise(2 * 256, 5);
        let y = project(&x, &p, 256, 128);
        let d = |v: &[f32], n: usize| {
            v[..n]
                .iter()
                .zip(&v[n..])
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f32>()
        };
        let ratio = d(&y, 128) / d(&x, 256);
        assert!((0.6..1.4).contains(&ratio), "{ratio}");
    }

    #[test]
    fn select_covers_rare_patterns_a_random_draw_misses() {
        // 990 rows near the origin and 10 far away: 20 picks include a far one, sorted,
        // distinct; asking for every row returns every row.
        let dims = 48;
        let mut tokens = noise(1000 * dims, 8).iter().map(|v| v * 0.01).collect::<Vec<f32>>();
        for row in 990..1000 {
            tokens[row * dims] = 50.0;
        }
        let picks = select(&tokens, dims, 20, 16, 3);
        assert_eq!(picks.len(), 20);
        assert!(picks.windows(2).all(|w| w[0] < w[1]), "{picks:?}");
        assert!(picks.iter().any(|&i| i >= 990), "{picks:?}");
        assert_eq!(select(&tokens, dims, 20, 16, 3), picks);
        assert_eq!(select(&tokens, dims, 5000, 16, 3).len(), 1000);
    }
}
