"""The package's shape: each folder is a layer, imports run one way, and importing npgen
changes nothing in the process it is imported into."""

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import npgen

PACKAGE = Path(npgen.__file__).resolve().parent

#: The npgen layers each layer may import (besides itself). A model never imports analysis or
#: study code; nothing imports the study but the command line.
ALLOWED = {
    "kernels": set(),
    "util": set(),
    "data": {"util"},
    "nn": {"kernels", "util"},
    "models": {"kernels", "util", "nn"},
    "analysis": {"kernels", "util", "nn"},
    "study": {"kernels", "util", "data", "nn", "models", "analysis"},
    "cli": {"util", "analysis", "study"},
}


def module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def npgen_imports(path):
    """The npgen modules that the module at ``path`` imports, relative imports resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("npgen"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("npgen"):
                # ``from .x import y``: y may be a name in module x or a submodule x.y.
                found.update(f"{target}.{alias.name}" for alias in node.names)
                if node.module:
                    found.add(target)
    return found


def layer_of(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_lies_in_a_known_layer():
    layers = {layer_of(module_name(path)) for path in MODULES}
    assert layers <= set(ALLOWED) | {None}, layers - set(ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_one_way(path):
    own = layer_of(module_name(path))
    if own is None:
        return  # npgen/__init__.py: the public face, which may name every layer
    crossing = {target for target in npgen_imports(path)
                if layer_of(target) not in ALLOWED[own] | {own, None}}
    assert not crossing, f"the {own} layer must not import {sorted(crossing)}"


def test_no_import_cycle():
    graph = {module_name(path): npgen_imports(path) for path in MODULES}
    known = set(graph) - {"npgen"}
    # Keep the imported names that are modules; a function f of module x maps to x.
    graph = {m: {t if t in known else t.rpartition(".")[0] for t in targets} & known
             for m, targets in graph.items()}
    state = {}

    def visit(module, trail):
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(target):] + [target]))
            if target not in state:
                visit(target, trail + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_kernels_are_installed_inside_npgen_only():
    assert importlib.util.find_spec("kernels") is None
    assert importlib.util.find_spec("npgen.kernels.numpy_ref") is not None


def test_public_face():
    for name in ("MLP", "Adam", "ScoreNetwork", "GAN", "VAE", "SGM"):
        assert name in npgen.__all__ and callable(getattr(npgen, name))
    assert callable(npgen.lipschitz.exact_lipschitz_1d)
    assert callable(npgen.theory.theorem1_surface_bound)


def _python(code, env=None):
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, env=env, cwd=Path(__file__).resolve().parent)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_leaves_the_environment_alone():
    code = ("import json, os; before = dict(os.environ); import npgen, npgen.cli;"
            " after = dict(os.environ);"
            " print(json.dumps({k: [before.get(k), after.get(k)] for k in set(before) | set(after)"
            " if before.get(k) != after.get(k)}))")
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                        "KMP_DUPLICATE_LIB_OK")}
    assert json.loads(_python(code, env)) == {}


def test_the_command_line_and_the_reproduction_do_not_import_the_cpu_kernels():
    """Importing npgen.kernels.cpu compiles every CPU kernel when numba's cache is cold (about
    30 s): ``npgen reproduce``'s own process, which plans, hands runs to its workers and writes
    the report, must not pay it before its workers start."""
    code = ("import json, sys; import npgen, npgen.cli, npgen.study.reproduce, npgen.study.report,"
            " npgen.study.figure7; print(json.dumps(sorted(m for m in sys.modules"
            " if m.startswith('npgen.kernels.cpu') or m == 'npgen.kernels.cuda')))")
    assert json.loads(_python(code, dict(os.environ))) == []


def test_training_does_not_depend_on_the_callers_blas_threads():
    """A GAN trained with OPENBLAS_NUM_THREADS=2 gives the weights it gives with one thread."""
    code = ("import numpy as np; from npgen import GAN;"
            " gan = GAN(seed=4); data = np.random.default_rng(0).standard_normal((1024, 1));"
            " gan.fit(data.astype(np.float32), epochs=2, batch_size=256, quiet=True);"
            " print(gan.generator.params.tobytes().hex()[:4096], gan.generator.params.sum())")
    outputs = {threads: _python(code, dict(os.environ, OPENBLAS_NUM_THREADS=threads,
                                           OMP_NUM_THREADS=threads))
               for threads in ("1", "2")}
    assert outputs["1"] == outputs["2"]
