#!/usr/bin/env python3
"""Writes the one-file libmae: dist/libmae.c (every src/*/*.c, every kernel tier) and dist/mae.h.

    python3 tools/amalgamate.py [--out dist]        (`make amalgamation`)
    cc -O2 -c dist/libmae.c                          (any C11 compiler; docs/BUILDING.md)

How the separate translation units become one:
  * Shared headers (those a non-kernel-tier file includes: util.h, model.h, mae.h, ...) are
    pasted once, at the top, in include order. The headers only the tier files use (simd_*.h,
    tmpl_*.h) are pasted into every tier file that includes them, as the preprocessor would.
  * Each source file is one section. The macros a section defines are #undef'd after it, so the
    next file starts clean (the templates redefine VL, ISA, MR... per instruction set).
  * File-scope names that two sections define (static functions and variables, typedefs, tags,
    enum constants: vload, vf, vexp...) are renamed in those sections to <dir>_<file>__<name>.
    Names already unique stay as they are.
  * A file named *_avx2.c / *_avx512.c / *_avx512bf16.c is compiled for x86-64 only, inside a target region
    (#pragma GCC target for GCC, #pragma clang attribute for clang; MSVC needs none, its
    intrinsics work without /arch); *_neon.c, *_neonbf16.c for aarch64 only. The system headers of a tier
    file are included before its region, so that intrinsics headers are read without the target.
  * Feature-test macros (_POSIX_C_SOURCE, _GNU_SOURCE...) go to the very top, as the Makefile's
    -D_POSIX_C_SOURCE=200809L does (those inside a conditional stay where they are).
  * Files that include <windows.h> come last: its macros (min, max, near...) reach no other file.
The script fails, naming the file, on what it cannot handle (a system include inside a
conditional of a tier file, a section redefining a shared header's macro).
"""
import argparse
import glob
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INCLUDE_DIRS = [os.path.join(ROOT, "include"), os.path.join(ROOT, "src")]

ISA = {   # file suffix -> (architecture guard, GCC target, clang target)
    "avx2": ("defined(__x86_64__) || defined(_M_X64)", "avx2,fma"),
    "avx512": ("defined(__x86_64__) || defined(_M_X64)", "avx512f,avx512vl,avx512dq,avx2,fma"),
    "neon": ("defined(__aarch64__)", None),   # NEON is part of the aarch64 baseline
    "avx512bf16": ("defined(__x86_64__) || defined(_M_X64)",
                   "avx512f,avx512vl,avx512dq,avx512bw,avx512bf16,avx2,fma"),
    "neonbf16": ("defined(__aarch64__)", "arch=armv8.2-a+bf16"),   # BFDOT: the BF16 extension
}
FEATURE_MACRO = re.compile(r"^(_[A-Z0-9_]*_SOURCE|_FILE_OFFSET_BITS)$")

INCLUDE_RE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')
DEFINE_RE = re.compile(r"^\s*#\s*define\s+([A-Za-z_]\w*)")
COND_OPEN_RE = re.compile(r"^\s*#\s*if(n?def)?\b")
COND_CLOSE_RE = re.compile(r"^\s*#\s*endif\b")
# comments, string and character literals, identifiers, and anything else one character at a time
TOKEN_RE = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|[A-Za-z_]\w*|\s+|.',
                      re.S)


def fail(msg):
    sys.exit("amalgamate: " + msg)


def rel(path):
    return os.path.relpath(path, ROOT)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def resolve(name, from_file):
    for d in [os.path.dirname(from_file)] + INCLUDE_DIRS:
        p = os.path.normpath(os.path.join(d, name))
        if os.path.isfile(p):
            return p
    fail(f"{rel(from_file)}: cannot find \"{name}\"")


def local_includes(path):
    out = []
    for line in read(path).splitlines():
        m = INCLUDE_RE.match(line)
        if m and m.group(1) == '"':
            out.append(resolve(m.group(2), path))
    return out


def reach(path, seen):
    for h in local_includes(path):
        if h not in seen:
            seen.add(h)
            reach(h, seen)
    return seen


def isa_of(path):
    m = re.search(r"_(avx2|avx512|avx512bf16|neon|neonbf16)\.c$", path)
    return m.group(1) if m else None


def guard_depth(text):
    """1 when a header opens with an include guard (#ifndef X / #define X), else 0."""
    lines = [l for l in text.splitlines() if l.strip() and not l.strip().startswith(("/*", "*", "//"))]
    if len(lines) >= 2 and re.match(r"\s*#\s*ifndef\s+(\w+)", lines[0]):
        name = re.match(r"\s*#\s*ifndef\s+(\w+)", lines[0]).group(1)
        if re.match(r"\s*#\s*define\s+" + name + r"\b", lines[1]):
            return 1
    return 0


