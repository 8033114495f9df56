"""Checks the Python ports of kdbench's native methods (python/ports/*.py) against the reference values.

    ~/.cache/kdbench/venv/bin/python tests/python/check_ports.py        (from the repository root; any cwd works)

For every port:
  1. its declaration (loaded through kdbench._bridge.load_plugin, as kdbench loads a plugin) against the native
     method's MethodInfo, read from methods/<method>.cpp: the name (py_<method>), description, citation, teachers, and
     every hyperparameter's name, kind, default, range, choices and doc, in order;
  2. its terms on the inputs of tests/data/reference/<method>.json (part2/crd.json for crd) against the values the
     reference code computed, mapped to terms and hyperparameters as tests/test_methods_reference.cpp and
     tests/test_methods_reference_part2.cpp map them: float64, relative 1e-10 for values and gradients (CRD: float32
     and relative 2e-5, the part-2 test's tolerance, since its reference values are float32); fitnets, which has no
     reference file, against tests/test_methods_losses.cpp's hand-computed values, and its module's structure and
     initial weights;
  3. a deliberate-mistake self-test: copies of ports with one mistake each (logit_kd without T^2, dkd with a 0-based
     warm-up epoch, crd's sampler with an off-by-one Floyd bound or with Floyd's collisions resolved one level deep)
     must FAIL the same comparisons.
One line per check; the exit status is 1 if any check failed or any mistake went unnoticed.
"""

import contextlib
import copy
import io
import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import kdbench as kd  # noqa: E402
from kdbench import _bridge  # noqa: E402

PORTS = ROOT / "python" / "ports"
REF = ROOT / "tests" / "data" / "reference"
METHODS = ["logit_kd", "dkd", "dist", "attention", "fitnets", "sp", "pkt", "rkd", "crd"]
REL = 1e-10  # float64 on both sides (tests/test_methods_reference.cpp's kRel)
REL_F32 = 2e-5  # float32 reference values (tests/test_methods_reference_part2.cpp's default rtol)


# ---- reporting ------------------------------------------------------------------------------------------------
class Checks:
    """Counts and prints checks. With echo off (the mistake self-test) it only counts."""

    def __init__(self, echo=True):
        self.echo = echo
        self.passed = 0
        self.failed = []

    def ok(self, cond, what, detail=""):
        cond = bool(cond)
        if cond:
            self.passed += 1
        else:
            self.failed.append(what)
        if self.echo:
            print(f"{'PASS' if cond else 'FAIL'}  {what}" + (f"  ({detail})" if detail else ""))
        return cond

    def close(self, got, want, what, rel=REL):
        got = float(got.item()) if isinstance(got, torch.Tensor) else float(got)
        want = float(want)
        err = abs(got - want)
        tol = rel * max(1.0, abs(want))
        return self.ok(err <= tol, what, f"got {got!r}, want {want!r}, abs err {err:.2e}, tol {tol:.1e}")

    def tensor_close(self, got, want, what, rel=REL):
        want = want if isinstance(want, torch.Tensor) else torch.tensor(want, dtype=torch.float64)
        want = want.to(torch.float64)
        if got is None:
            return self.ok(False, what, "no tensor (no gradient?)")
        got = got.detach().to(torch.float64)
        if tuple(got.shape) != tuple(want.shape):
            if got.numel() != want.numel():
                return self.ok(False, what, f"shape {tuple(got.shape)} vs {tuple(want.shape)}")
            got = got.reshape(want.shape)
        scale = max(1.0, float(want.abs().max())) if want.numel() else 1.0
        err = float((got - want).abs().max()) if want.numel() else 0.0
        return self.ok(err <= rel * scale, what, f"max abs err {err:.2e}, tol {rel * scale:.1e}")

    def equal(self, got, want, what):
        return self.ok(got == want, what, f"got {got!r}, want {want!r}" if got != want else f"{got!r}")

    def raises(self, fn, exc_type, what, check=None):
        try:
            fn()
        except exc_type as e:  # noqa: PERF203
            good = check(e) if check else True
            return self.ok(good, what, f"{type(e).__name__}: {e}")
        except Exception as e:  # noqa: BLE001
            return self.ok(False, what, f"raised {type(e).__name__}: {e}")
        return self.ok(False, what, "did not raise")


# ---- the bridge's path into a port (kdbench/_bridge.py: what pybridge/python_bridge.cpp calls) --------------------
class Port:
    """A loaded port: its Method class, its declaration as kdbench sees it and its module (for the pure functions)."""

    def __init__(self, path):
        found = _bridge.load_plugin(str(path))
        if len(found) != 1:
            raise RuntimeError(f"{path}: expected one kd.Method subclass, found {len(found)}")
        self.cls, decl = found[0]
        self.decl = json.loads(decl)
        self.mod = sys.modules[self.cls.__module__]
        self.path = path

    def make(self, params=None):
        text = json.dumps(params or {})
        problem = _bridge.validate(self.cls, text)
        if problem is not None:
            raise kd.OptionError(*problem)
        return _bridge.create(self.cls, text)


class Run:
    """One compute() of a port through the bridge: terms in order, by name."""

    def __init__(self, method, module, terms):
        self.method, self.module, self.terms = method, module, terms
        self.names = [t[0] for t in terms]

    def value(self, name):
        return next(t[1] for t in self.terms if t[0] == name)

    def weight(self, name):
        return next(t[2] for t in self.terms if t[0] == name)

    def weighted(self, name):
        return self.weight(name) * float(self.value(name))

    def total(self):
        return sum(w * float(v) for _, v, w in self.terms)


def shapes(taps):
    return {k: tuple(v.shape) for k, v in taps.items()}


def prepare(method, student, teacher, train_size=0, num_classes=0, train_labels=None):
    return _bridge.prepare(method, shapes(student), [shapes(teacher)], "cpu", train_size, num_classes, train_labels)


def compute(method, student, teacher, labels, indices=None, stage=0, epoch=0):
    if indices is None:
        indices = torch.arange(labels.size(0))
    return _bridge.compute(method, student, [teacher], labels, indices, stage, epoch, epoch, 0, 1)


def run_method(port, params, student, teacher, labels, epoch=0, stage=0):
    """tests/test_methods_reference.cpp's run_method: create, prepare from the tap shapes, compute one batch."""
    m = port.make(params)
    module = prepare(m, student, teacher)
    return Run(m, module, compute(m, student, teacher, labels, stage=stage, epoch=epoch))


# ---- reference files ------------------------------------------------------------------------------------------------
def load_ref(name):
    with open(REF / f"{name}.json") as f:
        return json.load(f)


def cases(j):
    """The primary case (top-level keys) and every entry of more_cases, as the C++ test's cases()."""
    primary = {"name": j["primary_case"]}
    for k in ("inputs", "outputs", "grad", "hyperparameters", "independent_checks"):
        if k in j:
            primary[k] = j[k]
    return [primary] + list(j.get("more_cases", []))


def f64(v):
    return torch.tensor(v, dtype=torch.float64)


def f32(v):
    """A part-2 value: each number parsed as a double, then cast to float32 (the files' round-trip decimals)."""
    return torch.tensor(v, dtype=torch.float64).to(torch.float32)


def long(v):
    return torch.tensor(v, dtype=torch.long)


def grad_of(x, loss_of):
    leaf = x.clone().requires_grad_(True)
    loss_of(leaf).backward()
    return leaf.grad


# ---- 1. declarations against the native MethodInfo ---------------------------------------------------------------
def _cpp_string(s):
    return s.replace('\\"', '"').replace("\\\\", "\\").replace("\\n", "\n")


def _literals(arg):
    """The concatenation of the adjacent C++ string literals in `arg`."""
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"', arg)
    return "".join(_cpp_string(p) for p in parts)


def _split_args(text, start):
    """Arguments of the call whose '(' is at text[start]: (list of argument strings, index after ')')."""
    depth, i, args, cur = 0, start, [], []
    while i < len(text):
        ch = text[i]
        if ch == '"':
            j = i + 1
            while text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            cur.append(text[i:j + 1])
            i = j + 1
            continue
        if ch in "([{":
            depth += 1
            if depth == 1 and ch == "(":
                i += 1
                continue
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                args.append("".join(cur).strip())
                return args, i + 1
        elif ch == "," and depth == 1:
            args.append("".join(cur).strip())
            cur = []
            i += 1
            continue
        cur.append(ch)
        i += 1
    raise ValueError("unbalanced call")


