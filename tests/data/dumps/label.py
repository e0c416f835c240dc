#!/usr/bin/env python3
"""Locates every occurrence of the synthetic rows' values in the dumps next to this script
and writes them into the sidecars ("at email 1234-1258", tests/data/corpus/README.md), so
the corpus test scores real pg_dump/mysqldump output per occurrence too.

Usage: label.py ROWS_TSV DUMP_DIR   (scripts/gen-dumps.sh runs it with the rows it loaded)
"""
import os
import sys

COLUMNS = {2: "email", 3: "phone", 4: "iban", 5: "ahv", 6: "credit_card"}  # rows.tsv column -> category


def main(rows_tsv, out):
    values = {}
    with open(rows_tsv) as fh:
        for line in fh:
            fields = line.rstrip("\n").split("\t")
            for col, cat in COLUMNS.items():
                values.setdefault(cat, set()).add(fields[col].encode())
    for name in sorted(os.listdir(out)):
        if not name.endswith(".expect"):
            continue
        sidecar = os.path.join(out, name)
        cats = [l.strip() for l in open(sidecar) if l.strip() and not l.startswith("at ")]
        content = open(sidecar[: -len(".expect")], "rb").read()
        found = set()
        for cat in cats:
            for v in values.get(cat.split()[0], ()):
                at = content.find(v)
                while at >= 0:
                    found.add((at, at + len(v), cat.split()[0]))
                    at = content.find(v, at + 1)
        kept = []
        for s in sorted(found, key=lambda s: (s[0], -s[1])):
            if any(k[0] <= s[0] and s[1] <= k[1] and (k[1] - k[0]) > (s[1] - s[0]) for k in kept):
                continue  # inside a longer value (a card's digits inside an IBAN)
            kept.append(s)
        with open(sidecar, "w") as fh:
            fh.write("\n".join(cats + [f"at {c} {a}-{b}" for a, b, c in kept]) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