class Paster:
    """Pastes a file with its local includes resolved in place."""

    def __init__(self, shared):
        self.shared = shared      # headers that go to the top, once

    def paste(self, path, done, hoisted, is_tier):
        text = read(path)
        base = guard_depth(text) if path.endswith(".h") else 0
        depth = 0
        out = [f"/* ---- {rel(path)} ---- */"]
        for line in text.splitlines():
            if COND_OPEN_RE.match(line):
                depth += 1
            elif COND_CLOSE_RE.match(line):
                depth -= 1
            m = INCLUDE_RE.match(line)
            if m and m.group(1) == '"':
                h = resolve(m.group(2), path)
                if h in self.shared and hoisted is not None:   # a section: the top has it
                    continue
                if h not in done:
                    done.add(h)
                    out.append(self.paste(h, done, hoisted, is_tier))
                continue
            if m and is_tier:
                if depth > base:
                    fail(f"{rel(path)}: a system include inside a conditional in a tier file")
                if line.strip() not in hoisted:
                    hoisted.append(line.strip())
                continue
            d = DEFINE_RE.match(line)
            if d and FEATURE_MACRO.match(d.group(1)) and depth == base:
                FEATURES.append(line.strip())   # before every system header, as -D would be
                continue
            out.append(line)
        if path.endswith(".h"):
            # clang warns about unused static inline functions in the main file but not in
            # headers: a pasted header keeps the header's rule
            out = [CLANG_HEADER_OPEN] + out + [CLANG_HEADER_CLOSE]
        return "\n".join(out)


CLANG_HEADER_OPEN = ('#if defined(__clang__)\n#pragma clang diagnostic push\n'
                     '#pragma clang diagnostic ignored "-Wunused-function"\n#endif')
CLANG_HEADER_CLOSE = "#if defined(__clang__)\n#pragma clang diagnostic pop\n#endif"
FEATURES = []


def tokens(text):
    return TOKEN_RE.findall(text)


def code_tokens(text):
    """Identifiers and punctuation of the C code, without comments, literals or directives."""
    lines = []
    cont = False
    for line in text.splitlines():
        if cont or line.lstrip().startswith("#"):
            cont = line.rstrip().endswith("\\")
            continue
        lines.append(line)
    out = []
    for t in tokens("\n".join(lines)):
        if t.isspace() or t.startswith(("/*", "//")):
            continue
        if t[0] in "\"'":
            t = '""'
        out.append(t)
    return out


def is_ident(t):
    return re.match(r"[A-Za-z_]\w*$", t) is not None


TAG_KW = ("struct", "union", "enum")
KEYWORDS = set("""auto break case char const continue default do double else enum extern float for
goto if inline int long register restrict return short signed sizeof static struct switch typedef
union unsigned void volatile while _Bool _Complex _Atomic _Thread_local _Noreturn _Alignas
_Static_assert""".split())


def macro_call(toks, i):
    """toks[i] names a function-like macro's argument (ISA(name)): not a real name here."""
    return i >= 2 and toks[i - 1] == "(" and is_ident(toks[i - 2]) and toks[i - 2].isupper() \
        and i + 1 < len(toks) and toks[i + 1] == ")"


def declared_names(text):
    """File-scope names a section defines that could collide with another section's: static
    functions and variables, typedef names, struct/union/enum tags and enum constants."""
    toks = code_tokens(text)
    names = set()
    i, n = 0, len(toks)
    while i < n:
        # one top-level declaration: up to ';' at depth 0 or a function body
        j, depth, body = i, 0, None
        while j < n:
            t = toks[j]
            if t in "([":
                depth += 1
            elif t in ")]":
                depth -= 1
            elif t == "{":
                if depth == 0:
                    k, d = j, 0
                    while k < n:   # skip the braces
                        if toks[k] == "{":
                            d += 1
                        elif toks[k] == "}":
                            d -= 1
                            if d == 0:
                                break
                        k += 1
                    prev = toks[j - 1] if j > i else ""
                    tag_kw = None
                    if prev in TAG_KW:
                        tag_kw = prev
                    elif j - 2 >= i and toks[j - 2] in TAG_KW and is_ident(prev):
                        tag_kw = toks[j - 2]
                        names.add(prev)
                    elif prev == ")" and j - 5 >= i and toks[j - 5] in TAG_KW:
                        tag_kw = toks[j - 5]   # struct ISA(name) {: made unique by the macro
                    if tag_kw is None and prev == ")" and "=" not in toks[i:j]:
                        body = (j, k)   # a function definition
                        j = k
                        break
                    if tag_kw == "enum":
                        names.update(enum_constants(toks[j + 1:k]))
                    toks = toks[:j] + ["{}"] + toks[k + 1:]   # the body no longer matters here
                    n = len(toks)
                    j += 1
                    continue
                depth += 1
            elif t == "}":
                depth -= 1
            elif t == ";" and depth == 0:
                break
            j += 1
        decl = toks[i:j if body is None else body[0]]
        if decl:
            names.update(decl_names(decl))
        i = j + 1
    return names