def _number(expr):
    expr = re.sub(r"int64_t\((\d+)\)", r"\1", expr.strip())
    if not re.fullmatch(r"[0-9eE.+\-<> ()]+", expr):
        raise ValueError(f"cannot evaluate {expr!r}")
    return eval(expr, {"__builtins__": {}}, {})  # noqa: S307 - digits and << only


def _cpp_default(ctype, init):
    init = init.strip()
    if ctype == "bool":
        return {"true": True, "false": False}[init]
    if ctype == "std::string":
        return _literals(init)
    if ctype == "std::vector<std::string>":
        return [_cpp_string(s) for s in re.findall(r'"((?:[^"\\]|\\.)*)"', init)]
    if ctype == "nlohmann::json":
        return None
    return _number(init)


def native_declaration(method):
    """The MethodInfo of methods/<method>.cpp, read from its source: name, description, citation, teachers, params."""
    src = (ROOT / "methods" / f"{method}.cpp").read_text()
    src = re.sub(r"//[^\n]*", "", src)  # comments (no string literal of these files holds //)
    opts = re.search(r"struct Options\s*\{(.*?)\n\s*\};", src, re.S).group(1)
    opts = re.sub(r"void validate\(\) const \{.*", "", opts, flags=re.S)
    defaults = {}
    for ctype, name, init1, init2 in re.findall(
            r"(double|int64_t|bool|std::string|std::vector<std::string>|nlohmann::json)\s+(\w+)\s*"
            r"(?:=\s*([^;]+)|\{([^;]*)\})\s*;", opts):
        defaults[name] = _cpp_default(ctype, init1 if init1 else "{" + init2 + "}")
    # The option pieces of methods/method.h (KdTerm, PairedTaps, Form), with their defaults.
    for name, init in re.findall(r"KdTerm\s+(\w+)\s*(\{[^;]*\})?\s*;", opts):
        vals = [_number(v) for v in init.strip("{}").split(",")] if init else []
        defaults[name] = {"alpha": vals[0] if vals else 0.0, "temperature": vals[1] if len(vals) > 1 else 4.0}
    for name, init in re.findall(r"PairedTaps\s+(\w+)\s*\{(.*?)\}\s*;", opts):
        lists = re.findall(r"\{([^{}]*)\}", init + "}")
        defaults[name] = {"student": _cpp_default("std::vector<std::string>", lists[0]),
                          "teacher": _cpp_default("std::vector<std::string>", lists[1])}
    for name, value in re.findall(r"Form\s+(\w+)\s*=\s*Form::(\w+)\s*;", opts):
        defaults[name] = value.lower()
    body = src[src.index("static MethodInfo info()"):]
    of = re.search(r"MethodInfo::of<\w+>\(", body)
    args, pos = _split_args(body, of.end() - 1)
    decl = {"name": _literals(args[0]), "description": _literals(args[1]), "citation": "", "params": [],
            "omitted_at_default": []}
    kinds = {"number": "number", "integer": "integer", "boolean": "bool", "string": "string", "strings": "strings",
             "json": "json"}
    while True:
        m = re.match(r"\s*\.(\w+)\(", body[pos:])
        if not m:
            break
        call = m.group(1)
        args, pos = _split_args(body, pos + m.end() - 1)
        if call == "cite":
            decl["citation"] = _literals(args[0])
        elif call == "teachers":
            decl["min_teachers"], decl["max_teachers"] = int(_number(args[0])), int(_number(args[1]))
        elif call == "omitted_at_default":
            decl["omitted_at_default"].append(decl["params"][-1]["name"])
        elif call in kinds:
            field = re.fullmatch(r"&Options::(\w+)", args[1]).group(1)
            p = {"name": _literals(args[0]), "kind": kinds[call], "default": defaults[field], "choices": [],
                 "doc": _literals(args[-1])}
            if call in ("number", "integer"):
                p["min"], p["max"] = float(_number(args[2])), float(_number(args[3]))
            if call == "string":
                p["choices"] = [_cpp_string(s) for s in re.findall(r'"((?:[^"\\]|\\.)*)"', args[2])]
            decl["params"].append(p)
        elif call == "kd_term":  # MethodInfo::kd_term: alpha and temperature with their fixed ranges and docs
            d = defaults[re.fullmatch(r"&Options::(\w+)", args[0]).group(1)]
            stage = _literals(args[1]) if len(args) > 1 else ""
            decl["params"].append({"name": "alpha", "kind": "number", "default": d["alpha"], "choices": [],
                                   "doc": stage + ("weight of a KD term" if stage else "weight of an added KD term")
                                   + "; CE gets 1 - alpha", "min": 0.0, "max": 1.0})
            decl["params"].append({"name": "temperature", "kind": "number", "default": d["temperature"], "choices": [],
                                   "doc": "KD temperature when alpha > 0", "min": 0.05, "max": 100.0})
        elif call == "paired_taps":  # MethodInfo::paired_taps: student_taps, teacher_taps
            d = defaults[re.fullmatch(r"&Options::(\w+)", args[0]).group(1)]
            for side, doc in (("student", args[1]), ("teacher", args[2])):
                decl["params"].append({"name": side + "_taps", "kind": "strings", "default": d[side], "choices": [],
                                       "doc": _literals(doc)})
        elif call == "form":  # MethodInfo::form: a string option, reference or paper
            field = re.fullmatch(r"&Options::(\w+)", args[1]).group(1)
            decl["params"].append({"name": _literals(args[0]), "kind": "string", "default": defaults[field],
                                   "choices": ["reference", "paper"], "doc": _literals(args[-1])})
        else:
            raise ValueError(f"methods/{method}.cpp: unknown MethodInfo call .{call}()")
    return decl


def check_declaration(C, method, port):
    nat = native_declaration(method)
    d = port.decl
    tag = f"{method} declaration"
    C.equal(d["name"], "py_" + nat["name"], f"{tag}: name")
    C.equal(d["description"], nat["description"], f"{tag}: description")
    C.equal(d["citation"], nat["citation"], f"{tag}: citation")
    C.equal((d["min_teachers"], d["max_teachers"]), (nat["min_teachers"], nat["max_teachers"]), f"{tag}: teachers")
    C.equal([p["name"] for p in d["params"]], [p["name"] for p in nat["params"]], f"{tag}: hyperparameter names")
    for mine, theirs in zip(d["params"], nat["params"]):
        for key in ("kind", "default", "choices", "doc", "min", "max"):
            if key in theirs or key in mine:
                a, b = mine.get(key), theirs.get(key)
                same = (a == b) if not (isinstance(a, float) or isinstance(b, float)) else (
                    a is not None and b is not None and float(a) == float(b))
                C.ok(same, f"{tag}: {theirs['name']}.{key}", f"{a!r}" if same else f"got {a!r}, want {b!r}")
    if nat["omitted_at_default"] and C.echo:
        print(f"NOTE  {tag}: native omits {nat['omitted_at_default']} from run ids at their defaults "
              f"(omitted_at_default); kd.option has no such flag (run ids only, not training)")


# ---- 2. reference values, method by method --------------------------------------------------------------------------
def check_logit_kd(C, port):
    mod = port.mod
    j = load_ref("logit_kd")
    for c in cases(j):
        name, T = c["name"], float(c["hyperparameters"]["T"])
        s, t = f64(c["inputs"]["student_logits"]), f64(c["inputs"]["teacher_logits"])
        C.close(mod.soft_kl(s, t, T), c["outputs"]["loss"], f"logit_kd {name}: soft_kl = RepDistiller DistillKL")
        C.close(mod.soft_kl(s, t, T), c["outputs"]["mdistiller_kd_loss_same_inputs"],
                f"logit_kd {name}: soft_kl = mdistiller kd_loss")
        C.tensor_close(grad_of(s, lambda x: mod.soft_kl(x, t, T)), c["grad"]["student_logits"],
                       f"logit_kd {name}: d soft_kl / d student")
        y = torch.zeros(s.size(0), dtype=torch.long)
        r = run_method(port, {"temperature": T}, {"logits": s}, {"logits": t}, y)
        C.equal(r.names, ["ce", "kd"], f"logit_kd {name}: terms")
        C.close(r.value("kd"), c["outputs"]["loss"], f"logit_kd {name}: method kd term")
        C.equal(r.weight("kd"), 0.9, f"logit_kd {name}: kd weight")
        C.equal(r.weight("ce"), 1.0 - 0.9, f"logit_kd {name}: ce weight")
        C.close(r.value("ce"), torch.nn.functional.cross_entropy(s, y), f"logit_kd {name}: ce term")
    C.raises(lambda: port.make({"alpha": 9}), kd.OptionError, "logit_kd: alpha 9 without ce_weight is refused",
             lambda e: e.key == "alpha" and
             e.message == "9 is above 1, so CE would get 1 - alpha < 0: set ce_weight too")
    C.ok(_bridge.validate(port.cls, json.dumps({"alpha": 9, "ce_weight": 0.1})) is None,
         "logit_kd: alpha 9 with ce_weight is accepted")


