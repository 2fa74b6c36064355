"""minidl.testing.gradcheck: passes right gradients, catches wrong ones (naming the input and
the numbers), refuses float32, handles non-float inputs and tuple outputs."""
import numpy as np
import pytest

from minidl import functions as F
from minidl.autograd import Function
from minidl.testing import GradcheckError, gradcheck


class Square(Function):
    def __init__(self, factor=2.0):
        self.factor = factor  # 2.0 is right; anything else is a planted bug

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, gy):
        return self.factor * self.x * gy


class WrongSecondInput(Function):
    """a * b with the gradient of b deliberately wrong (a sign flip)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, gy):
        return gy * self.b, -gy * self.a


def square(x):
    return Square()(x)


def dev(xp, a):
    return xp.asarray(np.asarray(a, dtype=np.float64))


def test_passes_a_right_backward(xp, rng):
    assert gradcheck(square, [dev(xp, rng.standard_normal((3, 4)))]) is True
    assert gradcheck(lambda a, b: F.matmul(a, b), [dev(xp, rng.standard_normal((2, 3))),
                                                   dev(xp, rng.standard_normal((3, 4)))])


def test_catches_a_wrong_backward_and_shows_the_numbers(xp, rng):
    def bad_square(x):
        return Square(factor=2.1)(x)

    with pytest.raises(GradcheckError) as info:
        gradcheck(bad_square, [dev(xp, rng.standard_normal((3, 4)))], n_directions=2)
    msg = str(info.value)
    assert msg.startswith("gradcheck failed for bad_square:\n")
    lines = msg.splitlines()[1:]
    assert len(lines) == 2
    for k, line in enumerate(lines):
        assert line.startswith(f"  input 0 (shape (3, 4)), direction {k}: analytic ")
        assert " vs numeric " in line and "(diff " in line
        analytic, numeric = (float(line.split(w)[1].split()[0]) for w in ("analytic", "numeric"))
        assert analytic == pytest.approx(1.05 * numeric, rel=1e-6)  # 2.1 / 2
    assert isinstance(info.value, AssertionError)  # pytest shows it as a test failure


def test_names_the_input_whose_gradient_is_wrong(xp, rng):
    inputs = [dev(xp, rng.standard_normal(4)), dev(xp, rng.standard_normal(4))]
    with pytest.raises(GradcheckError, match=r"gradcheck failed for .*\n  input 1 \(shape "
                                             r"\(4,\)\), direction 0") as info:
        gradcheck(lambda a, b: WrongSecondInput()(a, b), inputs)
    assert "input 0" not in str(info.value)
    assert gradcheck(lambda a, b: WrongSecondInput()(a, b), inputs, check=[0])


def test_catches_a_missing_gradient(xp, rng):
    class Detached(Function):
        def forward(self, x):
            return 3.0 * x

        def backward(self, gy):
            return None

    with pytest.raises(GradcheckError, match="analytic 0 vs numeric"):
        gradcheck(lambda x: Detached()(x), [dev(xp, rng.standard_normal(5))], n_directions=1)


def test_refuses_float32_inputs(xp):
    with pytest.raises(TypeError, match="gradcheck: input 0 must be float64 for a meaningful "
                                        "check, got float32"):
        gradcheck(square, [xp.asarray(np.ones(3, np.float32))])


def test_integer_inputs_and_tuple_outputs_pass_through(xp, rng):
    labels = xp.asarray(np.array([0, 2, 1]))
    assert gradcheck(lambda z, t: F.cross_entropy(z, t), [dev(xp, rng.standard_normal((3, 3))),
                                                          labels])

    def two_outputs(x):
        return square(x), x * 3.0  # only the first is checked

    assert gradcheck(two_outputs, [dev(xp, rng.standard_normal(3))])


def test_tolerances_are_honoured(xp, rng):
    x = [dev(xp, rng.standard_normal(6))]
    # a 0.01% error slips through loose tolerances and is caught by the defaults
    assert gradcheck(lambda t: Square(2.0002)(t), x, rtol=1e-3)
    with pytest.raises(GradcheckError):
        gradcheck(lambda t: Square(2.0002)(t), x)
