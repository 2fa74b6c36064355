"""minidl's dependencies run one way: backend -> autograd -> kernels -> functions -> layers ->
train.  Read from the source (every import statement, those inside functions included), so a
lazy import cannot hide an upward dependency or an import circle."""
from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "minidl"

# (module or package prefix, layer): a module may import modules of its own layer or below.
LAYERS = [
    ("minidl._openblas", 0), ("minidl.backend", 0),
    ("minidl.workspace", 1), ("minidl.parallel", 1), ("minidl.progress", 1),
    ("minidl.plot", 1), ("minidl.serialization", 1), ("minidl.safetensors", 1),
    ("minidl.metrics", 1), ("minidl.distributed", 1), ("minidl.data", 1),
    ("minidl.distributed.sync_batchnorm", 4),   # layers over minidl.distributed's collectives
    ("minidl.torchfile", 1),
    ("minidl.distributed.reducer", 1),   # knows Tensors only by their hook method: duck typed
    ("minidl.autograd", 2), ("minidl.init", 2), ("minidl.kernels", 2),
    ("minidl.backward", 2),   # the autograd's backward engine: Tensors known by attributes
    ("minidl.functions", 3), ("minidl.profiler", 3),
    ("minidl.layers", 4), ("minidl.optim", 4),
    ("minidl.fusion", 5), ("minidl.models", 5), ("minidl.visualize", 5),
    ("minidl.train", 6), ("minidl.convert", 6),
    ("minidl.train_state", 6),   # fit's resumable-run state: a part of the training loop
    ("minidl.models.hub", 6),   # loads .pth files through minidl.convert
    ("minidl.testing", 7),
]
# array-level kernels know nothing of the autograd or the ops that call them
FORBIDDEN = {"minidl.kernels": ("minidl.autograd", "minidl.functions", "minidl.layers")}


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: pathlib.Path, known) -> set[str]:
    """The minidl modules ``path`` imports (``from minidl import backend`` -> minidl.backend)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("minidl")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.startswith("minidl"):
            subs = {f"{node.module}.{a.name}" for a in node.names} & set(known)
            out |= subs or {node.module}
    return out


def _layer(module: str) -> int | None:
    best = None
    for prefix, layer in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, layer)
    return None if best is None else best[1]


def test_every_module_has_a_layer():
    missing = [m for m in _modules() if m != "minidl" and _layer(m) is None]
    assert not missing, f"add these modules to LAYERS in {__file__}: {missing}"


def test_no_module_imports_a_higher_layer():
    known = _modules()
    upward = []
    for module, path in known.items():
        if module == "minidl":   # the package's top loads its names lazily
            continue
        for dep in sorted(_imports(path, known)):
            if dep == "minidl" or dep == module:
                continue
            if _layer(dep) > _layer(module):
                upward.append(f"{module} (layer {_layer(module)}) imports {dep} "
                              f"(layer {_layer(dep)})")
            for prefix, banned in FORBIDDEN.items():
                if module.startswith(prefix) and dep.startswith(banned):
                    upward.append(f"{module} imports {dep}")
    assert not upward, "\n".join(upward)


def test_no_import_circles():
    known = _modules()
    graph = {m: {d for d in _imports(p, known) if d in known and d != m and d != "minidl"}
             for m, p in known.items() if m != "minidl"}
    # a package's __init__ importing its own submodules is not a circle back to itself
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    state, circles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for d in sorted(graph.get(m, ())):
            if state.get(d) == "open":
                circles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d, stack + [d])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not circles, "\n".join(circles)


@pytest.mark.parametrize("package", ["minifeat"])
def test_minifeat_uses_public_minidl_names_only(package):
    root = PACKAGE.parent / package
    private = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.startswith("minidl"):
                names = [a.name for a in node.names if a.name.startswith("_")]
                if names or any(part.startswith("_") for part in node.module.split(".")):
                    private.append(f"{path.name}: from {node.module} import {names}")
    assert not private, "\n".join(private)
