"""Test plugin with a syntax error on line 6."""
import kdbench as kd


class Broken(kd.Method):
    def compute(self, inp) return []
