"""Times the onnxruntime Python API on a backbone, as the baseline of `cargo bench --bench tokenizer`.

Builds the same deterministic input as the Rust benchmark, runs warm-up passes, then
times `--reps` runs and prints one line: `median_ms <value>`.
"""
import argparse
import time

import numpy as np
import onnxruntime as ort


def bench_input(batch: int, height: int, width: int) -> np.ndarray:
    """The benchmark input: value i of the flat [B,3,H,W] buffer is ((i * 7919) % 1000) / 1000."""
    n = batch * 3 * height * width
    i = np.arange(n, dtype=np.int64)
    return (((i * 7919) % 1000) / 1000.0).astype(np.float32).reshape(batch, 3, height, width)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model")
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = bench_input(args.batch, args.height, args.width)
    for _ in range(args.warmup):
        session.run(None, {name: x})
    times = []
    for _ in range(args.reps):
        start = time.perf_counter()
        session.run(None, {name: x})
        times.append((time.perf_counter() - start) * 1000.0)
    print(f"median_ms {float(np.median(times)):.4f}")


if __name__ == "__main__":
    main()
