#!/usr/bin/env python3
"""No GPL in Convoy's dependency tree (issue #24: the Ableton Link library and its Rust
ports are GPL and must never be linked). Reads `cargo metadata` for the locked tree and
checks every package's SPDX `license` field: an expression passes when one of its `OR`
alternatives carries no GPL-family licence (GPL, LGPL, AGPL); a package with no `license`
field fails unless listed in ALLOW_NO_FIELD with the licence its files state. Exit 1 with
the offenders listed. Run by tools/test.sh; `--list` prints every package's licence."""
import json
import re
import subprocess
import sys

# Packages without a `license` field, checked by hand: name -> licence of their files.
ALLOW_NO_FIELD = {}

COPYLEFT = re.compile(r"\b(A|L)?GPL", re.IGNORECASE)


def alternatives(expr):
    expr = expr.replace("/", " OR ").replace("(", " ").replace(")", " ")
    return [a.strip() for a in re.split(r"\s+OR\s+", expr, flags=re.IGNORECASE) if a.strip()]


def ok(expr):
    return any(not COPYLEFT.search(a) for a in alternatives(expr))


def main():
    meta = json.loads(subprocess.check_output(
        ["cargo", "metadata", "--format-version", "1", "--locked"], text=True))
    bad = []
    for p in sorted(meta["packages"], key=lambda p: p["name"]):
        lic = p.get("license")
        if "--list" in sys.argv:
            print(f"{p['name']} {p['version']}: {lic}")
        if lic is None:
            if p["name"] not in ALLOW_NO_FIELD:
                bad.append(f"{p['name']} {p['version']}: no license field")
        elif not ok(lic):
            bad.append(f"{p['name']} {p['version']}: {lic}")
    if bad:
        print("license check: GPL-family (or unknown) licences in Cargo.lock:", file=sys.stderr)
        for b in bad:
            print("  " + b, file=sys.stderr)
        sys.exit(1)
    print(f"license check: {len(meta['packages'])} packages, none GPL-only")


if __name__ == "__main__":
    main()
