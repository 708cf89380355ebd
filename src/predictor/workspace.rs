//! Scratch buffers of the inference forward, kept from one call to the next.
//!
//! One forward at 1024 x 1024 with the Lite0 levels needs about 100 MB of intermediate
//! tensors (in_proj's `[rows, 2 Di]` alone is 42 MB at stride 8). Allocated afresh, they
//! come from new pages each call, and faulting those in (the kernel zeroing every page)
//! cost more than the in_proj GEMM itself. A [`Workspace`] keeps its buffers, grown to the
//! largest call so far; one is used by one call at a time (a scorer keeps a pool of them,
//! one per concurrent call), and the weights stay shared and read-only.

use parking_lot::Mutex;

use super::float::Float;

/// Buffers for [`super::Predictor::forward_in_place_with`]; start with
/// `Workspace::default()`.
#[derive(Debug, Default)]
pub struct Workspace<T> {
    buffers: [Vec<T>; 6],
}

impl<T: Float> Workspace<T> {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.buffers.iter().map(Vec::capacity).sum::<usize>() * std::mem::size_of::<T>()
    }

    /// Disjoint buffers of `sizes` elements, grown where needed. Their contents are
    /// whatever the last call left: every user writes a buffer before reading it.
    pub(crate) fn buffers(&mut self, sizes: [usize; 6]) -> [&mut [T]; 6] {
        let mut parts = self.buffers.iter_mut().zip(sizes).map(|(b, n)| {
            if b.len() < n {
                b.resize(n, T::ZERO);
            }
            &mut b[..n]
        });
        std::array::from_fn(|_| parts.next().expect("six buffers"))
    }
}

/// Workspaces for calls that may run at the same time (scoring from several threads):
/// each call takes one (a new one when all are in use) and puts it back, so the pool
/// holds as many as the most calls that ever ran at once.
#[derive(Debug, Default)]
pub struct WorkspacePool<T> {
    free: Mutex<Vec<Workspace<T>>>,
}

impl<T: Float> WorkspacePool<T> {
    /// Runs `f` with a workspace from the pool.
    pub fn with<R>(&self, f: impl FnOnce(&mut Workspace<T>) -> R) -> R {
        let taken = self.free.lock().pop();
        let mut ws = taken.unwrap_or_default();
        let out = f(&mut ws);
        self.free.lock().push(ws);
        out
    }

    /// Bytes held by the workspaces not in use.
    pub fn bytes(&self) -> usize {
        self.free.lock().iter().map(Workspace::bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_grow_and_are_kept() {
        let mut ws = Workspace::<f32>::default();
        let [a, b, ..] = ws.buffers([3, 5, 0, 0, 0, 0]);
        a[0] = 7.0;
        assert_eq!((a.len(), b.len()), (3, 5));
        let [a, b, ..] = ws.buffers([2, 9, 0, 0, 0, 0]);
        // Shrinking keeps the allocation; growing adds only.
        assert_eq!((a.len(), b.len(), a[0]), (2, 9, 7.0));
        assert!(ws.bytes() >= (3 + 9) * 4);
    }

    #[test]
    fn pool_hands_out_one_workspace_per_concurrent_call() {
        let pool = WorkspacePool::<f32>::default();
        pool.with(|a| {
            a.buffers([100, 0, 0, 0, 0, 0]);
            // A call running meanwhile gets a workspace of its own.
            pool.with(|b| assert_eq!(b.bytes(), 0));
        });
        // Both came back, the grown one with its buffers.
        assert!(pool.bytes() >= 400);
    }
}