def check_logit_standardization(C, kd_port, dkd_port):
    j = load_ref("logit_standardization")
    K, D = kd_port.mod, dkd_port.mod
    for c in cases(j):
        name = c["name"]
        h = c["hyperparameters"]
        T, w = float(h["base_temperature"]), float(h["kd_weight"])
        a, b = float(h["DKD"]["ALPHA"]), float(h["DKD"]["BETA"])
        s, t = f64(c["inputs"]["student_logits"]), f64(c["inputs"]["teacher_logits"])
        y = long(c["inputs"]["target"])
        o = c["outputs"]
        for tag, std in (("logit_kd", K.standardize_logits), ("dkd", D.standardize_logits)):
            C.tensor_close(std(s, "reference"), o["normalize_student"], f"{tag} LS {name}: normalize(student)")
            C.tensor_close(std(t, "reference"), o["normalize_teacher"], f"{tag} LS {name}: normalize(teacher)")

        def kd_ls(x, form):
            return K.soft_kl(K.standardize_logits(x, form), K.standardize_logits(t, form), T)

        def dkd_ls(x, form):
            tc, nc = D.dkd_terms(D.standardize_logits(x, form), D.standardize_logits(t, form), y, T)
            return a * tc + b * nc

        C.close(kd_ls(s, "reference"), o["kd_ls"], f"logit_kd LS {name}: kd_ls")
        C.close(K.soft_kl(s, t, T), o["kd_no_ls"], f"logit_kd LS {name}: kd without LS")
        C.close(dkd_ls(s, "reference"), o["dkd_ls"], f"dkd LS {name}: dkd_ls")
        tc, nc = D.dkd_terms(D.standardize_logits(s, "reference"), D.standardize_logits(t, "reference"), y, T)
        C.close(tc, o["dkd_ls_tckd"], f"dkd LS {name}: tckd")
        C.close(nc, o["dkd_ls_nckd"], f"dkd LS {name}: nckd")
        C.tensor_close(grad_of(s, lambda x: kd_ls(x, "reference")), c["grad"]["student_logits_kd_ls"],
                       f"logit_kd LS {name}: d kd_ls / d student")
        C.tensor_close(grad_of(s, lambda x: dkd_ls(x, "reference")), c["grad"]["student_logits_dkd_ls"],
                       f"dkd LS {name}: d dkd_ls / d student")
        ind = c["independent_checks"]
        C.close(kd_ls(s, "paper"), ind["kd_ls_population_std"], f"logit_kd LS {name}: paper form")
        C.close(dkd_ls(s, "paper"), ind["dkd_ls_population_std"], f"dkd LS {name}: paper form")
        r = run_method(kd_port, {"logit_standardization": True, "temperature": T, "alpha": w, "ce_weight": 0.1},
                       {"logits": s}, {"logits": t}, y)
        C.close(r.weighted("ce"), o["KD_forward_train"]["loss_ce"], f"logit_kd LS {name}: method ce")
        C.close(r.weighted("kd"), o["KD_forward_train"]["loss_kd"], f"logit_kd LS {name}: method kd")
        for key, epoch in (("DKD_forward_train_epoch1", 1), ("DKD_forward_train_epoch240", 240)):
            rd = run_method(dkd_port, {"logit_standardization": True, "temperature": T, "alpha": a, "beta": b},
                            {"logits": s}, {"logits": t}, y, epoch=epoch - 1)
            C.close(rd.weighted("ce"), o[key]["loss_ce"], f"dkd LS {name}: method ce, {key}")
            C.close(rd.weighted("tckd") + rd.weighted("nckd"), o[key]["loss_kd"], f"dkd LS {name}: method kd, {key}")


def check_dkd(C, port):
    mod = port.mod
    j = load_ref("dkd")
    for c in cases(j):
        name = c["name"]
        h = c["hyperparameters"]
        T, alpha, beta = float(h["temperature"]), float(h["alpha"]), float(h["beta"])
        s, t = f64(c["inputs"]["student_logits"]), f64(c["inputs"]["teacher_logits"])
        y = long(c["inputs"]["target"])
        tc, nc = mod.dkd_terms(s, t, y, T)
        C.close(tc, c["outputs"]["tckd"], f"dkd {name}: tckd")
        C.close(nc, c["outputs"]["nckd"], f"dkd {name}: nckd")
        C.close(alpha * tc + beta * nc, c["outputs"]["dkd"], f"dkd {name}: dkd_loss")

        def total(x):
            e = mod.dkd_terms(x, t, y, T)
            return alpha * e[0] + beta * e[1]

        C.tensor_close(grad_of(s, total), c["grad"]["student_logits"], f"dkd {name}: d dkd / d student")
        C.tensor_close(grad_of(s, lambda x: mod.dkd_terms(x, t, y, T)[0]), c["grad"]["student_logits_tckd"],
                       f"dkd {name}: d tckd / d student")
        C.tensor_close(grad_of(s, lambda x: mod.dkd_terms(x, t, y, T)[1]), c["grad"]["student_logits_nckd"],
                       f"dkd {name}: d nckd / d student")
    # The warm-up on mdistiller's 1-based epoch, through the method.
    w = j["warmup"]
    cfg = w["cfg"]
    s, t, y = f64(j["inputs"]["student_logits"]), f64(j["inputs"]["teacher_logits"]), long(j["inputs"]["target"])
    params = {"alpha": cfg["ALPHA"], "beta": cfg["BETA"], "temperature": cfg["T"], "warmup_epochs": cfg["WARMUP"]}
    defaults = port.cls.Options()
    C.equal({k: getattr(defaults, k) for k in params}, params, "dkd: the defaults are mdistiller's CIFAR-100 config")
    for v in w["values"]:
        epoch = int(v["epoch"])
        r = run_method(port, params, {"logits": s}, {"logits": t}, y, epoch=epoch - 1)
        C.equal(r.names, ["ce", "tckd", "nckd"], f"dkd warm-up epoch {epoch}: terms")
        C.close(r.weighted("ce"), v["loss_ce"], f"dkd warm-up epoch {epoch}: loss_ce")
        C.close(r.weighted("tckd") + r.weighted("nckd"), v["loss_kd"], f"dkd warm-up epoch {epoch}: loss_kd")
        C.close(r.total(), v["trainer_total"], f"dkd warm-up epoch {epoch}: total")


def check_dist(C, port):
    mod = port.mod
    j = load_ref("dist")
    for c in cases(j):
        name = c["name"]
        h = c["hyperparameters"]
        tau, beta, gamma = float(h["tau"]), float(h["beta"]), float(h["gamma"])
        s, t = f64(c["inputs"]["student_logits"]), f64(c["inputs"]["teacher_logits"])
        inter, intra = mod.dist_terms(s, t, tau)
        o = c["outputs"]
        C.close(inter, o["inter_loss_tau2"], f"dist {name}: inter")
        C.close(intra, o["intra_loss_tau2"], f"dist {name}: intra")
        C.close(inter / (tau * tau), o["inter_class_relation"], f"dist {name}: inter_class_relation")
        C.close(intra / (tau * tau), o["intra_class_relation"], f"dist {name}: intra_class_relation")
        C.close(beta * inter + gamma * intra, o["loss"], f"dist {name}: DIST loss")

        def total(x):
            e = mod.dist_terms(x, t, tau)
            return beta * e[0] + gamma * e[1]

        C.tensor_close(grad_of(s, total), c["grad"]["student_logits"], f"dist {name}: d loss / d student")
        y = torch.zeros(s.size(0), dtype=torch.long)
        r = run_method(port, {"temperature": tau}, {"logits": s}, {"logits": t}, y)
        C.equal(r.names, ["ce", "inter", "intra"], f"dist {name}: terms")
        C.close(r.weighted("inter") + r.weighted("intra"), 2.0 * (o["inter_loss_tau2"] + o["intra_loss_tau2"]),
                f"dist {name}: method (beta = gamma = 2)")
        C.equal((r.weight("inter"), r.weight("intra"), r.weight("ce")), (2.0, 2.0, 1.0), f"dist {name}: weights")


