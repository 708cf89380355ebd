//! Scratch buffers of the inference forward and of training steps, kept from one call
//! to the next.
//!
//! One forward at 1024 x 1024 with the Lite0 levels needs about 100 MB of intermediate
//! tensors (in_proj's `[rows, 2 Di]` alone is 42 MB at stride 8). Allocated afresh, they
//! come from new pages each call, and faulting those in (the kernel zeroing every page)
//! cost more than the in_proj GEMM itself. A [`Workspace`] keeps its buffers, grown to the
//! largest call so far; one is used by one call at a time (a scorer keeps a pool of them,
//! one per concurrent call), and the weights stay shared and read-only.
//!
//! A training step's tape and gradient temporaries are larger still (about 750 MB at the
//! paper's 1024 x 1024 grid), and the system allocator returns blocks that large to the
//! kernel when they are freed: every step faulted all of them in again, about a fifth of
//! the step's time (`perf`, `cargo bench --features internals --bench predictor`). [`TrainBuffers`] keeps them
//! from one step to the next.

use std::sync::Arc;

use once_cell::sync::Lazy;
use parking_lot::Mutex;
use rayon::prelude::*;

use super::float::Float;

/// Elements per task of [`TrainBuffers::take_copy`] (256 KB of `f32`).
const COPY_CHUNK: usize = 1 << 16;

/// Buffers for [`super::Predictor::forward_in_place_with`]; start with
/// `Workspace::default()`.
#[derive(Debug, Default)]
pub struct Workspace<T> {
    buffers: [Vec<T>; 6],
    /// Index buffers of the orderings' forward (the gathered rows and each ordering's
    /// position of each target).
    indices: [Vec<u32>; 2],
    /// The level pass's token buffers around the predictor (token-major features, adapted
    /// tokens, tokens with BOS): taken out with `std::mem::take` and put back by
    /// `crate::model::level::LevelParams::residuals`. Allocated afresh they cost as much
    /// as the buffers above (2.6 MB each at stride 8, faulted in on every call).
    pub(crate) level: [Vec<T>; 3],
    /// A returned output's buffer, handed back by its caller ([`WorkspacePool::give_back`])
    /// for the next call's output.
    output: Vec<T>,
}

impl<T: Float> Workspace<T> {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        let values = self.buffers.iter().chain(&self.level).chain([&self.output]);
        let values = values.map(Vec::capacity);
        let indices = self.indices.iter().map(Vec::capacity).sum::<usize>();
        values.sum::<usize>() * std::mem::size_of::<T>() + indices * std::mem::size_of::<u32>()
    }

    /// A buffer of `n` values for a call's output, the one handed back last if there is
    /// one. Its contents are whatever it held: the caller writes every value.
    pub(crate) fn take_output(&mut self, n: usize) -> Vec<T> {
        let mut out = std::mem::take(&mut self.output);
        out.resize(n, T::ZERO);
        out
    }

    /// [`Workspace::buffers`] and two index buffers of `index_sizes` elements.
    pub(crate) fn buffers_and_indices(
        &mut self,
        sizes: [usize; 6],
        index_sizes: [usize; 2],
    ) -> ([&mut [T]; 6], [&mut [u32]; 2]) {
        (
            grown_all(&mut self.buffers, sizes),
            grown_all(&mut self.indices, index_sizes),
        )
    }

    /// Disjoint buffers of `sizes` elements, grown where needed. Their contents are
    /// whatever the last call left: every user writes a buffer before reading it.
    pub(crate) fn buffers(&mut self, sizes: [usize; 6]) -> [&mut [T]; 6] {
        grown_all(&mut self.buffers, sizes)
    }
}

/// [`grown`] of each buffer.
fn grown_all<V: Copy + Default, const N: usize>(
    buffers: &mut [Vec<V>; N],
    sizes: [usize; N],
) -> [&mut [V]; N] {
    let mut parts = buffers.iter_mut().zip(sizes).map(|(b, n)| grown(b, n));
    std::array::from_fn(|_| parts.next().expect("one buffer per size"))
}

/// The first `n` elements of `b`, grown to hold them where needed (with zeros: its
/// contents are whatever the last call left).
pub(crate) fn grown<V: Copy + Default>(b: &mut Vec<V>, n: usize) -> &mut [V] {
    if b.len() < n {
        b.resize(n, V::default());
    }
    &mut b[..n]
}

