"""Command-line plumbing shared by the examples (the tutorials themselves are the other files in
this folder): the argument parser, the one-line error reporting, image reading, and the MNIST
training flags.

Every example ends with ``run(main)``: an ordinary mistake (a missing or unreadable file, a file
that is not an image or not the right model, a diverging training run) prints one line
``error: ...`` on stderr and exits with status 1; a bad option value exits with status 2 (as
argparse does), Ctrl-C prints one line and exits with 130.  ``--debug`` (or the environment
variable ``MINIDL_DEBUG=1``) shows the full traceback instead.

Under ``mpiexec -n N`` the training examples run data-parallel (``minidl.distributed``): the
first line says how many processes run, only rank 0 prints, and an error on any rank prints
that rank's line and ends every rank (``MPI_Abort``) instead of leaving the others waiting.
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys

import minidl

DEBUG_ENV = "MINIDL_DEBUG"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` except where there is nothing to show (None, an off switch)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that shows every default in ``--help``, takes ``--debug``, and
    reports a usage error in one line (``error: ...``, status 2) instead of the whole usage."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)
        self.add_argument("--debug", action="store_true",
                          help=f"show the full traceback of an error (or set {DEBUG_ENV}=1)")

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _number(kind, test, words):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"{text!r} must be {words}")
        return value
    parse.__name__ = words.replace(" ", "_")
    return parse


positive_int = _number(int, lambda v: v > 0, "a positive integer")
nonnegative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: v > 0 and v != float("inf"), "a positive number")
fraction = _number(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")


def debug_requested(argv=None) -> bool:
    """``--debug`` on the command line or ``MINIDL_DEBUG`` set to anything but "" / "0"."""
    argv = sys.argv[1:] if argv is None else argv
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _user_errors() -> tuple:
    from PIL import UnidentifiedImageError
    return (OSError, ValueError, TypeError, ImportError, FloatingPointError, EOFError,
            pickle.UnpicklingError, UnidentifiedImageError, minidl.BackendUnavailableError)


def error_line(exc: BaseException) -> str:
    """The one line that names the problem: the exception's message, whitespace collapsed,
    cut at 400 characters."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.strerror}: {str(exc.filename)!r}"
    else:
        text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 400 else text[:397] + "..."


def run(main, argv=None):
    """Call ``main(argv)`` and exit with its status; turn the user's mistakes into one line on
    stderr (status 1), Ctrl-C into "interrupted" (status 130).  With ``--debug`` or
    ``MINIDL_DEBUG=1`` the traceback is shown as Python would."""
    debug = debug_requested(argv)
    if not debug:   # a diverging run's overflow warnings would bury the one-line verdict
        import warnings
        warnings.filterwarnings("ignore", r"(overflow|invalid value) encountered",
                                RuntimeWarning)
    try:
        status = main(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        _exit(130, "interrupted")
    except _user_errors() as exc:
        if debug:
            raise
        _exit(1, f"error: {error_line(exc)}")
    except SystemExit as exc:   # sys.exit("error: ...") from setup or load_splits
        if exc.code in (None, 0) or minidl.distributed.world_size() == 1:
            raise
        _exit(1 if isinstance(exc.code, str) else exc.code,
              exc.code if isinstance(exc.code, str) else None)
    sys.exit(status)


def _exit(status: int, line: str | None):
    """Print ``line`` on stderr and exit; under MPI name the rank and end every rank, which
    would otherwise wait for this one in their next collective."""
    from minidl import distributed
    if distributed.world_size() > 1:
        distributed.abort(status, line)
    if line:
        print(line, file=sys.stderr)
    sys.exit(status)


def read_gray(path):
    """An image file as float32 grey levels in [0, 1] on the host, read by
    ``minifeat.load_image`` (8/16-bit grey and RGB(A), palette, CMYK, EXIF orientation)."""
    import numpy

    from minifeat import load_image
    return load_image(path, xp=numpy)


def base_parser(description: str, epochs: int, batch_size: int, target: float,
                lr: float) -> argparse.ArgumentParser:
    """The flags every training example takes."""
    p = Parser(description=description)
    add_backend(p)
    p.add_argument("--epochs", type=positive_int, default=epochs, help="passes over the data")
    p.add_argument("--batch-size", type=positive_int, default=batch_size,
                   help="training images per step")
    p.add_argument("--lr", type=positive_float, default=lr, help="peak learning rate")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the weights, the shuffling and the augmentation")
    add_data_dir(p)
    p.add_argument("--target-acc", type=float, default=target,
                   help="exit with status 1 when the final test accuracy is below this")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="use only the first N training and N test images (smoke tests)")
    p.add_argument("--out", default="runs/" + description.split(":")[0].strip().lower()
                   .replace(" ", "_"), help="folder for the best model and the PNG plots")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--resume", default=None, metavar="PATH",
                   help="continue an interrupted run from its training state (OUT/last.npz, "
                        "written every epoch and every --save-every batches)")
    p.add_argument("--save-every", type=positive_int, default=100, metavar="BATCHES",
                   help="batches between writes of OUT/last.npz")
    return p


