#!/usr/bin/env python3
"""The house's plan, checked: module imports run downward only, without circles.

    scripts/house.py            check layers and cycles (exit 1 on a violation)
    scripts/house.py --sizes    print the largest files and functions
    scripts/house.py --graph    print each file's imports of other files

A file's imports are its `crate::`, `super::` and `self::` paths (in `use`
lines and inline in code), outside `#[cfg(test)]` modules (inline, or in a
file declared `#[cfg(test)] mod x;`), resolved to the
deepest module file that exists. Rooms (the first path segment under
src/) sit on floors listed in FLOORS; a room may import from its own floor
or below, never above. At file level there must be no circle, which also
rules out a parent module and its child importing each other.
"""

import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

# Lowest first. Rooms on one floor may not import each other in a circle
# (the file-level check catches that); they are independent in intent.
FLOORS = [
    ["model", "format", "generate"],
    ["config"],
    ["store"],
    ["ingest", "metrics"],
    ["rules"],
    ["alerts"],
    ["chart"],
    ["mail"],
    ["reports"],
    ["pipeline"],
    ["daemon"],
    ["cli"],
    ["lib", "main"],
]


def module_of(path: Path) -> tuple:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "mod":
        parts.pop()
    if parts == ["lib"] or parts == ["main"]:
        return (parts[0],)
    return tuple(parts)


def strip_tests(text: str) -> str:
    """Drops `#[cfg(test)]` items (a `mod tests { ... }` block or one line)."""
    out = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        if lines[i].strip() == "#[cfg(test)]":
            # skip the next item: to the end of its braces, or one line
            i += 1
            depth = 0
            started = False
            while i < len(lines):
                line = strip_strings(lines[i])
                depth += line.count("{") - line.count("}")
                if "{" in line:
                    started = True
                i += 1
                if (started and depth <= 0) or (not started and line.rstrip().endswith(";")):
                    break
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out)


def strip_strings(line: str) -> str:
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])'", "''", line)
    return line.split("//")[0]


USE_RE = re.compile(r"\buse\s+((?:crate|super|self)(?:::[^;]*));", re.S)
INLINE_RE = re.compile(r"\b((?:crate|super)(?:::[A-Za-z_][A-Za-z0-9_]*)+)")


def expand_use(tree: str) -> list:
    """`crate::a::{b, c::{d, e}}` -> [crate::a::b, crate::a::c::d, ...]"""
    tree = re.sub(r"\s+", "", tree)
    m = re.match(r"^(.*?)::\{(.*)\}$", tree)
    if not m:
        return [re.sub(r"as\w+$", "", tree)]
    head, body = m.group(1), m.group(2)
    items, depth, cur = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    if cur:
        items.append(cur)
    out = []
    for item in items:
        if item == "self":
            out.append(head)
        else:
            out.extend(expand_use(head + "::" + item))
    return out