/// Workspaces for calls that may run at the same time (scoring from several threads):
/// each call takes one (a new one when all are in use) and puts it back. A pool keeps at
/// most as many free workspaces as there are physical cores (more calls than cores never
/// make progress at once); one put back beyond that is freed.
///
/// Any workspace serves any predictor (its buffers grow to the call), so the models of a
/// process share one pool, [`WorkspacePool::shared`]: the memory held follows how many
/// calls ran at once, not how many models and levels there are.
#[derive(Debug)]
pub struct WorkspacePool<T> {
    free: Arc<FreeWorkspaces<T>>,
}

#[derive(Debug)]
struct FreeWorkspaces<T> {
    sets: Mutex<Vec<Workspace<T>>>,
    /// Most free workspaces kept.
    keep: usize,
}

impl<T> Clone for WorkspacePool<T> {
    fn clone(&self) -> Self {
        WorkspacePool {
            free: Arc::clone(&self.free),
        }
    }
}

impl<T> Default for WorkspacePool<T> {
    /// A pool of its own, keeping one free workspace per physical core.
    fn default() -> Self {
        WorkspacePool::keeping(crate::platform::physical_cores())
    }
}

/// The process's shared pool of `f32` workspaces.
static SHARED: Lazy<WorkspacePool<f32>> = Lazy::new(WorkspacePool::default);

impl WorkspacePool<f32> {
    /// The pool that every model of this process scores with.
    pub fn shared() -> Self {
        SHARED.clone()
    }
}

impl<T> WorkspacePool<T> {
    /// A pool of its own that keeps at most `keep` free workspaces.
    pub fn keeping(keep: usize) -> Self {
        WorkspacePool {
            free: Arc::new(FreeWorkspaces {
                sets: Mutex::new(Vec::new()),
                keep,
            }),
        }
    }

    /// Whether `self` and `other` are one pool.
    #[cfg(any(test, feature = "internals"))]
    pub fn same_pool(&self, other: &WorkspacePool<T>) -> bool {
        Arc::ptr_eq(&self.free, &other.free)
    }
}

impl<T: Float> WorkspacePool<T> {
    /// Runs `f` with a workspace from the pool.
    pub fn with<R>(&self, f: impl FnOnce(&mut Workspace<T>) -> R) -> R {
        let taken = self.free.sets.lock().pop();
        let mut ws = taken.unwrap_or_default();
        let out = f(&mut ws);
        let mut sets = self.free.sets.lock();
        if sets.len() < self.free.keep {
            sets.push(ws);
        } else {
            // Freed after the lock is released.
            drop(sets);
            drop(ws);
        }
        out
    }

    /// Hands a call's output back once read, for a later call's output: allocated afresh,
    /// each one (2.6 MB at the stride-8 level) came from new pages that the kernel zeroed
    /// and faulted in during the call. Kept by one free workspace (dropped if none is).
    pub fn give_back(&self, output: Vec<T>) {
        if let Some(ws) = self.free.sets.lock().last_mut() {
            if ws.output.capacity() < output.capacity() {
                ws.output = output;
            }
        }
    }

    #[cfg(any(test, feature = "internals"))]
    /// Bytes held by the workspaces not in use.
    pub fn bytes(&self) -> usize {
        self.free.sets.lock().iter().map(Workspace::bytes).sum()
    }

    #[cfg(any(test, feature = "internals"))]
    /// Workspaces not in use.
    pub fn free_workspaces(&self) -> usize {
        self.free.sets.lock().len()
    }
}

/// Buffers that a training step hands back and the next step takes again: pass the same
/// one to [`super::Predictor::forward_train_with`] and [`super::Predictor::backward_with`]
/// on every step (one per predictor trained at the same time). Start with
/// `TrainBuffers::default()`; drop it after training to free the memory.
#[derive(Debug, Default)]
pub struct TrainBuffers<T> {
    free: Vec<Vec<T>>,
}

/// Most buffers kept; a step uses about a dozen per block.
const MAX_KEPT: usize = 64;

