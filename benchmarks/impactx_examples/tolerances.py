"""The tolerances an ImpactX example's ``analysis_*.py`` applies to its final beam.

The analysis of a run script is the one ImpactX's ``examples/CMakeLists.txt`` names beside
it (else ``analysis_<suffix>.py`` of the same folder). Its module-level statements are read
(never run): plain numeric assignments (``num_particles = 10000``, ``rtol = 2.2 *
num_particles**-0.5``, ...) are evaluated in order, a tuple assignment from a call on the
final beam binds the moment names (``sigx, sigy, ... = get_moments(final)``) to the
example's own final values, and every ``np.allclose([names], [...], rtol=..., atol=...)``
after it becomes one :class:`Check` per name it knows (numpy's defaults rtol 1e-5, atol 1e-8
where the call gives none). Without a final-beam marker, the last ``allclose`` of final
values (a known moment named with the ``f`` suffix: ``sigma_xf``) is taken, else the last
``allclose``.
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_OPS: dict[type, Any] = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
                         ast.Div: operator.truediv, ast.Pow: operator.pow}
#: numpy's ``allclose`` defaults.
DEFAULT_RTOL, DEFAULT_ATOL = 1e-5, 1e-8


@dataclass(frozen=True)
class Check:
    """One final-beam quantity the analysis checks: ``key`` of :func:`.moments.moments`,
    relative and absolute tolerance (``|a - b| <= atol + rtol |b|``, numpy's rule)."""

    key: str
    rtol: float
    atol: float

    def allowed(self, expected: float) -> float:
        """The largest deviation allowed from ``expected``."""
        return self.atol + self.rtol * abs(expected)


def moment_key(name: str) -> str | None:
    """The moment key of an analysis variable name (``sigx`` -> ``sigma_x``, ``emittance_y``
    -> ``emittance_y``, ``meanpx`` -> ``mean_px``; a final value's ``f`` suffix as in
    ``sigma_xf``; ``polarization_x`` -> ``mean_sx``, the mean spin), or None."""
    n = name.lower().replace("_", "")
    spin = re.fullmatch(r"(?:polarization|pol|meanspin|means)([xyz])f?", n)
    if spin:
        return f"mean_s{spin[1]}"
    match = re.fullmatch(r"(sig|sigma|std|mean|emittance|emitt|emit|eps)(p?[xyt])(rms|f)?", n)
    if not match:
        return None
    kind = {"sig": "sigma", "sigma": "sigma", "std": "sigma", "mean": "mean"}.get(
        match[1], "emittance")
    if kind == "emittance" and match[2].startswith("p"):
        return None
    return f"{kind}_{match[2]}"


def analysis_for(script: Path, examples: Path) -> Path | None:
    """The analysis script ImpactX's CMakeLists pairs with ``script`` (else by name)."""
    relative = f"examples/{script.relative_to(examples).as_posix()}"
    cmake = examples / "CMakeLists.txt"
    if cmake.is_file():
        text = re.sub(r"#[^\n]*", "", cmake.read_text())
        tokens = text.split()
        for i, token in enumerate(tokens[:-2]):
            if token == relative and tokens[i + 2].endswith(".py"):
                candidate = examples / tokens[i + 2].removeprefix("examples/")
                if candidate.is_file():
                    return candidate
    by_name = script.with_name(script.name.replace("run_", "analysis_", 1))
    return by_name if by_name.is_file() else None


def _value(node: ast.AST, env: dict[str, float]) -> float:
    """A numeric expression of constants and known names (ValueError otherwise)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) \
            and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.Name) and node.id in env:
        return env[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_value(node.operand, env)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return float(_OPS[type(node.op)](_value(node.left, env), _value(node.right, env)))
    raise ValueError(ast.dump(node)[:80])


def _allclose(node: ast.AST) -> ast.Call | None:
    """The ``np.allclose``/``numpy.isclose`` call of an ``assert`` statement, or None."""
    test = node.test if isinstance(node, ast.Assert) else None
    if isinstance(test, ast.Call) and isinstance(test.func, ast.Attribute) \
            and test.func.attr in ("allclose", "isclose"):
        return test
    return None


def _names(node: ast.AST) -> list[str]:
    """Variable names of an ``allclose`` first argument (a name or a list of names)."""
    items = node.elts if isinstance(node, ast.List | ast.Tuple) else [node]
    return [i.id if isinstance(i, ast.Name) else ast.unparse(i) for i in items]


def read_checks(analysis: Path, final: dict[str, float]
                ) -> tuple[list[Check], list[str]]:
    """The final-beam checks of ``analysis`` (``final``: the example's own final moments, for
    tolerances computed from them) and the checked names it cannot compare."""
    tree = ast.parse(analysis.read_text())
    env: dict[str, float] = {}
    calls: list[tuple[bool, ast.Call, dict[str, float]]] = []
    final_seen = False
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                try:
                    env[target.id] = _value(node.value, env)
                except (ValueError, ZeroDivisionError, OverflowError, TypeError):
                    env.pop(target.id, None)
            elif isinstance(target, ast.Tuple) and "final" in ast.unparse(node.value):
                final_seen = True
                for element in target.elts:
                    key = moment_key(element.id) if isinstance(element, ast.Name) else None
                    if key and key in final and isinstance(element, ast.Name):
                        env[element.id] = final[key]
        call = _allclose(node)
        if call is not None and call.args:
            calls.append((final_seen, call, dict(env)))
    finals = [c for c in calls if any(moment_key(n) and n.lower().endswith("f")
                                      for n in _names(c[1].args[0]))]
    chosen = [c for c in calls if c[0]] or finals[-1:] or calls[-1:]
    checks: list[Check] = []
    unread: list[str] = []
    for _, call, scope in chosen:
        tolerances = {"rtol": DEFAULT_RTOL, "atol": DEFAULT_ATOL}
        for keyword in call.keywords:
            if keyword.arg in tolerances:
                try:
                    tolerances[keyword.arg] = _value(keyword.value, scope)
                except (ValueError, ZeroDivisionError, OverflowError, TypeError):
                    unread.append(f"{keyword.arg} {ast.unparse(keyword.value)} (not read: "
                                  "numpy's default)")
        for name in _names(call.args[0]):
            key = moment_key(name)
            if key is None:
                unread.append(name)
            else:
                checks.append(Check(key, tolerances["rtol"], tolerances["atol"]))
    return checks, list(dict.fromkeys(unread))
