//! The four directional scans of a token grid, the shift by `M` tokens with BOS padding,
//! and the way back (DESIGN.md, "Directions over the grid" and "Shift").
//!
//! A grid of `h x w` tokens (row-major, token `(i, j)` at `i*w + j`) is read in four
//! orders: `k=0` row-major from the top-left, `k=1` its reverse, `k=2` column-major from
//! the top-left, `k=3` its reverse. For a sequence `v_1..v_L` the predictor's input is
//! `[bos x M, v_1 .. v_{L-M}]` with `M = m*w` for rows and `M = m*h` for columns, so its
//! causal output at `l` is the prediction of `v_l` from `v_1..v_{l-M}`.
//!
//! A model may use a subset of the four directions (`Config::directions`, the paper's
//! ablation of the scans); only the active ones are run and averaged.

use crate::predictor::Float;
use crate::{Error, Result};

/// The number of scan directions there are; a model uses all of them or a subset
/// ([`Scans::with_directions`]).
pub const DIRECTIONS: usize = 4;

/// The scan orders and skips of one grid, and which directions are active.
#[derive(Debug, Clone, PartialEq)]
pub struct Scans {
    height: usize,
    width: usize,
    /// `order[k][l]` = the grid index read at position `l` of direction `k`.
    order: [Vec<u32>; DIRECTIONS],
    /// `M` of each direction.
    skip: [usize; DIRECTIONS],
    /// `input_rows[k]`: see [`Scans::input_rows`] (derived from `order` and `skip` once,
    /// not on every scored image).
    input_rows: [Vec<u32>; DIRECTIONS],
    /// The active directions, ascending: the ones the model runs and averages.
    directions: Vec<usize>,
    /// How the active directions are averaged.
    mean: DirectionMean,
    /// `weights[k][l]`: the weight of direction `k`'s prediction at position `l` in the
    /// mean over directions (see [`DirectionMean`]); zero for an inactive direction.
    weights: [Vec<f64>; DIRECTIONS],
}

/// How the active directions' predictions of a token are averaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DirectionMean {
    /// The plain mean of all active directions (DESIGN.md, the paper's Eq. 9). A direction
    /// that reaches a token within its first `M` steps has seen only BOS vectors, so near
    /// the borders some of the predictions are context-free guesses.
    #[default]
    All,
    /// The mean of the active directions that have seen at least one token before
    /// predicting this one (all active ones where none has).
    WithContext,
}

impl Scans {
    /// The scans of an `height x width` grid with prediction step `m`, all four directions
    /// active; `m` must be positive and smaller than both sides.
    pub fn new(height: usize, width: usize, m: usize) -> Result<Self> {
        if m == 0 || m >= height || m >= width {
            return Err(Error::config(format!(
                "prediction step m = {m} needs 0 < m < grid height and width; this grid is {height} x {width} tokens \
                 (use a smaller m or a larger input size)"
            )));
        }
        let len = height * width;
        if len > u32::MAX as usize {
            return Err(Error::config(format!(
                "a {height} x {width} token grid is too large"
            )));
        }
        let rows: Vec<u32> = (0..len as u32).collect();
        let cols: Vec<u32> = (0..len)
            .map(|l| ((l % height) * width + l / height) as u32)
            .collect();
        let reversed = |v: &Vec<u32>| v.iter().rev().copied().collect::<Vec<u32>>();
        let order = [rows.clone(), reversed(&rows), cols.clone(), reversed(&cols)];
        let skip = [m * width, m * width, m * height, m * height];
        // BOS (row `len`, one past the grid) for the first `M` positions, then the order
        // shifted by `M`.
        let input_rows = std::array::from_fn(|k| {
            let bos = std::iter::repeat_n(len as u32, skip[k]);
            bos.chain(order[k][..len - skip[k]].iter().copied())
                .collect()
        });
        let mut scans = Scans {
            height,
            width,
            order,
            skip,
            input_rows,
            directions: (0..DIRECTIONS).collect(),
            mean: DirectionMean::All,
            weights: std::array::from_fn(|_| Vec::new()),
        };
        scans.set_weights();
        Ok(scans)
    }

