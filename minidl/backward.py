"""The backward engine behind ``Tensor.backward``: graph traversal, gradient accumulation, and
the hooks that fire when a leaf's gradient is final.

Users call :meth:`minidl.autograd.Tensor.backward` and
:meth:`~minidl.autograd.Tensor.register_post_accumulate_grad_hook`; this module is what they
run.  It knows Tensors and Functions by their attributes only (``creator``, ``inputs``,
``outputs``, ``generation``, ``requires_grad``, ``grad``, ...) and imports nothing of
``minidl.autograd``, which imports it: the dependency runs one way.

:func:`run_backward` visits the recorded Functions in reverse topological order (largest
*generation* first, with a heap: iterative, so no recursion limit), accumulates the gradient of
every Tensor that ``requires_grad``, and frees the graph as it goes unless ``retain_graph``.
A leaf may carry "gradient ready" hooks (:func:`register_hook`), called during backward as soon
as its ``.grad`` is final: data-parallel training starts a gradient allreduce from them while
backward goes on (minidl.distributed.reducer).
"""
from __future__ import annotations

import heapq
import itertools
import weakref

from minidl import backend as B

__all__ = ["run_backward", "register_hook", "HookHandle"]

_hooked = weakref.WeakSet()  # leaves with post-accumulate hooks: backward counts edges if
#                              there are any, and pays nothing more than this test otherwise


class HookHandle:
    """What :meth:`Tensor.register_post_accumulate_grad_hook` returns: ``remove()`` it."""

    _keys = itertools.count()

    def __init__(self, tensor):
        self.key = next(HookHandle._keys)
        self._tensor = weakref.ref(tensor)

    def remove(self) -> None:
        t = self._tensor()
        if t is not None and t._post_hooks is not None:
            t._post_hooks.pop(self.key, None)
            if not t._post_hooks:
                t._post_hooks = None
                _hooked.discard(t)


def register_hook(tensor, hook) -> HookHandle:
    """Add ``hook`` to the leaf ``tensor``'s post-accumulate-grad hooks (checked by the caller,
    :meth:`Tensor.register_post_accumulate_grad_hook`)."""
    if tensor._post_hooks is None:
        tensor._post_hooks = {}
    handle = HookHandle(tensor)
    tensor._post_hooks[handle.key] = hook
    _hooked.add(tensor)
    return handle


def _hooked_edges(root_fn) -> dict:
    """id -> [edges not yet visited, got a gradient, tensor] for every hooked leaf under
    ``root_fn``: a leaf is ready when backward has visited all the Functions that consume it."""
    pending, stack, seen = {}, [root_fn], {id(root_fn)}
    while stack:
        for x in stack.pop().inputs:
            if x.creator is not None:
                if id(x.creator) not in seen:
                    seen.add(id(x.creator))
                    stack.append(x.creator)
            elif x._post_hooks is not None:
                pending.setdefault(id(x), [0, False, x])[0] += 1
    return pending


def _edges_done(f, gxs, pending: dict) -> None:
    """``f`` was visited (``gxs`` None: it received no gradient): call the hooks of its leaf
    inputs that have no consumer left."""
    for i, x in enumerate(f.inputs):
        entry = pending.get(id(x)) if x.creator is None else None
        if entry is None:
            continue
        entry[0] -= 1
        entry[1] = entry[1] or (gxs is not None and gxs[i] is not None)
        if entry[0] == 0:
            del pending[id(x)]
            if entry[1]:
                _call_hooks(x)


def _call_hooks(x) -> None:
    for hook in list((x._post_hooks or {}).values()):
        hook(x)


