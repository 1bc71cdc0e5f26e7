#!/usr/bin/env python3
"""Convoy's module layering, measured: which top-level module imports which, and every import
that points from a lower layer to a higher one (the goal is none).

    python3 tools/layers.py            # summary: upward imports, lines per module, largest files
    python3 tools/layers.py --edges    # every module -> module edge with its count

The layer order below is the one docs/architecture.md draws; a module may use any module in
a lower layer or its own, never a higher one. References are found as `crate::name` paths,
including grouped `use crate::{a::..., b}` imports, in code only (comments are skipped).
Unit-test code (`#[cfg(test)] mod tests`, `tests.rs`) may use the measuring rigs; its
imports are listed apart and count only when they point at something other than `rig`.
"""
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

# Lowest first. Modules on one line share a layer and may use each other only if listed in
# PEERS below (none are: a same-layer import is reported as well).
LAYERS = [
    ["clock"],
    ["config"],
    ["security", "analysis", "led"],
    ["audio"],
    ["live"],
    ["control"],
    ["osc", "show", "library"],
    ["fleet"],
    ["sync", "link"],
    ["web"],
    ["node"],
    ["rig"],
    ["cli"],
]
RANK = {m: i for i, layer in enumerate(LAYERS) for m in layer}


def refs(text):
    """Top-level crate modules a file refers to."""
    found = Counter()
    for m in re.finditer(r"\bcrate::(\w+)", text):
        found[m.group(1)] += 1
    # use crate::{a::b, c::{d, e}, f};  -> a, c, f
    for m in re.finditer(r"\buse\s+crate::\{", text):
        depth, i, start, items = 1, m.end(), m.end(), []
        while i < len(text) and depth:
            c = text[i]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            elif c == "," and depth == 1:
                items.append(text[start:i])
                start = i + 1
            i += 1
        items.append(text[start : i - 1])
        for it in items:
            name = re.match(r"\s*(\w+)", it)
            if name:
                found[name.group(1)] += 1
    return found


def split_tests(path, text):
    """(product code, unit-test code) of a file, comments removed."""
    code = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("//"))
    if path.name == "tests.rs":
        return "", code
    cut = code.find("#[cfg(test)]\nmod tests")
    return (code, "") if cut < 0 else (code[:cut], code[cut:])


def module_of(path, src):
    rel = path.relative_to(src)
    return rel.parts[0].removesuffix(".rs") if len(rel.parts) > 1 else rel.stem


def main():
    root = Path(__file__).resolve().parent.parent
    src = root / "src"
    edges = Counter()
    sites = defaultdict(list)
    lines = Counter()
    files = []
    for path in sorted(src.rglob("*.rs")):
        text = path.read_text()
        mod = module_of(path, src)
        n = text.count("\n")
        lines[mod] += n
        files.append((n, str(path.relative_to(root))))
        product, tests = split_tests(path, text)
        found = refs(product)
        for target, count in refs(tests).items():
            if target != "rig":
                found[target] += count
        for target, count in found.items():
            if target != mod and target in RANK and mod in RANK:
                edges[(mod, target)] += count
                sites[(mod, target)].append(str(path.relative_to(root)))
    up = [(a, b) for (a, b) in edges if RANK[b] >= RANK[a]]
    if "--edges" in sys.argv:
        for (a, b), c in sorted(edges.items()):
            mark = "  UP" if (a, b) in up else ""
            print(f"{a:>9} -> {b:<9} {c:3}{mark}")
        print()
    print(f"imports pointing up or sideways: {len(up)}")
    for a, b in sorted(up):
        print(f"  {a} -> {b}: {', '.join(sorted(set(sites[(a, b)])))}")
    cycles = [(a, b) for (a, b) in edges if a < b and (b, a) in edges]
    print(f"module pairs importing each other: {len(cycles)}")
    for a, b in cycles:
        print(f"  {a} <-> {b}")
    print("lines per module:", ", ".join(f"{m} {n}" for m, n in lines.most_common()))
    files.sort(reverse=True)
    print("largest files:", ", ".join(f"{p} {n}" for n, p in files[:5]))


if __name__ == "__main__":
    main()
