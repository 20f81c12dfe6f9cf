"""A bounded least-recently-used mapping, for caches of facts that never change."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Lru(Generic[K, V]):
    """A small mapping that forgets the least recently used entry beyond ``size``.

    Bounded on purpose: a service that sees an unbounded stream of jobs keeps a flat
    footprint, and an evicted entry costs one query to read again.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("an LRU needs room for at least one entry")
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self.size:
            self._items.popitem(last=False)

    def discard(self, key: K) -> None:
        self._items.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)