    /// The same scans with the directions averaged as `mean` says.
    pub fn with_direction_mean(mut self, mean: DirectionMean) -> Self {
        self.mean = mean;
        self.set_weights();
        self
    }

    /// The same scans with only `directions` active (any order; each below
    /// [`DIRECTIONS`], none twice, at least one).
    pub fn with_directions(mut self, directions: &[usize]) -> Result<Self> {
        let mut active = directions.to_vec();
        active.sort_unstable();
        active.dedup();
        if active.is_empty()
            || active.len() != directions.len()
            || active.iter().any(|&k| k >= DIRECTIONS)
        {
            return Err(Error::config(format!(
                "scan directions {directions:?}: give one or more distinct directions from 0, 1, 2, 3"
            )));
        }
        self.directions = active;
        self.set_weights();
        Ok(self)
    }

    /// The active directions, ascending.
    pub fn directions(&self) -> &[usize] {
        &self.directions
    }

    /// Derives `weights` from the active directions and the mean.
    fn set_weights(&mut self) {
        let len = self.len();
        let active = |k: usize| self.directions.contains(&k);
        let share = 1.0 / self.directions.len() as f64;
        self.weights = match self.mean {
            DirectionMean::All => std::array::from_fn(|k| {
                if active(k) {
                    vec![share; len]
                } else {
                    vec![0.0; len]
                }
            }),
            DirectionMean::WithContext => {
                // How many active directions reach each cell after their first M steps.
                let mut count = vec![0u8; len];
                for &k in &self.directions {
                    for &g in &self.order[k][self.skip[k]..] {
                        count[g as usize] += 1;
                    }
                }
                std::array::from_fn(|k| {
                    if !active(k) {
                        return vec![0.0; len];
                    }
                    (0..len)
                        .map(|l| {
                            let n = count[self.order[k][l] as usize];
                            match (n, l >= self.skip[k]) {
                                (0, _) => share,
                                (_, true) => 1.0 / n as f64,
                                (_, false) => 0.0,
                            }
                        })
                        .collect()
                })
            }
        };
    }

    /// Direction `k`'s weight at each sequence position in the mean over directions.
    pub fn weights(&self, k: usize) -> &[f64] {
        &self.weights[k]
    }

    /// Tokens per sequence, `h * w`.
    pub fn len(&self) -> usize {
        self.height * self.width
    }

    /// Whether the grid is empty (never, for a grid `new` accepted).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The grid's `(height, width)`.
    pub fn grid(&self) -> (usize, usize) {
        (self.height, self.width)
    }

    /// The skip `M` of direction `k`.
    pub fn skip(&self, k: usize) -> usize {
        self.skip[k]
    }

    /// The grid index read at each position of direction `k`.
    pub fn order(&self, k: usize) -> &[u32] {
        &self.order[k]
    }

    /// The grid index each position of direction `k`'s predictor input reads, with `L`
    /// (one past the grid) standing for the BOS vector: the rows of
    /// [`Scans::shifted_sequence`] as indices, for reading a `[L + 1, C]` token set
    /// (the grid, then BOS) without copying it.
    pub fn input_rows(&self, k: usize) -> &[u32] {
        &self.input_rows[k]
    }

    /// Writes the predictor input of direction `k` for one image: `tokens` is the grid
    /// `[L, C]` (token-major), `bos` is `[C]`, `out` is `[L, C]`.
    pub fn shifted_sequence<T: Float>(&self, k: usize, tokens: &[T], bos: &[T], out: &mut [T]) {
        let c = bos.len();
        let skip = self.skip[k];
        for (l, slot) in out.chunks_exact_mut(c).enumerate() {
            if l < skip {
                slot.copy_from_slice(bos);
            } else {
                let g = self.order[k][l - skip] as usize;
                slot.copy_from_slice(&tokens[g * c..(g + 1) * c]);
            }
        }
    }

