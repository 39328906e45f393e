"""
Releasing an assignment of the manifest (grader/assignments.py) to an instructor:
`python autograder.py --release ID --out DIR` calls `release(ID, DIR)`, which writes

    DIR/student/         the handout: the student files with the student work stubbed,
                         the support files, a README.md, collect_submission.py and the
                         handout's own checker autograder.py (grader/handout_check.py)
                         with its public cases in checks/cases.json + checks/fixtures.npz;
    DIR/solutions/       the student files with their solutions (for after the deadline);
    DIR/autograder.zip   the Gradescope package grading this assignment.

How a student file is reduced (`reduce_sources`): from the AST of the tracked file, keep
the module docstring, the assignment's student and provided definitions and the
transitive closure of the module-level names they use (also across the student files,
through `from X import name`); drop every other top-level statement and the imports
nothing kept uses. Kept code keeps its original text: the file is cut by the line ranges
of the AST, never unparsed. A definition that is student work in ANY assignment
(assignments.student_work()) is stubbed wherever it is kept: signature, decorators and
whole docstring unchanged, the body (and the comments in it) replaced by
`raise NotImplementedError("<name> is not implemented yet")`. A stub's body needs no
names, so the closure never follows it. Two exceptions to "drop unused imports":
- `from M import name` where M is a student module of the handout and `name` is shipped
  in M is kept when a stubbed body of the file used it: the student's code is expected
  to call those functions by these names (API.md: graders patch `rnn.temporal_fc_forward`).
- the solutions (`stub_own=False`) may need a module the handout does not ship (ConvNet
  trains with kernels.py's convolution): the definitions they need from it are reduced
  the same way and appended to the solution file that imports them (whose import of
  the module is dropped), so that the solution files alone are a complete submission;
  the summary lists such modules under `solution_extra_modules`. The handout does the
  same for the shared helpers its given code calls (HANDOUT_INLINE: validation.py,
  captions.py, randomness.py), and for nothing else.

Checks that make a release fail (ReleaseError, naming file and line):
- a file is not tracked by git, or the repository is not a git checkout;
- kept code needs a module the handout does not ship;
- kept text (code, docstrings, comments of the reduced student files, the README) names
  a Python file that is not in the handout (`kernels.py`, `tests/test_kernels.py`);
- a module of the handout does not import in a fresh interpreter, stubs in place;
- the handout's checker does not report NOT IMPLEMENTED for every student definition of
  the stubs, or prints a traceback;
- the leak scan (`leak_scan`) finds a problem;
- the Gradescope package holds a student file.
Reported in the summary's `warnings`, not refused: links to docs/*.md the handout does
not ship (the backward passes' "Derivation:" lines), Python files named by a support
file (shipped unchanged), and uncommitted changes in the released files.

Another assignment's student work that the closure needs is stubbed rather than refused:
the stub imports, its docstring says what it does, and this assignment's checker and
grader never call it (the only use in our files would be a provided definition calling
it, which then raises NotImplementedError when run; no current manifest entry does).

The public cases of the handout's checker are defined per assignment in CASE_TABLES
(below) and computed from our modules in a fresh interpreter.

A release is deterministic: files are written in sorted order with fixed contents (no
dates, no absolute paths), and every zip has fixed timestamps and permissions.
"""
import ast
import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from grader import assignments as manifest  # noqa: E402

ZIP_DATE = (2026, 1, 1, 0, 0, 0)    # the timestamp of every file in a zip we write
CHECKER_TEMPLATE = os.path.join(HERE, 'handout_check.py')
PROBES_SOURCE = os.path.join(HERE, 'probes.py')
CHECKER_NAME = 'autograder.py'
COLLECTOR_NAME = 'collect_submission.py'
SUBMISSION_ZIP = 'submission.zip'
# Modules of shared helpers (NumPy only, no layer or model code: argument checks, caption
# conventions, random initial weights) whose definitions that the handout's given code needs are appended to the handout file that needs them, as a
# solution's extra modules are: the student files stay self-contained (nothing to submit
# beside them, nothing for the grader to supply) and no reference code is copied.
HANDOUT_INLINE = ('validation.py', 'captions.py', 'randomness.py')


class ReleaseError(Exception):
    """The assignment cannot be released as it is; the message says which file and why."""


# =============================================================================== git

def tracked_files(repo):
    """The set of paths git tracks in repo (relative, '/'-separated); ReleaseError if
    repo is not a git checkout."""
    try:
        run = subprocess.run(['git', '-C', repo, 'ls-files', '-z'], capture_output=True,
                             timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ReleaseError(f"cannot list the tracked files of {repo}: {e}") from None
    top = subprocess.run(['git', '-C', repo, 'rev-parse', '--show-toplevel'],
                         capture_output=True, text=True, timeout=60)
    if run.returncode != 0 or top.returncode != 0:
        raise ReleaseError(f"{repo} is not a git checkout (git ls-files: "
                           f"{run.stderr.decode(errors='replace').strip()}): a release is built "
                           f"from tracked files only")
    if os.path.realpath(top.stdout.strip()) != os.path.realpath(repo):
        raise ReleaseError(f"{repo} is not the top of a git checkout ({top.stdout.strip()} is)")
    return {p for p in run.stdout.decode().split('\0') if p}


def read_tracked(repo, tracked, path):
    if path not in tracked:
        raise ReleaseError(f"{path} is not tracked by git in {repo}: a release ships tracked "
                           f"files only")
    with open(os.path.join(repo, path), encoding='utf-8') as f:
        return f.read()


# =============================================================================== AST helpers

def docstring_node(node):
    """The Expr holding node's docstring (module, class or function), or None."""
    body = getattr(node, 'body', None)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return body[0]
    return None


def first_line(node):
    """First line of a statement, decorators included."""
    return min([node.lineno] + [d.lineno for d in getattr(node, 'decorator_list', [])])


def bound_names(stmt):
    """Module-level names a statement defines (functions, classes, plain assignments)."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [stmt.name]
    targets = stmt.targets if isinstance(stmt, ast.Assign) else (
        [stmt.target] if isinstance(stmt, ast.AnnAssign) else [])
    names = []
    for target in targets:
        for node in ast.walk(target):
            if isinstance(node, ast.Name):
                names.append(node.id)
    return names


def imported_names(stmt):
    """{bound name: (source module or None for `import x`, imported name)} of an import."""
    if isinstance(stmt, ast.ImportFrom):
        return {a.asname or a.name: (stmt.module if stmt.level == 0 else None, a.name)
                for a in stmt.names}
    if isinstance(stmt, ast.Import):
        return {(a.asname or a.name.split('.')[0]): (None, a.name) for a in stmt.names}
    return {}


def names_in(nodes):
    """Every identifier read in the nodes (Name ids): a superset of the module-level
    names they need (a local that shadows a module name only keeps one too many)."""
    found = set()
    for node in nodes:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name):
                found.add(sub.id)
    return found


def signature_parts(fn):
    """The nodes of a function outside its body: decorators, defaults, annotations."""
    args = fn.args
    parts = list(fn.decorator_list) + list(args.defaults) + [d for d in args.kw_defaults if d]
    parts += [a.annotation for a in args.posonlyargs + args.args + args.kwonlyargs
              + [args.vararg, args.kwarg] if a is not None and a.annotation is not None]
    if fn.returns is not None:
        parts.append(fn.returns)
    return parts


class Source:
    """One tracked Python module: its text, lines, AST and module-level names."""

    def __init__(self, path, text):
        self.path, self.text = path, text
        self.lines = text.splitlines()
        try:
            self.tree = ast.parse(text, filename=path)
        except SyntaxError as e:
            raise ReleaseError(f"{path}:{e.lineno}: cannot parse: {e.msg}") from None
        self.doc = docstring_node(self.tree)
        self.body = [s for s in self.tree.body if s is not self.doc]
        self.defs = {}        # name -> [statements defining it]
        self.imports = {}     # bound name -> (statement, source module, imported name)
        for stmt in self.body:
            for name in bound_names(stmt):
                self.defs.setdefault(name, []).append(stmt)
            for name, (module, imported) in imported_names(stmt).items():
                self.imports[name] = (stmt, module, imported)

    def definition(self, qualname):
        """The FunctionDef/ClassDef of 'name' or 'Class.method'; ReleaseError if absent."""
        top, _, method = qualname.partition('.')
        node = next((s for s in self.defs.get(top, ())
                     if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))), None)
        if node is not None and method:
            node = next((s for s in node.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))
                         and s.name == method), None) if isinstance(node, ast.ClassDef) else None
        if node is None:
            raise ReleaseError(f"{self.path}: the manifest names {qualname}, which the file does "
                               f"not define")
        return node

    def extended_end(self, node, limit):
        """Last line of node including the comments indented deeper than it that follow
        its last statement (a body's trailing comments), before line `limit`."""
        end = node.end_lineno
        col = node.col_offset
        line_number = end
        while line_number < limit - 1 and line_number < len(self.lines):
            line = self.lines[line_number]
            stripped = line.strip()
            if stripped.startswith('#') and len(line) - len(line.lstrip()) > col:
                end = line_number + 1
            elif stripped:
                break
            line_number += 1
        return end


# =============================================================================== reduction

class Reduction:
    """The result of reducing the student files: {path: text} and what was stubbed."""

    def __init__(self):
        self.texts = {}          # path -> reduced text
        self.stubbed = {}        # path -> [qualified names stubbed]
        self.kept = {}           # path -> [top-level names kept]
        self.extra_modules = []  # modules outside the handout the reduction needed


def stub_text(source, fn, qualname):
    """The stub of function node fn: signature and decorators and whole docstring as
    written, the body replaced by raise NotImplementedError."""
    doc = docstring_node(fn)
    if doc is None:
        raise ReleaseError(f"{source.path}:{fn.lineno}: {qualname} is student work but has no "
                           f"docstring: its docstring is all the handout says about it")
    indent = source.lines[doc.lineno - 1][:doc.col_offset]
    kept = source.lines[first_line(fn) - 1:doc.end_lineno]
    return kept + [f'{indent}raise NotImplementedError("{qualname} is not implemented yet")']


def statement_lines(source, stmt, stubs, limit):
    """The text lines of a kept top-level statement, stubbing the functions and methods
    whose qualified names are in stubs."""
    start, end = first_line(stmt), source.extended_end(stmt, limit)
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name in stubs:
        return stub_text(source, stmt, stmt.name)
    lines = source.lines[start - 1:end]
    if isinstance(stmt, ast.ClassDef):
        methods = [m for m in stmt.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))]
        # replace from the last method up, so that earlier line numbers stay valid
        for i in reversed(range(len(methods))):
            method = methods[i]
            qualname = f"{stmt.name}.{method.name}"
            if qualname not in stubs:
                continue
            following = [s.lineno for s in stmt.body if s.lineno > method.end_lineno]
            m_end = source.extended_end(method, min(following) if following else end + 1)
            lines[first_line(method) - start:m_end - start + 1] = stub_text(source, method, qualname)
    return lines


