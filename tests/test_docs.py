"""docs/backprop.md runs: its ``python`` blocks, executed in order in one shared namespace.

Each block is a test case; a case first runs the blocks before it that have not run yet, so
that one case can be selected alone. Tracebacks give the line numbers of the markdown file.
"""

import ast
import re
from pathlib import Path

import pytest

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "backprop.md"
_FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks(text):
    """(line of the block's first code line, source) for each ```python block, in order."""
    return [(text.count("\n", 0, match.start(1)) + 1, match.group(1))
            for match in _FENCE.finditer(text)]


BLOCKS = python_blocks(TUTORIAL.read_text())
_run = {"namespace": {"__name__": "backprop_tutorial"}, "count": 0, "failed_at": None}


def _run_blocks_through(index):
    while _run["count"] <= index:
        if _run["failed_at"] is not None:
            pytest.fail(f"the block at {TUTORIAL.name} line {_run['failed_at']} failed before")
        line, source = BLOCKS[_run["count"]]
        code = compile("\n" * (line - 1) + source, str(TUTORIAL), "exec")  # the file's lines
        try:
            exec(code, _run["namespace"])
        except BaseException:
            _run["failed_at"] = line
            raise
        _run["count"] += 1


@pytest.mark.parametrize("index", range(len(BLOCKS)),
                         ids=[f"line_{line}" for line, _ in BLOCKS])
def test_tutorial_block_runs(index):
    _run_blocks_through(index)


def _checks(tree):
    """Whether a block asserts: an assert statement, or a call of an assert_* function."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            return True
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name.startswith("assert"):
                return True
    return False


_DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef, ast.Assign)


def test_tutorial_blocks_check_what_they_compute():
    """Every block that does more than import, define and assign checks its results."""
    trees = [(line, ast.parse(source)) for line, source in BLOCKS]
    assert sum(_checks(tree) for _, tree in trees) >= 8
    for line, tree in trees:
        if not all(isinstance(node, _DEFINITIONS) for node in tree.body):
            assert _checks(tree), f"the block at {TUTORIAL.name} line {line} checks nothing"
