#!/usr/bin/env python3
"""Structure checks that rustc and clippy do not make.

- No module circle in any crate: module A uses B (through `crate::`, `super::` or a sibling
  path) while B, directly or not, uses A. A module's own submodules and ancestors do not count
  (a parent declares its children; a child may use its parent's items).
- No function in the driver (`dataflow/src`) longer than the limit (default 100 lines),
  tests excepted.

    scripts/check-structure.py [--max-lines N] [--report]

`--report` also prints the longest functions and the module graph's size. Exits 1 on a
violation, naming it.
"""
import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRATES = ["model", "kafka", "sources", "operators", "sinks", "dataflow"]


def module_of(src, path):
    """The module path of a source file: ('input', 'kafka') for src/input/kafka.rs."""
    rel = os.path.relpath(path, src)[: -len(".rs")].split(os.sep)
    if rel[-1] in ("lib", "main", "mod"):
        rel = rel[:-1]
    return tuple(rel)


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def test_free(text):
    """The text without `#[cfg(test)] mod … { … }` blocks (tests may use anything)."""
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i : m.start()])
        depth, j = 1, m.end()
        while depth and j < len(text):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def references(text, here, modules):
    """Modules `text` (of module `here`) refers to."""
    found = set()
    for m in re.finditer(r"\b(crate|super|self)((?:::\w+)+)", text):
        head, rest = m.group(1), m.group(2).split("::")[1:]
        if head == "crate":
            base = ()
        elif head == "super":
            base = here[:-1]
            while rest and rest[0] == "super":
                base, rest = base[:-1], rest[1:]
        else:
            base = here
        path = base
        target = None
        for segment in rest:
            path = path + (segment,)
            if path in modules:
                target = path
        if target is not None:
            found.add(target)
    # A child module's items by its bare name (`mod x; … x::f()`, `pub use x::Y`) are its own
    # submodules: containment, not an edge. Other modules are reached only through paths above.
    return found


def related(a, b):
    """Whether one module contains the other."""
    return a[: len(b)] == b or b[: len(a)] == a


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def functions(text):
    """(name, first line, length) of every `fn` in rustfmt-formatted `text`."""
    lines = text.split("\n")
    found = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)(?:pub(?:\([^)]*\))?\s+)?(?:const\s+|async\s+|unsafe\s+)*fn\s+(\w+)", line)
        if not m:
            continue
        indent = m.group(1)
        for j in range(i, len(lines)):
            if lines[j].startswith(indent + "}") and not lines[j].startswith(indent + "} else"):
                found.append((m.group(2), i + 1, j - i + 1))
                break
            if j > i and lines[j].rstrip().endswith(";") and lines[j].startswith(indent) and "{" not in "".join(lines[i:j + 1]):
                break  # a declaration without a body
    return found


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-lines", type=int, default=100)
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    problems = []
    longest = []
    for crate in CRATES:
        src = os.path.join(ROOT, crate, "src")
        files = {}
        for root, _, names in os.walk(src):
            for name in names:
                if name.endswith(".rs"):
                    path = os.path.join(root, name)
                    files[module_of(src, path)] = path
        graph = {}
        for module, path in files.items():
            raw = open(path).read()
            text = test_free(strip_comments(raw))
            graph[module] = {
                target
                for target in references(text, module, files)
                if not related(module, target)
            }
            if crate == "dataflow":
                for name, line, length in functions(test_free(raw)):
                    rel = os.path.relpath(path, ROOT)
                    longest.append((length, f"{rel}:{line} {name}"))
                    if length > args.max_lines:
                        problems.append(f"{rel}:{line}: fn {name} has {length} lines (at most {args.max_lines})")
        for component in cycles(graph):
            names = ", ".join("::".join(m) or "lib" for m in component)
            problems.append(f"{crate}: module circle: {names}")
        if args.report:
            edges = sum(len(v) for v in graph.values())
            print(f"{crate}: {len(graph)} modules, {edges} edges between unrelated modules")
    if args.report:
        for length, where in sorted(longest, reverse=True)[:8]:
            print(f"{length:4} lines  {where}")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