def run_backward(root, grad, retain_graph: bool, profiler=None) -> None:
    """Backpropagate ``grad`` (an array of ``root``'s shape, checked by ``Tensor.backward``)
    from the Tensor ``root``.  ``profiler``: the running ``minidl.profiler`` Profile, which
    times every Function's backward, or None."""
    # gradients of the tensors still in flight: id -> (tensor, grad); holding the tensor keeps
    # it alive until its creator has been visited, even after its consumers were released
    grads = {id(root): (root, grad)}
    if root.requires_grad and (root.is_leaf or root._retain_grad):
        _accumulate(root, grad)
    if root.creator is None:
        if root._post_hooks is not None:
            _call_hooks(root)
        return
    # only when some leaf anywhere has a hook: one walk over the graph, else nothing at all
    pending = _hooked_edges(root.creator) if _hooked else None
    heap, seen, tiebreak = [], set(), itertools.count()

    def push(f):
        if id(f) not in seen:
            seen.add(id(f))
            heapq.heappush(heap, (-f.generation, next(tiebreak), f))

    push(root.creator)
    while heap:
        _, _, f = heapq.heappop(heap)
        if f.released:
            raise RuntimeError(
                f"backward through {type(f).__name__} a second time: its graph was freed by "
                "the first backward(); pass retain_graph=True to the first call")
        outputs = [o() for o in f.outputs]
        gys = [None if o is None else grads.pop(id(o), (None, None))[1] for o in outputs]
        if all(g is None for g in gys):
            if pending:
                _edges_done(f, None, pending)
            continue
        xp = B.get_array_module(*[g for g in gys if g is not None])
        gys = [xp.zeros(shape, dtype=dt) if g is None else g
               for g, (shape, dt) in zip(gys, f.output_meta)]
        if profiler is None:
            gxs = f.backward(*gys)
        else:
            t0 = profiler.start_op()
            gxs = f.backward(*gys)
            profiler.end_op("backward", f, f.inputs[0].shape if f.inputs else (), t0)
        if not isinstance(gxs, tuple):
            gxs = (gxs,)
        if len(gxs) != len(f.inputs):
            raise RuntimeError(f"{type(f).__name__}.backward returned {len(gxs)} gradients "
                               f"for {len(f.inputs)} inputs")
        for x, gx in zip(f.inputs, gxs):
            if gx is None or not x.requires_grad:
                continue
            if gx.shape != x.shape:
                raise RuntimeError(f"{type(f).__name__}.backward gave a gradient of shape "
                                   f"{gx.shape} for an input of shape {x.shape}")
            if x.creator is None or x._retain_grad:
                _accumulate(x, gx, owned=x.creator is None and _owns(f, gx, gxs, gys))
            if x.creator is not None:
                key = id(x)
                grads[key] = (x, gx if key not in grads else grads[key][1] + gx)
                push(x.creator)
        if pending:
            _edges_done(f, gxs, pending)
        if not retain_graph:
            f.release()
    # leaves whose other consumers lay in a branch that no gradient reached: final now
    for _, got, x in list((pending or {}).values()):
        if got:
            _call_hooks(x)


def _owns(f, gx, gxs, gys) -> bool:
    """Whether the leaf gradient ``gx`` that ``f.backward`` returned may become the leaf's
    ``.grad`` as it is: ``f`` promises fresh arrays (``fresh_grads``), ``gx`` owns its memory
    (not a view), and it is neither returned for another input nor one of the gradients that
    came in."""
    return (f.fresh_grads and getattr(gx, "base", True) is None
            and sum(g is gx for g in gxs) == 1 and not any(g is gx for g in gys))


def _accumulate(x, g, owned: bool = False) -> None:
    """Add ``g`` to ``x.grad``.  A first gradient is copied -- ``.grad`` is never an alias of
    another array -- unless it is ``owned`` (see :func:`_owns`): then it is kept as it is,
    which saves a copy of every input-sized gradient (a conv layer's input gradient:
    12.8 MB for 128x32x28x28)."""
    if g.dtype != x.dtype:
        g, owned = g.astype(x.dtype), True
    if x.grad is None:
        x.grad = g if owned else g.copy()
    else:
        x.grad = x.grad + g