def import_lines(source, stmt, keep_names):
    """The import statement's text with only the aliases bound to keep_names; the
    original text when all of them are kept."""
    names = imported_names(stmt)
    kept = [a for a in stmt.names
            if (a.asname or (a.name if isinstance(stmt, ast.ImportFrom) else a.name.split('.')[0]))
            in keep_names]
    if len(kept) == len(names):
        return source.lines[stmt.lineno - 1:stmt.end_lineno]
    spelled = [a.name + (f" as {a.asname}" if a.asname else '') for a in kept]
    if isinstance(stmt, ast.Import):
        return [f"import {', '.join(spelled)}"]
    module = '.' * stmt.level + (stmt.module or '')
    if stmt.end_lineno > stmt.lineno:   # written one name per line: keep that style
        return [f"from {module} import ("] + [f"    {s}," for s in spelled] + [")"]
    return [f"from {module} import {', '.join(spelled)}"]


def reduce_sources(assignment, repo, tracked, stub_own=True):
    """
    Reduce the assignment's student files (see the module docstring). stub_own=True
    gives the handout; False the solutions (the assignment's own student work whole,
    other assignments' student work still stubbed). Returns a Reduction.
    """
    handout_paths = [f.path for f in assignment.student_files]
    own = {(f.path, n) for f in assignment.student_files for n in f.student}
    every = manifest.student_work()
    sources = {}

    def source(path):
        if path not in sources:
            sources[path] = Source(path, read_tracked(repo, tracked, path))
        return sources[path]

    def stubs_of(path):
        return {n for p, n in every if p == path and not (not stub_own and (p, n) in own)}

    keep = {}          # path -> kept top-level names
    used_imports = {}  # path -> import-bound names kept code uses
    pending = []
    for f in assignment.student_files:
        src = source(f.path)
        keep.setdefault(f.path, set())
        for qualname in f.student + f.provided:
            src.definition(qualname)   # exists, or ReleaseError
            pending.append((f.path, qualname.partition('.')[0]))

    stub_body_names = {}   # path -> names read by the bodies a stub removed
    while pending:
        path, name = pending.pop()
        src = source(path)
        if name in keep.setdefault(path, set()) and name in src.defs:
            continue
        if name not in src.defs:
            continue
        keep[path].add(name)
        stubs = stubs_of(path)
        needed = set()
        for stmt in src.defs[name]:
            for part, stubbed in _parts(stmt, stubs):
                (stub_body_names.setdefault(path, set()).update if stubbed else needed.update)(
                    names_in(part))
        for used in sorted(needed):
            if used in src.defs:
                pending.append((path, used))
            elif used in src.imports:
                stmt, module, imported = src.imports[used]
                used_imports.setdefault(path, set()).add(used)
                first_party = module is not None and module + '.py' in tracked
                if first_party:
                    target = module + '.py'
                    if target not in handout_paths and stub_own and target not in HANDOUT_INLINE:
                        raise ReleaseError(
                            f"{path}:{stmt.lineno}: kept code ({name}) needs {imported} from "
                            f"{target}, which the handout does not ship; stub or provide it")
                    pending.append((target, imported))
                elif isinstance(stmt, ast.Import) and stmt.names[0].name + '.py' in tracked:
                    raise ReleaseError(f"{path}:{stmt.lineno}: `import {stmt.names[0].name}` of "
                                       f"a first-party module: write `from ... import name`")

    reduction = Reduction()
    inline = {}   # handout path -> modules outside the handout whose definitions it needs
    for path in sorted(keep, key=lambda p: (p not in handout_paths, p)):
        src = source(path)
        if path not in handout_paths:
            reduction.extra_modules.append(path)
        stubs = stubs_of(path)
        keep_imports = set(used_imports.get(path, ()))
        if path in handout_paths and 'np' in src.imports:
            keep_imports.add('np')   # every student file may need NumPy
        for name in stub_body_names.get(path, ()):   # imports the student's code will call
            if name in src.imports:
                _, module, imported = src.imports[name]
                if module is not None and module + '.py' in handout_paths \
                        and imported in keep.get(module + '.py', ()):
                    keep_imports.add(name)
        spec = next((f for f in assignment.student_files if f.path == path), None)
        if spec is not None and spec.docstring:   # the handout's own account of the file
            out = ['"""'] + spec.docstring.strip('\n').split('\n') + ['"""']
        else:
            out = src.lines[:src.doc.end_lineno] if src.doc is not None else []
        stubbed = []
        gap = False   # a dropped statement was set off by a blank line: keep the gap

        def emit(leading, lines):
            nonlocal gap
            if gap and out and (not leading or leading[0].strip()):
                leading = [''] + leading
            gap = False
            out.extend(leading + lines)
        for i, stmt in enumerate(src.body):
            limit = first_line(src.body[i + 1]) if i + 1 < len(src.body) else len(src.lines) + 1
            previous_end = src.extended_end(src.body[i - 1], first_line(stmt)) if i else (
                src.doc.end_lineno if src.doc is not None else 0)
            leading = src.lines[previous_end:first_line(stmt) - 1]
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                module = stmt.module if isinstance(stmt, ast.ImportFrom) and stmt.level == 0 else None
                if module and module + '.py' in keep and module + '.py' not in handout_paths:
                    # an import of a module the handout does not ship: the module's
                    # needed definitions are inlined below instead (an inlined module's
                    # own such imports are inlined with it)
                    inline.setdefault(path, []).append(module + '.py')
                    continue
                is_future = isinstance(stmt, ast.ImportFrom) and stmt.module == '__future__'
                if is_future or keep_imports & set(imported_names(stmt)):
                    emit(leading, import_lines(src, stmt, keep_imports if not is_future
                                               else set(imported_names(stmt))))
                else:
                    gap = gap or bool(leading and not leading[0].strip())
                continue
            names = bound_names(stmt)
            if not names or not all(n in keep[path] for n in names):
                gap = gap or bool(leading and not leading[0].strip())
                continue
            emit(leading, statement_lines(src, stmt, stubs, limit))
            for node in [stmt] + (stmt.body if isinstance(stmt, ast.ClassDef) else []):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                qual = node.name if node is stmt else f"{stmt.name}.{node.name}"
                if qual in stubs:
                    stubbed.append(qual)
        # the handout's added imports are for the student's code; the solutions import what
        # they use
        reduction.texts[path] = with_imports(tidy(out), spec.imports if spec and stub_own else ())
        reduction.stubbed[path] = stubbed
        reduction.kept[path] = sorted(keep[path])
    def needed_modules(path, found):
        for module in inline.get(path, ()):
            if module not in found:
                found.append(module)
                needed_modules(module, found)
        return found
    for path in handout_paths:
        for module in needed_modules(path, []):
            reduction.texts[path] = inlined(reduction.texts[path], module,
                                            reduction.texts[module], source(path))
    for module in reduction.extra_modules:
        del reduction.texts[module]
    return reduction


