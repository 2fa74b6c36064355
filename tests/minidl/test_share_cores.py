"""minidl.distributed.world.share_cores: N processes on a node split its cores for their host
threads, unless the user chose a thread count."""
import os

import pytest

from minidl import _openblas, parallel
from minidl.distributed import world


@pytest.fixture
def restore_threads(monkeypatch):
    for var in world.THREAD_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    before = parallel.get_num_threads()
    yield
    parallel.set_num_threads(before)
    _openblas.set_num_threads(len(os.sched_getaffinity(0)))


def test_each_process_gets_its_share_of_the_cores(restore_threads):
    cores = len(os.sched_getaffinity(0))
    assert world.share_cores(2) == max(1, cores // 2)
    assert parallel.get_num_threads() == max(1, cores // 2)
    assert world.share_cores(4 * cores) == 1             # more processes than cores: 1 each
    assert parallel.get_num_threads() == 1


def test_one_process_or_a_chosen_thread_count_is_left_alone(restore_threads, monkeypatch):
    parallel.set_num_threads(3)
    assert world.share_cores(1) is None
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert world.share_cores(2) is None
    assert parallel.get_num_threads() == 3
