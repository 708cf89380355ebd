//! Summing the levels' maps on the finest grid (DESIGN.md, "Map"): a coarser map is
//! resized bilinearly with half-pixel centres, as PyTorch's
//! `F.interpolate(mode="bilinear", align_corners=False)` does, and the training loss needs
//! the adjoint of that resize.

use crate::score::axis::linear_tap;

/// One output position's two source taps along an axis: `value = w0 * src[i0] + w1 * src[i1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tap {
    i0: usize,
    i1: usize,
    w1: f32,
}

/// PyTorch's source coordinate `(dst + 0.5) * src/dst - 0.5` for each output position,
/// as the two neighbours it falls between (the scoring stage's tap rule, shared).
fn axis_taps(src: usize, dst: usize) -> Vec<Tap> {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|d| {
            let (i0, w1) = linear_tap((d as f64 + 0.5) * scale - 0.5, src);
            Tap {
                i0,
                i1: (i0 + 1).min(src - 1),
                w1: w1 as f32,
            }
        })
        .collect()
}

/// Adds the bilinear resize of `map` (`src_h x src_w`) to `out` (`dst_h x dst_w`).
pub fn add_resized(
    map: &[f32],
    (src_h, src_w): (usize, usize),
    out: &mut [f32],
    (dst_h, dst_w): (usize, usize),
) {
    if (src_h, src_w) == (dst_h, dst_w) {
        for (o, &v) in out.iter_mut().zip(map) {
            *o += v;
        }
        return;
    }
    let ys = axis_taps(src_h, dst_h);
    let xs = axis_taps(src_w, dst_w);
    for (y, ty) in ys.iter().enumerate() {
        let r0 = &map[ty.i0 * src_w..(ty.i0 + 1) * src_w];
        let r1 = &map[ty.i1 * src_w..(ty.i1 + 1) * src_w];
        let row = &mut out[y * dst_w..(y + 1) * dst_w];
        for (o, tx) in row.iter_mut().zip(&xs) {
            let top = r0[tx.i0] + tx.w1 * (r0[tx.i1] - r0[tx.i0]);
            let bottom = r1[tx.i0] + tx.w1 * (r1[tx.i1] - r1[tx.i0]);
            *o += top + ty.w1 * (bottom - top);
        }
    }
}

/// The adjoint of the resize applied to a constant map of ones: for each source cell, the
/// total weight it contributes to the destination. The resize is separable, so this is the
/// outer product of the two axes' column sums.
pub fn resize_adjoint_of_ones(
    (src_h, src_w): (usize, usize),
    (dst_h, dst_w): (usize, usize),
) -> Vec<f32> {
    let sums = |src: usize, dst: usize| {
        let mut s = vec![0f64; src];
        for t in axis_taps(src, dst) {
            s[t.i0] += 1.0 - t.w1 as f64;
            s[t.i1] += t.w1 as f64;
        }
        s
    };
    let (sy, sx) = (sums(src_h, dst_h), sums(src_w, dst_w));
    sy.iter()
        .flat_map(|&a| sx.iter().map(move |&b| (a * b) as f32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_pytorch_on_the_classic_case() {
        // F.interpolate(torch.tensor([[[[1., 2.], [3., 4.]]]]), size=(4, 4), mode="bilinear",
        // align_corners=False)
        let mut out = vec![0f32; 16];
        add_resized(&[1.0, 2.0, 3.0, 4.0], (2, 2), &mut out, (4, 4));
        let want = [
            1.0, 1.25, 1.75, 2.0, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3.0, 3.25, 3.75, 4.0,
        ];
        assert_eq!(out, want);
    }

    #[test]
    fn adjoint_of_ones_is_the_transpose_applied_to_ones() {
        // <R x, 1> == <x, R^T 1> for every basis vector x.
        let (src, dst) = ((3, 5), (7, 11));
        let adj = resize_adjoint_of_ones(src, dst);
        for i in 0..src.0 * src.1 {
            let mut x = vec![0f32; src.0 * src.1];
            x[i] = 1.0;
            let mut out = vec![0f32; dst.0 * dst.1];
            add_resized(&x, src, &mut out, dst);
            let total: f32 = out.iter().sum();
            assert!(
                (total - adj[i]).abs() < 1e-4,
                "cell {i}: {total} vs {}",
                adj[i]
            );
        }
        let same = resize_adjoint_of_ones((4, 4), (4, 4));
        assert!(same.iter().all(|&v| v == 1.0));
    }
}