def with_imports(text, imports):
    """text with the import lines `imports` (what the student's code is expected to use)
    added after its last top-level import, or after its docstring."""
    if not imports:
        return text
    tree = ast.parse(text)
    ends = [n.end_lineno for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    doc = docstring_node(tree)
    after = max(ends) if ends else (doc.end_lineno if doc is not None else 0)
    lines = text.split('\n')
    return '\n'.join(lines[:after] + list(imports) + lines[after:])


def inlined(text, module, module_text, importer):
    """text (a reduced solution) with the reduced definitions of `module` (which the
    handout does not ship) appended, so that the solution file is a complete submission;
    ReleaseError if a name of the module clashes with one of the file."""
    tree = ast.parse(module_text)
    doc = docstring_node(tree)
    names = {n for stmt in tree.body for n in bound_names(stmt)}
    names |= {n for stmt in tree.body for n in imported_names(stmt)}
    own = {n for stmt in ast.parse(text).body for n in bound_names(stmt)}
    own |= {n for stmt in ast.parse(text).body for n in imported_names(stmt)}
    clash = sorted(n for n in names & own
                   if not _same_import(tree, ast.parse(text), n))
    if clash:
        raise ReleaseError(f"{importer.path}: inlining the definitions it needs from {module} "
                           f"(not in the handout) would clash with its names {', '.join(clash)}")
    # its imports join the file's own (those the file lacks, after its last import), so
    # that no import stands in the middle of the file; its definitions go at the end
    lines = module_text.splitlines()
    imports = [stmt for stmt in tree.body if isinstance(stmt, (ast.Import, ast.ImportFrom))]
    skip = {i for stmt in imports for i in range(stmt.lineno - 1, stmt.end_lineno)}
    body_lines = [line for i, line in enumerate(lines)
                  if i >= (doc.end_lineno if doc is not None else 0) and i not in skip]
    text_tree = ast.parse(text)
    have = {ast.dump(stmt) for stmt in text_tree.body if isinstance(stmt, (ast.Import, ast.ImportFrom))}
    missing = [stmt for stmt in imports if ast.dump(stmt) not in have]
    standard = [ast.get_source_segment(module_text, stmt) for stmt in missing if _is_stdlib(stmt)]
    others = [ast.get_source_segment(module_text, stmt) for stmt in missing if not _is_stdlib(stmt)]
    text = with_imports(text, others)
    if standard:   # the standard library's imports come first, in a group of their own
        text_lines = text.split('\n')
        first = min((stmt.lineno for stmt in ast.parse(text).body
                     if isinstance(stmt, (ast.Import, ast.ImportFrom))), default=None)
        if first is None:
            text = with_imports(text, standard)
        else:
            text = '\n'.join(text_lines[:first - 1] + standard + [''] + text_lines[first - 1:])
    header = [f"# ----------------------------------------------------------------------------- "
              f"from {module[:-3]}", f"# (shipped here rather than as a file of its own: the "
                                     f"code above needs these)"]
    return tidy(text.splitlines() + ['', ''] + header + body_lines)


def _is_stdlib(stmt):
    """True if the import statement imports from Python's standard library."""
    name = (stmt.names[0].name if isinstance(stmt, ast.Import) else stmt.module or '').split('.')[0]
    if hasattr(sys, 'stdlib_module_names'):   # Python 3.10+
        return name in sys.stdlib_module_names
    import importlib.util
    spec = importlib.util.find_spec(name)
    return bool(spec and spec.origin and 'site-packages' not in spec.origin
                and os.path.dirname(spec.origin) != REPO)


def _same_import(tree_a, tree_b, name):
    """True if both modules bind name by the same import (e.g. both `import numpy as np`)."""
    def binding(tree):
        for stmt in tree.body:
            if name in imported_names(stmt):
                return imported_names(stmt)[name]
        return None
    a = binding(tree_a)
    return a is not None and a == binding(tree_b)


def _parts(stmt, stubs):
    """[(nodes, stubbed)] of a kept statement: the parts whose names the closure follows
    (stubbed False) and the bodies a stub removes (stubbed True)."""
    def function_parts(fn, qualname):
        if qualname in stubs:
            doc = docstring_node(fn)
            return [(signature_parts(fn), False), ([s for s in fn.body if s is not doc], True)]
        return [([fn], False)]

    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return function_parts(stmt, stmt.name)
    if isinstance(stmt, ast.ClassDef):
        parts = [(list(stmt.decorator_list) + list(stmt.bases) + list(stmt.keywords), False)]
        for node in stmt.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                parts += function_parts(node, f"{stmt.name}.{node.name}")
            else:
                parts.append(([node], False))
        return parts
    return [([stmt], False)]


def tidy(lines):
    """Join lines: at most two blank lines in a row, none at the end, one final newline."""
    out, blanks = [], 0
    for line in lines:
        line = line.rstrip()
        blanks = blanks + 1 if not line else 0
        if blanks <= 2:
            out.append(line)
    while out and not out[-1]:
        out.pop()
    return '\n'.join(out) + '\n'


# =============================================================================== text checks

PY_REFERENCE = re.compile(r"(?<![\w./-])((?:[\w-]+/)*[A-Za-z_][\w-]*\.py)\b")


def foreign_module_references(path, text, shipped):
    """Problems 'path:line: names X.py, which the handout does not ship' for every
    Python file named in text (code, docstrings, comments) that is not in `shipped`."""
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in PY_REFERENCE.finditer(line):
            if match.group(1) not in shipped:
                problems.append(f"{path}:{number}: names {match.group(1)}, which the handout "
                                f"does not ship: {line.strip()}")
    return problems


# =============================================================================== leak scan

TRIVIAL = re.compile(r"""^(
    pass | return | continue | break | else: | try: | finally: | [\)\]\}]+[,:]?
  | return\s+[A-Za-z_]\w*(\s*,\s*[A-Za-z_]\w*)*      # return out, cache
  | [A-Za-z_]\w*(\s*,\s*[A-Za-z_]\w*)*\s*=\s*(None|True|False|-?\d+(\.\d*)?|\[\]|\{\}|\(\))
                                                       # dx = None, total = 0
  | [A-Za-z_]\w*(\s*,\s*[A-Za-z_]\w*)*\s*=\s*[A-Za-z_]\w*   # x, w, b = cache
  | [A-Za-z_]\w*(\s*,\s*[A-Za-z_]\w*)*\s*=\s*[A-Za-z_]\w*\.shape   # N, D = x.shape
)$""", re.X)


def significant_lines(source, node):
    """
    The significant lines of a definition's body, for the leak scan: each line of the
    body (of every method, for a class) stripped, without its trailing comment; left out
    are docstrings (of nested functions too), blank and comment-only lines, and trivial
    lines that any implementation of the signature writes (TRIVIAL: pass, return of bare
    names like `return out, cache`, a name set to a constant like `dx = None`, names
    unpacked from one name like `x, w, b = cache` or from a shape like `N, D = x.shape`,
    closing brackets).
    """
    docs = set()
    for sub in ast.walk(node):
        doc = docstring_node(sub) if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                       ast.ClassDef)) else None
        if doc is not None:
            docs.update(range(doc.lineno, doc.end_lineno + 1))
    own_doc = docstring_node(node)
    body = [s for s in node.body if s is not own_doc]
    if not body:
        return []
    lines = []
    for number in range(body[0].lineno, node.end_lineno + 1):
        if number in docs:
            continue
        line = strip_comment(source.lines[number - 1]).strip()
        if line and not TRIVIAL.match(line):
            lines.append(line)
    return lines


