"""minidl.progress: terminal redraws, plain log lines, silence, and the formatting helpers."""
import io

import pytest

from minidl import progress as P
from minidl.progress import ProgressBar, format_bytes, format_duration


class _Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class _TTY(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def clock(monkeypatch):
    c = _Clock()
    monkeypatch.setattr(P, "_now", c)
    return c


def test_format_bytes():
    assert format_bytes(0) == "0 B"
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(47040016) == "44.9 MiB"
    assert format_bytes(120 * 2**20) == "120 MiB"
    assert format_bytes(3 * 2**30) == "3.0 GiB"
    assert format_bytes(-2048) == "-2.0 KiB"


def test_format_duration():
    assert format_duration(0) == "00:00"
    assert format_duration(75.4) == "01:15"
    assert format_duration(3725) == "1:02:05"
    assert format_duration(None) == "?" and format_duration(float("inf")) == "?"


def test_tty_redraws_in_place_with_rate_eta_and_postfix(clock):
    out = _TTY()
    bar = ProgressBar(total=100, desc="epoch 1/2", unit="batch", stream=out)
    clock.t += 10
    bar.update(25, loss=0.123456, acc="97.5%", img_s="3200")
    text = out.getvalue()
    assert text.startswith("\repoch 1/2:   0%|")
    last = text.split("\r")[-1]
    assert last == ("epoch 1/2:  25%|#####               | 25/100 [00:10<00:30, 2.5 batch/s] "
                    "loss=0.1235 acc=97.5% img_s=3200")
    assert "\n" not in text
    clock.t += 0.01  # too soon for another redraw
    bar.update(1)
    assert out.getvalue() == text
    clock.t += 20
    bar.update(74)
    bar.close()
    assert out.getvalue().endswith("\n")
    assert "100%|####################| 100/100 [00:30<00:00" in out.getvalue().split("\r")[-1]
    bar.close()  # idempotent
    assert out.getvalue().count("\n") == 1


def test_tty_pads_over_a_longer_previous_line(clock):
    out = _TTY()
    bar = ProgressBar(total=None, desc="x", stream=out)
    clock.t += 1
    bar.update(1, note="a long postfix value")
    clock.t += 1
    bar.set_postfix()
    bar.update(1)
    previous, last = out.getvalue().split("\r")[-2:]
    assert len(last) >= len(previous) and last.rstrip() == "x: 2 it [00:02, 1.0 it/s]"


def test_plain_stream_prints_periodic_lines_and_a_final_one(clock):
    out = io.StringIO()
    bar = ProgressBar(total=1000, desc="train", unit="batch", stream=out)
    for _ in range(100):
        clock.t += 0.2
        bar.update(10)
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    # 20 s of updates, one line every 5 s, plus the final line
    assert len(lines) == 5
    assert lines[0].startswith("train:  25%|") and lines[-1].startswith("train: 100%|")
    assert all(line.count("|") == 2 for line in lines)


def test_disabled_is_silent_but_counts(clock):
    out = _TTY()
    bar = ProgressBar(total=10, stream=out, enabled=False)
    clock.t += 100
    bar.update(3, loss=1.0)
    bar.close()
    assert out.getvalue() == ""
    assert bar.n == 3 and bar.postfix == {"loss": 1.0}


def test_bytes_unit_and_unknown_total(clock):
    bar = ProgressBar(total=None, desc="f.gz", unit="B", stream=io.StringIO())
    clock.t += 2
    bar.n = 3 * 2**20
    assert bar.format_line() == "f.gz: 3.0 MiB [00:02, 1.5 MiB/s]"
    bar = ProgressBar(total=2**20, desc="f.gz", unit="B", stream=io.StringIO())
    clock.t += 1
    bar.n = 2**19
    assert bar.format_line() == ("f.gz:  50%|##########          | 512 KiB/1.0 MiB "
                                 "[00:01<00:01, 512 KiB/s]")


def test_context_manager_closes_and_update_after_close_fails(clock):
    out = io.StringIO()
    with ProgressBar(total=2, desc="d", stream=out) as bar:
        bar.update(2)
    assert out.getvalue().startswith("d: 100%|")
    with pytest.raises(ValueError, match=r"update\(\) on a closed ProgressBar \(d\)"):
        bar.update(1)


def test_closed_stream_does_not_break_the_caller(clock):
    out = io.StringIO()
    bar = ProgressBar(total=2, stream=out)
    out.close()
    clock.t += 10
    bar.update(1)
    bar.close()


def test_bad_total():
    with pytest.raises(ValueError, match="total must be a non-negative number or None, got -1"):
        ProgressBar(total=-1)
    with pytest.raises(ValueError, match="got True"):
        ProgressBar(total=True)


def test_train_loop_usage(clock, capsys):
    """The way minidl.train uses it: positional total/desc/unit/enabled keywords, stderr."""
    bar = ProgressBar(total=3, desc="eval", unit="batch", enabled=True)
    bar.update(3, loss="0.1000")
    bar.close()
    assert "eval: 100%|" in capsys.readouterr().err
