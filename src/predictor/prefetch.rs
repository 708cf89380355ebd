//! Software prefetch of rows that a loop will read out of order.
//!
//! The predictor reads one token set in four scan orders; in the column-major orders
//! consecutive steps read rows a grid width apart, a pattern the hardware prefetchers do
//! not follow, and the loads of those rows took a third of the convolution's samples
//! (`perf annotate`). Asking for a row a few steps ahead hides that latency.

/// Asks the CPU to bring `len` elements of `data` from `start` into the caches. A hint
/// only: nothing happens on other architectures, and an out-of-range request is ignored
/// (prefetches never fault, and the addresses are clamped to the slice anyway).
#[inline(always)]
pub fn prefetch_read<T>(data: &[T], start: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        if start >= data.len() || len == 0 {
            return;
        }
        let end = (start + len).min(data.len());
        let base = data.as_ptr();
        let line = (64 / std::mem::size_of::<T>().max(1)).max(1);
        let mut i = start;
        while i < end {
            // SAFETY: `i < data.len()`: an address inside the slice; `_mm_prefetch` is SSE,
            // part of every x86_64 CPU, and does not access memory architecturally.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(base.add(i).cast()) };
            i += line;
        }
        // SAFETY: as above, `end - 1 < data.len()`.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(base.add(end - 1).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (data, start, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_request_is_harmless() {
        let v = vec![1.0f32; 100];
        prefetch_read(&v, 0, 100);
        prefetch_read(&v, 90, 50);
        prefetch_read(&v, 100, 10);
        prefetch_read(&v, usize::MAX - 3, 10);
        prefetch_read::<f32>(&[], 0, 4);
        assert_eq!(v.iter().sum::<f32>(), 100.0);
    }
}
