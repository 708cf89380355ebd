"""Adds one method's rows from an earlier `varad eval` report to a newer one on the same
data set, so a method whose code did not change need not be evaluated again (the
baseline's banks at 36 training images take most of an hour a set).

    python scripts/merge_reports.py NEW.json OLD.json METHOD OUT.json

Refuses unless both reports ran on the same data folder, layout and categories with the
same test images and defect kinds, and the same configuration apart from the settings of
VarAD's nearest-neighbour term (which the baseline does not use). The merged report says
where the added rows came from (`merged_from`).
"""
import json
import sys

# VarAD settings that changed between the two runs and that the baseline never reads.
VARAD_ONLY = {
    ("train", "neighbour_bank_tokens"),
    ("train", "neighbour_bank_selection"),
    ("train", "neighbour_bank_levels"),
    ("score", "neighbour_weight"),
    ("score", "neighbour_term"),
    ("score", "neighbour_probes"),
}


def shared_config(config):
    out = json.loads(json.dumps(config))
    for section, key in VARAD_ONLY:
        out.get(section, {}).pop(key, None)
    return out


def main(new_path, old_path, method, out_path):
    new, old = (json.load(open(p)) for p in (new_path, old_path))
    for key in ("data", "layout"):
        if new[key] != old[key]:
            sys.exit(f"the reports differ in {key}: {new[key]!r} vs {old[key]!r}")
    if shared_config(new["config"]) != shared_config(old["config"]):
        sys.exit("the reports' configurations differ beyond the nearest-neighbour settings")
    old_cats = {c["category"]: c for c in old["categories"]}
    for c in new["categories"]:
        o = old_cats.get(c["category"])
        if o is None:
            sys.exit(f"category {c['category']} is not in {old_path}")
        for key in ("train_images", "test_good", "test_defective"):
            if c[key] != o[key]:
                sys.exit(f"{c['category']}: {key} differs ({c[key]} vs {o[key]})")
        rows = [m for m in o["methods"] if m["method"] == method]
        if len(rows) != 1:
            sys.exit(f"{c['category']}: {old_path} has no single {method} row")
        c["methods"] = [m for m in c["methods"] if m["method"] != method] + rows
    mean = [m for m in old["mean"] if m["method"] == method]
    if len(mean) != 1 or len(new["categories"]) != len(old["categories"]):
        sys.exit(f"{old_path}'s mean {method} row is not over the same categories")
    new["mean"] = [m for m in new["mean"] if m["method"] != method] + mean
    new["methods"] = [m for m in new["methods"] if m != method] + [method]
    new["merged_from"] = {method: old_path}
    json.dump(new, open(out_path, "w"), indent=1)


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