def strip_comment(line):
    """line without a trailing `# comment` (a '#' inside a string literal is kept)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in '"\'':
            quote = ch
        elif ch == '#':
            return line[:i]
    return line


def code_lines(source, node):
    """Every stripped code line of a node (no docstrings, comments or blanks)."""
    docs = set()
    for sub in ast.walk(node):
        doc = docstring_node(sub) if isinstance(sub, (ast.Module, ast.FunctionDef,
                                                       ast.AsyncFunctionDef, ast.ClassDef)) else None
        if doc is not None:
            docs.update(range(doc.lineno, doc.end_lineno + 1))
    start = node.lineno if not isinstance(node, ast.Module) else 1
    end = node.end_lineno if not isinstance(node, ast.Module) else len(source.lines)
    return {strip_comment(source.lines[n - 1]).strip() for n in range(start, end + 1)
            if n not in docs} - {''}


def forbidden_lines(repo, tracked):
    """
    {line: what it reveals} for the leak scan: the significant lines of our solution of
    every student definition of every assignment, and the code lines of
    grader/references.py (whose loop references are solutions too).

    Left out are the lines our own non-student code also contains (as a line or part of
    one): that of the non-student definitions of the student files and of the support
    files. Such a line is an idiom the course ships anyway (`x = real_array("x", x)`,
    `self.params = {`), not a solution. So are the lines that a student definition's
    docstring spells out (batchnorm_backward's walk through the graph holds
    `dxhat = dout * gamma`): the docstring is the specification, shipped whole by design,
    and a line that restates it reveals nothing the handout does not already say.
    """
    every = manifest.student_work()
    student_paths = sorted({p for p, _ in every})
    support = sorted({s for a in manifest.ASSIGNMENTS.values() for s in a.support_files
                      if s.endswith('.py') and s in tracked})
    shared = set()
    secret = {}
    for path in student_paths:
        src = Source(path, read_tracked(repo, tracked, path))
        for qualname in sorted(n for p, n in every if p == path):
            node = src.definition(qualname)
            for line in significant_lines(src, node):
                secret.setdefault(line, f"our solution of {qualname} ({path})")
            doc = docstring_node(node)
            if doc is not None:   # the specification every handout ships whole
                shared.add(doc.value.value)
        for stmt in src.body:
            for name in bound_names(stmt):
                if (path, name) in every:
                    continue
                if isinstance(stmt, ast.ClassDef):
                    for node in stmt.body:
                        if (path, f"{name}.{getattr(node, 'name', '')}") not in every:
                            shared |= code_lines(src, node)
                else:
                    shared |= code_lines(src, stmt)
    for path in support:
        src = Source(path, read_tracked(repo, tracked, path))
        shared |= code_lines(src, src.tree)
    references = 'grader/references.py'
    if references in tracked:
        src = Source(references, read_tracked(repo, tracked, references))
        for stmt in src.body:
            if isinstance(stmt, (ast.FunctionDef, ast.ClassDef)):
                for line in significant_lines(src, stmt):
                    secret.setdefault(line, f"grader/references.py ({stmt.name})")
    shared_text = '\n'.join(sorted(shared))
    return {line: what for line, what in secret.items() if line not in shared_text}


def searchable_text(path):
    """The text of a handout file as a reader sees it: JSON (notebooks, cases.json)
    decoded to its strings, other text files as they are; None for binary files."""
    with open(path, 'rb') as f:
        data = f.read()
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError:
        return None
    if path.endswith(('.json', '.ipynb')):
        try:
            strings = []

            def walk(value):
                if isinstance(value, str):
                    strings.append(value)
                elif isinstance(value, list):
                    for v in value:
                        walk(v)
                elif isinstance(value, dict):
                    for k, v in value.items():
                        walk(k)
                        walk(v)
            walk(json.loads(text))
            return text + '\n' + '\n'.join(strings)
        except ValueError:
            return text
    return text


def leak_scan(student_dir, repo=None):
    """
    Problems of a handout folder, as a list of strings (empty: no leak found):
    - a file holds a significant line (`forbidden_lines`) of our solution of any student
      definition of any assignment, or of grader/references.py: searched as a substring,
      so a line pasted into a comment, a notebook, the README or cases.json is found;
    - kernels.py, a grader/ folder or a file of grader/, bytecode (*.pyc, __pycache__).
    """
    repo = os.path.abspath(repo or REPO)
    tracked = tracked_files(repo)
    secret = forbidden_lines(repo, tracked)
    grader_files = {os.path.basename(p) for p in tracked if p.startswith('grader/')} - {
        '__init__.py'}
    problems = []
    for path in walk_files(student_dir):
        name = os.path.basename(path)
        parts = path.split('/')
        if '__pycache__' in parts or name.endswith(('.pyc', '.pyo')):
            problems.append(f"{path}: bytecode has no place in a handout")
            continue
        if name == 'kernels.py':
            problems.append(f"{path}: kernels.py (our fast layers) is not handed out")
        shipped_on_purpose = path in (CHECKER_NAME, 'checks/probes.py')   # no solution in either
        if 'grader' in parts[:-1] or (name in grader_files and not shipped_on_purpose):
            problems.append(f"{path}: grader code is not handed out")
        text = searchable_text(os.path.join(student_dir, path))
        if text is None:
            continue
        for line, what in secret.items():
            index = text.find(line)
            if index >= 0:
                number = text.count('\n', 0, index) + 1
                problems.append(f"{path}:{number}: holds a line of {what}: {line}")
    return problems


def walk_files(folder):
    """Relative paths ('/'-separated) of every file under folder, sorted."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            found.append(os.path.relpath(os.path.join(root, name), folder).replace(os.sep, '/'))
    return sorted(found)


# =============================================================================== writing