def add_backend(p) -> None:
    p.add_argument("--backend", choices=["numpy", "cupy", "strict"], default="numpy",
                   help="array backend: numpy (CPU) or cupy (GPU); strict is the test stand-in")


def add_data_dir(p) -> None:
    p.add_argument("--data-dir", default=None,
                   help="folder with the IDX .gz files (none given: $MINIDL_DATA, the cache, "
                        "or download)")


def setup(args) -> None:
    """Join the MPI world if launched under one (print how many processes run; only rank 0
    prints from here on), give each rank its GPU, select the backend and seed everything."""
    from minidl import distributed
    try:
        n = distributed.init()
    except distributed.MPIUnavailableError as exc:
        sys.exit(f"error: {error_line(exc)}")
    if distributed.is_main():
        print(processes_line(n), flush=True)
    else:   # one voice: the other ranks' progress and summaries would repeat rank 0's
        sys.stdout = open(os.devnull, "w")
    if n > 1 and args.backend == "cupy":
        use_local_gpu()
    try:
        minidl.use_backend(args.backend)
    except minidl.BackendUnavailableError as exc:
        sys.exit(f"error: {error_line(exc)}")
    minidl.seed(args.seed)


def processes_line(n: int) -> str:
    """The first line of a training example: how many processes train."""
    if n == 1:
        return "running on 1 process (launch with mpiexec -n N for data-parallel training)"
    from mpi4py import MPI
    library = MPI.Get_library_version().splitlines()[0].strip()
    return f"running on {n} processes, data-parallel over MPI ({library})"


def use_local_gpu() -> None:
    """One GPU per rank: the rank's index on its machine picks the device."""
    try:
        import cupy
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception:  # no CuPy or no GPU: use_backend("cupy") then says why
        return
    from minidl import distributed
    cupy.cuda.Device(distributed.local_rank() % max(count, 1)).use()


def fit_state_args(args, out) -> dict:
    """fit()'s arguments for a resumable run: OUT/last.npz written every epoch and every
    ``--save-every`` batches; ``--resume PATH`` continues from such a file."""
    return {"last_checkpoint": out / "last.npz", "save_every": args.save_every,
            "resume": args.resume}


def test_batch_size(default: int = 1000) -> int:
    """The evaluation batch, divisible by the number of processes (each takes a share)."""
    from minidl import distributed
    n = distributed.world_size()
    return max(n, default // n * n)


def load_splits(load, args):
    """``(x_train, y_train), (x_test, y_test)`` from a ``minidl.data`` loader, cut to
    ``--limit`` images; a missing or damaged data set ends the program with the loader's
    explanation (what was tried, how to supply the files) instead of a traceback."""
    from minidl.data import ChecksumError, DatasetNotFoundError
    try:
        train, test = (load(split, data_dir=args.data_dir) for split in ("train", "test"))
    except (DatasetNotFoundError, ChecksumError) as exc:
        sys.exit(f"error: {error_line(exc)}")
    if args.limit:
        train, test = [(x[:args.limit], y[:args.limit]) for x, y in (train, test)]
    return train, test


def summarize(history, time_to: float, wall: float, out) -> None:
    """Print test accuracy and training seconds per epoch, the time to first reach
    ``time_to`` test accuracy (DAWNBench-style), and the wall time."""
    print("epoch  test acc  train s")
    for r in history.epochs:
        print(f"{r['epoch']:>5}  {r['val_accuracy']:8.2%}  {r['seconds']:7.1f}")
    if history.time_to_target is not None:
        print(f"time to {time_to:.1%} test accuracy: {history.time_to_target:.1f}s of training")
    else:
        print(f"test accuracy never reached {time_to:.1%}")
    print(f"wall time {wall:.1f}s (training + evaluation); best model and plots in {out}/")


def report(test_acc: float, target: float) -> int:
    """Print the verdict; return the exit status (0 when the target is met)."""
    ok = test_acc >= target
    print(f"test accuracy {test_acc:.2%} (target {target:.2%}): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1
