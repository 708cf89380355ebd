//! Predictor benchmark at the paper's 1024 x 1024 grid: B = 4 sequences of L = 73 x 73 =
//! 5329 tokens, C = 384 (DINOv2 ViT-S), Di = 768, N = 16, R = 24, one block, 2 threads.
//!
//! Prints three figures:
//! 1. forward GFLOP/s over the GFLOP/s of ONNX Runtime's MatMul on the in_proj shape
//!    `[B*L, C] x [C, 2 Di]` measured in the same run (target >= 0.5);
//! 2. training step (forward_train + backward) time over forward time (target <= 3);
//! 3. peak memory a training step adds, from a counting global allocator (target <= 1 GB).
//!
//! FLOP count of the forward (what "GFLOP/s" means here): `2 m n k` for each of the four
//! GEMMs (in_proj, x_proj, dt_proj, out_proj), plus `2 * rows * Di * d_conv` for the
//! causal conv, plus `7 * rows * Di * N` for the scan (per state entry: `dt*A`, `exp`,
//! `decay*h`, `dt*x*B`, the add, `C*h` and its accumulation). RMSNorm, softplus and the
//! SiLUs are not counted.
//!
//! The forward runs as scoring runs it (`forward_in_place_with`, a workspace kept from
//! call to call) and the training step as the trainer runs it (`forward_train_with` +
//! `backward_with`, `TrainBuffers` kept from step to step); with fresh buffers both
//! timed the kernel faulting in new pages. The kept buffers count in figure 3.
//!
//! Measured figures and their history: docs/performance.md.
//!
//! Run: `cargo bench --features internals --bench predictor`. ONNX Runtime comes from `ORT_DYLIB_PATH`, else
//! from `.deps/venv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.*`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use varad::predictor::{Predictor, PredictorConfig, TrainBuffers, Workspace};