def check_sp(C, port):
    mod = port.mod
    j = load_ref("sp")
    cs = cases(j)
    for c in cs:
        name = c["name"]
        s, t = f64(c["inputs"]["student_feat"]), f64(c["inputs"]["teacher_feat"])
        C.close(mod.similarity_preserving(s, t), c["outputs"]["loss"], f"sp {name}: loss = RepDistiller Similarity")
        C.tensor_close(grad_of(s, lambda x: mod.similarity_preserving(x, t)), c["grad"]["student_feat"],
                       f"sp {name}: d loss / d student")
    st = {"logits": torch.zeros(4, 3, dtype=torch.float64), "a": f64(cs[0]["inputs"]["student_feat"]),
          "b": f64(cs[1]["inputs"]["student_feat"])}
    tt = {"logits": torch.zeros(4, 3, dtype=torch.float64), "x": f64(cs[0]["inputs"]["teacher_feat"]),
          "y": f64(cs[1]["inputs"]["teacher_feat"])}
    r = run_method(port, {"student_taps": ["a", "b"], "teacher_taps": ["x", "y"]}, st, tt,
                   torch.zeros(4, dtype=torch.long))
    C.equal(r.names, ["ce", "sp"], "sp: terms (alpha 0: no kd)")
    C.close(r.value("sp"), j["multi_layer"]["sum"], "sp: two tap pairs through the method = sum of RepDistiller's")
    C.equal(r.weight("sp"), 3000.0, "sp: weight")
    C.raises(lambda: port.make({"student_taps": ["a", "b"], "teacher_taps": ["x"]}), kd.OptionError,
             "sp: unequal tap lists are refused", lambda e: e.key == "teacher_taps")


def check_rkd(C, port):
    mod = port.mod
    j = load_ref("rkd")
    for c in cases(j):
        name = c["name"]
        wd, wa = float(c["hyperparameters"]["w_d"]), float(c["hyperparameters"]["w_a"])
        s, t = f64(c["inputs"]["student_emb"]), f64(c["inputs"]["teacher_emb"])
        d, a = mod.rkd_terms(s, t, "reference")
        o = c["outputs"]
        C.close(d, o["loss_distance_unweighted"], f"rkd {name}: distance")
        C.close(a, o["loss_angle_unweighted"], f"rkd {name}: angle")
        C.close(wd * d + wa * a, o["loss"], f"rkd {name}: RKDLoss")

        def total(x):
            e = mod.rkd_terms(x, t, "reference")
            return wd * e[0] + wa * e[1]

        C.tensor_close(grad_of(s, total), c["grad"]["student_emb"], f"rkd {name}: d loss / d student")
        C.tensor_close(grad_of(s, lambda x: mod.rkd_terms(x, t, "reference")[0]),
                       c["grad"]["student_emb_distance_only"], f"rkd {name}: d distance / d student")
        C.tensor_close(grad_of(s, lambda x: mod.rkd_terms(x, t, "reference")[1]), c["grad"]["student_emb_angle_only"],
                       f"rkd {name}: d angle / d student")
        pd, pa = mod.rkd_terms(s, t, "paper")
        ind = c["independent_checks"]
        C.close(pd, ind["loss_d_if_mean_over_offdiagonal_B(B-1)"], f"rkd {name}: paper distance")
        C.close(pa, ind["loss_a_if_mean_over_distinct_triplets_B(B-1)(B-2)"], f"rkd {name}: paper angle")
        B = s.size(0)
        r = run_method(port, {"student_tap": "e", "teacher_tap": "e"},
                       {"logits": torch.zeros(B, 3, dtype=torch.float64), "e": s},
                       {"logits": torch.zeros(B, 3, dtype=torch.float64), "e": t}, torch.zeros(B, dtype=torch.long))
        C.equal(r.names, ["ce", "distance", "angle"], f"rkd {name}: terms")
        C.close(r.weighted("distance") + r.weighted("angle"), o["loss"], f"rkd {name}: method at its defaults")


def check_pkt(C, port):
    mod = port.mod
    j = load_ref("pkt")
    for c in cases(j):
        name = c["name"]
        s, t = f64(c["inputs"]["student_emb"]), f64(c["inputs"]["teacher_emb"])
        C.close(mod.pkt_loss(s, t, "reference"), c["outputs"]["loss"], f"pkt {name}: loss = RepDistiller PKT")
        C.tensor_close(grad_of(s, lambda x: mod.pkt_loss(x, t, "reference")), c["grad"]["student_emb"],
                       f"pkt {name}: d loss / d student")
        C.close(mod.pkt_loss(s, t, "paper"), c["independent_checks"]["paper_form_loss"], f"pkt {name}: paper form")
        B = s.size(0)
        for form in ("reference", "paper"):
            r = run_method(port, {"student_tap": "e", "teacher_tap": "e", "form": form},
                           {"logits": torch.zeros(B, 3, dtype=torch.float64), "e": s},
                           {"logits": torch.zeros(B, 3, dtype=torch.float64), "e": t},
                           torch.zeros(B, dtype=torch.long))
            want = c["outputs"]["loss"] if form == "reference" else c["independent_checks"]["paper_form_loss"]
            C.equal(r.names, ["ce", "pkt"], f"pkt {name}: terms ({form})")
            C.close(r.value("pkt"), want, f"pkt {name}: method pkt term, form {form}")
            C.equal(r.weight("pkt"), 30000.0, f"pkt {name}: weight")


def check_attention(C, port):
    mod = port.mod
    j = load_ref("attention")
    cs = cases(j)
    for c in cs:
        name = c["name"]
        s, t = f64(c["inputs"]["student_feat"]), f64(c["inputs"]["teacher_feat"])
        C.close(mod.attention_loss(s, t, 2.0), c["outputs"]["loss"], f"attention {name}: at_loss")
        C.tensor_close(grad_of(s, lambda x: mod.attention_loss(x, t, 2.0)), c["grad"]["student_feat"],
                       f"attention {name}: d at_loss / d student")
        if "at_student" in c["outputs"]:
            C.tensor_close(mod.attention_map(s, 2.0), c["outputs"]["at_student"], f"attention {name}: at(student)")
            C.tensor_close(mod.attention_map(t, 2.0), c["outputs"]["at_teacher"], f"attention {name}: at(teacher)")
    st = {"logits": torch.zeros(2, 3, dtype=torch.float64), "block1": f64(cs[1]["inputs"]["student_feat"]),
          "block2": f64(cs[2]["inputs"]["student_feat"])}
    tt = {"logits": torch.zeros(2, 3, dtype=torch.float64), "block1": f64(cs[1]["inputs"]["teacher_feat"]),
          "block2": f64(cs[2]["inputs"]["teacher_feat"])}
    taps = {"student_taps": ["block1", "block2"], "teacher_taps": ["block1", "block2"]}
    y = torch.zeros(2, dtype=torch.long)
    r = run_method(port, taps, st, tt, y)
    C.equal(r.names, ["ce", "at"], "attention: terms (alpha 0: no kd)")
    C.close(r.value("at"), j["multi_layer"]["sum"], "attention: two pairs through the method (resize: pool)")
    ri = run_method(port, dict(taps, resize="interpolate"), st, tt, y)
    C.ok(abs(float(ri.value("at")) - j["multi_layer"]["sum"]) > 1e-3, "attention: resize interpolate differs")
    # tests/test_methods_losses.cpp's hand-computed map and loss, through three tap pairs.
    fs = torch.tensor([1.0, 2.0, 3.0, 0.0], dtype=torch.float64).view(1, 2, 1, 2)
    ft = torch.tensor([2.0, 2.0, 0.0, 0.0], dtype=torch.float64).view(1, 2, 1, 2)
    q = mod.attention_map(fs, 2.0)
    C.ok(abs(float(q[0][0]) - 0.9284766908852594) < 1e-9 and abs(float(q[0][1]) - 0.3713906763541037) < 1e-9,
         "attention: map by hand")
    s3 = {"logits": torch.zeros(1, 3, dtype=torch.float64), "block1": fs, "block2": fs, "block3": fs}
    t3 = {"logits": torch.zeros(1, 3, dtype=torch.float64), "block1": ft, "block2": ft, "block3": ft}
    r3 = run_method(port, {"beta": 1000.0}, s3, t3, torch.tensor([0]))
    C.ok(abs(float(r3.value("at")) - 3 * 0.08085496998194212) < 1e-9, "attention: 3 default pairs by hand")
    C.equal(r3.weight("at"), 1000.0, "attention: at weight")
    r4 = run_method(port, {"alpha": 0.5, "temperature": 2.0}, s3, t3, torch.tensor([0]))
    C.equal(r4.names, ["ce", "at", "kd"], "attention: alpha > 0 adds kd after the own term")
    C.equal((r4.weight("ce"), r4.weight("kd")), (0.5, 0.5), "attention: ce and kd weights")
    C.raises(lambda: port.make({"student_taps": ["block1"]}), kd.OptionError,
             "attention: unequal tap lists are refused",
             lambda e: e.key == "teacher_taps" and e.message == "needs as many taps as student_taps (1), got 3")


