"""CuPy 14.2's public API as data: the manifest shipped next to this module, and its signatures.

``cupy_api-14.2.0.json`` was captured from the real ``cupy-cuda12x`` 14.2.0 wheel (no GPU needed):
the names of ``cupy``, ``cupy.linalg``, ``cupy.random``, ``cupy.fft``, ``cupy.lib.stride_tricks``,
``cupyx``, ``cupyx.scipy.ndimage`` and ``cupyx.scipy.special``, each with a kind (function, ufunc,
type, value, module) and, for callables, the call signature with every default normalised to
``None``; plus the methods of ``cupy.ndarray``, ``cupy.random.Generator`` and ``RandomState``.

Signatures are parsed here without ``exec`` (the manifest is data) and only when first needed.
"""
from __future__ import annotations

import functools
import inspect
import json
from importlib import resources

MANIFEST_FILE = "cupy_api-14.2.0.json"

_P = inspect.Parameter


@functools.lru_cache(maxsize=1)
def manifest() -> dict:
    """The parsed JSON manifest (loaded once)."""
    text = resources.files("minidl.testing").joinpath(MANIFEST_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def cupy_version() -> str:
    return manifest()["cupy_version"]


def namespace(name: str) -> dict:
    """``{attribute: entry}`` of one CuPy module, e.g. ``namespace("cupy.linalg")``."""
    return manifest()["namespaces"][name]


@functools.lru_cache(maxsize=None)
def parse_signature(text: str) -> inspect.Signature:
    """``"(a, axis=None, *, keepdims=None)"`` -> :class:`inspect.Signature`.

    The manifest's signatures are plain: names, ``/``, ``*``, ``*args``, ``**kwargs`` and
    ``=None`` defaults (the capture script normalised every default to ``None``).
    """
    body = text.strip()
    if not (body.startswith("(") and body.endswith(")")):
        raise ValueError(f"not a signature: {text!r}")
    tokens = [t.strip() for t in body[1:-1].split(",") if t.strip()]
    params: list[inspect.Parameter] = []
    kind = _P.POSITIONAL_OR_KEYWORD
    for tok in tokens:
        if tok == "/":
            params = [p.replace(kind=_P.POSITIONAL_ONLY) for p in params]
        elif tok == "*":
            kind = _P.KEYWORD_ONLY
        elif tok.startswith("**"):
            params.append(_P(tok[2:], _P.VAR_KEYWORD))
        elif tok.startswith("*"):
            params.append(_P(tok[1:], _P.VAR_POSITIONAL))
            kind = _P.KEYWORD_ONLY
        else:
            name, eq, _default = tok.partition("=")
            params.append(_P(name.strip(), kind, default=None if eq else _P.empty))
    return inspect.Signature(params)


def ufunc_signature(nin: int, nout: int) -> str:
    """The calling convention of a CuPy ufunc whose docstring gave no signature."""
    xs = ", ".join(f"x{i + 1}" for i in range(nin)) if nin > 1 else "x"
    outs = "out=None" if nout == 1 else "*outs, out=None"
    sep = "*, " if nout == 1 else ""
    return f"({xs}, /, {outs}, {sep}casting=None, dtype=None)"


def bind(sig: inspect.Signature, qualname: str, args, kwargs) -> inspect.BoundArguments:
    """``sig.bind(*args, **kwargs)``; a mismatch raises TypeError naming CuPy's signature."""
    try:
        return sig.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{qualname}() {exc} (CuPy {cupy_version()} signature: "
                        f"{qualname.rpartition('.')[2]}{sig}; minidl strict backend)") from None