def enum_constants(toks):
    out, expect = [], True
    depth = 0
    for t in toks:
        if t in "([{":
            depth += 1
        elif t in ")]}":
            depth -= 1
        elif depth == 0 and t == ",":
            expect = True
            continue
        if expect and depth == 0 and is_ident(t):
            out.append(t)
        expect = False
    return out


def strip_attributes(decl):
    """decl without its __attribute__((...)) groups, which are not names."""
    out, i = [], 0
    while i < len(decl):
        if decl[i] == "__attribute__" and i + 1 < len(decl) and decl[i + 1] == "(":
            depth, i = 0, i + 1
            while i < len(decl):
                depth += decl[i] == "("
                depth -= decl[i] == ")"
                i += 1
                if depth == 0:
                    break
            continue
        out.append(decl[i])
        i += 1
    return out


def decl_names(decl):
    decl = strip_attributes(decl)
    if "typedef" not in decl and "static" not in decl:
        return []   # extern definitions: unique by the linker already
    if "typedef" in decl:
        parts = [decl]
    else:
        parts, cur, depth = [], [], 0
        for t in decl:
            if t in "([{":
                depth += 1
            elif t in ")]}":
                depth -= 1
            if t == "," and depth == 0:
                parts.append(cur)
                cur = []
            else:
                cur.append(t)
        parts.append(cur)
    out = []
    for p in parts:
        if "=" in p:
            p = p[:p.index("=")]
        # the first '(' at depth 0: a function (name before it) or a pointer declarator (*name)
        if "(" in p:
            k = p.index("(")
            if k + 1 < len(p) and p[k + 1] == "*":
                m = k + 1
                while m < len(p) and p[m] in ("*", "const", "restrict", "volatile"):
                    m += 1
                if m < len(p) and is_ident(p[m]):
                    out.append(p[m])
                continue
            if k > 0 and is_ident(p[k - 1]) and p[k - 1] not in KEYWORDS:
                if p[k - 1].isupper():
                    continue   # NAME(...): a macro's expansion (ISA(name), entry generators), not a name
                out.append(p[k - 1])
            continue
        depth, last = 0, None
        for idx, t in enumerate(p):
            if t == "[":
                depth += 1
            elif t == "]":
                depth -= 1
            elif depth == 0 and is_ident(t) and t not in KEYWORDS and not macro_call(p, idx):
                last = t
        if last:
            out.append(last)
    return out


def rename(text, names, prefix):
    """Renames the identifiers in names, except after '.' or '->' (members), outside comments
    and literals; directives included, so macros that call the functions follow."""
    out = []
    prev = ""
    for t in tokens(text):
        if t in names and not prev in (".", "->"):
            out.append(prefix + t)
        else:
            out.append(t)
        if not t.isspace() and not t.startswith(("/*", "//")):
            prev = "->" if (prev == "-" and t == ">") else t
    return "".join(out)


def defined_macros(text):
    names = []
    for line in text.splitlines():
        m = DEFINE_RE.match(line)
        if m and m.group(1) not in names:
            names.append(m.group(1))
    return names


def target_open(gcc):
    return (f'#if defined(__clang__)\n'
            f'#pragma clang attribute push (__attribute__((target("{gcc}"))), apply_to = function)\n'
            f'#elif defined(__GNUC__)\n#pragma GCC push_options\n#pragma GCC target("{gcc}")\n#endif\n')


TARGET_CLOSE = ("#if defined(__clang__)\n#pragma clang attribute pop\n"
                "#elif defined(__GNUC__)\n#pragma GCC pop_options\n#endif\n")


def version():
    h = read(os.path.join(ROOT, "include", "mae.h"))
    # mae.h derives the string from the three numbers
    parts = [re.search(rf"#define MAE_VERSION_{k} (\d+)", h) for k in ("MAJOR", "MINOR", "PATCH")]
    if not all(parts):
        fail("include/mae.h: MAE_VERSION_MAJOR/MINOR/PATCH not found")
    return ".".join(m.group(1) for m in parts)


