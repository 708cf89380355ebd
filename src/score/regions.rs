//! Defect regions: connected groups of pixels above the pixel threshold.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::roi::{check_roi, inside};
use crate::{Error, Result};

/// A connected region of pixels above the pixel threshold.
///
/// Pixel `(x, y)` covers `[x, x + 1) x [y, y + 1)` (the crate's convention), so the
/// bounding box is in whole pixels and the centroid is a continuous point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Region {
    /// The number of pixels.
    pub area: usize,
    /// Left column of the bounding box.
    pub x: u32,
    /// Top row of the bounding box.
    pub y: u32,
    /// Bounding-box width in pixels.
    pub width: u32,
    /// Bounding-box height in pixels.
    pub height: u32,
    /// Mean of the pixel centres' x (`column + 0.5`).
    pub centroid_x: f64,
    /// Mean of the pixel centres' y (`row + 0.5`).
    pub centroid_y: f64,
    /// The largest map value in the region.
    pub peak: f32,
    /// Column of the (first, in row-major order) peak pixel.
    pub peak_x: u32,
    /// Row of the peak pixel.
    pub peak_y: u32,
    /// The mean map value over the region.
    pub mean: f32,
}

/// A horizontal run of region pixels in one row: columns `x0..x1`.
#[derive(Debug, Clone, Copy)]
struct Run {
    y: u32,
    x0: u32,
    x1: u32,
}

/// Union-find over run indices, iterative (path halving), so no image is too large.
fn find(parent: &mut [u32], mut i: u32) -> u32 {
    while parent[i as usize] != i {
        let p = parent[i as usize];
        parent[i as usize] = parent[p as usize];
        i = p;
    }
    i
}

fn union(parent: &mut [u32], a: u32, b: u32) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    // The smaller index becomes the root, so labels do not depend on merge order.
    if ra < rb {
        parent[rb as usize] = ra;
    } else if rb < ra {
        parent[ra as usize] = rb;
    }
}

