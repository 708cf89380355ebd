//! The selective scan alone at the predictor benchmark's shape (B = 4, L = 5329,
//! Di = 768, N = 16, R = 24, 2 threads): training forward (with checkpoints) and backward,
//! the backward both as training runs it (AVX2 intrinsics where the CPU has them) and in
//! the portable kernel the compiler vectorises, the baseline. Prints medians, nanoseconds
//! per 8 lanes and state entry, their ratio and the largest difference between the two
//! backwards. `cargo bench --features internals --bench scan` (under `cargo test` a short smoke run).

mod common;

use common::median_ms;

use varad::predictor::rng::SplitMix64;
use varad::predictor::scan::{self, ScanDims, ScanGrads, ScanInputs};

/// The backward's outputs, one buffer each.
struct Grads {
    y: Vec<f32>,
    gz: Vec<f32>,
    gu: Vec<f32>,
    gdelta: Vec<f32>,
    gxdbl: Vec<f32>,
    ga_log: Vec<f32>,
    gd: Vec<f32>,
    gbias: Vec<f32>,
}

impl Grads {
    fn new(s: &ScanDims, gy: &[f32]) -> Self {
        let (rows, di) = (s.batch * s.len, s.d_inner);
        Grads {
            y: gy.to_vec(),
            gz: vec![0.0; rows * di],
            gu: vec![0.0; rows * di],
            gdelta: vec![0.0; rows * di],
            gxdbl: vec![0.0; rows * s.ld_xdbl],
            ga_log: vec![0.0; di * s.d_state],
            gd: vec![0.0; di],
            gbias: vec![0.0; di],
        }
    }

    /// Back to the state before a backward call: `dL/dy` in `y`, the accumulated
    /// parameter gradients zero (the other outputs are overwritten).
    fn reset(&mut self, gy: &[f32]) {
        self.y.copy_from_slice(gy);
        self.ga_log.fill(0.0);
        self.gd.fill(0.0);
        self.gbias.fill(0.0);
    }

    fn views(&mut self, ld_gz: usize) -> ScanGrads<'_, f32> {
        ScanGrads {
            gy_then_y: &mut self.y,
            gz: &mut self.gz,
            ld_gz,
            gu: &mut self.gu,
            gdelta: &mut self.gdelta,
            gxdbl: &mut self.gxdbl,
            ga_log: &mut self.ga_log,
            gd: &mut self.gd,
            gbias: &mut self.gbias,
        }
    }

    /// Largest difference to `other` over all outputs, relative to each output's largest
    /// magnitude.
    fn max_rel_diff(&self, other: &Grads) -> f64 {
        let pairs = [
            (&self.y, &other.y),
            (&self.gz, &other.gz),
            (&self.gu, &other.gu),
            (&self.gdelta, &other.gdelta),
            (&self.gxdbl, &other.gxdbl),
            (&self.ga_log, &other.ga_log),
            (&self.gd, &other.gd),
            (&self.gbias, &other.gbias),
        ];
        pairs
            .iter()
            .map(|(a, b)| {
                let scale = b.iter().fold(0f64, |m, v| m.max(v.abs() as f64)).max(1e-30);
                a.iter()
                    .zip(b.iter())
                    .fold(0f64, |m, (x, y)| m.max((x - y).abs() as f64))
                    / scale
            })
            .fold(0.0, f64::max)
    }
}

fn main() {
    // `cargo bench` passes --bench: the paper's grid. Under `cargo test --all-targets`
    // this file only runs as a quick smoke test on short sequences.
    let full = std::env::args().any(|a| a == "--bench");
    let (batch, len) = if full { (4usize, 5329usize) } else { (1, 256) };
    let (di, ns, r) = (768usize, 16usize, 24usize);
    let s = ScanDims {
        batch,
        len,
        d_inner: di,
        d_state: ns,
        b_offset: r,
        ld_xdbl: r + 2 * ns,
        chunk: varad::predictor::mixer::CHUNK,
    };
    let rows = batch * len;
    let mut rng = SplitMix64::new(3);
    let mut v = |n: usize, lo: f64, hi: f64| -> Vec<f32> {
        (0..n).map(|_| rng.uniform(lo, hi) as f32).collect()
    };
    // Magnitudes as at initialisation: A_log = log(1..N), dt in [1e-3, 1e-1].
    let a_log: Vec<f32> = (0..di * ns).map(|i| ((i % ns + 1) as f32).ln()).collect();
    let d = v(di, 0.5, 1.5);
    let delta = v(rows * di, 1e-3, 0.1);
    let xdbl = v(rows * s.ld_xdbl, -1.0, 1.0);
    let z = v(rows * di, -3.0, 3.0);
    let u = v(rows * di, -2.0, 2.0);
    let gy = v(rows * di, -1.0, 1.0);
    let inp = ScanInputs {
        a_log: &a_log,
        d: &d,
        delta: &delta,
        xdbl: &xdbl,
        z: &z,
        ld_z: di,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("thread pool");
    pool.install(|| {
        let mut y = vec![0f32; rows * di];
        let mut ckpt = vec![0f32; s.ckpt_len()];
        let t_fwd = median_ms(5, || scan::forward(&s, &inp, &u, &mut y, Some(&mut ckpt)));
        // Output buffers made once and reused, as a training loop would: the pages of
        // fresh buffers would be faulted in inside the timed kernels.
        let mut fast = Grads::new(&s, &gy);
        let mut portable = Grads::new(&s, &gy);
        let t_bwd = median_ms(5, || {
            fast.reset(&gy);
            scan::backward(&s, &inp, &u, &ckpt, fast.views(di));
        });
        let t_portable = median_ms(5, || {
            portable.reset(&gy);
            scan::backward_portable(&s, &inp, &u, &ckpt, portable.views(di));
        });
        let t_reset = median_ms(5, || fast.reset(&gy));
        fast.reset(&gy);
        scan::backward(&s, &inp, &u, &ckpt, fast.views(di));
        let per_entry = |ms: f64| ms * 1e6 / (rows * di * ns / 8) as f64;
        println!("shape: B {batch}, L {len}, Di {di}, N {ns}, R {r}; 2 threads; medians of 5");
        println!("| kernel | ms | ns per 8 lanes x state entry |");
        println!("|---|---:|---:|");
        println!(
            "| forward (with checkpoints) | {t_fwd:.1} | {:.2} |",
            per_entry(t_fwd)
        );
        let (bwd, port) = (t_bwd - t_reset, t_portable - t_reset);
        println!("| backward | {bwd:.1} | {:.2} |", per_entry(bwd));
        println!(
            "| backward, portable kernel (baseline) | {port:.1} | {:.2} |",
            per_entry(port)
        );
        println!(
            "backward: portable / used = {:.2}; largest relative difference {:.1e}",
            port / bwd,
            fast.max_rel_diff(&portable)
        );
    });
}
