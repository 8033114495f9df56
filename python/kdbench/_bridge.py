"""kdbench's side of the Python-method bridge (pybridge/python_bridge.cpp calls these functions).

Not for plugin authors: what they use is in kdbench/__init__.py. Everything here runs with the GIL held, called
from C++; errors raised here become one config error (declarations, options) or fail one run (compute).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import json
import math
import os
import re
import sys
import traceback
import typing
from typing import Any, Dict, List, Optional, Tuple

import torch

import kdbench as kd

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class PluginError(Exception):
    """A plugin file that cannot be loaded or declares a method badly. `where` is "file:line" when known."""

    def __init__(self, where: str, message: str):
        super().__init__(message)
        self.where = where
        self.message = message


def _where_in(exc: BaseException, path: str) -> str:
    """file:line of the innermost traceback frame in `path` (else the innermost frame), for messages."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if os.path.abspath(f.filename) == path]
    f = (mine or frames or [None])[-1]
    return f"{f.filename}:{f.lineno}" if f is not None else path


def format_exception(exc: BaseException, path: str, tb: Any = None) -> str:
    """One line for a failed call into a plugin: the exception's type and message and where in the plugin."""
    frames = traceback.extract_tb(tb if tb is not None else exc.__traceback__)
    mine = [f for f in frames if os.path.abspath(f.filename) == path]
    f = (mine or frames or [None])[-1]
    where = f" (at {f.filename}:{f.lineno} in {f.name})" if f is not None else ""
    message = str(exc).strip().replace("\n", " ")
    return f"{type(exc).__name__}: {message}{where}" if message else f"{type(exc).__name__}{where}"


def _kind(tp: Any, where: str, field: str) -> str:
    origin = typing.get_origin(tp)
    if tp is float:
        return "number"
    if tp is bool:
        return "bool"
    if tp is int:
        return "integer"
    if tp is str:
        return "string"
    if origin in (list, List) and typing.get_args(tp) in ((str,),):
        return "strings"
    if tp in (dict, Dict) or origin in (dict, Dict):
        return "json"
    raise PluginError(where, f"option '{field}' has type {tp!r}; kdbench options are float, int, bool, str, "
                             f"List[str] or dict")


def _declare(cls: type, path: str) -> Dict[str, Any]:
    where = f"{path}:{_class_line(cls)}"
    name = getattr(cls, "name", "")
    if not isinstance(name, str) or not _NAME.match(name):
        raise PluginError(where, f"class {cls.__name__}: name {name!r} must match [a-z][a-z0-9_]* (set the class "
                                 f"attribute `name`)")
    description = cls.description or (cls.__doc__ or "").strip().split("\n")[0].strip()
    if not description:
        raise PluginError(where, f"method '{name}': give it a one-line description (a docstring or `description`)")
    teachers = tuple(cls.teachers)
    if len(teachers) != 2 or not all(isinstance(t, int) and t >= 0 for t in teachers) or teachers[0] > teachers[1]:
        raise PluginError(where, f"method '{name}': teachers must be (min, max) with 0 <= min <= max, got {teachers!r}")
    opts = cls.Options
    if not dataclasses.is_dataclass(opts):
        raise PluginError(where, f"method '{name}': Options must be a @dataclass")
    hints = typing.get_type_hints(opts)
    params = []
    for f in dataclasses.fields(opts):
        meta = f.metadata.get("kdbench")
        if meta is None:
            raise PluginError(where, f"method '{name}': option '{f.name}' must be declared with kd.option(default, "
                                     f"range=..., doc=...)")
        kind = _kind(hints.get(f.name), where, f.name)
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            raise PluginError(where, f"method '{name}': option '{f.name}' has no default")
        p = {"name": f.name, "kind": kind, "doc": meta["doc"] or "", "choices": meta["choices"] or []}
        rng = meta["range"]
        if kind in ("number", "integer"):
            if isinstance(default, bool) or not isinstance(default, (int, float)):
                raise PluginError(where, f"method '{name}': option '{f.name}' is a {kind} but its default is "
                                         f"{default!r}")
            if rng is None or len(rng) != 2:
                raise PluginError(where, f"method '{name}': option '{f.name}' needs range=(lo, hi)")
            lo, hi = float(rng[0]), float(rng[1])
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
                raise PluginError(where, f"method '{name}': option '{f.name}' has an empty or infinite range "
                                         f"{tuple(rng)!r}")
            if kind == "integer" and int(default) != default:
                raise PluginError(where, f"method '{name}': option '{f.name}' is an integer but its default is "
                                         f"{default!r}")
            if not lo <= float(default) <= hi:
                raise PluginError(where, f"method '{name}': the default {default!r} of option '{f.name}' is outside "
                                         f"its range [{rng[0]}, {rng[1]}]")
            p["min"], p["max"] = lo, hi
            default = float(default) if kind == "number" else int(default)
        elif rng is not None:
            raise PluginError(where, f"method '{name}': option '{f.name}' is a {kind}; range= applies to numbers")
        if kind == "bool" and not isinstance(default, bool):
            raise PluginError(where, f"method '{name}': option '{f.name}' is a bool but its default is {default!r}")
        if kind == "string":
            if not isinstance(default, str):
                raise PluginError(where, f"method '{name}': option '{f.name}' is a str but its default is "
                                         f"{default!r}")
            if p["choices"] and default not in p["choices"]:
                raise PluginError(where, f"method '{name}': the default {default!r} of option '{f.name}' is not one "
                                         f"of its choices {p['choices']!r}")
        elif p["choices"]:
            raise PluginError(where, f"method '{name}': option '{f.name}' is a {kind}; choices= applies to str")
        if kind == "strings" and not (isinstance(default, list) and all(isinstance(s, str) for s in default)):
            raise PluginError(where, f"method '{name}': option '{f.name}' is a List[str] but its default is "
                                     f"{default!r}")
        try:
            p["default"] = json.loads(json.dumps(default))
        except (TypeError, ValueError):
            raise PluginError(where, f"method '{name}': the default of option '{f.name}' is not JSON") from None
        params.append(p)
    if cls.compute is kd.Method.compute:
        raise PluginError(where, f"method '{name}': class {cls.__name__} does not define compute(self, inp)")
    return {"name": name, "description": description, "citation": cls.citation or "",
            "min_teachers": teachers[0], "max_teachers": teachers[1], "params": params, "class": cls.__name__}


