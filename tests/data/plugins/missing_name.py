"""Test plugin that fails while it is imported: a name that does not exist, on line 8."""
from dataclasses import dataclass

import kdbench as kd

SCALE = 2.0

OFFSET = SCALE * undefined_constant  # noqa: F821 - line 8, on purpose


class Never(kd.Method):
    """Never registered."""

    name = "never_kd"

    def compute(self, inp):
        return []
