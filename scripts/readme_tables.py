#!/usr/bin/env python3
"""Print the README's result tables from a `varad eval` report.json.

`make results` runs the README's evaluation and then this script; its output is what the
README's "Results on the generated high-resolution set" section shows: one row per
category and method (pixel AUROC, AP, max-F1, image AUROC, AP, max-F1, ms per image
after the backbone), the means, the speed-up of our default over the baseline after the
backbone, the decisions at the calibrated thresholds (for the methods that have them), and
pixel AUROC / AP by defect size and by defect kind.

Usage: readme_tables.py REPORT_JSON
"""

import json
import sys

# Report row names (as `varad eval --compare-map-norms none,position` writes them) and
# the README's names, in the README's order.
NAMES = [
    ("VarAD", "VarAD (ours)"),
    ("VarAD [map_norm=position]", "VarAD (one-sided)"),
    ("VarAD [map_norm=none]", "VarAD (paper)"),
    ("PatchCore", "PatchCore"),
]


def pct(x):
    return "-" if x is None else f"{100 * x:.1f}"


def ordered(methods):
    """The report's method entries in the README's order, with the README's names."""
    by_name = {m["method"]: m for m in methods}
    return [(label, by_name[name]) for name, label in NAMES if name in by_name]


def main(path):
    report = json.load(open(path))
    print(
        "| category | method | pixel AUROC | pixel AP | pixel max-F1 | image AUROC "
        "| image AP | image max-F1 | ms/img after backbone |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = [(c["category"], c["methods"]) for c in report["categories"]]
    rows.append(("**mean**", report["mean"]))
    for category, methods in rows:
        for label, m in ordered(methods):
            print(
                f"| {category} | {label} | {pct(m['pixel']['auroc'])} | {pct(m['pixel']['ap'])} "
                f"| {pct(m['pixel']['max_f1'])} | {pct(m['image']['auroc'])} "
                f"| {pct(m['image']['ap'])} | {pct(m['image']['max_f1'])} "
                f"| {m['ms_after_backbone']:.0f} |"
            )
    print()
    print("Scoring after the backbone, PatchCore's time over our default's:")
    print()
    for category, methods in rows:
        by_name = {m["method"]: m for m in methods}
        if "VarAD" in by_name and "PatchCore" in by_name:
            ours = by_name["VarAD"]["ms_after_backbone"]
            base = by_name["PatchCore"]["ms_after_backbone"]
            print(f"- {category}: {base:.1f} / {ours:.1f} ms = {base / ours:.1f}x")
    backbone = [c["backbone_ms_per_image"] for c in report["categories"]]
    print(f"- backbone per image: {min(backbone):.0f}-{max(backbone):.0f} ms")
    decided = [
        # The mean row's decisions are the sums over the categories.
        ("**all**" if category == "**mean**" else category, label, m["decisions"])
        for category, methods in rows
        for label, m in ordered(methods)
        if m.get("decisions")
    ]
    if decided:
        print()
        print(
            "| category | method | good PASS / REVIEW / FAIL | defective PASS / REVIEW / FAIL "
            "| false fails % | escapes % |"
        )
        print("|---|---|---:|---:|---:|---:|")
        for category, label, d in decided:
            g, b = d["good"], d["defective"]
            false_fail = g["fail"] / max(1, g["pass"] + g["review"] + g["fail"])
            escape = b["pass"] / max(1, b["pass"] + b["review"] + b["fail"])
            print(
                f"| {category} | {label} | {g['pass']} / {g['review']} / {g['fail']} "
                f"| {b['pass']} / {b['review']} / {b['fail']} | {pct(false_fail)} | {pct(escape)} |"
            )
    for field, title in [("by_size", "defect size"), ("by_type", "defect kind")]:
        labels = [label for label, _ in ordered(report["categories"][0]["methods"])]
        print()
        print(f"| category | {title} | images | " + " | ".join(labels) + " |")
        print("|---|---|---:|" + "---:|" * len(labels))
        for c in report["categories"]:
            methods = ordered(c["methods"])
            if not methods:
                continue
            subsets = [b["subset"] for b in methods[0][1][field]]
            for i, subset in enumerate(subsets):
                cells = []
                for _, m in methods:
                    b = m[field][i]
                    assert b["subset"] == subset, (b["subset"], subset)
                    cells.append(f"{pct(b['pixel_auroc'])} / {pct(b['pixel_ap'])}")
                images = methods[0][1][field][i]["defective_images"]
                print(f"| {c['category']} | {subset} | {images} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
