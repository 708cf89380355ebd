//! The anomaly map as an 8-bit grey picture: one scaling for every writer (the C API's
//! `varad_write_heatmap_png` and the command-line tool), so a heatmap means the same
//! wherever it was written.

/// `map` as 8-bit grey, one byte per value: `value / white * 255`, rounded and clamped to
/// `0..=255`. A `white` that is not a positive finite number is replaced by the map's own
/// maximum, so a map of unknown scale still spans the range; a map with no positive value
/// is black.
pub fn grey_levels(map: &[f32], white: f32) -> Vec<u8> {
    let white = if white.is_finite() && white > 0.0 {
        white
    } else {
        map.iter()
            .copied()
            .filter(|v| v.is_finite())
            .fold(0.0f32, f32::max)
    };
    if white <= 0.0 {
        return vec![0; map.len()];
    }
    map.iter()
        .map(|&v| (v / white * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_scale_to_the_white_point_and_clamp() {
        let map = [0.0, 0.5, 1.0, 2.0, -1.0, 0.25];
        assert_eq!(grey_levels(&map, 1.0), vec![0, 128, 255, 255, 0, 64]);
        // Twice the pixel threshold as white: the threshold itself is mid-grey.
        assert_eq!(grey_levels(&[3.0], 6.0), vec![128]);
    }

    #[test]
    fn no_usable_white_point_means_the_maps_maximum() {
        let map = [1.0, 4.0, 2.0, f32::INFINITY];
        for white in [0.0, -3.0, f32::NAN, f32::INFINITY] {
            assert_eq!(grey_levels(&map, white), vec![64, 255, 128, 255], "{white}");
        }
        assert_eq!(grey_levels(&[0.0, -2.0], 0.0), vec![0, 0]);
        assert_eq!(grey_levels(&[], 1.0), Vec::<u8>::new());
    }
}