    /// Adds direction `k`'s share of the mean over directions onto the grid cell each
    /// prediction is for: `grid[order[k][l]] += weights(k)[l] * seq[l]`.
    pub fn unscan_add<T: Float>(&self, k: usize, seq: &[T], grid: &mut [T]) {
        let c = seq.len() / self.len();
        for ((l, pred), &w) in seq.chunks_exact(c).enumerate().zip(&self.weights[k]) {
            let g = self.order[k][l] as usize;
            let weight = T::from_f64(w);
            for (dst, &p) in grid[g * c..(g + 1) * c].iter_mut().zip(pred) {
                *dst += weight * p;
            }
        }
    }

    /// The adjoint of [`Scans::shifted_sequence`]: spreads the gradient of a predictor
    /// input `d_seq` `[L, C]` back onto the tokens (`d_tokens += ...`) and the BOS vector
    /// (`d_bos += ...`).
    pub fn shifted_sequence_backward<T: Float>(
        &self,
        k: usize,
        d_seq: &[T],
        d_tokens: &mut [T],
        d_bos: &mut [T],
    ) {
        let c = d_bos.len();
        let skip = self.skip[k];
        for (l, d) in d_seq.chunks_exact(c).enumerate() {
            let dst = if l < skip {
                &mut d_bos[..]
            } else {
                let g = self.order[k][l - skip] as usize;
                &mut d_tokens[g * c..(g + 1) * c]
            };
            for (a, &b) in dst.iter_mut().zip(d) {
                *a += b;
            }
        }
    }

