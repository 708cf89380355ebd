"""The README's tables from a report.json of `varad eval` (scripts/readme_tables.py)."""

from __future__ import annotations

import json

import readme_tables


def _method(name: str, auroc: float, ms: float, subsets: list[str]) -> dict:
    return {
        "method": name,
        "pixel": {"auroc": auroc, "ap": auroc / 2, "max_f1": auroc / 3},
        "image": {"auroc": 1.0, "ap": 0.75, "max_f1": 0.5},
        "ms_after_backbone": ms,
        "by_size": [
            {"subset": s, "defective_images": 2, "pixel_auroc": auroc, "pixel_ap": 0.25}
            for s in subsets
        ],
        "by_type": [
            {"subset": "scratch", "defective_images": 3, "pixel_auroc": 0.5, "pixel_ap": auroc}
        ],
    }


def test_rows_in_readme_order_with_speedup(tmp_path, capsys):
    # The report's order differs from the README's: the script reorders and renames.
    methods = [
        _method("PatchCore", 0.9, 600.0, ["small"]),
        _method("VarAD [map_norm=none]", 0.7, 55.0, ["small"]),
        _method("VarAD", 0.8, 50.0, ["small"]),
    ]
    report = {
        "categories": [{"category": "brick", "methods": methods, "backbone_ms_per_image": 100.0}],
        "mean": [{k: v for k, v in m.items() if k not in ("by_size", "by_type")} for m in methods],
    }
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    readme_tables.main(str(path))
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.startswith("| brick | VarAD") or line.startswith("| brick | Patch")]
    assert rows[:3] == [
        "| brick | VarAD (ours) | 80.0 | 40.0 | 26.7 | 100.0 | 75.0 | 50.0 | 50 |",
        "| brick | VarAD (paper) | 70.0 | 35.0 | 23.3 | 100.0 | 75.0 | 50.0 | 55 |",
        "| brick | PatchCore | 90.0 | 45.0 | 30.0 | 100.0 | 75.0 | 50.0 | 600 |",
    ]
    assert "- brick: 600.0 / 50.0 ms = 12.0x" in out
    assert "- **mean**: 600.0 / 50.0 ms = 12.0x" in out
    assert "| brick | small | 2 | 80.0 / 25.0 | 70.0 / 25.0 | 90.0 / 25.0 |" in out
    assert "| brick | scratch | 3 | 50.0 / 80.0 | 50.0 / 70.0 | 50.0 / 90.0 |" in out
    # No method decided: no decision table.
    assert not any("PASS" in line for line in out)


def test_decision_table_for_the_methods_that_decided(tmp_path, capsys):
    ours = _method("VarAD", 0.8, 50.0, ["small"])
    ours["decisions"] = {
        "good": {"pass": 7, "review": 2, "fail": 1},
        "defective": {"pass": 1, "review": 0, "fail": 3},
    }
    baseline = _method("PatchCore", 0.9, 600.0, ["small"])
    baseline["decisions"] = None
    methods = [ours, baseline]
    mean_ours = {k: v for k, v in ours.items() if k not in ("by_size", "by_type")}
    mean_ours["decisions"] = {
        "good": {"pass": 14, "review": 4, "fail": 2},
        "defective": {"pass": 1, "review": 1, "fail": 6},
    }
    report = {
        "categories": [{"category": "brick", "methods": methods, "backbone_ms_per_image": 100.0}],
        "mean": [mean_ours, {k: v for k, v in baseline.items() if k not in ("by_size", "by_type")}],
    }
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    readme_tables.main(str(path))
    out = capsys.readouterr().out.splitlines()
    decided = [line for line in out if "PASS" in line or " / 0 / 3 |" in line or "**all**" in line]
    assert decided == [
        "| category | method | good PASS / REVIEW / FAIL | defective PASS / REVIEW / FAIL "
        "| false fails % | escapes % |",
        "| brick | VarAD (ours) | 7 / 2 / 1 | 1 / 0 / 3 | 10.0 | 25.0 |",
        "| **all** | VarAD (ours) | 14 / 4 / 2 | 1 / 1 / 6 | 10.0 | 12.5 |",
    ]
