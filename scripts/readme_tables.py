#!/usr/bin/env python3
"""Print the README's result tables from a `varad eval` report.json.

`make results` runs the README's evaluation and then this script; its output is what the
README's "Results on the generated high-resolution set" section shows: one row per
category and method (pixel AUROC, AP, max-F1, image AUROC, AP, max-F1, ms per image
after the backbone), the means, the speed-up of our default over the baseline after the
backbone, the decisions at the calibrated thresholds (for the methods that have them), the
decision tables of both methods calibrated the same way (cross-fitted scores alone and with the
held-out images; promised against observed rates; escapes side by side), and pixel AUROC / AP
by defect size and by defect kind.

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


POOLS = [("cross_fitted", "cross-fitted only"), ("cross_fitted_and_held_out", "cross-fitted + held-out")]


def promise(r):
    """A promised rate: expected % (95% upper bound), * when extrapolated."""
    star = "*" if r["extrapolated"] else ""
    return f"{100 * r['expected']:.2f} (UB {100 * r['upper_bound']:.1f}){star}"


def observed(r):
    """An observed rate with its 95% Clopper-Pearson interval and whether the promise lies in it."""
    rate = r["observed"] / r["good"] if r["good"] else None
    lo, hi = r["interval"]
    ok = "yes" if r["consistent"] else "**no**"
    return f"{r['observed']}/{r['good']} = {pct(rate)} [{pct(lo)}, {pct(hi)}] {ok}"


def escapes(t):
    d = t["decisions"]["defective"]
    n = d["pass"] + d["review"] + d["fail"]
    return f"{d['pass']}/{n} = {pct(d['pass'] / n if n else None)}"


def decision_tables(report, rows):
    """The decision tables summed over the categories (both methods, both calibrations, every
    review rate), the same at the configured rates per category, and the escapes of the two
    methods side by side at the same promised rates."""
    summed = [(label, m) for label, m in ordered(report["mean"]) if m.get("decision_tables")]
    if not summed:
        return
    categories = len(report["categories"])
    header = (
        "| calibration | method | n per category | review rate | good PASS / REVIEW / FAIL "
        "| promised review % | observed flagged [95%] in? | promised fail % "
        "| observed fail [95%] in? | escapes |"
    )
    rule = "|---|---|---|---:|---:|---:|---|---:|---|---:|"

    def row(first, label, t, n_cell):
        g = t["decisions"]["good"]
        print(
            f"| {first} | {label} | {n_cell} | {100 * t['review']['requested']:g}% "
            f"| {g['pass']} / {g['review']} / {g['fail']} | {promise(t['review'])} "
            f"| {observed(t['review'])} | {promise(t['fail'])} | {observed(t['fail'])} "
            f"| {escapes(t)} |"
        )

    print()
    print(
        f"Decision tables, summed over the {categories} categories (promised rates: the "
        "calibration reports' mean, weighted by good test parts; * extrapolated by the "
        "log-normal tail; flagged = REVIEW or FAIL; in? = the promise lies in the observed "
        "rate's 95% Clopper-Pearson interval):"
    )
    print()
    print(header)
    print(rule)
    for pool, pool_name in POOLS:
        for label, m in summed:
            for t in m["decision_tables"]:
                if t["pool"] != pool:
                    continue
                n = f"{t['cross_fitted'] / categories:g} + {t['held_out'] / categories:g}"
                row(pool_name, label, t, n)
    print()
    print("At the configured rates, per category:")
    print()
    print(header.replace("| calibration | method | n per category |", "| category | calibration | method, n |"))
    print(rule)
    for category, methods in rows[:-1]:
        for pool, pool_name in POOLS:
            for label, m in ordered(methods):
                for t in m.get("decision_tables", {}).get("tables", []):
                    if t["pool"] == pool and t["configured"]:
                        row(category, pool_name, t, f"{label}, {t['cross_fitted']} + {t['held_out']}")
    missing = [
        f"- {c['category']} / {m['method']}: {note}"
        for c in report["categories"]
        for m in c["methods"]
        for note in m.get("decision_tables", {}).get("unavailable", [])
    ]
    if missing:
        print()
        print("Not calibrated:")
        print()
        print("\n".join(missing))
    labels = [label for label, _ in summed]
    print()
    print(
        "Escapes (defective parts passed) and good parts flagged, summed over the categories, "
        "at the same promised rates:"
    )
    print()
    print("| calibration | review rate | " + " | ".join(f"{l} escapes | {l} good flagged" for l in labels) + " |")
    print("|---|---:|" + "---:|---:|" * len(labels))
    for pool, pool_name in POOLS:
        keys = []
        for _, m in summed:
            for t in m["decision_tables"]:
                key = (t["review"]["requested"], t["configured"])
                if t["pool"] == pool and key not in keys:
                    keys.append(key)
        for rate, configured in keys:
            cells = []
            for _, m in summed:
                t = next(
                    (t for t in m["decision_tables"]
                     if t["pool"] == pool and t["review"]["requested"] == rate
                     and t["configured"] == configured),
                    None,
                )
                if t is None:
                    cells += ["-", "-"]
                else:
                    r = t["review"]
                    cells += [escapes(t), f"{r['observed']}/{r['good']}"]
            print(f"| {pool_name} | {100 * rate:g}% | " + " | ".join(cells) + " |")


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
    decision_tables(report, rows)
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