def _class_line(cls: type) -> int:
    try:
        return inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):
        return 1


def load_plugin(path: str) -> List[Tuple[type, str]]:
    """Imports a plugin file; returns (class, declaration as JSON) for every kd.Method subclass defined in it."""
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise PluginError(path, "no such file")
    module_name = "kdbench_plugin_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(path, "not a Python file")
    module = importlib.util.module_from_spec(spec)
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # a plugin may import its neighbours, as a script may
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        sys.modules.pop(module_name, None)
        raise PluginError(f"{e.filename or path}:{e.lineno or 0}", f"SyntaxError: {e.msg}") from None
    except Exception as e:  # noqa: BLE001 - any error while importing a plugin is the plugin's
        sys.modules.pop(module_name, None)
        message = str(e).strip().replace("\n", " ")
        raise PluginError(_where_in(e, path), f"{type(e).__name__}: {message}" if message else type(e).__name__) \
            from None
    found = []
    for value in list(vars(module).values()):
        if isinstance(value, type) and issubclass(value, kd.Method) and value is not kd.Method and \
                value.__module__ == module_name:
            found.append((value, json.dumps(_declare(value, path))))
    if not found:
        raise PluginError(path, "defines no subclass of kdbench.Method")
    return found


def _options(cls: type, values_json: str) -> Any:
    values = json.loads(values_json)
    hints = typing.get_type_hints(cls.Options)
    kwargs = {}
    for f in dataclasses.fields(cls.Options):
        if f.name in values:
            v = values[f.name]
            kwargs[f.name] = float(v) if hints.get(f.name) is float else v
    return cls.Options(**kwargs)


def validate(cls: type, values_json: str) -> Optional[Tuple[str, str]]:
    """Checks relations between values (Options.validate()); returns (key, message) of a problem or None."""
    opt = _options(cls, values_json)
    check = getattr(opt, "validate", None)
    if check is None:
        return None
    try:
        check()
    except kd.OptionError as e:
        return e.key, e.message
    except ValueError as e:
        return "", str(e)
    return None


def create(cls: type, values_json: str) -> Any:
    return cls(_options(cls, values_json))


def _names(value: Any, what: str) -> List[str]:
    if isinstance(value, str) or not all(isinstance(s, str) for s in value):
        raise TypeError(f"{what} must return a list of tap names, got {value!r}")
    return list(value)


def student_taps(m: Any) -> List[str]:
    return _names(m.student_taps(), "student_taps()")


def teacher_taps(m: Any, i: int) -> List[str]:
    return _names(m.teacher_taps(i), f"teacher_taps({i})")


def stages(m: Any) -> str:
    out = []
    for s in m.stages():
        if not isinstance(s, kd.Stage):
            raise TypeError(f"stages() must return kd.Stage values, got {s!r}")
        out.append(dataclasses.asdict(s))
    if not out:
        raise TypeError("stages() returned no stage")
    return json.dumps(out)


def prepare(m: Any, student: Dict[str, Tuple[int, ...]], teachers: List[Dict[str, Tuple[int, ...]]], device: str,
            train_size: int, num_classes: int, train_labels: Optional[torch.Tensor]) -> Optional[torch.nn.Module]:
    ctx = kd.Context(student, teachers, torch.device(device), train_size, num_classes, train_labels)
    module = m.prepare(ctx)
    if module is not None and not isinstance(module, torch.nn.Module):
        raise TypeError(f"prepare() must return a torch.nn.Module or None, got {type(module).__name__}")
    return module


def compute(m: Any, student: Dict[str, torch.Tensor], teachers: List[Dict[str, torch.Tensor]], labels: torch.Tensor,
            indices: torch.Tensor, stage: int, epoch: int, stage_epoch: int, step: int,
            steps_per_epoch: int) -> List[Tuple[str, torch.Tensor, float]]:
    terms = m.compute(kd.Input(student, teachers, labels, indices, stage, epoch, stage_epoch, step, steps_per_epoch))
    out = []
    if isinstance(terms, (kd.Term, torch.Tensor)) or not hasattr(terms, "__iter__"):
        raise TypeError(f"compute() must return a list of kd.Term, got {type(terms).__name__}")
    for t in terms:
        if not isinstance(t, tuple) or len(t) not in (2, 3):
            raise TypeError(f"compute() returned {t!r}; expected kd.Term(name, value, weight)")
        name, value, weight = (t[0], t[1], t[2] if len(t) == 3 else 1.0)
        if not isinstance(name, str) or not name:
            raise TypeError(f"a term's name must be a non-empty string, got {name!r}")
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise TypeError(f"term '{name}': the value must be a scalar tensor, got "
                            f"{type(value).__name__ if not isinstance(value, torch.Tensor) else tuple(value.shape)}")
        if isinstance(weight, torch.Tensor) or isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise TypeError(f"term '{name}': the weight must be a number, got {weight!r}")
        out.append((name, value.reshape(()), float(weight)))
    return out


def describe() -> str:
    return (f"Python {sys.version.split()[0]} ({sys.prefix}), torch {torch.__version__}")
