"""The run's collector pacing raises the young threshold inside the block only, and never lowers it."""

from __future__ import annotations

import gc

import pytest

from qhybrid.pipeline.gc_pacing import RUN_THRESHOLD, fewer_collections


@pytest.fixture
def thresholds():
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_the_threshold_is_raised_inside_and_restored_after(thresholds):
    gc.set_threshold(700, 10, 10)
    with fewer_collections():
        assert gc.get_threshold() == (RUN_THRESHOLD, 10, 10)
        with fewer_collections():  # nested: left as it is, and the outer block restores
            assert gc.get_threshold() == (RUN_THRESHOLD, 10, 10)
        assert gc.get_threshold() == (RUN_THRESHOLD, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_restored_when_the_block_raises(thresholds):
    gc.set_threshold(700, 10, 10)
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("a failed step")
    assert gc.get_threshold() == (700, 10, 10)


@pytest.mark.parametrize("caller", [(0, 10, 10), (RUN_THRESHOLD * 2, 5, 5)])
def test_a_caller_that_collects_less_often_is_left_alone(thresholds, caller):
    gc.set_threshold(*caller)
    with fewer_collections():
        assert gc.get_threshold() == caller
    assert gc.get_threshold() == caller
