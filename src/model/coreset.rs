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

/// Greedy k-center selection of `k` of the `tokens.len() / dims` rows: start at `start`,
/// then repeatedly take the row farthest from everything taken so far (ties to the lowest
/// index, so the result is the same for any thread count).
pub fn greedy_coreset(tokens: &[f32], dims: usize, k: usize, start: usize) -> Vec<usize> {
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
                    let dist: f32 = row.iter().zip(centre).map(|(a, b)| (a - b) * (a - b)).sum();
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