/// Counts live and peak heap bytes.
struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only adds bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(p, l) };
        CURRENT.fetch_sub(l.size(), Ordering::Relaxed);
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            if new >= l.size() {
                let now = CURRENT.fetch_add(new - l.size(), Ordering::Relaxed) + new - l.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(l.size() - new, Ordering::Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const REPS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Median seconds of `REPS` runs after one warm-up.
fn time(mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..REPS)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// Protocol-buffer encoding, just enough for a one-node ONNX model.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
fn field_int(tag: u64, v: u64, out: &mut Vec<u8>) {
    varint(tag << 3, out);
    varint(v, out);
}
fn field_bytes(tag: u64, b: &[u8], out: &mut Vec<u8>) {
    varint((tag << 3) | 2, out);
    varint(b.len() as u64, out);
    out.extend_from_slice(b);
}

/// An ONNX model `Y = MatMul(A, B)` with `A [m, k]` and `B [k, n]` as graph inputs.
fn matmul_onnx(m: usize, k: usize, n: usize) -> Vec<u8> {
    let value_info = |name: &str, dims: &[usize]| {
        let mut shape = Vec::new();
        for &d in dims {
            let mut dim = Vec::new();
            field_int(1, d as u64, &mut dim); // Dimension.dim_value
            field_bytes(1, &dim, &mut shape); // TensorShapeProto.dim
        }
        let mut tensor = Vec::new();
        field_int(1, 1, &mut tensor); // elem_type FLOAT
        field_bytes(2, &shape, &mut tensor);
        let mut ty = Vec::new();
        field_bytes(1, &tensor, &mut ty); // TypeProto.tensor_type
        let mut vi = Vec::new();
        field_bytes(1, name.as_bytes(), &mut vi);
        field_bytes(2, &ty, &mut vi);
        vi
    };
    let mut node = Vec::new();
    field_bytes(1, b"A", &mut node);
    field_bytes(1, b"B", &mut node);
    field_bytes(2, b"Y", &mut node);
    field_bytes(3, b"matmul", &mut node);
    field_bytes(4, b"MatMul", &mut node);
    let mut graph = Vec::new();
    field_bytes(1, &node, &mut graph);
    field_bytes(2, b"bench", &mut graph);
    field_bytes(11, &value_info("A", &[m, k]), &mut graph);
    field_bytes(11, &value_info("B", &[k, n]), &mut graph);
    field_bytes(12, &value_info("Y", &[m, n]), &mut graph);
    let mut opset = Vec::new();
    field_bytes(1, b"", &mut opset);
    field_int(2, 13, &mut opset);
    let mut model = Vec::new();
    field_int(1, 8, &mut model); // ir_version
    field_bytes(8, &opset, &mut model);
    field_bytes(7, &graph, &mut model);
    model
}

/// An ONNX Runtime session of a MatMul `[m, k] x [k, n]` with 2 intra-op threads, and a
/// closure that runs it once on fixed inputs.
fn ort_matmul(m: usize, k: usize, n: usize) -> Result<impl FnMut() -> Result<(), String>, String> {
    // The library's own loader: the same search order and the one environment per process.
    let runtime = varad::backbone::runtime::load(None).map_err(|e| e.to_string())?;
    let mut session = ort::session::Session::builder(runtime.environment())
        .map_err(|e| e.to_string())?
        .with_intra_threads(2)
        .map_err(|e| e.to_string())?
        .with_inter_threads(1)
        .map_err(|e| e.to_string())?
        // Its idle threads must not spin into the predictor's measurements.
        .with_intra_op_spinning(false)
        .map_err(|e| e.to_string())?
        .commit_from_memory(&matmul_onnx(m, k, n))
        .map_err(|e| e.to_string())?;
    let a: Vec<f32> = (0..m * k)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let b: Vec<f32> = (0..k * n)
        .map(|i| ((i * 104_729) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    Ok(move || -> Result<(), String> {
        let ta =
            ort::value::TensorRef::from_array_view(([m, k], &*a)).map_err(|e| e.to_string())?;
        let tb =
            ort::value::TensorRef::from_array_view(([k, n], &*b)).map_err(|e| e.to_string())?;
        let out = session
            .run(ort::inputs!["A" => ta, "B" => tb])
            .map_err(|e| e.to_string())?;
        let (_, y) = out["Y"]
            .try_extract_tensor::<f32>()
            .map_err(|e| e.to_string())?;
        assert_eq!(y.len(), m * n);
        Ok(())
    })
}

fn seconds(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

/// CPU seconds used by the whole process so far (all threads). On a shared machine the
/// wall time of a step also counts the time its threads waited for a core; CPU time
/// does not, so ratios of CPU times are far steadier there.
fn process_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; the clock id is a constant Linux supports.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Wall and process CPU seconds of `f`.
fn wall_and_cpu(f: impl FnOnce()) -> (f64, f64) {
    let c = process_cpu_seconds();
    let w = seconds(f);
    (w, process_cpu_seconds() - c)
}

fn main() {
    // `cargo bench` passes --bench: the paper's 1024 x 1024 grid. Under `cargo test
    // --all-targets` this file only runs as a quick smoke test on a short sequence.
    let full = std::env::args().any(|a| a == "--bench");
    let (batch, len) = if full {
        (4usize, 73 * 73)
    } else {
        (1usize, 256)
    };
    let cfg = PredictorConfig::new(384);
    let (c, di, n, r, k) = (
        cfg.d_model,
        cfg.d_inner(),
        cfg.d_state,
        cfg.dt_rank,
        cfg.d_conv,
    );
    let rows = batch * len;
    let p = Predictor::init(cfg, 1).unwrap();
    let input: Vec<f32> = (0..rows * c).map(|i| ((i as f32) * 0.618).sin()).collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();

    let gemm = |m: usize, n: usize, k: usize| 2.0 * (m * n * k) as f64;
    let fwd_flops = gemm(rows, 2 * di, c)
        + gemm(rows, r + 2 * n, di)
        + gemm(rows, di, r)
        + gemm(rows, c, di)
        + 2.0 * (rows * di * k) as f64
        + 7.0 * (rows * di * n) as f64;
    println!("shape: B {batch}, L {len}, C {c}, Di {di}, N {n}, R {r}, d_conv {k}; 2 threads; medians of {REPS}");
    println!(
        "forward FLOPs: {:.2} G (2mnk per GEMM + 2*rows*Di*d_conv conv + 7*rows*Di*N scan)",
        fwd_flops / 1e9
    );

    // Our GEMM on the in_proj shape, for reference next to ONNX Runtime's.
    let in_flops = gemm(rows, 2 * di, c);
    let w: Vec<f32> = (0..2 * di * c)
        .map(|i| ((i * 104_729) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let mut xz = vec![0f32; rows * 2 * di];
    let t_ours = pool.install(|| {
        time(|| {
            varad::predictor::gemm::linear(rows, c, 2 * di, &input, c, &w, 0.0, &mut xz, 2 * di)
        })
    });
    drop(xz);
    println!(
        "in_proj GEMM [{rows}, {c}] x [{c}, {}], matrixmultiply over rayon: {:.1} ms, {:.1} GFLOP/s",
        2 * di,
        t_ours * 1e3,
        in_flops / t_ours / 1e9
    );
    // The machine may be shared: each repetition times ONNX Runtime, our forward and a
    // training step back to back, and the figures are medians of per-repetition ratios,
    // so a change of load between measurements skews them as little as possible.
    let mut ort = match ort_matmul(rows, c, 2 * di) {
        Ok(f) => Some(f),
        Err(e) => {
            println!("ONNX Runtime MatMul not measured: {e}");
            None
        }
    };
    let (mut t_ort, mut t_fwd, mut t_train, mut r1, mut r2, mut r2_cpu) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut added = 0usize;
    // Both run as in production: the forward as scoring runs it, with a workspace kept
    // from call to call; the training step as the trainer runs it, with its buffers kept
    // from step to step (fresh buffers would time the kernel's page faults, not ours).
    let mut workspace = Workspace::default();
    let mut buffers = TrainBuffers::default();
    let mut x = input.clone();
    for rep in 0..=REPS {
        let to = ort.as_mut().map(|f| seconds(|| f().unwrap()));
        x.copy_from_slice(&input);
        let (tf, cf) = pool.install(|| {
            wall_and_cpu(|| {
                p.forward_in_place_with(&mut x, batch, len, &mut workspace)
                    .unwrap();
            })
        });
        std::hint::black_box(&x);
        let (tt, ct) = pool.install(|| {
            wall_and_cpu(|| {
                // The kept buffers count as added memory: they are the step's.
                let before = CURRENT.load(Ordering::Relaxed);
                let base = before - buffers.bytes();
                PEAK.store(before, Ordering::Relaxed);
                let (out, tape) = p
                    .forward_train_with(&input, batch, len, &mut buffers)
                    .unwrap();
                let (gx, grads) = p.backward_with(tape, &out, &mut buffers).unwrap();
                std::hint::black_box((&gx, &grads, &out));
                // Handed back once used, as the trainer does.
                buffers.recycle(gx);
                buffers.recycle(out);
                added = added.max(PEAK.load(Ordering::Relaxed) - base);
            })
        });
        if rep == 0 {
            continue; // warm-up
        }
        println!(
            "rep {rep}: ORT MatMul {} ms, forward {:.0} ms ({:.0} ms CPU), training step {:.0} ms ({:.0} ms CPU)",
            to.map_or("-".to_string(), |t| format!("{:.0}", t * 1e3)),
            tf * 1e3,
            cf * 1e3,
            tt * 1e3,
            ct * 1e3
        );
        if let Some(to) = to {
            t_ort.push(to);
            r1.push((fwd_flops / tf) / (in_flops / to));
        }
        t_fwd.push(tf);
        t_train.push(tt);
        r2.push(tt / tf);
        r2_cpu.push(ct / cf);
    }
    let t_fwd = median(t_fwd);
    let t_train = median(t_train);
    println!(
        "forward (forward_in_place_with, kept workspace): {:.1} ms, {:.1} GFLOP/s",
        t_fwd * 1e3,
        fwd_flops / t_fwd / 1e9
    );
    if !t_ort.is_empty() {
        let t = median(t_ort);
        println!(
            "in_proj GEMM, ONNX Runtime MatMul (2 intra-op threads): {:.1} ms, {:.1} GFLOP/s",
            t * 1e3,
            in_flops / t / 1e9
        );
    }
    println!(
        "training step (forward_train_with + backward_with, kept buffers): {:.1} ms",
        t_train * 1e3
    );
    println!();
    if r1.is_empty() {
        println!("1. forward GFLOP/s / ORT MatMul GFLOP/s: not measured (no ONNX Runtime)");
    } else {
        println!("1. forward GFLOP/s / ORT MatMul GFLOP/s = {:.2} (median of per-repetition ratios; target >= 0.5)", median(r1));
    }
    println!(
        "2. training step / forward = {:.2} in wall time, {:.2} in CPU time (medians of per-repetition ratios; target <= 3; CPU time is the steadier on a shared machine)",
        median(r2),
        median(r2_cpu)
    );
    println!(
        "3. peak memory added by a training step = {:.0} MB (target <= 1000 MB)",
        added as f64 / 1e6
    );
}