    /// The adjoint of [`Scans::unscan_add`]:
    /// `d_seq[l] = weights(k)[l] * d_grid[order[k][l]]`.
    pub fn unscan_backward<T: Float>(&self, k: usize, d_grid: &[T], d_seq: &mut [T]) {
        let c = d_grid.len() / self.len();
        for ((l, d), &w) in d_seq.chunks_exact_mut(c).enumerate().zip(&self.weights[k]) {
            let g = self.order[k][l] as usize;
            let weight = T::from_f64(w);
            for (dst, &src) in d.iter_mut().zip(&d_grid[g * c..(g + 1) * c]) {
                *dst = weight * src;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_rows_are_the_shifted_sequence_as_indices() {
        let s = Scans::new(3, 4, 1).unwrap();
        // One channel whose value is the token's index; BOS is index L.
        let tokens: Vec<f64> = (0..12).map(|g| g as f64).collect();
        for k in 0..DIRECTIONS {
            let mut seq = vec![0f64; 12];
            s.shifted_sequence(k, &tokens, &[12.0], &mut seq);
            let rows: Vec<f64> = s.input_rows(k).iter().map(|&r| r as f64).collect();
            assert_eq!(rows, seq, "direction {k}");
        }
    }

    #[test]
    fn orders_follow_the_design() {
        // 3 x 4 grid: rows 0..4, 4..8, 8..12.
        let s = Scans::new(3, 4, 1).unwrap();
        assert_eq!(&s.order(0)[..5], &[0, 1, 2, 3, 4]);
        assert_eq!(&s.order(1)[..5], &[11, 10, 9, 8, 7]);
        // Column-major: (0,0),(1,0),(2,0),(0,1),...
        assert_eq!(&s.order(2)[..6], &[0, 4, 8, 1, 5, 9]);
        assert_eq!(&s.order(3)[..4], &[11, 7, 3, 10]);
        assert_eq!([s.skip(0), s.skip(1), s.skip(2), s.skip(3)], [4, 4, 3, 3]);
        for k in 0..4 {
            let mut seen = s.order(k).to_vec();
            seen.sort();
            assert_eq!(
                seen,
                (0..12).collect::<Vec<u32>>(),
                "direction {k} is a permutation"
            );
        }
    }

    #[test]
    fn m_must_fit_the_grid() {
        assert!(Scans::new(4, 5, 4).is_err());
        assert!(Scans::new(5, 4, 4).is_err());
        assert!(Scans::new(5, 5, 0).is_err());
        let err = Scans::new(3, 8, 3).unwrap_err();
        assert!(err.message().contains("3 x 8"), "{err}");
    }

    #[test]
    fn shift_puts_bos_first_and_drops_the_tail() {
        let s = Scans::new(3, 3, 1).unwrap();
        let c = 2;
        let tokens: Vec<f64> = (0..9 * c).map(|v| v as f64).collect();
        let bos = [-1.0, -2.0];
        let mut seq = vec![0.0; 9 * c];
        s.shifted_sequence(1, &tokens, &bos, &mut seq);
        // Reverse row-major, M = 3: bos x 3, then tokens 8, 7, 6, 5, 4, 3.
        assert_eq!(&seq[..6], &[-1.0, -2.0, -1.0, -2.0, -1.0, -2.0]);
        assert_eq!(&seq[6..10], &[16.0, 17.0, 14.0, 15.0]);
        assert_eq!(&seq[16..18], &[6.0, 7.0]);
    }

    #[test]
    fn backward_functions_are_adjoints() {
        // <A x, y> == <x, A^T y> for the shift and the unscan, on random data.
        let s = Scans::new(4, 5, 2)
            .unwrap()
            .with_direction_mean(DirectionMean::WithContext);
        let c = 3;
        let n = s.len() * c;
        let mut state = 7u64;
        let mut rand = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        let tokens: Vec<f64> = (0..n).map(|_| rand()).collect();
        let bos: Vec<f64> = (0..c).map(|_| rand()).collect();
        let y: Vec<f64> = (0..n).map(|_| rand()).collect();
        for k in 0..4 {
            let mut seq = vec![0.0; n];
            s.shifted_sequence(k, &tokens, &bos, &mut seq);
            let lhs: f64 = seq.iter().zip(&y).map(|(a, b)| a * b).sum();
            let mut d_tokens = vec![0.0; n];
            let mut d_bos = vec![0.0; c];
            s.shifted_sequence_backward(k, &y, &mut d_tokens, &mut d_bos);
            let rhs: f64 = d_tokens
                .iter()
                .zip(&tokens)
                .map(|(a, b)| a * b)
                .sum::<f64>()
                + d_bos.iter().zip(&bos).map(|(a, b)| a * b).sum::<f64>();
            assert!((lhs - rhs).abs() < 1e-12, "shift {k}: {lhs} vs {rhs}");

            let mut grid = vec![0.0; n];
            s.unscan_add(k, &tokens, &mut grid);
            let lhs: f64 = grid.iter().zip(&y).map(|(a, b)| a * b).sum();
            let mut d_seq = vec![0.0; n];
            s.unscan_backward(k, &y, &mut d_seq);
            let rhs: f64 = d_seq.iter().zip(&tokens).map(|(a, b)| a * b).sum();
            assert!((lhs - rhs).abs() < 1e-12, "unscan {k}: {lhs} vs {rhs}");
        }
    }

    #[test]
    fn unscan_of_the_scans_of_a_grid_is_the_grid() {
        // Either mean is a convex combination per cell: equal inputs give the input back.
        let subsets: [&[usize]; 4] = [&[0, 1, 2, 3], &[0, 2], &[3], &[1, 2, 3]];
        for (mean, dirs) in [DirectionMean::All, DirectionMean::WithContext]
            .into_iter()
            .flat_map(|m| subsets.map(|d| (m, d)))
        {
            let s = Scans::new(3, 5, 1)
                .unwrap()
                .with_direction_mean(mean)
                .with_directions(dirs)
                .unwrap();
            let c = 2;
            let grid: Vec<f64> = (0..s.len() * c).map(|v| v as f64).collect();
            let mut back = vec![0.0; grid.len()];
            for &k in s.directions() {
                // Unshifted sequence: read the grid in order k.
                let seq: Vec<f64> = s
                    .order(k)
                    .iter()
                    .flat_map(|&g| grid[g as usize * c..(g as usize + 1) * c].to_vec())
                    .collect();
                s.unscan_add(k, &seq, &mut back);
            }
            for (a, b) in back.iter().zip(&grid) {
                assert!((a - b).abs() < 1e-12, "{mean:?} {dirs:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn context_mean_drops_exactly_the_bos_predictions() {
        // 6 x 7 grid, m = 2: rows 0-1 lack context in direction 0, rows 4-5 in 1,
        // columns 0-1 in 2, columns 5-6 in 3.
        let s = Scans::new(6, 7, 2)
            .unwrap()
            .with_direction_mean(DirectionMean::WithContext);
        let mut per_cell = vec![Vec::new(); s.len()];
        for k in 0..4 {
            for (l, &g) in s.order(k).iter().enumerate() {
                per_cell[g as usize].push((k, s.weights(k)[l]));
            }
        }
        for (g, ws) in per_cell.iter().enumerate() {
            let (i, j) = (g / 7, g % 7);
            let blind = [i < 2, i >= 4, j < 2, j >= 5];
            let seeing = blind.iter().filter(|b| !**b).count() as f64;
            for &(k, w) in ws {
                let want = if blind[k] { 0.0 } else { 1.0 / seeing };
                assert_eq!(w, want, "cell ({i}, {j}) direction {k}");
            }
        }
        // The paper's mean is a quarter everywhere.
        let plain = Scans::new(6, 7, 2).unwrap();
        assert!((0..4).all(|k| plain.weights(k).iter().all(|&w| w == 0.25)));
    }

    #[test]
    fn a_subset_of_directions_averages_only_those() {
        // All four given in any order is the default, bit for bit.
        let all = Scans::new(4, 5, 1).unwrap();
        assert_eq!(all.directions(), &[0, 1, 2, 3]);
        assert_eq!(all.clone().with_directions(&[3, 1, 0, 2]).unwrap(), all);
        // Two directions: a half each, nothing from the others.
        let two = Scans::new(4, 5, 1)
            .unwrap()
            .with_directions(&[2, 0])
            .unwrap();
        assert_eq!(two.directions(), &[0, 2]);
        for k in 0..4 {
            let want = if k % 2 == 0 { 0.5 } else { 0.0 };
            assert!(two.weights(k).iter().all(|&w| w == want), "direction {k}");
        }
        // One direction with the context mean: it is the only prediction of every cell,
        // BOS-only or not, so its weight is 1 everywhere.
        let one = Scans::new(4, 5, 1)
            .unwrap()
            .with_directions(&[3])
            .unwrap()
            .with_direction_mean(DirectionMean::WithContext);
        assert!(one.weights(3).iter().all(|&w| w == 1.0));
        assert!((0..3).all(|k| one.weights(k).iter().all(|&w| w == 0.0)));
        // The context mean over 0 and 1 on a 6 x 7 grid, m = 2: rows 0-1 are blind in 0,
        // rows 4-5 in 1, rows 2-3 seen by both.
        let s = Scans::new(6, 7, 2)
            .unwrap()
            .with_direction_mean(DirectionMean::WithContext)
            .with_directions(&[0, 1])
            .unwrap();
        for k in [0, 1] {
            for (l, &g) in s.order(k).iter().enumerate() {
                let i = g as usize / 7;
                let blind = [i < 2, i >= 4];
                let want = if blind[k] {
                    0.0
                } else if blind[1 - k] {
                    1.0
                } else {
                    0.5
                };
                assert_eq!(s.weights(k)[l], want, "row {i} direction {k}");
            }
        }
        for bad in [&[][..], &[4], &[1, 1]] {
            let err = Scans::new(4, 5, 1)
                .unwrap()
                .with_directions(bad)
                .unwrap_err();
            assert!(err.message().contains("distinct directions"), "{err}");
        }
    }
}
