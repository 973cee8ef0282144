"""The finding codes agree in their three places: the codes the source raises (`Finding(CODE,
...)` anywhere in asrlab/, found with ast), their ranking (`CAUSE_ORDER` and the `CODES`
descriptions in asrlab/doctor/findings.py) and their documentation (the "The codes" section
of docs/doctor.md). A new code needs all three; a code no longer raised leaves all three."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from asrlab.doctor.findings import CAUSE_ORDER, CODES

ROOT = Path(__file__).resolve().parents[2]
CODE = re.compile(r"[A-Z][A-Z0-9]+(?:_[A-Z0-9]+)*")


def _strings(node: ast.AST) -> set[str]:
    """Code-shaped string constants (BAD_AUDIO, DIVERGENCE) anywhere inside node."""
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant)
            and isinstance(n.value, str) and CODE.fullmatch(n.value)}


def raised_codes(source: str, where: str = "<source>") -> dict[str, list[str]]:
    """{code: ["where:line", ...]} for every `Finding(...)` in source. The first argument (or
    `code=`) is a string, a module constant, another finding's `.code` (passed on: not a new
    code), or a variable: then the code-shaped strings of the enclosing function and of the
    functions of this module it calls."""
    tree = ast.parse(source)
    functions = {n.name: n for n in ast.walk(tree)
                 if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                 and isinstance(n.value, ast.Constant) for t in n.targets
                 if isinstance(t, ast.Name)}
    enclosing: dict[ast.AST, ast.AST] = {}
    for function in functions.values():
        for n in ast.walk(function):
            enclosing.setdefault(n, function)  # ast.walk visits outer functions first
    out: dict[str, list[str]] = {}
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and getattr(call.func, "id",
                                                       getattr(call.func, "attr", "")) == "Finding"):
            continue
        arg = call.args[0] if call.args else next(
            (k.value for k in call.keywords if k.arg == "code"), None)
        if isinstance(arg, ast.Attribute) and arg.attr == "code":
            continue  # re-emits an existing finding
        if isinstance(arg, ast.Constant):
            codes = {arg.value}
        elif isinstance(arg, ast.Name) and isinstance(constants.get(arg.id), str):
            codes = {constants[arg.id]}
        elif isinstance(arg, ast.Name) and call in enclosing:
            scope = enclosing[call]
            called = {n.func.id for n in ast.walk(scope)
                      if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
            codes = _strings(scope).union(*(_strings(functions[name]) for name in called
                                            if name in functions))
        else:
            raise AssertionError(f"{where}:{call.lineno}: cannot tell the code of this "
                                 f"Finding; give it as a string or a module constant")
        for code in codes:
            out.setdefault(code, []).append(f"{where}:{call.lineno}")
    return out


def codes_in_asrlab() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path in sorted((ROOT / "asrlab").rglob("*.py")):
        where = str(path.relative_to(ROOT))
        for code, places in raised_codes(path.read_text(encoding="utf-8"), where).items():
            out.setdefault(code, []).extend(places)
    return out


def documented_codes() -> set[str]:
    """Codes documented in docs/doctor.md's "The codes": the headings (`### CODE (severity)`,
    `### CODE (...) and CODE (...)`, parentheses left out) and the first column of tables
    headed `| code |`."""
    text = (ROOT / "docs" / "doctor.md").read_text(encoding="utf-8")
    section = text.split("\n## The codes\n", 1)[1].split("\n## ", 1)[0]
    found, code_table = set(), False
    for line in section.splitlines():
        if line.startswith("### "):
            found |= set(CODE.findall(re.sub(r"\([^)]*\)", "", line[4:])))
        elif line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            code_table = code_table or cells[0] == "code"
            if code_table and CODE.fullmatch(cells[0].split(" ")[0]):
                found.add(cells[0].split(" ")[0])
        else:
            code_table = False
    return found


def test_the_scanner_finds_literal_constant_and_variable_codes():
    source = '''
NAMED = "NAMED_CODE"
def kind(reason):
    return "FROM_HELPER" if reason else "OTHER_HELPER"
def check(items, f):
    out = [Finding("LITERAL", "error", "m"), Finding(NAMED, "info", "m"),
           Finding(f.code, f.severity, "passed on")]
    for reason in items:
        code = kind(reason)
        out.append(Finding(code, "warning", "m"))
    return out
'''
    assert set(raised_codes(source)) == {"LITERAL", "NAMED_CODE", "FROM_HELPER", "OTHER_HELPER"}


def test_codes_raised_ranked_and_documented_agree():
    raised = codes_in_asrlab()
    assert {"BLANK_COLLAPSE", "BAD_AUDIO", "EMPTY_TRANSCRIPT", "SEEN_SPEAKERS"} <= set(raised)
    assert len(CAUSE_ORDER) == len(set(CAUSE_ORDER)), "a code twice in CAUSE_ORDER"
    where = lambda codes: ", ".join(f"{c} ({raised[c][0]})" for c in sorted(codes))  # noqa: E731
    assert not set(raised) - set(CAUSE_ORDER), \
        f"raised but not ranked in findings.CAUSE_ORDER: {where(set(raised) - set(CAUSE_ORDER))}"
    assert not set(CAUSE_ORDER) - set(raised), \
        f"in CAUSE_ORDER but raised nowhere: {sorted(set(CAUSE_ORDER) - set(raised))}"
    assert set(CODES) == set(raised), \
        f"findings.CODES differs: missing {where(set(raised) - set(CODES))}; " \
        f"stale {sorted(set(CODES) - set(raised))}"
    documented = documented_codes()
    assert not set(raised) - documented, \
        f"raised but not in docs/doctor.md's codes: {where(set(raised) - documented)}"
    assert not documented - set(raised), \
        f"in docs/doctor.md but raised nowhere: {sorted(documented - set(raised))}"
