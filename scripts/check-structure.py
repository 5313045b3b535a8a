#!/usr/bin/env python3
"""Structure checks that rustc and clippy do not make.

- No module circle in any crate: module A uses B (through `crate::`, `super::` or `self::`
  paths, grouped `use crate::{a::X, b}` trees included, and through `pub use` re-exports to
  the module an item comes from) while B, directly or not, uses A. A module's own submodules and ancestors do not count
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


def split_tree(tree):
    """The top-level comma-separated parts of a use tree's braces."""
    parts, depth, cur = [], 0, ""
    for ch in tree:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def expand_tree(prefix, tree):
    """Flat paths of a grouped use tree: `a::{b::C, d}` under `crate` gives crate::a::b::C, crate::a::d."""
    out = []
    for part in split_tree(tree):
        m = re.match(r"^((?:\w+::)*)\{(.*)\}$", part, re.S)
        if m:
            out += expand_tree(prefix + "::" + m.group(1).rstrip(":") if m.group(1) else prefix, m.group(2))
        else:
            out.append(prefix + "::" + re.sub(r"\s+as\s+\w+$", "", part))
    return [re.sub(r"::+", "::", re.sub(r"\s+", "", path)) for path in out]


def paths_in(text):
    """Every `crate::…`, `super::…` and `self::…` path in `text`, grouped use trees expanded."""
    found = [m.group(0) for m in re.finditer(r"\b(?:crate|super|self)(?:::\w+)+", text)]
    for m in re.finditer(r"\b((?:crate|super|self)(?:::\w+)*)::\{", text):
        depth, j = 1, m.end()
        while depth and j < len(text):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        found += expand_tree(m.group(1), text[m.end() : j - 1])
    return found


def resolve(path, here, modules):
    """(deepest module named by `path`, the rest of its segments), from module `here`."""
    head, *rest = path.split("::")
    if head == "crate":
        base = ()
    elif head == "super":
        base = here[:-1]
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
    else:
        base = here
    target, at = None, base
    while rest and at + (rest[0],) in modules:
        at, rest = at + (rest[0],), rest[1:]
        target = at
    return (target if target is not None else base), rest


def reexports(texts, modules):
    """(module, item) -> the module an item re-exported by `pub use` comes from."""
    found = {}
    for here, text in texts.items():
        for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", text):
            body = re.sub(r"\s+", " ", m.group(1)).strip()
            if "{" in body:
                head = body[: body.index("{")].rstrip(": ")
                paths = expand_tree(head, body[body.index("{") + 1 : body.rindex("}")])
            else:
                paths = [re.sub(r"\s+as\s+\w+$", "", body).replace(" ", "")]
            for path in paths:
                if not path.split("::")[0] in ("crate", "super", "self"):
                    path = "self::" + path  # a child module's item
                source, rest = resolve(path, here, modules)
                if len(rest) == 1 and source != here:
                    found[(here, rest[0])] = source
    return found


def references(text, here, modules, exported=None):
    """Modules `text` (of module `here`) refers to: through `crate::`, `super::` and `self::`
    paths (grouped use trees expanded), and to where an item re-exported by `pub use` is
    defined."""
    exported = exported or {}
    found = set()
    for path in paths_in(text):
        target, rest = resolve(path, here, modules)
        if target != here or path.startswith("self::") and not rest:
            found.add(target)
        seen = set()
        while rest and (target, rest[0]) in exported and (target, rest[0]) not in seen:
            seen.add((target, rest[0]))
            target = exported[(target, rest[0])]
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
        texts = {module: test_free(strip_comments(open(path).read())) for module, path in files.items()}
        exported = reexports(texts, files)
        graph = {}
        for module, path in files.items():
            raw = open(path).read()
            graph[module] = {
                target
                for target in references(texts[module], module, files, exported)
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
