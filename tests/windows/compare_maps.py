"""Compares the text that tests/windows/maps.c writes on two platforms for the same
model and images: the decisions must be equal, and every image score, normalised score
and map value must agree within a relative tolerance (of the largest value of that map,
so values near zero are not held to a tighter bound than the ones a decision rests on).
Prints the largest difference seen.
Usage: compare_maps.py TOLERANCE A.txt B.txt"""
import sys


def parse(path):
    images = {}
    with open(path) as f:
        lines = iter(f.read().split("\n"))
        for line in lines:
            if not line:
                continue
            words = line.split()
            assert words[0] == "image", f"{path}: unexpected line {line!r}"
            entry = {"score": float(words[3]), "normalised": float(words[5]), "decision": int(words[7])}
            for _ in range(2):
                name, w, h = next(lines).split()
                values = []
                while len(values) < int(w) * int(h):
                    values.extend(float(v) for v in next(lines).split())
                entry[name] = (int(w), int(h), values)
            images[words[1]] = entry
    return images


def main():
    tolerance, a_path, b_path = float(sys.argv[1]), sys.argv[2], sys.argv[3]
    a, b = parse(a_path), parse(b_path)
    if sorted(a) != sorted(b) or not a:
        sys.exit(f"different images: {sorted(a)} vs {sorted(b)}")
    worst = {"score": 0.0, "normalised": 0.0, "raw_map": 0.0, "map": 0.0}
    failed = []
    for name in sorted(a):
        x, y = a[name], b[name]
        if x["decision"] != y["decision"]:
            failed.append(f"{name}: decision {x['decision']} vs {y['decision']}")
        for key in ("score", "normalised"):
            rel = abs(x[key] - y[key]) / max(abs(x[key]), abs(y[key]), 1e-30)
            worst[key] = max(worst[key], rel)
        for key in ("raw_map", "map"):
            (wa, ha, va), (wb, hb, vb) = x[key], y[key]
            if (wa, ha) != (wb, hb):
                failed.append(f"{name}: {key} {wa}x{ha} vs {wb}x{hb}")
                continue
            scale = max(max(abs(v) for v in va), max(abs(v) for v in vb), 1e-30)
            worst[key] = max(worst[key], max(abs(p - q) for p, q in zip(va, vb)) / scale)
    report = ", ".join(f"{k} {v:.2e}" for k, v in worst.items())
    print(f"compare_maps: {len(a)} images, largest relative difference: {report} (tolerance {tolerance:.0e})")
    failed += [f"{k}: {v:.2e} > {tolerance:.0e}" for k, v in worst.items() if v > tolerance]
    if failed:
        sys.exit("compare_maps: " + "; ".join(failed))


main()