def git_describe():
    try:
        return subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "dist"))
    args = ap.parse_args()

    sources = sorted(glob.glob(os.path.join(ROOT, "src", "*", "*.c")))
    # <windows.h> defines macros such as min, max, near and far: files that include it go last,
    # so that no other file sees them (in separate translation units none would)
    sources.sort(key=lambda s: re.search(r"#\s*include\s*<windows\.h>", read(s), re.I) is not None)
    reached = {s: reach(s, set()) for s in sources}
    shared = set()
    for s in sources:
        if not isa_of(s):
            shared |= reached[s]
    paster = Paster(shared)

    # the top: shared headers in the order the sources include them
    done = set()
    top = []
    for s in sources:
        for h in local_includes(s) + [x for x in sorted(reached[s]) if x in shared]:
            if h in shared and h not in done:
                done.add(h)
                top.append(paster.paste(h, done, None, False))
    top_text = "\n".join(top)
    top_macros = set(defined_macros(top_text))

    # the sections
    sections = []
    for s in sources:
        hoisted = []
        text = paster.paste(s, set(), hoisted, isa_of(s) is not None)
        sections.append((s, text, hoisted))
    owners = {}
    for s, text, _ in sections:
        for name in declared_names(text):
            owners.setdefault(name, []).append(s)
    top_names = declared_names(top_text)
    # every identifier each section (and the top) uses: a file-scope name that another section
    # uses too is renamed, even if only a local variable there, so nothing shadows it (-Wshadow)
    used = {s: {t for t in code_tokens(text) if is_ident(t)} for s, text, _ in sections}
    top_used = {t for t in code_tokens(top_text) if is_ident(t)}

    out = []
    out.append(f"""/* libmae {version()} amalgamation ({git_describe()}): every source file of the library in one
 * translation unit, all kernel tiers included; written by tools/amalgamate.py from the
 * repository - edit the sources there, not this file. Build: cc -O2 -c libmae.c (add -fopenmp
 * for OpenMP threads; the Makefile builds with -std=c11). Needs GCC >= 4.9, clang or MSVC for
 * the AVX2/AVX-512 sections (target regions below). The public header is mae.h, beside this
 * file (its text is also inside). See docs/BUILDING.md, "One-file amalgamation". */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
/* Error texts are cut to their buffers on purpose; only one translation unit lets GCC see that
 * mae_last_error()'s buffer is longer than some of them. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 7
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif
/* MinGW's GCC reports, at the end of the unit, that the tier sections' vector-returning static
 * functions change the ABI outside a target region; they are static and called only inside their
 * own region, so no call crosses the boundary. */
#if defined(__GNUC__) && !defined(__clang__) && defined(_WIN32)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
""")
    body = []
    renamed = {}
    for s, text, hoisted in sections:
        stem = os.path.splitext(rel(s))[0].split(os.sep, 1)[1].replace(os.sep, "_")
        # a struct that a shared header declares opaque (typedef struct X X;) and this section
        # completes is the same type, not a collision
        completes = {n for n in top_used
                     if re.search(r"\bstruct\s+%s\s*\{" % re.escape(n), text)
                     and re.search(r"\bstruct\s+%s\s*(%s\s*)?;" % (re.escape(n), re.escape(n)), top_text)}
        collide = {n for n in declared_names(text)
                   if n not in completes and (len(set(owners[n])) > 1 or n in top_names or n in top_used
                                              or any(n in used[o] for o in sources if o != s))}
        if collide:
            prefix = stem + "__"
            text = rename(text, collide, prefix)
            renamed[rel(s)] = sorted(collide)
        # feature macros left in place (inside a conditional) stay defined, like system headers
        macros = [m for m in defined_macros(text) if not FEATURE_MACRO.match(m)]
        clash = [m for m in macros if m in top_macros]
        if clash:
            fail(f"{rel(s)} redefines {', '.join(clash)} from a shared header")
        isa = isa_of(s)
        chunk = []
        if isa:
            guard, gcc = ISA[isa]
            chunk.append(f"#if {guard}")
            chunk.extend(hoisted)
            if gcc:
                chunk.append(target_open(gcc))
        chunk.append(text)
        if isa and ISA[isa][1]:
            chunk.append(TARGET_CLOSE)
        chunk.extend(f"#undef {m}" for m in macros)
        if isa:
            chunk.append(f"#endif /* {guard} */")
        body.append("\n".join(chunk))

    for f in FEATURES:
        name = DEFINE_RE.match(f).group(1)
        if name != "_POSIX_C_SOURCE":
            out.append(f"#ifndef {name}\n{f}\n#endif")
    out.append(top_text)
    out.extend(body)

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "libmae.c"), "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
    with open(os.path.join(args.out, "mae.h"), "w", encoding="utf-8") as f:
        f.write(read(os.path.join(ROOT, "include", "mae.h")))
    n = sum(len(v) for v in renamed.values())
    print(f"amalgamate: {rel(os.path.join(args.out, 'libmae.c'))}: {len(sources)} files, "
          f"{n} file-scope names renamed in {len(renamed)} files")


if __name__ == "__main__":
    main()
