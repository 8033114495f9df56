"""Test plugin that declares an option badly: its default lies outside its range."""
from dataclasses import dataclass

import kdbench as kd


class BadDefault(kd.Method):
    """Declares temperature 0.01 with range [0.05, 100]."""

    name = "bad_default_kd"

    @dataclass
    class Options:
        temperature: float = kd.option(0.01, range=(0.05, 100.0), doc="softmax temperature")

    def compute(self, inp):
        return []
