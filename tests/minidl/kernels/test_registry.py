"""The kernel registry itself: choice by priority and predicate, force, disable, explain, and
the errors that name what was asked."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from minidl import kernels
from minidl.kernels import registry


@dataclass(frozen=True)
class Toy:
    size: int
    backend: str = "numpy"


@pytest.fixture
def toy(monkeypatch):
    """An op "toy" with two kernels: "big" (size >= 10, priority 2) and "any" (numpy, 1)."""
    monkeypatch.setitem(registry._OPS, "toy",
                        registry._Op("toy", lambda size, **kw: Toy(size, **kw)))
    kernels.register("toy", "big", backends=("numpy", "strict"), priority=2,
                     applies=lambda g: (g.size >= 10, f"size {g.size} vs 10"))("BIG")
    kernels.register("toy", "any", backends=("numpy",), priority=1,
                     applies=lambda g: (True, "always"))("ANY")
    return "toy"


def test_the_highest_priority_kernel_that_applies_is_chosen(toy):
    assert kernels.select(toy, Toy(20)).impl == "BIG"
    assert kernels.select(toy, Toy(5)).impl == "ANY"
    assert kernels.select(toy, Toy(5, "strict")) is None  # the reference
    assert kernels.select(toy, Toy(20, "strict")).name == "big"


def test_force_runs_the_kernel_or_says_why_not(toy):
    with kernels.force(toy, "any"):
        assert kernels.select(toy, Toy(20)).name == "any"
    with kernels.force(toy, "big"), pytest.raises(kernels.KernelNotApplicable,
                                                  match="'big' is forced.*size 5 vs 10"):
        kernels.select(toy, Toy(5))
    with kernels.force(toy, "reference"):
        assert kernels.select(toy, Toy(20)) is None
    with kernels.force("*", "reference"):
        assert kernels.select(toy, Toy(20)) is None
    assert kernels.select(toy, Toy(20)).name == "big"  # restored after the block


def test_disable_skips_kernels(toy):
    with kernels.disable(toy, "big"):
        assert kernels.select(toy, Toy(20)).name == "any"
    with kernels.disable(toy):
        assert kernels.select(toy, Toy(20)) is None


def test_explain_gives_the_choice_and_every_verdict(toy):
    choice = kernels.explain(toy, 5)
    assert choice.kernel == "any" and choice.reason == "always"
    assert choice.considered == (("big", False, "size 5 vs 10"), ("any", True, "always"))
    assert "toy: any (always)" in str(choice) and "- big: size 5 vs 10" in str(choice)
    assert kernels.explain(toy, 5, backend="strict").kernel == "reference"


def test_errors_name_the_op_and_the_kernels(toy):
    with pytest.raises(KeyError, match="toy has no kernel 'fast'.*'big', 'any', 'reference'"):
        with kernels.force(toy, "fast"):
            pass
    with pytest.raises(KeyError, match="op must be one of .*got 'nope'"):
        kernels.select("nope", Toy(1))
    with pytest.raises(ValueError, match="op '\\*' takes only 'reference'"):
        with kernels.force("*", "big"):
            pass
    with pytest.raises(KeyError, match="no kernels \\['fast'\\]"):
        with kernels.disable(toy, "fast"):
            pass
    with pytest.raises(ValueError, match="names the op's reference"):
        kernels.register(toy, "reference", backends=("numpy",), priority=0,
                         applies=lambda g: (True, ""))


def test_tuning_override_sets_and_restores():
    before = kernels.tuning.CONV_CHUNK_BYTES
    with kernels.tuning.override(CONV_CHUNK_BYTES=4096):
        assert kernels.tuning.CONV_CHUNK_BYTES == 4096
    assert kernels.tuning.CONV_CHUNK_BYTES == before
    with pytest.raises(KeyError, match="no tuning values \\['NOPE'\\]"):
        with kernels.tuning.override(NOPE=1):
            pass


def test_explain_builds_the_ops_geometry():
    choice = kernels.explain("conv2d", (8, 3, 16, 16), (4, 3, 3, 3), padding=1,
                             backend="strict")
    assert choice.geometry.OH == 16 and choice.geometry.backend == "strict"
    assert choice.kernel == "columns"  # the strict stand-in runs what CuPy runs


def test_choices_are_cached_but_follow_overrides_and_tuning(toy):
    calls = []

    def applies(g):
        calls.append(g)
        return g.size >= kernels.tuning.CONV_CHUNK_BYTES, "size vs CONV_CHUNK_BYTES"

    kernels.register(toy, "tuned", backends=("numpy",), priority=3, applies=applies)("TUNED")
    big = Toy(kernels.tuning.CONV_CHUNK_BYTES)
    assert kernels.select(toy, big).name == "tuned"
    assert kernels.select(toy, big).name == "tuned"
    assert len(calls) == 1                       # the second answer came from the cache
    with kernels.tuning.override(CONV_CHUNK_BYTES=big.size + 1):
        assert kernels.select(toy, big).name == "big"
    with kernels.disable(toy, "tuned"):
        assert kernels.select(toy, big).name == "big"
    with kernels.force(toy, "any"):
        assert kernels.select(toy, big).name == "any"
    assert kernels.select(toy, big).name == "tuned"
