"""Writes a C program that prints the size of every type varad.h defines and the offset
and size of every field of its structs. Built for Linux (LP64) and for Windows with
MinGW (LLP64) and run, the two outputs must be the same: the ABI does not depend on the
platform's `long`. Also refuses a header that uses `long`, `wchar_t` or `long double`,
whose size differs between the two.
Usage: layout.py HEADER OUT.c"""
import re
import sys


def main():
    header, out = sys.argv[1], sys.argv[2]
    text = open(header).read()
    code = "\n".join(line.split("//")[0] for line in text.split("\n"))
    code = re.sub(r"/\*.*?\*/", "", code, flags=re.S)
    banned = re.findall(r"\b(long|wchar_t)\b", code)
    if banned:
        sys.exit(f"layout: {header} uses {sorted(set(banned))}, whose size differs between Linux and Windows")
    lines = ["#include <stddef.h>", "#include <stdio.h>", '#include "varad.h"', "int main(void) {"]
    structs = re.findall(r"typedef struct (\w+) \{(.*?)\} \1;", code, flags=re.S)
    if not structs:
        sys.exit(f"layout: no structs found in {header}")
    for name, body in structs:
        lines.append(f'    printf("%s %zu\\n", "{name}", sizeof({name}));')
        for decl in body.split(";"):
            decl = " ".join(decl.split())
            if not decl:
                continue
            field = re.search(r"(\w+)\s*(\[[^\]]*\])?$", decl)
            if not field:
                sys.exit(f"layout: cannot read the field {decl!r} of {name}")
            member = field.group(1)
            lines.append(
                f'    printf("%s.%s %zu %zu\\n", "{name}", "{member}", offsetof({name}, {member}), '
                f"sizeof(((const {name} *)0)->{member}));"
            )
    for name in re.findall(r"typedef (?:enum \w+ \{.*?\}|u?int\d+_t|[^;]*\(\*)\s*\)?\s*(\w+)", code, flags=re.S):
        lines.append(f'    printf("%s %zu\\n", "{name}", sizeof({name}));')
    lines += ["    return 0;", "}", ""]
    with open(out, "w") as f:
        f.write("\n".join(lines))


main()
