"""Every test here starts and ends with no library patched."""

from __future__ import annotations

from typing import Callable, Iterator

import pytest

from wsfast.integrations.accelerate import Acceleration, accelerate, unaccelerate


@pytest.fixture(autouse=True)
def _unpatched() -> Iterator[None]:
    unaccelerate()
    yield
    unaccelerate()


@pytest.fixture
def accel() -> Callable[[str], Acceleration]:
    """Patch one target (with either codec: the tests run with both) and
    check that it was patched."""

    def patch(target: str) -> Acceleration:
        (result,) = accelerate(target, allow_pure_python=True)
        assert result.ok, result
        return result

    return patch
