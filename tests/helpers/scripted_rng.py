"""A stand-in for numpy.random.Generator that returns scripted values, to pin down the order and use of
random draws in the augmentation."""
from __future__ import annotations


class ScriptedRng:
    def __init__(self, values):
        self.values = list(values)

    def _next(self, low, high):
        assert self.values, "more random draws than scripted"
        value = self.values.pop(0)
        assert low <= value < high or (low == high == value), (value, low, high)
        return value

    def integers(self, low, high=None):
        if high is None:
            low, high = 0, low
        return self._next(low, high)

    def uniform(self, low, high):
        return self._next(low, high)

    def random(self):
        return self._next(0.0, 1.0)