TEST_MOD_RE = re.compile(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+([a-z_][a-z0-9_]*)\s*;")


def test_only(files: list) -> set:
    """Modules declared `#[cfg(test)] mod x;`, and everything under them."""
    roots = set()
    for f in files:
        me = module_of(f)
        for child in TEST_MOD_RE.findall(f.read_text()):
            roots.add((me if me not in (("lib",), ("main",)) else ()) + (child,))
    return {module_of(f) for f in files if any(module_of(f)[: len(r)] == r for r in roots)}


def collect():
    files = sorted(SRC.rglob("*.rs"))
    tests = test_only(files)
    files = [f for f in files if module_of(f) not in tests]
    modules = {module_of(f): f for f in files}
    deps = {}
    for f in files:
        me = module_of(f)
        is_dir = f.name == "mod.rs"
        text = strip_tests(f.read_text())
        code = "\n".join(strip_strings(l) for l in text.split("\n"))
        paths = []
        for m in USE_RE.finditer(code):
            paths.extend(expand_use(m.group(1)))
        for m in INLINE_RE.finditer(code):
            paths.append(m.group(1))
        # a child module named bare (`mod render;` then `render::x`)
        for child in re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+([a-z_][a-z0-9_]*)\s*;", code, re.M):
            for m in re.finditer(r"(?<![:\w])" + child + r"((?:::[A-Za-z_][A-Za-z0-9_]*)+|::\{)", code):
                paths.append("self::" + child)
        out = set()
        for p in paths:
            # `super::x` in a non-dir module file means its parent: handle
            # the parent-relative base explicitly.
            segs = p.split("::")
            if segs[0] == "crate":
                full = segs[1:]
            else:
                base = [] if me in (("lib",), ("main",)) else list(me)
                i = 0
                while i < len(segs) and segs[i] in ("super", "self"):
                    if segs[i] == "super":
                        base = base[:-1]
                    i += 1
                full = base + segs[i:]
            target = None
            for n in range(len(full), 0, -1):
                if tuple(full[:n]) in modules:
                    target = tuple(full[:n])
                    break
            if target and target != me:
                out.add(target)
        deps[me] = out
    return modules, deps


def floor_of(mod: tuple) -> int:
    for i, rooms in enumerate(FLOORS):
        if mod[0] in rooms:
            return i
    return -1


def cycles(deps: dict) -> list:
    index, low, stack, on, sccs = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in deps.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    for v in sorted(deps):
        if v not in index:
            visit(v)
    return sccs


def name(mod: tuple) -> str:
    return "::".join(mod)


def check() -> int:
    modules, deps = collect()
    bad = 0
    for mod in sorted(deps):
        if floor_of(mod) < 0:
            print(f"src/{name(mod)}: its room `{mod[0]}` is on no floor of scripts/house.py's FLOORS")
            bad += 1
            continue
        for dep in sorted(deps[mod]):
            if floor_of(dep) > floor_of(mod):
                print(f"upward import: {name(mod)} (floor {floor_of(mod)}) uses {name(dep)} (floor {floor_of(dep)})")
                bad += 1
    for comp in cycles(deps):
        print("circle: " + " -> ".join(name(m) for m in comp))
        bad += 1
    if bad:
        print(f"house: {bad} problem(s); the floors are listed at the top of scripts/house.py")
        return 1
    print(f"house: {len(deps)} modules, imports run downward only, no circle")
    return 0


FN_RE = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?(?:extern\s+\"C\"\s+)?fn\s+([A-Za-z_][A-Za-z0-9_]*)")


def functions(path: Path):
    lines = path.read_text().split("\n")
    i = 0
    test_depth = None
    depth = 0
    while i < len(lines):
        m = FN_RE.match(lines[i])
        if m:
            start = i
            d = 0
            started = False
            j = i
            while j < len(lines):
                s = strip_strings(lines[j])
                if not started and ";" in s and "{" not in s:
                    break
                d += s.count("{") - s.count("}")
                if "{" in s:
                    started = True
                if started and d <= 0:
                    break
                j += 1
            if started:
                yield m.group(1), start + 1, j - start + 1
        i += 1


def sizes(n: int = 15) -> None:
    files = sorted(SRC.rglob("*.rs"))
    counts = sorted(((len(f.read_text().split("\n")) - 1, f) for f in files), reverse=True)
    print(f"largest files (of {len(files)}; lines, incl. tests):")
    for c, f in counts[:n]:
        print(f"  {c:6}  {f.relative_to(SRC.parent)}")
    over = [c for c, _ in counts if c > 600]
    print(f"  files over 600 lines: {len(over)}")
    fns = []
    for f in files:
        for fname, line, length in functions(f):
            fns.append((length, f"{f.relative_to(SRC.parent)}:{line} {fname}"))
    fns.sort(reverse=True)
    print(f"largest functions (of {len(fns)}; lines):")
    for length, where in fns[:n]:
        print(f"  {length:6}  {where}")
    print(f"  functions over 80 lines: {sum(1 for l, _ in fns if l > 80)}")


def graph() -> None:
    _, deps = collect()
    for mod in sorted(deps):
        print(f"{name(mod)} -> {', '.join(name(d) for d in sorted(deps[mod]))}")


if __name__ == "__main__":
    if "--sizes" in sys.argv:
        sizes()
    elif "--graph" in sys.argv:
        graph()
    else:
        sys.exit(check())
