"""Writes the header an older client was compiled against: include/varad.h with every
size-tagged struct cut after an earlier field, as if those structs had grown since.

Usage: make_old_header.py include/varad.h OUT.h

The cut points are the layouts tests/old_client/old_client.c is written for; a field
renamed or removed in the real header makes this script fail instead of writing a header
that no longer is a prefix of today's.
"""
import re
import sys

# struct -> the last field the "old" layout has (each cut ends on an 8-byte boundary,
# as every published layout does).
CUTS = {
    "VaradParams": "pixel_quantile",
    "VaradLoadParams": "runtime_path",
    "VaradScoreParams": "roi_len",
    "VaradTrainReport": "final_loss",
}


def cut(text, name, last):
    start = text.index(f"typedef struct {name} {{")
    end = text.index(f"}} {name};", start)
    body = text[start:end].split("\n")
    field = re.compile(rf"^\s+\S.*\b{re.escape(last)};$")
    at = next((i for i, line in enumerate(body) if field.match(line)), None)
    if at is None:
        sys.exit(f"make_old_header.py: {name} has no field `{last}` any more")
    dropped = [l for l in body[at + 1:] if l.strip() and not l.strip().startswith("//")]
    if not dropped:
        sys.exit(f"make_old_header.py: {name} ends at `{last}`: the old layout is no prefix")
    kept = body[: at + 1] + [f"  /* {len(dropped)} later fields are not in this old layout */", ""]
    return text[:start] + "\n".join(kept) + text[end:]


def main():
    source, out = sys.argv[1], sys.argv[2]
    text = open(source, encoding="utf-8").read()
    for name, last in CUTS.items():
        text = cut(text, name, last)
    open(out, "w", encoding="utf-8").write(text)


if __name__ == "__main__":
    main()