impl<T: Float> TrainBuffers<T> {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.free.iter().map(Vec::capacity).sum::<usize>() * std::mem::size_of::<T>()
    }

    /// A buffer of `len` values: the smallest kept one that is large enough, else a new
    /// one. Its contents are whatever it held: every user writes it before reading it.
    pub(crate) fn take(&mut self, len: usize) -> Vec<T> {
        let best = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= len)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i);
        match best {
            Some(i) => {
                let mut v = self.free.swap_remove(i);
                if v.len() >= len {
                    v.truncate(len);
                } else {
                    v.resize(len, T::ZERO);
                }
                v
            }
            None => vec![T::ZERO; len],
        }
    }

    /// A buffer holding a copy of `src`, copied in parallel on rayon's current pool: a
    /// training step copies its input, the block's residual and the output gradient
    /// (33 MB each at the paper's grid: one core's copy is a noticeable share of a step).
    pub(crate) fn take_copy(&mut self, src: &[T]) -> Vec<T> {
        let mut v = self.take(src.len());
        v.par_chunks_mut(COPY_CHUNK)
            .zip(src.par_chunks(COPY_CHUNK))
            .for_each(|(d, s)| d.copy_from_slice(s));
        v
    }

    /// Keeps `v` for a later step's buffers (beyond a bounded number of kept buffers,
    /// `MAX_KEPT`, the smallest is dropped). Callers hand back what a training step returned (the
    /// forward's output, the backward's input gradient) once done with it, so that the
    /// next step reuses it instead of faulting in fresh pages: dropped, each came back as
    /// a new allocation every step.
    pub fn recycle(&mut self, v: Vec<T>) {
        if v.capacity() == 0 {
            return;
        }
        self.free.push(v);
        if self.free.len() > MAX_KEPT {
            let smallest = (0..self.free.len())
                .min_by_key(|&i| self.free[i].capacity())
                .expect("not empty");
            self.free.swap_remove(smallest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn train_buffers_hand_back_the_smallest_that_fits() {
        let mut bufs = TrainBuffers::<f32>::default();
        let big = bufs.take(100);
        let small = bufs.take(10);
        let (big_ptr, small_ptr) = (big.as_ptr(), small.as_ptr());
        bufs.recycle(big);
        bufs.recycle(small);
        assert_eq!(bufs.bytes(), 110 * 4);
        // 8 values fit both: the smaller comes back, at the length asked.
        let a = bufs.take(8);
        assert_eq!((a.as_ptr(), a.len()), (small_ptr, 8));
        // 50 fit only the larger; 200 fit neither, so that one is new.
        let b = bufs.take(50);
        assert_eq!((b.as_ptr(), b.len()), (big_ptr, 50));
        let c = bufs.take(200);
        assert_eq!(c.len(), 200);
        assert_eq!(bufs.bytes(), 0);
        // A shortened buffer grows back within its allocation.
        bufs.recycle(b);
        let d = bufs.take(100);
        assert_eq!((d.as_ptr(), d.len()), (big_ptr, 100));
        let copy = bufs.take_copy(&[1.0, 2.0]);
        assert_eq!(copy, [1.0, 2.0]);
    }

    #[test]
    fn train_buffers_keep_a_bounded_number() {
        let mut bufs = TrainBuffers::<f32>::default();
        for n in 1..=MAX_KEPT + 5 {
            bufs.recycle(vec![0.0; n]);
        }
        // The five smallest went.
        let kept: usize = (6..=MAX_KEPT + 5).sum();
        assert_eq!(bufs.bytes(), kept * 4);
    }

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

    #[test]
    fn pool_keeps_a_bounded_number_of_workspaces() {
        let pool = WorkspacePool::<f32>::keeping(2);
        // Four calls at once: four workspaces in use, two kept afterwards.
        pool.with(|a| {
            a.buffers([10, 0, 0, 0, 0, 0]);
            pool.with(|b| {
                b.buffers([10, 0, 0, 0, 0, 0]);
                pool.with(|c| {
                    c.buffers([10, 0, 0, 0, 0, 0]);
                    pool.with(|d| d.buffers([10, 0, 0, 0, 0, 0]).len());
                })
            })
        });
        assert_eq!(pool.free_workspaces(), 2);
        assert!(pool.bytes() >= 2 * 40);
        // A clone is the same pool; the shared one is one pool for every caller.
        assert!(pool.clone().same_pool(&pool));
        assert!(WorkspacePool::shared().same_pool(&WorkspacePool::shared()));
        assert!(!WorkspacePool::<f32>::default().same_pool(&pool));
    }
}
