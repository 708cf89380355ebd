//! Software prefetch of rows that a loop will read out of order.
//!
//! The predictor reads one token set in four scan orders; in the column-major orders
//! consecutive steps read rows a grid width apart, a pattern the hardware prefetchers do
//! not follow, and the loads of those rows took a third of the convolution's samples
//! (`perf annotate`). Asking for a row a few steps ahead hides that latency.

/// Asks the CPU to bring `len` elements of `data` from `start` into the caches. A hint
/// only: nothing happens on other architectures, and an out-of-range request is ignored.
#[inline(always)]
pub fn prefetch_read<T>(data: &[T], start: usize, len: usize) {
    if start >= data.len() || len == 0 {
        return;
    }
    let end = (start + len).min(data.len());
    prefetch_lines(data.as_ptr().wrapping_add(start), end - start);
}

/// [`prefetch_read`] of `len > 0` elements at `base`, for buffers that other threads may
/// be writing through raw pointers (where a slice cannot be formed). Prefetches never
/// fault and access no memory architecturally, so the addresses need no check; callers
/// keep them inside their buffers anyway.
#[inline(always)]
pub fn prefetch_lines<T>(base: *const T, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let line = (64 / std::mem::size_of::<T>().max(1)).max(1);
        // SAFETY: `_mm_prefetch` is SSE, part of every x86_64 CPU, and reads nothing
        // architecturally; `wrapping_add` forms the addresses without dereferencing.
        unsafe {
            let mut i = 0;
            while i < len {
                _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(i).cast());
                i += line;
            }
            _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(len.max(1) - 1).cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (base, len);
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
        prefetch_lines(v.as_ptr(), 1);
        assert_eq!(v.iter().sum::<f32>(), 100.0);
    }
}