/// The regions of the row-major `width` x `height` `map`: 8-connected components (pixels
/// touching by an edge or a corner belong together) of the pixels whose value is strictly
/// above `threshold` and, if `roi` is given, whose mask byte is nonzero. A defect cut by
/// the ROI's edge is only counted inside it, and may split into several regions.
/// Components smaller than `min_area` pixels are dropped (`0` and `1` keep all).
///
/// Sorted by peak, highest first (ties: larger area first, then top-to-bottom,
/// left-to-right), so a caller that shows only a few shows the worst.
///
/// Rows are scanned in parallel for runs of region pixels; runs that overlap or touch
/// diagonally between consecutive rows are merged with union-find (no recursion, memory
/// proportional to the number of runs). Deterministic for any thread count.
///
/// [`crate::ErrorKind::InvalidArgument`] if `map.len() != width * height`, the ROI is not
/// `width * height` bytes or selects nothing, or `threshold` is NaN.
pub fn find_regions(
    map: &[f32],
    width: usize,
    height: usize,
    threshold: f32,
    roi: Option<&[u8]>,
    min_area: usize,
) -> Result<Vec<Region>> {
    if width.checked_mul(height) != Some(map.len()) {
        return Err(Error::invalid_argument(format!(
            "a {width} x {height} map needs {} values, got {}",
            width.saturating_mul(height),
            map.len()
        )));
    }
    if threshold.is_nan() {
        return Err(Error::invalid_argument("the pixel threshold is NaN"));
    }
    if u32::try_from(width.max(height)).is_err() {
        return Err(Error::invalid_argument(format!(
            "a {width} x {height} map is too large for regions"
        )));
    }
    check_roi(roi, width, height)?;
    if map.is_empty() {
        return Ok(Vec::new());
    }

    let rows: Vec<Vec<Run>> = map
        .par_chunks(width)
        .enumerate()
        .map(|(y, row)| {
            let mut runs = Vec::new();
            let mut start = None;
            for (x, &v) in row.iter().enumerate() {
                let on = v > threshold && inside(roi, y * width + x);
                match (on, start) {
                    (true, None) => start = Some(x),
                    (false, Some(s)) => {
                        runs.push(Run {
                            y: y as u32,
                            x0: s as u32,
                            x1: x as u32,
                        });
                        start = None;
                    }
                    _ => {}
                }
            }
            if let Some(s) = start {
                runs.push(Run {
                    y: y as u32,
                    x0: s as u32,
                    x1: width as u32,
                });
            }
            runs
        })
        .collect();
    let mut row_start = Vec::with_capacity(height + 1);
    let mut runs = Vec::new();
    for r in rows {
        row_start.push(runs.len());
        runs.extend(r);
    }
    row_start.push(runs.len());
    let Ok(n_runs) = u32::try_from(runs.len()) else {
        return Err(Error::invalid_argument("too many region runs"));
    };

    let mut parent: Vec<u32> = (0..n_runs).collect();
    for y in 1..height {
        let (mut i, prev_end) = (row_start[y - 1], row_start[y]);
        for j in row_start[y]..row_start[y + 1] {
            let cur = runs[j];
            // Previous-row runs ending before this one's left diagonal neighbour can
            // touch no later run either.
            while i < prev_end && runs[i].x1 < cur.x0 {
                i += 1;
            }
            let mut k = i;
            while k < prev_end && runs[k].x0 <= cur.x1 {
                union(&mut parent, k as u32, j as u32);
                k += 1;
            }
        }
    }

    // Accumulate per root, in run order, so the statistics do not depend on threads.
    #[derive(Clone)]
    struct Acc {
        area: usize,
        x0: u32,
        y0: u32,
        x1: u32,
        y1: u32,
        sum_x: f64,
        sum_y: f64,
        sum_v: f64,
        peak: f32,
        peak_x: u32,
        peak_y: u32,
    }
    let mut slot = vec![u32::MAX; runs.len()];
    let mut accs: Vec<Acc> = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let root = find(&mut parent, i as u32) as usize;
        if slot[root] == u32::MAX {
            slot[root] = accs.len() as u32;
            accs.push(Acc {
                area: 0,
                x0: u32::MAX,
                y0: run.y,
                x1: 0,
                y1: run.y,
                sum_x: 0.0,
                sum_y: 0.0,
                sum_v: 0.0,
                peak: f32::NEG_INFINITY,
                peak_x: 0,
                peak_y: 0,
            });
        }
        let a = &mut accs[slot[root] as usize];
        let len = (run.x1 - run.x0) as usize;
        a.area += len;
        a.x0 = a.x0.min(run.x0);
        a.x1 = a.x1.max(run.x1);
        a.y1 = run.y + 1;
        // Sum of (x + 0.5) over the run's columns.
        a.sum_x += (f64::from(run.x0) + f64::from(run.x1)) * 0.5 * len as f64;
        a.sum_y += (f64::from(run.y) + 0.5) * len as f64;
        let row = &map[run.y as usize * width..][run.x0 as usize..run.x1 as usize];
        for (dx, &v) in row.iter().enumerate() {
            a.sum_v += f64::from(v);
            if v > a.peak {
                a.peak = v;
                a.peak_x = run.x0 + dx as u32;
                a.peak_y = run.y;
            }
        }
    }

    let mut regions: Vec<Region> = accs
        .into_iter()
        .filter(|a| a.area >= min_area)
        .map(|a| Region {
            area: a.area,
            x: a.x0,
            y: a.y0,
            width: a.x1 - a.x0,
            height: a.y1 - a.y0,
            centroid_x: a.sum_x / a.area as f64,
            centroid_y: a.sum_y / a.area as f64,
            peak: a.peak,
            peak_x: a.peak_x,
            peak_y: a.peak_y,
            mean: (a.sum_v / a.area as f64) as f32,
        })
        .collect();
    regions.sort_by(|a, b| {
        b.peak
            .total_cmp(&a.peak)
            .then(b.area.cmp(&a.area))
            .then((a.y, a.x).cmp(&(b.y, b.x)))
    });
    Ok(regions)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A map from text: '.' is 0, a digit d is d.
    fn map(rows: &[&str]) -> (Vec<f32>, usize, usize) {
        let w = rows[0].len();
        let v = rows
            .iter()
            .flat_map(|r| r.chars().map(|c| c.to_digit(10).map_or(0.0, |d| d as f32)))
            .collect();
        (v, w, rows.len())
    }

    /// The slow twin: flood fill with an explicit stack over the pixel grid.
    fn components(m: &[f32], w: usize, h: usize, t: f32, roi: Option<&[u8]>) -> Vec<(usize, f32)> {
        let mut seen = vec![false; m.len()];
        let mut out = Vec::new();
        for s in 0..m.len() {
            if seen[s] || !(m[s] > t && inside(roi, s)) {
                continue;
            }
            let (mut area, mut peak, mut stack) = (0, f32::NEG_INFINITY, vec![s]);
            seen[s] = true;
            while let Some(p) = stack.pop() {
                area += 1;
                peak = peak.max(m[p]);
                let (x, y) = ((p % w) as isize, (p / w) as isize);
                for dy in -1..=1 {
                    for dx in -1..=1 {
                        let (nx, ny) = (x + dx, y + dy);
                        if nx < 0 || ny < 0 || nx >= w as isize || ny >= h as isize {
                            continue;
                        }
                        let q = ny as usize * w + nx as usize;
                        if !seen[q] && m[q] > t && inside(roi, q) {
                            seen[q] = true;
                            stack.push(q);
                        }
                    }
                }
            }
            out.push((area, peak));
        }
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0)));
        out
    }

    #[test]
    fn two_blobs_sorted_by_peak() {
        let (m, w, h) = map(&["..........", ".22....33.", ".23....393", "........3."]);
        let r = find_regions(&m, w, h, 1.0, None, 1).unwrap();
        assert_eq!(r.len(), 2);
        let a = &r[0];
        assert_eq!((a.area, a.x, a.y, a.width, a.height), (6, 7, 1, 3, 3));
        assert_eq!((a.peak, a.peak_x, a.peak_y), (9.0, 8, 2));
        assert!((a.mean - 24.0 / 6.0).abs() < 1e-6);
        let b = &r[1];
        assert_eq!(
            (b.area, b.x, b.y, b.width, b.height, b.peak),
            (4, 1, 1, 2, 2, 3.0)
        );
        assert_eq!((b.centroid_x, b.centroid_y), (2.0, 2.0));
        assert_eq!((a.centroid_x, a.centroid_y), (50.0 / 6.0, 14.0 / 6.0));
    }

    #[test]
    fn diagonal_neighbours_join() {
        let (m, w, h) = map(&["5...", ".5..", "..5.", "5..5"]);
        let r = find_regions(&m, w, h, 0.0, None, 1).unwrap();
        assert_eq!(r.iter().map(|r| r.area).collect::<Vec<_>>(), [4, 1]);
        assert_eq!((r[0].width, r[0].height), (4, 4));
        // An anti-diagonal joins too.
        let (m, w, h) = map(&["..5", ".5.", "5.."]);
        assert_eq!(find_regions(&m, w, h, 0.0, None, 1).unwrap().len(), 1);
    }

    #[test]
    fn roi_cuts_a_blob_and_min_area_filters() {
        let (m, w, h) = map(&["4444.", "4444.", ".....", "7...."]);
        #[rustfmt::skip]
        let roi = [
            1, 0, 1, 1, 1,
            1, 0, 1, 1, 1,
            1, 1, 1, 1, 1,
            1, 1, 1, 1, 1,
        ];
        let r = find_regions(&m, w, h, 1.0, Some(&roi), 1).unwrap();
        assert_eq!(
            r.iter().map(|r| (r.area, r.peak)).collect::<Vec<_>>(),
            [(1, 7.0), (4, 4.0), (2, 4.0)]
        );
        let r = find_regions(&m, w, h, 1.0, Some(&roi), 2).unwrap();
        assert_eq!(r.iter().map(|r| r.area).collect::<Vec<_>>(), [4, 2]);
        let r = find_regions(&m, w, h, 1.0, None, 3).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].area, 8);
        assert!(find_regions(&m, w, h, 9.0, None, 1).unwrap().is_empty());
    }

    #[test]
    fn matches_flood_fill_on_noise() {
        let (w, h) = (97, 61);
        let m = crate::score::test_util::noise(w * h, 21);
        let roi: Vec<u8> = crate::score::test_util::noise(w * h, 22)
            .iter()
            .map(|&v| u8::from(v > 0.2))
            .collect();
        for (t, roi) in [(0.5, None), (0.7, Some(roi.as_slice())), (0.9, None)] {
            let fast = find_regions(&m, w, h, t, roi, 1).unwrap();
            let got: Vec<(usize, f32)> = fast.iter().map(|r| (r.area, r.peak)).collect();
            assert_eq!(got, components(&m, w, h, t, roi), "threshold {t}");
            assert_eq!(
                fast.iter().map(|r| r.area).sum::<usize>(),
                (0..w * h).filter(|&i| m[i] > t && inside(roi, i)).count()
            );
        }
    }

    #[test]
    fn bad_input_is_refused() {
        let kind = |r: Result<Vec<Region>>| r.unwrap_err().kind();
        use crate::ErrorKind::InvalidArgument;
        assert_eq!(
            kind(find_regions(&[0.0; 5], 2, 3, 0.5, None, 1)),
            InvalidArgument
        );
        assert_eq!(
            kind(find_regions(&[0.0; 6], 2, 3, 0.5, Some(&[1; 5]), 1)),
            InvalidArgument
        );
        assert_eq!(
            kind(find_regions(&[0.0; 6], 2, 3, f32::NAN, None, 1)),
            InvalidArgument
        );
    }
}