def write_text(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w', encoding='utf-8', newline='\n') as f:
        f.write(text)


def copy_tracked(repo, tracked, path, destination):
    """Copy a tracked file or every tracked file under a tracked folder; returns the
    copied paths."""
    files = [path] if path in tracked else sorted(p for p in tracked if p.startswith(path + '/'))
    if not files:
        raise ReleaseError(f"support file {path} is not tracked by git in {repo}")
    for name in files:
        target = os.path.join(destination, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(repo, name), target)
    return files


def clear_notebook(text, path):
    """A notebook's JSON with every output and execution count cleared."""
    try:
        notebook = json.loads(text)
    except ValueError as e:
        raise ReleaseError(f"{path}: not a notebook (invalid JSON: {e})") from None
    for cell in notebook.get('cells', []):
        if cell.get('cell_type') == 'code':
            cell['outputs'] = []
            cell['execution_count'] = None
    return json.dumps(notebook, indent=1, ensure_ascii=False, sort_keys=True) + '\n'


def fixed_zip(path, files):
    """Write a zip of {name: bytes} with fixed timestamps and permissions, sorted."""
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as z:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.external_attr = (0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, files[name])


def deterministic_npz(arrays):
    """np.savez's bytes for arrays, its zip members re-stamped with ZIP_DATE (np.savez
    stamps them with the current time)."""
    import numpy as np
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    with zipfile.ZipFile(buffer) as z:
        members = {name: z.read(name) for name in z.namelist()}
    out = io.BytesIO()
    fixed_zip(out, members)
    return out.getvalue()


# =============================================================================== README, collector

def readme_text(assignment, reduction, case_names):
    files = []
    for f in assignment.student_files:
        files.append(f"### {f.path}\n")
        files.append("Write:\n" + ''.join(f"- `{n}`\n" for n in f.student))
        # a provided class whose methods are student work is the frame of those methods
        given = [n for n in f.provided if not any(w.startswith(n + '.') for w in f.student)]
        if given:
            files.append("\nGiven, already written: " + ', '.join(f"`{n}`" for n in given) + ".\n")
        files.append("\nEverything else in the file is given too; your code may use it, and "
                     "import any function of the other files here (e.g. "
                     "`from layers import conv_forward`).\n\n")
    support = ''.join(f"- `{s}`\n" for s in assignment.support_files)
    notebooks = ''.join(f"- `{s}`\n" for s in assignment.notebooks)
    example = case_names[0] if case_names else ''
    return f"""# {assignment.title}

Assignment `{assignment.id}`. Fill in every function that raises
`NotImplementedError`; keep the signatures and docstrings as they are.

## What your code must do

{assignment.contract}

## Your files

{''.join(files)}## Files you are given

{support}{notebooks}- `{CHECKER_NAME}`: the public checks (`checks/` holds their inputs and expected values)
- `{COLLECTOR_NAME}`: makes the zip you upload

## Checking your work

    python {CHECKER_NAME}             # every definition: PASS, FAIL (and why) or NOT IMPLEMENTED
    python {CHECKER_NAME} {example}    # one definition (or several)

The checker runs your code in your own Python process with NumPy. A FAIL line says which
case failed and by how much (for gradients, the relative error against a numeric
gradient of your own forward pass), or which exception your code raised, and where. The
exit code is 0 only when everything passes. These are the public checks: the grader
runs more, on other inputs.

## Submitting

    python {COLLECTOR_NAME}

writes `{SUBMISSION_ZIP}` with exactly your files ({', '.join(f.path for f in assignment.student_files)});
upload it to Gradescope.
"""


COLLECTOR = '''"""
Zip the student files of this assignment into {zip_name}, for upload to Gradescope.

    python {collector}

Refuses (exit code 1) when one of them is missing. Standard library only.
"""
import os
import sys
import zipfile

STUDENT_FILES = {files}
HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    missing = [name for name in STUDENT_FILES if not os.path.isfile(os.path.join(HERE, name))]
    if missing:
        print("Cannot make {zip_name}: missing " + ", ".join(missing)
              + " (they must be in " + HERE + ")")
        return 1
    path = os.path.join(HERE, "{zip_name}")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name in STUDENT_FILES:
            z.write(os.path.join(HERE, name), name)
    print("Wrote " + path + " with " + ", ".join(STUDENT_FILES) + ": upload it to Gradescope.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def collector_text(assignment):
    return COLLECTOR.format(zip_name=SUBMISSION_ZIP, collector=COLLECTOR_NAME,
                            files=repr(tuple(f.path for f in assignment.student_files)))


# =============================================================================== verification

def python_command(code):
    """Run `code` in a fresh isolated interpreter (-I: no user site, no PYTHONPATH, no
    script folder); `code` puts on sys.path what it needs."""
    return [sys.executable, '-I', '-c', code]


def verify_imports(folder, label):
    """Every .py module at the top of folder imports in a fresh interpreter whose path
    holds folder (and no other first-party module); ReleaseError naming the module."""
    for name in sorted(os.listdir(folder)):
        if not name.endswith('.py'):
            continue
        module = name[:-3]
        run = subprocess.run(python_command(
            f"import sys; sys.path.insert(0, {folder!r}); import {module}"),
            cwd=folder, capture_output=True, text=True, timeout=120,
            env=dict(os.environ, PYTHONPATH=folder, PYTHONDONTWRITEBYTECODE='1'))
        if run.returncode != 0:
            last = run.stderr.strip().splitlines()[-1:] or ['(no message)']
            raise ReleaseError(f"{label}/{name} does not import with the stubs in place: "
                               f"{last[0]}")


def run_checker(folder, timeout=120):
    """Run the handout's checker in folder: (exit code, stdout + stderr)."""
    run = subprocess.run([sys.executable, '-I', CHECKER_NAME], cwd=folder, capture_output=True,
                         text=True, timeout=timeout, env=dict(os.environ, PYTHONDONTWRITEBYTECODE='1'))
    return run.returncode, run.stdout + run.stderr


def remove_bytecode(folder):
    for root, dirs, files in os.walk(folder):
        for d in list(dirs):
            if d == '__pycache__':
                shutil.rmtree(os.path.join(root, d))
                dirs.remove(d)
        for f in files:
            if f.endswith(('.pyc', '.pyo')):
                os.unlink(os.path.join(root, f))


# =============================================================================== fixtures

def write_fixtures(assignment, repo, checks_dir):
    """Compute the public cases from our modules in repo, in a fresh interpreter (our
    modules import each other by name, so they must not meet another folder's), and
    write checks/cases.json and checks/fixtures.npz."""
    code = (f"import sys; sys.path[:0] = [{repo!r}, {REPO!r}]\n"
            f"from grader import release\n"
            f"release.write_cases({assignment.id!r}, {checks_dir!r})\n")
    run = subprocess.run(python_command(code), cwd=repo, capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, PYTHONDONTWRITEBYTECODE='1'))
    if run.returncode != 0:
        raise ReleaseError(f"computing the public cases of {assignment.id} from our modules "
                           f"failed:\n{run.stderr.strip()[-2000:]}")


# =============================================================================== Gradescope

def gradescope_zip(assignment, repo, path):
    """autograder.gradescope_package(path, assignment=ID), run in a fresh interpreter;
    ReleaseError if the zip holds a student file of any assignment (or kernels.py).
    Returns (the assignment's maximum score as the grader selects its tests, or None;
    the zip's file names)."""
    code = (f"import sys; sys.path.insert(0, {repo!r})\n"
            f"import autograder\n"
            f"autograder.gradescope_package({path!r}, assignment={assignment.id!r})\n"
            f"try:  # the maximum the grader gives (unknown to an older grader)\n"
            f"    from grader import assignments\n"
            f"    chosen = autograder.select(assignment=assignments.get({assignment.id!r}))\n"
            f"    print(sum(points for _, points, _ in chosen))\n"
            f"except Exception:\n"
            f"    print('unknown')\n")
    run = subprocess.run(python_command(code), cwd=repo, capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, PYTHONDONTWRITEBYTECODE='1'))
    if run.returncode != 0:
        raise ReleaseError(f"autograder.gradescope_package(..., assignment={assignment.id!r}) "
                           f"failed: {run.stderr.strip().splitlines()[-1:]}")
    forbidden = {f.path for a in manifest.ASSIGNMENTS.values() for f in a.student_files}
    forbidden |= {'kernels.py'}
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    held = sorted(n for n in names if n in forbidden
                  or (os.path.basename(n) in forbidden and not n.startswith('grader/')))
    if held:
        raise ReleaseError(f"{path} holds student files with their solutions: {', '.join(held)}")
    points = run.stdout.strip().splitlines()[-1:] or ['']
    return int(points[0]) if points[0].isdigit() and int(points[0]) > 0 else None, sorted(names)


# =============================================================================== release

def release(assignment_id, out_dir, repo=None):
    """
    Release assignment `assignment_id` into out_dir (created; its student/ and
    solutions/ folders and autograder.zip are replaced). Returns a summary dict:
    assignment, title, student (handout files), solutions (files), stubbed (per file),
    solution_extra_modules, autograder_zip, max_points (None if unknown), warnings.
    Raises ReleaseError naming the file and the problem.
    """
    try:
        assignment = manifest.get(assignment_id)
    except manifest.UnknownAssignment as e:
        raise ReleaseError(str(e)) from None
    repo = os.path.abspath(repo or REPO)
    out_dir = os.path.abspath(out_dir)
    tracked = tracked_files(repo)
    student = os.path.join(out_dir, 'student')
    solutions = os.path.join(out_dir, 'solutions')
    for folder in (student, solutions):
        if os.path.isdir(folder):
            shutil.rmtree(folder)
    os.makedirs(student)
    os.makedirs(solutions)

    handout = reduce_sources(assignment, repo, tracked, stub_own=True)
    solved = reduce_sources(assignment, repo, tracked, stub_own=False)

    # the handout's files and the texts the module-name check reads
    shipped = {f.path for f in assignment.student_files} | {CHECKER_NAME, COLLECTOR_NAME}
    for support in assignment.support_files:
        shipped |= set(copy_tracked(repo, tracked, support, student))
    for path, text in handout.texts.items():
        write_text(os.path.join(student, path), text)
    for notebook in assignment.notebooks:
        write_text(os.path.join(student, notebook),
                   clear_notebook(read_tracked(repo, tracked, notebook), notebook))
        shipped.add(notebook)
    shutil.copyfile(CHECKER_TEMPLATE, os.path.join(student, CHECKER_NAME))
    write_text(os.path.join(student, COLLECTOR_NAME), collector_text(assignment))

    checks_dir = os.path.join(student, 'checks')
    write_fixtures(assignment, repo, checks_dir)
    # the grader's probes, for the same hints on the public checks (no solution inside)
    shutil.copyfile(PROBES_SOURCE, os.path.join(checks_dir, 'probes.py'))
    with open(os.path.join(checks_dir, 'cases.json')) as f:
        case_names = [d['name'] for d in json.load(f)['definitions']]
    readme = readme_text(assignment, handout, case_names)
    write_text(os.path.join(student, 'README.md'), readme)

    problems = []
    for path, text in handout.texts.items():
        problems += foreign_module_references(path, text, shipped)
    problems += foreign_module_references('README.md', readme, shipped)
    if problems:
        raise ReleaseError("the handout's text names modules it does not ship (move such "
                           "notes of a student function into a comment in its body):\n  "
                           + '\n  '.join(problems))
    warnings = []
    changed = subprocess.run(['git', '-C', repo, 'status', '--porcelain', '--', *sorted(
        {f.path for f in assignment.student_files} | set(assignment.support_files)
        | set(assignment.notebooks) | set(solved.extra_modules))],
        capture_output=True, text=True, timeout=60).stdout.split('\n')
    warnings += [f"{line[3:]}: uncommitted changes are in this release (it is not the "
                 f"commit's)" for line in changed if line.strip()]
    for support in sorted(shipped - set(handout.texts) - {CHECKER_NAME, COLLECTOR_NAME}):
        if support.endswith('.py'):
            with open(os.path.join(student, support), encoding='utf-8') as f:
                warnings += foreign_module_references(support, f.read(), shipped)
    for path, text in handout.texts.items():
        for number, line in enumerate(text.splitlines(), 1):
            for match in re.finditer(r"\b(docs/[\w./-]+\.md)", line):
                if match.group(1) not in shipped:
                    warnings.append(f"{path}:{number}: links {match.group(1)}, which the "
                                    f"handout does not ship")

    verify_imports(student, 'student')
    code, output = run_checker(student)
    expected = [n for f in assignment.student_files for n in f.student]
    not_reported = [n for n in expected if not re.search(
        rf"^NOT IMPLEMENTED\s+{re.escape(n)}\b", output, re.M)]
    if code == 0 or 'Traceback' in output or not_reported:
        raise ReleaseError(f"the handout's checker on the stubs (exit code {code}) does not "
                           f"report NOT IMPLEMENTED for {', '.join(not_reported) or 'all'}, or "
                           f"printed a traceback:\n{output[-2000:]}")
    remove_bytecode(student)

    for path, text in solved.texts.items():
        write_text(os.path.join(solutions, path), text)
    zip_path = os.path.join(out_dir, 'autograder.zip')
    max_points, zip_names = gradescope_zip(assignment, repo, zip_path)

    leaks = leak_scan(student, repo)
    if leaks:
        raise ReleaseError("the leak scan found problems in the handout:\n  " + '\n  '.join(leaks))
    return {
        'assignment': assignment.id,
        'title': assignment.title,
        'out_dir': out_dir,
        'student': walk_files(student),
        'solutions': walk_files(solutions),
        'stubbed': {p: s for p, s in handout.stubbed.items()},
        'solution_extra_modules': solved.extra_modules,
        'autograder_zip': zip_path,
        'autograder_zip_files': zip_names,
        'max_points': max_points,
        'public_cases': len(case_names),
        'warnings': warnings,
    }


# =============================================================================== public cases
#
# The handout's checker (grader/handout_check.py) runs the cases below. Each definition
# of an assignment has a list of cases; a case is plain data (cases.json) plus arrays
# (fixtures.npz) computed here from our modules on seeded random inputs. What is
# checked per kind:
# - forward: the output (and a layer's running statistics) vs ours; 2-3 shapes, N=1
#   and non-square among them;
# - backward: the gradients vs numeric gradients of the student's OWN forward, rel
#   error < LAYER_TOLERANCE (float64, centered differences with h = 1e-5);
# - loss: the loss vs ours, dx vs the numeric gradient of the student's own loss; the
#   +-1000 case of a softmax loss compares dx with ours instead, since at |scores| =
#   1000 the round-off of the loss (~1e-13) over 2h leaves ~1e-8 absolute error in a
#   numeric gradient whose entries are 0 or 1/N;
# - init: param names, shapes, dtype, zero biases, the weights' std, for a non-default size;
# - model_loss: scores and loss vs ours with given params, grads vs numeric gradients
#   of the student's own loss on a small model (MODEL_TOLERANCE, see there);
# - sample: greedy captions vs ours with given params.
# Every case is run on our modules with the checker's own code before it is written:
# a case our solution does not pass (a ReLU input within h of its kink, say) fails the
# release instead of a student.

LAYER_TOLERANCE = 1e-7
# Whole models: the loss sums many terms over layers, samples and time steps, and
# gradient entries of the first layers are products of several layers' weights, so
# small entries carry the loss's round-off (~1e-16 of the loss, over 2h) in relative
# terms. Measured on our models with these cases (rel_error of grads vs numeric):
# CaptioningRNN 1.4e-8, SoftmaxClassifier 2.8e-9, ConvNet 6.9e-10 -- under the layers'
# 1e-7, but with little margin for a student's loss that sums in another order. 1e-6
# leaves that margin; a wrong gradient (a missing term, a wrong mask) is off by 1e-2 or
# more.
MODEL_TOLERANCE = 1e-6


class CaseBuilder:
    """Collects cases (JSON) and their arrays (fixtures.npz)."""

    def __init__(self, seed):
        import numpy as np
        self.np = np
        self.rng = np.random.default_rng(seed)
        self.arrays = {}
        self.definitions = []

    def array(self, value):
        key = f"a{len(self.arrays):04d}"
        self.arrays[key] = self.np.array(value)
        return key

    def encode(self, value):
        np = self.np
        if isinstance(value, np.ndarray):
            return {'array': self.array(value)}
        if isinstance(value, dict):
            return {'dict': {k: self.encode(v) for k, v in value.items()}}
        if isinstance(value, type) and issubclass(value, np.generic):
            return {'dtype': np.dtype(value).name}
        if isinstance(value, (list, tuple)):
            return {'list': [self.encode(v) for v in value]}
        return {'value': value}

    def randn(self, *shape, scale=1.0):
        return scale * self.rng.standard_normal(shape)

    def away_from_zero(self, *shape):
        """Values with |x| in [0.1, 1]: a ReLU's kink is far from every x +- h."""
        return self.rng.choice([-1.0, 1.0], size=shape) * self.rng.uniform(0.1, 1.0, size=shape)

    def distinct(self, *shape):
        """A permutation of well-separated values: no ties (or near ties) in a max pool."""
        n = int(self.np.prod(shape))
        return (self.rng.permutation(n) * (2.0 / n) - 1.0).reshape(shape)

    def labels(self, N, C):
        return self.rng.integers(0, C, size=N)


def _run_ours(definition, arrays):
    """Run a definition's cases on our modules with the checker's code."""
    from grader import handout_check
    status, reason = handout_check.check_definition(definition, arrays)
    if status != 'PASS':
        raise ReleaseError(f"our own {definition['module']}.{definition['name']} does not pass "
                           f"its public case: {status} {reason}")


def forward_case(b, module, function, args, names, label, returns='tuple', state=()):
    import copy
    import importlib
    ours = getattr(importlib.import_module(module), function)
    called = copy.deepcopy(args)
    result = ours(*called)
    out = result[0] if returns == 'tuple' else result
    return {'kind': 'forward', 'module': module, 'function': function, 'label': label,
            'names': names, 'args': [b.encode(a) for a in args], 'returns': returns,
            'expected': b.array(out), 'tolerance': LAYER_TOLERANCE,
            'state': [{'arg': i, 'key': key, 'expected': b.array(called[i][key])}
                      for i, key in state]}


def backward_case(b, module, forward, backward, args, names, wrt, label):
    import copy
    import importlib
    out = getattr(importlib.import_module(module), forward)(*copy.deepcopy(args))[0]
    return {'kind': 'backward', 'module': module, 'forward': forward, 'backward': backward,
            'label': label, 'names': names, 'args': [b.encode(a) for a in args], 'wrt': list(wrt),
            'dout': b.array(b.randn(*out.shape)), 'tolerance': LAYER_TOLERANCE}


def loss_case(b, module, function, args, label, stored_dx=False):
    import copy
    import importlib
    import inspect
    ours = getattr(importlib.import_module(module), function)
    loss, dx = ours(*copy.deepcopy(args))
    case = {'kind': 'loss', 'module': module, 'function': function, 'label': label,
            'names': list(inspect.signature(ours).parameters)[:len(args)],
            'args': [b.encode(a) for a in args], 'loss': b.array(loss),
            'tolerance': LAYER_TOLERANCE}
    if stored_dx:
        case['dx'] = b.array(dx)
    return case


def model_cases(b, module, cls_name, kwargs, params, score_args, loss_args, label):
    """(init-free) loss case of a model with the given params."""
    import copy
    import importlib
    cls = getattr(importlib.import_module(module), cls_name)
    model = cls(**copy.deepcopy(kwargs))
    model.params = copy.deepcopy(params)
    case = {'kind': 'model_loss', 'module': module, 'class': cls_name, 'label': label,
            'kwargs': {k: b.encode(v) for k, v in kwargs.items()},
            'params': {k: b.encode(v) for k, v in params.items()},
            'loss_args': [b.encode(a) for a in loss_args],
            'tolerance': LAYER_TOLERANCE, 'grad_tolerance': MODEL_TOLERANCE}
    if score_args is not None:
        case['score_args'] = [b.encode(a) for a in score_args]
        case['scores'] = b.array(model.loss(*copy.deepcopy(score_args)))
    case['loss'] = b.array(model.loss(*copy.deepcopy(loss_args))[0])
    return case


def init_case(b, module, cls_name, kwargs, label, zero, std):
    import importlib
    import numpy as np
    cls = getattr(importlib.import_module(module), cls_name)
    np.random.seed(0)
    model = cls(**kwargs)
    return {'kind': 'init', 'module': module, 'class': cls_name, 'label': label, 'seed': 0,
            'kwargs': {k: b.encode(v) for k, v in kwargs.items()},
            'shapes': {k: list(np.shape(v)) for k, v in model.params.items()},
            'dtype': np.dtype(kwargs['dtype']).name if 'dtype' in kwargs else None,
            'zero': list(zero), 'std': dict(std)}


def cnn_rnn_cases(b):
    """{definition: [cases]} of the cnn-rnn assignment."""
    import numpy as np
    L, R = 'layers', 'rnn_layers'
    pool2 = {'pool_height': 2, 'pool_width': 2, 'stride': 2}
    pool_overlap = {'pool_height': 2, 'pool_width': 3, 'stride': 1}
    cases = {}
    cases['fc_forward'] = [
        forward_case(b, L, 'fc_forward', [b.randn(3, 8), b.randn(8, 5), b.randn(5)],
                     ['x', 'w', 'b'], 'x (3, 8), w (8, 5)'),
        forward_case(b, L, 'fc_forward', [b.randn(1, 7), b.randn(7, 3), b.randn(3)],
                     ['x', 'w', 'b'], 'N=1, x (1, 7), w (7, 3)')]
    cases['fc_backward'] = [
        backward_case(b, L, 'fc_forward', 'fc_backward', [b.randn(3, 6), b.randn(6, 4), b.randn(4)],
                      ['x', 'w', 'b'], [0, 1, 2], 'x (3, 6), w (6, 4)'),
        backward_case(b, L, 'fc_forward', 'fc_backward', [b.randn(1, 5), b.randn(5, 2), b.randn(2)],
                      ['x', 'w', 'b'], [0, 1, 2], 'N=1, x (1, 5), w (5, 2)')]
    cases['relu_forward'] = [
        forward_case(b, L, 'relu_forward', [b.randn(4, 5)], ['x'], 'x (4, 5)'),
        forward_case(b, L, 'relu_forward', [b.randn(1, 3, 2, 2)], ['x'], 'N=1, x (1, 3, 2, 2)')]
    cases['relu_backward'] = [
        backward_case(b, L, 'relu_forward', 'relu_backward', [b.away_from_zero(4, 5)], ['x'], [0],
                      'x (4, 5)'),
        backward_case(b, L, 'relu_forward', 'relu_backward', [b.away_from_zero(1, 2, 3, 2)], ['x'],
                      [0], 'N=1, x (1, 2, 3, 2)')]
    cases['conv_forward'] = [
        forward_case(b, L, 'conv_forward', [b.randn(2, 3, 6, 5), b.randn(4, 3, 3, 2)], ['x', 'w'],
                     'x (2, 3, 6, 5), w (4, 3, 3, 2)'),
        forward_case(b, L, 'conv_forward', [b.randn(1, 1, 4, 4), b.randn(2, 1, 2, 2)], ['x', 'w'],
                     'N=1, x (1, 1, 4, 4), w (2, 1, 2, 2)')]
    cases['conv_backward'] = [
        backward_case(b, L, 'conv_forward', 'conv_backward', [b.randn(2, 2, 5, 4), b.randn(3, 2, 3, 2)],
                      ['x', 'w'], [0, 1], 'x (2, 2, 5, 4), w (3, 2, 3, 2)'),
        backward_case(b, L, 'conv_forward', 'conv_backward', [b.randn(1, 1, 4, 5), b.randn(2, 1, 2, 3)],
                      ['x', 'w'], [0, 1], 'N=1, x (1, 1, 4, 5), w (2, 1, 2, 3)')]
    cases['max_pool_forward'] = [
        forward_case(b, L, 'max_pool_forward', [b.randn(2, 3, 6, 4), pool2], ['x', 'pool_param'],
                     'x (2, 3, 6, 4), 2x2 stride 2'),
        forward_case(b, L, 'max_pool_forward', [b.randn(1, 2, 5, 7), pool_overlap],
                     ['x', 'pool_param'], 'N=1, x (1, 2, 5, 7), 2x3 stride 1')]
    cases['max_pool_backward'] = [
        backward_case(b, L, 'max_pool_forward', 'max_pool_backward', [b.distinct(2, 2, 4, 6), pool2],
                      ['x', 'pool_param'], [0], 'x (2, 2, 4, 6), 2x2 stride 2'),
        backward_case(b, L, 'max_pool_forward', 'max_pool_backward', [b.distinct(1, 1, 5, 4), pool_overlap],
                      ['x', 'pool_param'], [0], 'N=1, x (1, 1, 5, 4), 2x3 stride 1 (overlapping)')]
    # each row near +1000 or -1000, its scores a few units apart: exp overflows unless the
    # row's max is subtracted (no class is e^-2000 less likely than another, which would
    # fail the course's own `-log(probs[y])`)
    large = 1000 * b.rng.choice([-1.0, 1.0], size=(4, 1)) + b.randn(4, 5)
    cases['softmax_loss'] = [
        loss_case(b, L, 'softmax_loss', [b.randn(5, 4), b.labels(5, 4)], 'x (5, 4)'),
        loss_case(b, L, 'softmax_loss', [b.randn(1, 3), b.labels(1, 3)], 'N=1, x (1, 3)'),
        loss_case(b, L, 'softmax_loss', [large, b.labels(4, 5)], 'scores +-1000', stored_dx=True)]
    cases['temporal_fc_forward'] = [
        forward_case(b, R, 'temporal_fc_forward', [b.randn(2, 3, 4), b.randn(4, 5), b.randn(5)],
                     ['x', 'w', 'b'], 'x (2, 3, 4), w (4, 5)'),
        forward_case(b, R, 'temporal_fc_forward', [b.randn(1, 1, 3), b.randn(3, 2), b.randn(2)],
                     ['x', 'w', 'b'], 'N=1, T=1, x (1, 1, 3), w (3, 2)')]
    cases['temporal_fc_backward'] = [
        backward_case(b, R, 'temporal_fc_forward', 'temporal_fc_backward',
                      [b.randn(2, 3, 4), b.randn(4, 5), b.randn(5)], ['x', 'w', 'b'], [0, 1, 2],
                      'x (2, 3, 4), w (4, 5)'),
        backward_case(b, R, 'temporal_fc_forward', 'temporal_fc_backward',
                      [b.randn(1, 2, 3), b.randn(3, 2), b.randn(2)], ['x', 'w', 'b'], [0, 1, 2],
                      'N=1, x (1, 2, 3), w (3, 2)')]
    mask = b.rng.random((3, 4)) < 0.7
    mask[:, 0] = True
    large_t = 1000 * b.rng.choice([-1.0, 1.0], size=(2, 3, 1)) + b.randn(2, 3, 5)   # per row, as above
    cases['temporal_softmax_loss'] = [
        loss_case(b, R, 'temporal_softmax_loss', [b.randn(3, 4, 5), b.rng.integers(0, 5, (3, 4)), mask],
                  'x (3, 4, 5), mask with False entries'),
        loss_case(b, R, 'temporal_softmax_loss', [b.randn(1, 2, 3), b.rng.integers(0, 3, (1, 2)),
                                                  np.ones((1, 2), dtype=bool)], 'N=1, x (1, 2, 3)'),
        loss_case(b, R, 'temporal_softmax_loss', [large_t, b.rng.integers(0, 5, (2, 3)),
                                                  np.ones((2, 3), dtype=bool)], 'scores +-1000',
                  stored_dx=True)]

    softmax_kwargs = {'input_dim': 20, 'hidden_dim': 10, 'num_classes': 3, 'weight_scale': 0.01}
    cases['SoftmaxClassifier.__init__'] = [init_case(
        b, 'softmax', 'SoftmaxClassifier', softmax_kwargs, 'input_dim=20, hidden_dim=10, num_classes=3',
        zero=('b1', 'b2'), std={'W1': 0.01, 'W2': 0.01})]
    small = {'input_dim': 6, 'hidden_dim': 5, 'num_classes': 3, 'weight_scale': 0.1}
    X = b.randn(4, 2, 3)
    params = {'W1': b.randn(6, 5, scale=0.5), 'b1': b.randn(5, scale=0.1),
              'W2': b.randn(5, 3, scale=0.5), 'b2': b.randn(3, scale=0.1)}
    cases['SoftmaxClassifier.loss'] = [model_cases(
        b, 'softmax', 'SoftmaxClassifier', small, params, [X], [X, b.labels(4, 3)],
        'D=6, H=5, C=3, X (4, 2, 3)')]

    conv_kwargs = {'input_dim': (2, 9, 8), 'num_filters': 3, 'filter_size': 3, 'hidden_dim': 10,
                   'num_classes': 4, 'weight_scale': 0.01, 'dtype': np.float64}
    cases['ConvNet.__init__'] = [init_case(
        b, 'cnn', 'ConvNet', conv_kwargs, 'input_dim=(2, 9, 8), 3 filters 3x3, hidden_dim=10',
        zero=('b2', 'b3'), std={'W1': 0.01, 'W2': 0.01, 'W3': 0.01})]
    small_conv = {'input_dim': (1, 7, 6), 'num_filters': 2, 'filter_size': 3, 'hidden_dim': 5,
                  'num_classes': 3, 'weight_scale': 0.1, 'dtype': np.float64}
    X = b.randn(3, 1, 7, 6)
    params = {'W1': b.randn(2, 1, 3, 3, scale=0.5), 'W2': b.randn(8, 5, scale=0.5),
              'b2': b.randn(5, scale=0.1), 'W3': b.randn(5, 3, scale=0.5), 'b3': b.randn(3, scale=0.1)}
    cases['ConvNet.loss'] = [model_cases(
        b, 'cnn', 'ConvNet', small_conv, params, [X], [X, b.labels(3, 3)],
        'input_dim=(1, 7, 6), 2 filters 3x3, X (3, 1, 7, 6)')]

    words = {'<NULL>': 0, '<START>': 1, '<END>': 2, 'a': 3, 'cat': 4, 'sat': 5, 'down': 6}
    rnn_kwargs = {'word_to_idx': words, 'input_dim': 4, 'wordvec_dim': 3, 'hidden_dim': 5,
                  'cell_type': 'rnn', 'dtype': np.float64}
    V, D, W, H = 7, 4, 3, 5
    params = {'W_embed': b.randn(V, W), 'W_proj': b.randn(D, H, scale=0.5), 'b_proj': b.randn(H, scale=0.1),
              'Wx': b.randn(W, H, scale=0.5), 'Wh': b.randn(H, H, scale=0.5), 'b': b.randn(H, scale=0.1),
              'W_vocab': b.randn(H, V, scale=0.5), 'b_vocab': b.randn(V, scale=0.1)}
    captions = np.array([[1, 3, 4, 5, 2, 0], [1, 4, 5, 6, 3, 2], [1, 3, 2, 0, 0, 0]])
    features = b.randn(3, D)
    cases['CaptioningRNN.loss'] = [model_cases(
        b, 'rnn', 'CaptioningRNN', rnn_kwargs, params, None, [features, captions],
        "V=7, D=4, W=3, H=5, captions (3, 6) with <NULL> padding")]
    import copy
    import rnn
    model = rnn.CaptioningRNN(**copy.deepcopy(rnn_kwargs))
    model.params = copy.deepcopy(params)
    sample_features = b.randn(4, D)
    cases['CaptioningRNN.sample'] = [{
        'kind': 'sample', 'module': 'rnn', 'class': 'CaptioningRNN', 'label': 'N=4, max_length=6',
        'kwargs': {k: b.encode(v) for k, v in rnn_kwargs.items()},
        'params': {k: b.encode(v) for k, v in params.items()},
        'sample_args': [b.encode(sample_features)], 'sample_kwargs': {'max_length': {'value': 6}},
        'expected': b.array(model.sample(sample_features, max_length=6))}]
    return cases


def norm_attention_cases(b):
    """{definition: [cases]} of the norm-attention assignment."""
    import numpy as np
    L, A = 'layers', 'attention_layers'
    bn = ['x', 'gamma', 'beta', 'bn_param']
    cases = {}

    def data(*shape):   # standard deviation 1-2 per feature: well-conditioned statistics
        return b.randn(*shape) * b.rng.uniform(1, 2) + b.randn(scale=2)

    def running(D):
        return {'mode': 'test', 'running_mean': b.randn(D), 'running_var': b.rng.uniform(0.5, 2, D)}

    cases['batchnorm_forward'] = [
        forward_case(b, L, 'batchnorm_forward', [data(5, 4), b.randn(4), b.randn(4), {'mode': 'train'}],
                     bn, 'train, x (5, 4)', state=[(3, 'running_mean'), (3, 'running_var')]),
        forward_case(b, L, 'batchnorm_forward', [data(3, 7), b.randn(7), b.randn(7),
                                                 {'mode': 'train', 'momentum': 0.8, 'eps': 1e-3,
                                                  'running_mean': b.randn(7),
                                                  'running_var': b.rng.uniform(0.5, 2, 7)}],
                     bn, 'train, x (3, 7), momentum 0.8, eps 1e-3',
                     state=[(3, 'running_mean'), (3, 'running_var')]),
        forward_case(b, L, 'batchnorm_forward', [data(1, 4), b.randn(4), b.randn(4), running(4)],
                     bn, 'test mode, N=1')]
    for backward in ('batchnorm_backward', 'batchnorm_backward_alt'):
        cases[backward] = [
            backward_case(b, L, 'batchnorm_forward', backward,
                          [data(4, 3), b.randn(3), b.randn(3), {'mode': 'train'}], bn, [0, 1, 2],
                          'train, x (4, 3)'),
            backward_case(b, L, 'batchnorm_forward', backward,
                          [data(6, 5), b.randn(5), b.randn(5), {'mode': 'train'}], bn, [0, 1, 2],
                          'train, x (6, 5)')]
    ln = ['x', 'gamma', 'beta', 'ln_param']
    cases['layernorm_forward'] = [
        forward_case(b, L, 'layernorm_forward', [data(4, 5), b.randn(5), b.randn(5), {}], ln, 'x (4, 5)'),
        forward_case(b, L, 'layernorm_forward', [data(1, 6), b.randn(6), b.randn(6), {'eps': 1e-3}],
                     ln, 'N=1, x (1, 6), eps 1e-3')]
    cases['layernorm_backward'] = [
        backward_case(b, L, 'layernorm_forward', 'layernorm_backward',
                      [data(3, 5), b.randn(5), b.randn(5), {}], ln, [0, 1, 2], 'x (3, 5)'),
        backward_case(b, L, 'layernorm_forward', 'layernorm_backward',
                      [data(1, 6), b.randn(6), b.randn(6), {}], ln, [0, 1, 2], 'N=1, x (1, 6)')]
    cases['spatial_batchnorm_forward'] = [
        forward_case(b, L, 'spatial_batchnorm_forward', [data(2, 3, 4, 5), b.randn(3), b.randn(3),
                                                         {'mode': 'train'}], bn,
                     'train, x (2, 3, 4, 5)', state=[(3, 'running_mean'), (3, 'running_var')]),
        forward_case(b, L, 'spatial_batchnorm_forward', [data(1, 2, 3, 3), b.randn(2), b.randn(2),
                                                         running(2)], bn, 'test mode, N=1')]
    cases['spatial_batchnorm_backward'] = [
        backward_case(b, L, 'spatial_batchnorm_forward', 'spatial_batchnorm_backward',
                      [data(2, 3, 3, 4), b.randn(3), b.randn(3), {'mode': 'train'}], bn, [0, 1, 2],
                      'train, x (2, 3, 3, 4)')]
    gn = ['x', 'gamma', 'beta', 'G', 'gn_param']
    cases['spatial_groupnorm_forward'] = [
        forward_case(b, L, 'spatial_groupnorm_forward',
                     [data(2, 6, 3, 4), b.randn(1, 6, 1, 1), b.randn(1, 6, 1, 1), 3, {}], gn,
                     'x (2, 6, 3, 4), G=3'),
        forward_case(b, L, 'spatial_groupnorm_forward',
                     [data(1, 4, 2, 3), b.randn(1, 4, 1, 1), b.randn(1, 4, 1, 1), 2, {'eps': 1e-3}], gn,
                     'N=1, x (1, 4, 2, 3), G=2, eps 1e-3')]
    cases['spatial_groupnorm_backward'] = [
        backward_case(b, L, 'spatial_groupnorm_forward', 'spatial_groupnorm_backward',
                      [data(2, 4, 3, 3), b.randn(1, 4, 1, 1), b.randn(1, 4, 1, 1), 2, {}], gn, [0, 1, 2],
                      'x (2, 4, 3, 3), G=2')]

    def some_mask(*shape):   # True = may attend; every query row keeps one key
        mask = b.rng.random(shape) < 0.6
        mask[..., 0] = True
        return mask

    qkm = ['q', 'k', 'mask']
    cases['attention_weights'] = [
        forward_case(b, A, 'attention_weights', [b.randn(2, 3, 4), b.randn(2, 5, 4), None], qkm,
                     'q (2, 3, 4), k (2, 5, 4)', returns='array'),
        forward_case(b, A, 'attention_weights', [b.randn(1, 2, 4, 3), b.randn(1, 2, 4, 3),
                                                 np.tril(np.ones((4, 4), dtype=bool))], qkm,
                     'N=1, 2 heads, causal mask (4, 4)', returns='array')]
    qkvm = ['q', 'k', 'v', 'mask']
    cases['scaled_dot_product_attention_forward'] = [
        forward_case(b, A, 'scaled_dot_product_attention_forward',
                     [b.randn(2, 3, 4), b.randn(2, 5, 4), b.randn(2, 5, 6), None], qkvm,
                     'q (2, 3, 4), k (2, 5, 4), v (2, 5, 6)'),
        forward_case(b, A, 'scaled_dot_product_attention_forward',
                     [b.randn(1, 4, 2), b.randn(1, 3, 2), b.randn(1, 3, 3), some_mask(4, 3)], qkvm,
                     'N=1, mask (4, 3)')]
    cases['scaled_dot_product_attention_backward'] = [
        backward_case(b, A, 'scaled_dot_product_attention_forward', 'scaled_dot_product_attention_backward',
                      [b.randn(2, 3, 4), b.randn(2, 5, 4), b.randn(2, 5, 6), None], qkvm, [0, 1, 2],
                      'q (2, 3, 4), k (2, 5, 4), v (2, 5, 6)'),
        backward_case(b, A, 'scaled_dot_product_attention_forward', 'scaled_dot_product_attention_backward',
                      [b.randn(1, 4, 2), b.randn(1, 3, 2), b.randn(1, 3, 3), some_mask(4, 3)], qkvm,
                      [0, 1, 2], 'N=1, mask (4, 3)')]

    def attention_params(E):
        names = ('W_q', 'b_q', 'W_k', 'b_k', 'W_v', 'b_v', 'W_o', 'b_o')
        return {n: b.randn(E, E, scale=0.5) if n[0] == 'W' else b.randn(E, scale=0.1) for n in names}

    mha = ['query', 'key', 'value', 'params', 'num_heads', 'mask']
    cases['multi_head_attention_forward'] = [
        forward_case(b, A, 'multi_head_attention_forward',
                     [b.randn(2, 3, 6), b.randn(2, 4, 6), b.randn(2, 4, 6), attention_params(6), 2, None],
                     mha, 'N=2, T=3, S=4, E=6, 2 heads'),
        forward_case(b, A, 'multi_head_attention_forward',
                     [b.randn(1, 4, 4), b.randn(1, 4, 4), b.randn(1, 4, 4), attention_params(4), 2,
                      np.tril(np.ones((4, 4), dtype=bool))], mha, 'N=1, T=S=4, E=4, causal mask')]
    cases['multi_head_attention_backward'] = [
        backward_case(b, A, 'multi_head_attention_forward', 'multi_head_attention_backward',
                      [b.randn(2, 3, 6), b.randn(2, 4, 6), b.randn(2, 4, 6), attention_params(6), 3, None],
                      mha, [0, 1, 2, 3], 'N=2, T=3, S=4, E=6, 3 heads'),
        backward_case(b, A, 'multi_head_attention_forward', 'multi_head_attention_backward',
                      [b.randn(1, 4, 4), b.randn(1, 4, 4), b.randn(1, 4, 4), attention_params(4), 2,
                       np.tril(np.ones((4, 4), dtype=bool))], mha, [0, 1, 2, 3],
                      'N=1, T=S=4, E=4, causal mask')]
    return cases


CASE_TABLES = {'cnn-rnn': cnn_rnn_cases, 'norm-attention': norm_attention_cases}
CASE_SEED = 20261205   # the inputs of the public cases; a release of one commit is one set


def write_cases(assignment_id, checks_dir):
    """Build the public cases of an assignment from our modules (on sys.path), run each
    on our modules with the handout checker's code, and write checks/cases.json and
    checks/fixtures.npz. Every student definition must have at least one case."""
    import zlib
    assignment = manifest.get(assignment_id)
    builder = CaseBuilder([CASE_SEED, zlib.crc32(assignment_id.encode())])
    table = CASE_TABLES[assignment_id](builder)
    definitions = []
    for f in assignment.student_files:
        for name in f.student:
            if name not in table:
                raise ReleaseError(f"the public cases of {assignment_id} have none for {name} "
                                   f"({f.path}): add them to CASE_TABLES")
            definitions.append({'name': name, 'module': f.path[:-3], 'cases': table.pop(name)})
    if table:
        raise ReleaseError(f"public cases for definitions that are not student work of "
                           f"{assignment_id}: {', '.join(sorted(table))}")
    for definition in definitions:
        _run_ours(definition, builder.arrays)
    document = {'assignment': assignment.id, 'title': assignment.title,
                'student_files': [f.path for f in assignment.student_files],
                'definitions': definitions}
    os.makedirs(checks_dir, exist_ok=True)
    write_text(os.path.join(checks_dir, 'cases.json'),
               json.dumps(document, indent=1, sort_keys=True) + '\n')
    with open(os.path.join(checks_dir, 'fixtures.npz'), 'wb') as f:
        f.write(deterministic_npz(builder.arrays))
