"""Progress events from a running batch, for whoever listens (the CLI's bar, artifacts).

The flow reports how many jobs are finished; listeners registered in this process get the
numbers. Nothing here is sent anywhere unless a listener sends it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

Listener = Callable[[int, int], None]  # (done, total)

_listeners: list[Listener] = []


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


def report(done: int, total: int) -> None:
    for listener in list(_listeners):
        listener(done, total)
