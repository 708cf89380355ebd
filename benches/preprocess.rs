//! Preprocessing speed: `to_backbone_input` against the naive per-pixel definition
//! (`varad::image::reference`), measured in the same run.
//!
//! `cargo bench --features internals --bench preprocess [-- FILTER]`; prints milliseconds per image (median)
//! and the ratio, for the cases whose name contains FILTER (e.g. `Mono16`).

mod common;

use common::median_ms;

use varad::image::reference::to_backbone_input_naive;
use varad::image::{to_backbone_input, ImageView, InputSpec, PixelFormat};

fn main() {
    let threads = rayon::current_num_threads();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    println!("rayon threads: {threads}");
    let cases = [
        (
            "2448x2048 RGB8   -> 1024x1024",
            2448,
            2048,
            PixelFormat::Rgb8,
        ),
        (
            "1024x1024 RGB8   -> 1024x1024",
            1024,
            1024,
            PixelFormat::Rgb8,
        ),
        (
            "2448x2048 Mono16 -> 1024x1024",
            2448,
            2048,
            PixelFormat::Mono16,
        ),
        (
            "2448x2048 BGRA8  -> 1024x1024",
            2448,
            2048,
            PixelFormat::Bgra8,
        ),
    ];
    let spec = InputSpec::new(1024, 1024);
    let mut out = vec![0.0f32; spec.buffer_len().unwrap()];
    // Cargo passes `--bench` to harness-less benches; anything else filters the cases.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    for (name, w, h, format) in cases {
        if !filter.iter().all(|f| name.contains(f.as_str())) {
            continue;
        }
        let mut s = 0x9E37_79B9u32;
        let data: Vec<u8> = (0..w * h * format.bytes_per_pixel())
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 24) as u8
            })
            .collect();
        let view = ImageView::packed(&data, w as u32, h as u32, format).unwrap();
        let fast = median_ms(15, || {
            to_backbone_input(&view, &spec, &mut out).unwrap();
        });
        let fast1 = one.install(|| {
            median_ms(7, || {
                to_backbone_input(&view, &spec, &mut out).unwrap();
            })
        });
        let naive = median_ms(2, || {
            to_backbone_input_naive(&view, &spec, &mut out).unwrap();
        });
        println!(
            "{name}: {fast:7.2} ms ({threads} threads), {fast1:7.2} ms (1 thread), naive \
             {naive:8.2} ms (1 thread); naive/fast {:.1}x, naive/fast-1-thread {:.1}x",
            naive / fast,
            naive / fast1
        );
    }
}
