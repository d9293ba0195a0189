"""What keys a run to the code that computes it: a fingerprint of what executes, not of the prose.

A run's configuration records :func:`code_fingerprint`, so its key changes with the math and
``npgen reproduce`` trains again after a fix. The fingerprint hashes each module's syntax
tree with its docstrings removed (comments never reach the tree), so a docstring or comment
edit keeps every run, while an edited constant, operator or name retrains the runs it may
change. Only the modules that compute a run's numbers count: :data:`MATH_MODULES` for every
run, and :data:`DEVICE_MODULES` for the runs of that device alone.
"""

import ast
import functools
import hashlib
import importlib.util
import os

#: The modules whose code decides a CPU run's numbers (a package stands for each of its
#: modules): the kernels, the data, the networks, the models, the Lipschitz constants and
#: bounds, one run's training, sampling and metrics, and the sampler's gradient metrics.
#: Figures, the report and the sweep's bookkeeping only read numbers and are left out, and so
#: are the modules of :data:`DEVICE_MODULES`.
MATH_MODULES = ("npgen.kernels", "npgen.data", "npgen.nn", "npgen.models", "npgen.analysis",
                "npgen.study.runs", "npgen.study.run_metrics", "npgen.study.sampler",
                "npgen.study.exact_sampler")
#: The modules that compute only the runs of a device (a configuration's ``"device"``): for
#: cuda, its kernels, batched training and sampling, and the batching of a study's runs.
DEVICE_MODULES = {"cuda": ("npgen.kernels.cuda", "npgen.models.replicas", "npgen.models.sgm_device",
                           "npgen.study.devices")}


def _without_docstrings(tree):
    """``tree`` with the docstring (a leading string expression) of its module, classes and
    functions removed."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                del body[0]
    return tree


def _canonical(node):
    """A syntax tree as text: each node's type and fields, those that are None or empty left
    out, so that a Python whose tree adds an empty field (3.12's type_params) gives the same
    text; positions are not fields, so neither are line numbers."""
    if isinstance(node, ast.AST):
        fields = ",".join(f"{name}={_canonical(value)}" for name, value in ast.iter_fields(node)
                          if value is not None and not (isinstance(value, list) and not value))
        return f"{type(node).__name__}({fields})"
    if isinstance(node, list):
        return "[" + ",".join(_canonical(item) for item in node) + "]"
    return repr(node)


def executable_source(path):
    """The code of the Python file ``path`` as text, without its docstrings and comments."""
    with open(path, "rb") as handle:
        return _canonical(_without_docstrings(ast.parse(handle.read(), filename=str(path))))


def module_files(name):
    """{module name: path} of the module ``name``, or of every module of the package ``name``
    (found, not imported)."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ValueError(f"module {name} is not installed; a fingerprint needs its source")
    if not spec.submodule_search_locations:
        return {name: spec.origin}
    root = spec.submodule_search_locations[0]
    files = {}
    for folder, _, names in os.walk(root):
        for file in names:
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                parts = os.path.relpath(path, root)[:-len(".py")].split(os.sep)
                files[".".join([name, *parts[:-1]] + ([] if parts[-1] == "__init__" else parts[-1:]))] = path
    return files


@functools.lru_cache(maxsize=None)
def code_fingerprint(device="cpu"):
    """'<npgen version>+<16 hex digits>': the version and a SHA-256 of the
    :func:`executable_source` of :data:`MATH_MODULES` and of the ``device``'s
    :data:`DEVICE_MODULES` (each with its module name, in sorted order). A docstring or
    comment edit leaves it as it is; an edit to the code of those modules changes it, and with
    it the key of every run of that device."""
    import npgen

    device_only = {name for names in DEVICE_MODULES.values() for name in names}
    files = {}
    for name in MATH_MODULES:
        files.update((module, path) for module, path in module_files(name).items()
                     if module not in device_only)
    for name in DEVICE_MODULES.get(device, ()):
        files.update(module_files(name))
    digest = hashlib.sha256()
    for module, path in sorted(files.items()):
        code = executable_source(path).encode()
        digest.update(f"{module}\0{len(code)}\0".encode())
        digest.update(code)
    return f"{npgen.__version__}+{digest.hexdigest()[:16]}"