def check_fitnets(C, port, logit_kd_json):
    """No reference file: tests/test_methods_losses.cpp's checks, the kd term on logit_kd.json, the module."""
    mod = port.mod
    C.equal(float(mod.hint_mse(torch.tensor([1.0, 2.0, 3.0, 4.0]).view(2, 2), torch.zeros(2, 2))), 7.5,
            "fitnets: hint_mse by hand")
    two = port.make({"mode": "two_stage", "hint_epochs": 2})
    st = two.stages()
    C.equal([(s.name, s.epochs, s.train_until_tap, s.train_student, s.train_modules, s.lr) for s in st],
            [("hint", 2, "block2", True, [], 0.0), ("kd", 0, "", True, [], 0.0)], "fitnets: two_stage stages")
    C.equal(json.loads(_bridge.stages(two))[0]["name"], "hint", "fitnets: stages through the bridge")
    one = port.make({"mode": "one_stage"})
    C.equal([(s.name, s.epochs, s.train_until_tap) for s in one.stages()], [("main", 0, "")],
            "fitnets: one_stage has one stage")
    C.equal((_bridge.student_taps(one), _bridge.teacher_taps(one, 0)), (["logits", "block2"], ["logits", "block2"]),
            "fitnets: taps")

    torch.manual_seed(0)
    s = {"logits": torch.randn(4, 10), "block2": torch.randn(4, 8, 7, 7)}
    t = {"logits": torch.randn(4, 10), "block2": torch.randn(4, 16, 14, 14)}
    labels = torch.randint(0, 10, (4,))
    C.equal(run_method(port, {"mode": "two_stage"}, s, t, labels, stage=0).names, ["hint"], "fitnets: stage 0 = hint")
    C.equal(run_method(port, {"mode": "two_stage"}, s, t, labels, stage=1).names, ["ce", "kd"],
            "fitnets: stage 1 = ce, kd")
    r = run_method(port, {"mode": "one_stage", "beta": 5.0}, s, t, labels)
    C.equal(r.names, ["ce", "kd", "hint"], "fitnets: one_stage terms in order")
    C.equal((r.weight("ce"), r.weight("kd"), r.weight("hint")), (1.0 - 0.9, 0.9, 5.0), "fitnets: weights")
    C.equal(run_method(port, {"mode": "one_stage", "alpha": 0.0}, s, t, labels).names, ["ce", "hint"],
            "fitnets: alpha 0 drops kd")
    # The default regressor, RepDistiller's ConvReg: a student map of half the teacher's (7 -> 14) takes a 4x4
    # transposed conv 8 -> 16 with bias, then BN(16) (tests/test_methods_losses.cpp counts the same).
    C.equal(sum(p.numel() for p in r.module.parameters()), 8 * 16 * 4 * 4 + 16 + 2 * 16,
            "fitnets: ConvReg 7x7 -> 14x14: transposed conv 8->16 (4x4, bias) + BN(16) parameters")
    C.equal(sorted(r.module.state_dict().keys()),
            sorted(["conv.weight", "conv.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                    "bn.num_batches_tracked"]), "fitnets: the regressor's state-dict names (native: conv, bn)")
    C.equal([n for n, _ in r.module.named_children()], ["conv", "bn"], "fitnets: children in the native order")
    sv = s["block2"].clone().requires_grad_(True)
    terms = compute(r.method, {"logits": s["logits"], "block2": sv}, t, labels)
    next(v for n, v, _ in terms if n == "hint").backward()
    C.ok(sv.grad is not None and float(sv.grad.abs().sum()) > 0, "fitnets: the hint's gradient reaches the student")
    C.ok(all(p.grad is not None for p in r.module.parameters()), "fitnets: the hint's gradient reaches the regressor")
    # The initial weights are those of the layers drawn from the same seed on the CPU in the native order (conv,
    # then bn): nn.ConvTranspose2d(8, 16, 4, 2, 1) for the default ConvReg here, nn.Conv2d(8, 16, 1, bias=False)
    # for conv1x1_bn.
    torch.manual_seed(123)
    got = prepare(port.make({"mode": "one_stage"}), s, t)
    torch.manual_seed(123)
    conv = torch.nn.ConvTranspose2d(8, 16, 4, stride=2, padding=1)
    C.ok(torch.equal(got.conv.weight, conv.weight) and torch.equal(got.conv.bias, conv.bias),
         "fitnets: initial ConvReg weights = the seed's nn.ConvTranspose2d draw")
    torch.manual_seed(123)
    got = prepare(port.make({"mode": "one_stage", "regressor": "conv1x1_bn"}), s, t)
    torch.manual_seed(123)
    conv = torch.nn.Conv2d(8, 16, 1, bias=False)
    C.ok(torch.equal(got.conv.weight, conv.weight), "fitnets: initial conv1x1_bn weight = the seed's nn.Conv2d draw")

    def conv_reg_shape(sshape, tshape):
        m = port.make({"mode": "one_stage"})
        reg = prepare(m, {"logits": torch.zeros(2, 3), "block2": torch.zeros(*sshape)},
                      {"logits": torch.zeros(2, 3), "block2": torch.zeros(*tshape)})
        return tuple(reg.conv.weight.shape), tuple(reg.bn(reg.conv(torch.zeros(*sshape))).shape)

    # RepDistiller's ConvReg by the maps' heights (tests/test_methods_losses.cpp's cases): twice -> 3x3 stride 2,
    # half -> 4x4 transposed, larger -> (1 + sH - tH) x (1 + sW - tW), equal -> 1x1, else refused.
    C.equal(conv_reg_shape((2, 3, 8, 8), (2, 5, 4, 4)), ((5, 3, 3, 3), (2, 5, 4, 4)), "fitnets: ConvReg 8 -> 4")
    C.equal(conv_reg_shape((2, 3, 4, 4), (2, 5, 8, 8)), ((3, 5, 4, 4), (2, 5, 8, 8)), "fitnets: ConvReg 4 -> 8")
    C.equal(conv_reg_shape((2, 3, 7, 6), (2, 5, 4, 4))[0], (5, 3, 4, 3), "fitnets: ConvReg 7x6 -> 4x4")
    C.equal(conv_reg_shape((2, 3, 4, 4), (2, 5, 4, 4))[0], (5, 3, 1, 1), "fitnets: ConvReg 4 -> 4 (1x1)")
    C.raises(lambda: conv_reg_shape((2, 3, 3, 3), (2, 5, 4, 4)), kd.OptionError, "fitnets: ConvReg 3 -> 4 refused",
             lambda e: e.key == "student_tap" and "3x3 to the teacher's 4x4" in e.message)
    torch.manual_seed(7)
    lm = port.make({"mode": "one_stage", "regressor": "linear"})
    lin = prepare(lm, s, t)
    torch.manual_seed(7)
    ref_lin = torch.nn.Linear(8 * 7 * 7, 16 * 14 * 14)
    C.ok(torch.equal(lin.linear.weight, ref_lin.weight) and torch.equal(lin.linear.bias, ref_lin.bias),
         "fitnets: linear regressor = the seed's nn.Linear draw")
    C.equal([n for n, _ in lin.named_children()], ["linear"], "fitnets: linear regressor's child")

    def hint_of(v, u):
        """tests/test_methods_losses.cpp: conv weight 1, BN in eval mode: r(v) = v / sqrt(1 + 1e-5)."""
        ss = {"logits": torch.zeros(1, 2), "block2": v}
        tt = {"logits": torch.zeros(1, 2), "block2": u}
        mm = port.make({"mode": "one_stage", "regressor": "conv1x1_bn"})
        reg = prepare(mm, ss, tt)
        with torch.no_grad():
            reg.conv.weight.fill_(1.0)
        reg.eval()
        out = compute(mm, ss, tt, torch.tensor([0]))
        return float(next(v for n, v, _ in out if n == "hint").detach())

    cc = 1.0 / math.sqrt(1.0 + 1e-5)
    grid = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
    C.ok(abs(hint_of(grid, torch.full((1, 1, 1, 1), 2.0)) - (2.5 * cc - 2.0) ** 2) < 1e-6,
         "fitnets: student map larger: r(v) pooled to the teacher's size")
    C.ok(abs(hint_of(torch.full((1, 1, 1, 1), 3.0), grid) - (3.0 * cc - 2.5) ** 2) < 1e-6,
         "fitnets: teacher map larger: the teacher pooled")
    C.ok(abs(hint_of(grid, torch.zeros(1, 1, 2, 2)) - 7.5 * cc * cc) < 1e-5, "fitnets: same size: plain mean")
    # The kd term is logit_kd's (losses::soft_kl): the logit_kd reference values.
    for c in cases(logit_kd_json):
        T = float(c["hyperparameters"]["T"])
        sl, tl = f64(c["inputs"]["student_logits"]), f64(c["inputs"]["teacher_logits"])
        zero_map = torch.zeros(4, 1, 1, 1)
        rr = run_method(port, {"mode": "two_stage", "temperature": T}, {"logits": sl, "block2": zero_map},
                        {"logits": tl, "block2": zero_map}, torch.zeros(4, dtype=torch.long), stage=1)
        C.close(rr.value("kd"), c["outputs"]["loss"], f"fitnets {c['name']}: kd term = RepDistiller DistillKL")
    C.raises(lambda: prepare(port.make({"mode": "one_stage", "student_tap": "pool", "teacher_tap": "pool",
                                        "regressor": "conv1x1_bn"}),
                             {"logits": torch.zeros(2, 3), "pool": torch.zeros(2, 4)},
                             {"logits": torch.zeros(2, 3), "pool": torch.zeros(2, 5)}),
             kd.OptionError, "fitnets: conv regressor on 2-D taps is refused", lambda e: e.key == "student_tap")


# ---- CRD ------------------------------------------------------------------------------------------------------------
MT64_10000TH = 9981545732273789042  # C++ [rand.predef]: the 10000th output of a default-constructed std::mt19937_64


class ScalarMT64:
    """std::mt19937_64 written out word by word as the C++ standard ([rand.eng.mers]) specifies it."""

    def __init__(self, seed=5489):
        self.x = [seed & ((1 << 64) - 1)]
        for i in range(1, 312):
            p = self.x[-1]
            self.x.append((6364136223846793005 * (p ^ (p >> 62)) + i) & ((1 << 64) - 1))
        self.i = 0

    def __call__(self):
        n, m, i = 312, 156, self.i
        y = (self.x[i] & 0xFFFFFFFF80000000) | (self.x[(i + 1) % n] & 0x7FFFFFFF)
        self.x[i] = self.x[(i + m) % n] ^ (y >> 1) ^ (0xB5026F5AA96619E9 if y & 1 else 0)
        z = self.x[i]
        self.i = (i + 1) % n
        z ^= (z >> 29) & 0x5555555555555555
        z ^= (z << 17) & 0x71D67FFFEDA60000 & ((1 << 64) - 1)
        z ^= (z << 37) & 0xFFF7EEE000000000 & ((1 << 64) - 1)
        z ^= z >> 43
        return z


class ScalarSampler:
    """crd::ContrastSampler (methods/crd_memory.cpp), transcribed statement by statement, for comparison."""

    def __init__(self, labels, n, seed):
        self.n, self.rng = n, ScalarMT64(seed)
        self.labels = None if labels is None else [int(v) for v in labels]
        if self.labels is None:
            return
        classes = max(self.labels) + 1
        self.count = [0] * classes
        for y in self.labels:
            self.count[y] += 1
        self.start = [0] * classes
        for c in range(1, classes):
            self.start[c] = self.start[c - 1] + self.count[c - 1]
        self.order = [0] * len(self.labels)
        nxt = list(self.start)
        for i, y in enumerate(self.labels):
            self.order[nxt[y]] = i
            nxt[y] += 1

    def below(self, n):
        return (self.rng() * n) >> 64

    def draw(self, indices, K, mode):
        out = []
        for i in indices:
            row = [0] * (K + 1)
            if mode == "uniform":
                row[0] = i
                for k in range(1, K + 1):
                    row[k] = self.below(self.n)
                out.append(row)
                continue
            lo, n_c = i, 1
            if self.labels is not None:
                c = self.labels[i]
                lo, n_c = self.start[c], self.count[c]

            def at(p):
                return p if self.labels is None else self.order[p]

            def negative(p):
                return at(p if p < lo else p + n_c)

            row[0] = at(lo + self.below(n_c)) if mode == "relax" else i
            M = self.n - n_c
            if K > M:
                for k in range(1, K + 1):
                    row[k] = negative(self.below(M))
                out.append(row)
                continue
            taken = [False] * M
            k = 1
            for j in range(M - K, M):
                p = self.below(j + 1)
                if taken[p]:
                    p = j
                taken[p] = True
                row[k] = negative(p)
                k += 1
            out.append(row)
        return out


def check_crd_sampler(C, mod, tag="crd"):
    mt = mod.MT19937_64(5489)
    C.equal(int(mt.next(10000)[-1]), MT64_10000TH, f"{tag}: mt19937_64's 10000th output (the C++ standard's value)")
    ref = ScalarMT64(123456789)
    mine = mod.MT19937_64(123456789).next(1000)
    C.ok(all(int(a) == ref() for a in mine), f"{tag}: mt19937_64 = the word-by-word definition, seed 123456789")
    rng = np.random.RandomState(5)
    raw = rng.randint(0, 2 ** 63, size=2000, dtype=np.int64).astype(np.uint64) * np.uint64(2) + np.uint64(1)
    ns = rng.randint(1, 2 ** 62, size=2000, dtype=np.int64)
    got = mod._below(raw, ns)
    C.ok(all(int(g) == (int(r) * int(n)) >> 64 for g, r, n in zip(got, raw, ns)),
         f"{tag}: Lemire's multiply-shift = (r * n) >> 64 in 128-bit")
    # The vectorised sampler against the statement-by-statement transcription of the C++ one.
    gen = torch.Generator().manual_seed(0)
    for n, classes, K_list, seed in ((600, 6, (50, 450, 499, 500, 2000), 7), (100, 5, (30, 79, 80, 81), 11),
                                     (50000, 100, (16384,), 3), (20, 4, (5, 15, 16), 1)):
        labels = torch.randint(0, classes, (n,), generator=gen)
        for mode in ("exact", "relax", "uniform"):
            a = mod.ContrastSampler()
            a.reset(labels, n, seed)
            b = ScalarSampler(labels.tolist(), n, seed)
            same = True
            for K in K_list:
                idx = torch.randint(0, n, (3 if K > 1000 else 8,), generator=gen)
                for _ in range(2):  # the stream continues across draws
                    same &= a.draw(idx, K, mode).tolist() == b.draw(idx.tolist(), K, mode)
            C.ok(same, f"{tag}: sampler = the C++ ContrastSampler transcribed, n {n}, {classes} classes, {mode}, "
                       f"K {list(K_list)}")
    a = mod.ContrastSampler()
    a.reset(None, 100, 5)
    b = ScalarSampler(None, 100, 5)
    idx = torch.tensor([1, 2, 3])
    C.ok(a.draw(idx, 99, "exact").tolist() == b.draw([1, 2, 3], 99, "exact") and
         a.draw(idx, 120, "exact").tolist() == b.draw([1, 2, 3], 120, "exact"),
         f"{tag}: sampler without labels = the C++ one transcribed")


def check_crd(C, port):
    mod = port.mod
    check_crd_sampler(C, mod)
    # tests/test_methods_reference_part2.cpp CRDExactNegativesComeFromOtherClassesWithoutThePositive.
    n, classes = 600, 6
    labels = torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(42))
    lab = labels.tolist()
    s = mod.ContrastSampler()
    s.reset(labels, n, 7)
    idx = [0, 5, 17, 599]
    good = True
    for K in (50, 450, 2000):
        d = s.draw(torch.tensor(idx), K, "exact").tolist()
        for b, i in enumerate(idx):
            pool = sum(1 for x in lab if x != lab[i])
            row = d[b][1:]
            good &= d[b][0] == i and all(0 <= v < n and lab[v] != lab[i] for v in row)
            good &= (len(set(row)) == K) if K <= pool else (len(set(row)) <= pool)
    C.ok(good, "crd: exact negatives from other classes, distinct when the pool suffices, positive = the sample")
    sa, sb, sc = mod.ContrastSampler(), mod.ContrastSampler(), mod.ContrastSampler()
    sa.reset(labels, n, 1)
    sb.reset(labels, n, 1)
    sc.reset(labels, n, 2)
    da = sa.draw(torch.tensor(idx), 40, "exact")
    C.ok(torch.equal(da, sb.draw(torch.tensor(idx), 40, "exact")) and
         not torch.equal(da, sc.draw(torch.tensor(idx), 40, "exact")), "crd: same seed same draws, another seed others")
    u = mod.ContrastSampler()
    u.reset(labels, n, 3)
    hits = np.zeros(n, dtype=np.int64)
    for _ in range(4000):
        d = u.draw(torch.tensor([0]), 50, "exact")
        np.add.at(hits, d[0, 1:].numpy(), 1)
    pool = sum(1 for x in lab if x != lab[0])
    expect = 4000.0 * 50 / pool
    ok = all((hits[x] == 0) if lab[x] == lab[0] else abs(hits[x] - expect) <= 6 * math.sqrt(expect) for x in range(n))
    C.ok(ok, "crd: negatives uniform over the other classes (4000 draws, 6 sd)")
    s5 = mod.ContrastSampler()
    s5.reset(torch.arange(100) % 5, 100, 11)
    relax = s5.draw(torch.tensor([1, 2, 3]), 30, "relax").tolist()
    C.ok(all(relax[b][0] % 5 == i % 5 and all(v % 5 != i % 5 for v in relax[b][1:]) for b, i in enumerate([1, 2, 3])),
         "crd: relax: positive of the same class, negatives of the others")
    uni = s5.draw(torch.tensor([1, 2, 3]), 300, "uniform")
    C.ok(uni[:, 0].tolist() == [1, 2, 3] and int(uni.min()) >= 0 and int(uni.max()) < 100 and
         bool((uni[:, 1:] % 5 == 1).any()), "crd: uniform: negatives of any class")

    # CRDHeadMatchesRepDistillerOverTwoSteps: the reference module's state, two steps (float32, rtol 2e-5).
    j = load_ref("part2/crd")
    a = j["provenance"]["arguments"]
    args = (a["s_dim"], a["t_dim"], a["feat_dim"], a["n_data"], a["nce_k"], a["nce_t"], a["nce_m"])
    torch.manual_seed(0)
    head = mod.CRDHead(*args)
    sd0 = j["weights"]["state_dict_initial"]
    mine = head.state_dict()
    C.equal(sorted(mine.keys()), sorted(sd0.keys()), "crd: the module's state-dict names = RepDistiller's CRDLoss")
    C.ok(all(torch.equal(mine[k], f32(v)) for k, v in sd0.items()),
         "crd: torch.manual_seed(0) then the module = RepDistiller's CRDLoss(opt) initial state, bit for bit "
         "(embed_s, embed_t, memory_v1, memory_v2 drawn in that order)")
    with torch.no_grad():
        for k, v in sd0.items():
            mine[k].copy_(f32(v))
    C.ok(float(head.contrast.params[2]) < 0, "crd: Z unset before the first batch")
    for step in ("step1", "step2"):
        i, o, g = j["inputs"][step], j["outputs"][step], j["grad"][step]
        f_s = f32(i["f_s"]).requires_grad_(True)
        idxs = long(i["idx"])
        cidx = long(i["contrast_idx"])
        head.zero_grad()
        r = head(f_s, f32(i["f_t"]), idxs, cidx)
        tag = f"crd {step}"
        C.tensor_close(r.v_s, f32(o["embed_s"]), f"{tag}: embed_s", REL_F32)
        C.tensor_close(r.v_t, f32(o["embed_t"]), f"{tag}: embed_t", REL_F32)
        C.tensor_close(r.out_s, f32(o["out_s(=out_v1, student emb vs memory_v2)"]), f"{tag}: out_v1", REL_F32)
        C.tensor_close(r.out_t, f32(o["out_t(=out_v2, teacher emb vs memory_v1)"]), f"{tag}: out_v2", REL_F32)
        C.close(head.contrast.params[2], o["Z_v1"], f"{tag}: Z_v1", 1e-6)
        C.close(head.contrast.params[3], o["Z_v2"], f"{tag}: Z_v2", 1e-6)
        C.close(r.loss, o["loss"][0], f"{tag}: loss", REL_F32)
        C.tensor_close(head.contrast.memory_v1, f32(o["memory_v1_after"]), f"{tag}: memory_v1 after", REL_F32)
        C.tensor_close(head.contrast.memory_v2, f32(o["memory_v2_after"]), f"{tag}: memory_v2 after", REL_F32)
        r.loss.backward()
        C.tensor_close(f_s.grad, f32(g["f_s"]), f"{tag}: d loss / d f_s", REL_F32)
        C.tensor_close(head.embed_t.linear.weight.grad, f32(g["embed_t.linear.weight"]),
                       f"{tag}: d loss / d embed_t.weight", REL_F32)
        C.tensor_close(head.embed_t.linear.bias.grad, f32(g["embed_t.linear.bias"]), f"{tag}: d loss / d embed_t.bias",
                       REL_F32)

    # CRDMethodUpdatesExactlyTheBatchRowsWithMomentum, through the bridge.
    n, B = 20, 4
    labels_all = torch.arange(n) % 4
    torch.manual_seed(3)
    st = {"pool": torch.randn(B, 6), "logits": torch.zeros(B, 4)}
    tt = {"pool": torch.randn(B, 10), "logits": torch.zeros(B, 3)}
    m = port.make({"feat_dim": 8, "nce_k": 5})
    torch.manual_seed(11)
    module = prepare(m, st, tt, train_size=n, num_classes=4, train_labels=labels_all)
    # prepare's draws: the module (as RepDistiller builds it), then one int64 seed from the same generator.
    torch.manual_seed(11)
    ref_head = mod.CRDHead(6, 10, 8, n, 5, 0.07, 0.5)
    seed = int(torch.randint(0, 1 << 62, (1,), dtype=torch.long).item())
    C.ok(all(torch.equal(a_, b_) for a_, b_ in zip(module.state_dict().values(), ref_head.state_dict().values())),
         "crd: prepare builds the module from the run's generator (native order)")
    ref_sampler = mod.ContrastSampler()
    ref_sampler.reset(labels_all, n, seed)
    C.equal([c for c, _ in module.named_children()], ["embed_s", "embed_t", "contrast"], "crd: module children")
    C.equal(sum(p.numel() for p in module.parameters()), (6 + 1) * 8 + (10 + 1) * 8, "crd: extra parameters")
    C.equal(sum(b.numel() for b in module.buffers()), 2 * n * 8 + 5, "crd: buffers (2 banks + params)")
    indices = torch.tensor([3, 6, 9, 12])
    for step in range(2):
        before_s, before_t = module.contrast.memory_v1.clone(), module.contrast.memory_v2.clone()
        with torch.no_grad():
            v_s = mod.crd_l2_normalize(module.embed_s(st["pool"]))
            v_t = mod.crd_l2_normalize(module.embed_t(tt["pool"]))
        y = labels_all.index_select(0, indices)
        want_idx = ref_sampler.draw(indices, 5, "exact")
        C.ok(torch.equal(copy.deepcopy(m.sampler).draw(indices, 5, "exact"), want_idx),
             f"crd method step {step}: the negatives come from the seed prepare drew after the module")
        ptrs = [b.data_ptr() for b in module.buffers()]
        terms = compute(m, st, tt, y, indices=indices)
        C.ok(ptrs == [b.data_ptr() for b in module.buffers()], f"crd method step {step}: buffers updated in place")
        C.equal([t_[0] for t_ in terms], ["ce", "crd"], f"crd method step {step}: terms")
        crd_term = next(t_ for t_ in terms if t_[0] == "crd")
        C.equal(crd_term[2], 0.8, f"crd method step {step}: crd weight")
        C.ok(math.isfinite(float(crd_term[1].detach())) and float(module.contrast.params[2]) > 0,
             f"crd method step {step}: finite, Z set by the first batch")
        for bank, before, v, bname in ((module.contrast.memory_v1, before_s, v_s, "memory_v1"),
                                       (module.contrast.memory_v2, before_t, v_t, "memory_v2")):
            want = before.index_select(0, indices) * 0.5 + v * 0.5
            want = want / want.norm(2, 1, True)
            C.tensor_close(bank.index_select(0, indices), want, f"crd method step {step}: {bname} batch rows", REL_F32)
            others = torch.ones(n, dtype=torch.bool)
            others.index_fill_(0, indices, False)
            C.ok(torch.equal(bank[others], before[others]), f"crd method step {step}: {bname} other rows unchanged")
        indices = torch.tensor([6, 0, 17, 3])
    # What `kdbench loss` gives: tap shapes, train_size, no labels; finite, backward works.
    m2 = port.make({"feat_dim": 16})
    torch.manual_seed(0)
    st2 = {"pool": torch.randn(4, 6, requires_grad=True), "logits": torch.zeros(4, 3)}
    tt2 = {"pool": torch.randn(4, 10), "logits": torch.zeros(4, 3)}
    prepare(m2, st2, tt2, train_size=4)
    terms = compute(m2, st2, tt2, torch.arange(4) % 3)
    total = sum(w * v for _, v, w in terms)
    C.ok(math.isfinite(float(total.detach())), "crd: prepares from tap shapes alone (no labels), finite")
    total.backward()
    C.ok(st2["pool"].grad is not None, "crd: backward reaches the student's tap")
    C.raises(lambda: prepare(port.make({}), st2, tt2, train_size=1), ValueError, "crd: n_data < 2 refused")
    C.equal(_bridge.stages(m2), json.dumps([{"name": "main", "epochs": 0, "train_until_tap": "", "train_student": True,
                                             "train_modules": [], "eval_modules": [], "lr": 0.0}]), "crd: one stage")


def check_contract(C, ports):
    """Taps and stages at the defaults, as the native methods declare them."""
    want = {
        "logit_kd": (["logits"], ["logits"], 1),
        "dkd": (["logits"], ["logits"], 1),
        "dist": (["logits"], ["logits"], 1),
        "attention": (["block1", "block2", "block3", "logits"], ["block1", "block2", "block3", "logits"], 1),
        "fitnets": (["logits", "block2"], ["logits", "block2"], 2),
        "sp": (["block3", "logits"], ["block3", "logits"], 1),
        "pkt": (["pool", "logits"], ["pool", "logits"], 1),
        "rkd": (["pool", "logits"], ["pool", "logits"], 1),
        "crd": (["logits", "pool"], ["logits", "pool"], 1),
    }
    for method, (s_taps, t_taps, n_stages) in want.items():
        m = ports[method].make({})
        C.equal((_bridge.student_taps(m), _bridge.teacher_taps(m, 0), len(json.loads(_bridge.stages(m)))),
                (s_taps, t_taps, n_stages), f"{method}: default taps and number of stages as native")


class TinyNet(torch.nn.Module):
    """A small tapped CNN (stem, block1..3, pool, logits) for the training smoke test."""

    def __init__(self, width, classes):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, width, 3, padding=1)
        self.b1 = torch.nn.Conv2d(width, width, 3, padding=1)
        self.b2 = torch.nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.b3 = torch.nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(2 * width, classes)

    def forward(self, x):
        t = {"block1": self.b1(self.stem(x).relu()).relu()}
        t["block2"] = self.b2(t["block1"]).relu()
        t["block3"] = self.b3(t["block2"]).relu()
        t["pool"] = t["block3"].mean((2, 3))
        t["logits"] = self.fc(t["pool"])
        return t


def check_training(C, ports):
    """Each port through the bridge for 3 SGD steps of a small student (and the method's module): finite terms, the
    gradient reaches the student (and the module where it trains), buffers stay the module's own tensors."""
    settings = [("logit_kd", {}), ("dkd", {}), ("dist", {}), ("attention", {"alpha": 0.5}), ("sp", {}),
                ("pkt", {}), ("rkd", {}), ("fitnets", {"mode": "one_stage"}), ("fitnets", {"mode": "two_stage"}),
                ("crd", {"feat_dim": 16, "nce_k": 10})]
    n, B, classes = 40, 8, 5
    for method, params in settings:
        torch.manual_seed(0)
        student, teacher = TinyNet(4, classes), TinyNet(6, classes).eval()
        data = torch.randn(n, 3, 8, 8)
        labels = torch.arange(n) % classes
        m = ports[method].make(params)
        with torch.no_grad():
            s0, t0 = student(data[:B]), teacher(data[:B])
        module = prepare(m, s0, t0, train_size=n, num_classes=classes, train_labels=labels)
        extra = list(module.parameters()) if module is not None else []
        buffers = [b.data_ptr() for b in module.buffers()] if module is not None else []
        opt = torch.optim.SGD(list(student.parameters()) + extra, lr=0.01, momentum=0.9)
        stages = json.loads(_bridge.stages(m))
        good, reached, mod_reached = True, True, True
        for step in range(3):
            stage = 0 if step < 2 or len(stages) == 1 else 1
            idx = torch.randperm(n)[:B]
            opt.zero_grad()
            with torch.no_grad():
                t = teacher(data[idx])
            terms = _bridge.compute(m, student(data[idx]), [t], labels[idx], idx, stage, step, step, 0, 1)
            total = sum(w * v for _, v, w in terms)
            good &= math.isfinite(float(total.detach()))
            total.backward()
            reached &= student.b1.weight.grad is not None and float(student.b1.weight.grad.abs().sum()) > 0
            if extra and stage == 0:
                mod_reached &= all(p.grad is not None for p in extra)
            opt.step()
        tag = f"{method} {json.dumps(params)}"
        C.ok(good, f"{tag}: 3 training steps through the bridge, finite")
        C.ok(reached, f"{tag}: the terms' gradient reaches the student")
        if extra:
            C.ok(mod_reached, f"{tag}: the gradient reaches the method's module")
            C.ok(buffers == [b.data_ptr() for b in module.buffers()], f"{tag}: the module's buffers updated in place")


# ---- 3. deliberate mistakes ------------------------------------------------------------------------------------------
MISTAKES = [
    ("logit_kd", "T^2 removed from the KD term", "            kd_term = soft_kl(s, t, self.T)\n",
     "            kd_term = soft_kl(s, t, self.T) / (self.T * self.T)\n",
     lambda C, p, ports: check_logit_kd(C, p)),
    ("dkd", "warm-up on the 0-based epoch", "min(float(epoch + 1) / float(self.warmup), 1.0)",
     "min(float(epoch) / float(self.warmup), 1.0)", lambda C, p, ports: check_dkd(C, p)),
    ("crd", "Floyd's bound j instead of j + 1", "p = _below(raw[floyd], j + 1)", "p = _below(raw[floyd], j)",
     lambda C, p, ports: check_crd_sampler(C, p.mod, "crd (mistake)")),
    ("crd", "Floyd's collisions resolved without following chains", "now = repeat | (linked & collided.gather(1, ptr))",
     "now = repeat", lambda C, p, ports: check_crd_sampler(C, p.mod, "crd (mistake)")),
]


def check_mistakes(C, ports):
    with tempfile.TemporaryDirectory() as tmp:
        for n, (method, what, old, new, run) in enumerate(MISTAKES):
            src = (PORTS / f"{method}.py").read_text()
            if src.count(old) != 1:
                C.ok(False, f"mistake self-test {method}: the line to break is not in the port ({old.strip()!r})")
                continue
            path = Path(tmp) / f"wrong{n}_{method}.py"
            path.write_text(src.replace(old, new))
            wrong = Port(path)
            inner = Checks(echo=False)
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    run(inner, wrong, ports)
                crashed = ""
            except Exception as e:  # noqa: BLE001 - a crash is a detection too, but say so
                crashed = f"; it raised {type(e).__name__}: {e}"
            caught = len(inner.failed) > 0 or bool(crashed)
            C.ok(caught, f"mistake self-test {method} ({what}) FAILS the comparison",
                 f"{len(inner.failed)} of {len(inner.failed) + inner.passed} checks failed, e.g. "
                 f"{inner.failed[0] if inner.failed else '-'}{crashed}")


def main():
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    C = Checks()
    ports = {m: Port(PORTS / f"{m}.py") for m in METHODS}
    for m in METHODS:
        check_declaration(C, m, ports[m])
    check_contract(C, ports)
    check_logit_kd(C, ports["logit_kd"])
    check_logit_standardization(C, ports["logit_kd"], ports["dkd"])
    check_dkd(C, ports["dkd"])
    check_dist(C, ports["dist"])
    check_attention(C, ports["attention"])
    check_fitnets(C, ports["fitnets"], load_ref("logit_kd"))
    check_sp(C, ports["sp"])
    check_pkt(C, ports["pkt"])
    check_rkd(C, ports["rkd"])
    check_crd(C, ports["crd"])
    check_training(C, ports)
    check_mistakes(C, ports)
    print(f"check_ports: {C.passed + len(C.failed)} checks, {C.passed} passed, {len(C.failed)} failed")
    for f in C.failed:
        print(f"  failed: {f}")
    return 1 if C.failed else 0


if __name__ == "__main__":
    sys.exit(main())
