"""Shared helpers for the part2 reference generators (no peer math here).

- load peer modules from unmodified checkouts under $KDBENCH_REFS_SRC (git archives of the commits below);
- serialise float32 tensors as nested lists using the shortest decimal that
  round-trips to the same float32 (so a C++ test can load bit-identical weights);
- write JSON with provenance and a size check.
"""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import torch

SRC = os.environ.get("KDBENCH_REFS_SRC", "/work/refs/src")  # git archives of the commits below
OUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/data/reference/part2
GIT = os.environ.get("KDBENCH_REFS_GIT", "/work/.mirror")  # <owner>+<name>/repo git directories
MIRRORS = {
    "HobbitLong/RepDistiller": GIT + "/HobbitLong+RepDistiller/repo",
    "dvlab-research/ReviewKD": GIT + "/dvlab-research+ReviewKD/repo",
    "clovaai/overhaul-distillation": GIT + "/clovaai+overhaul-distillation/repo/.git",
}
# commits the extracted trees came from (checked again at run time when the mirror exists)
COMMITS = {
    "HobbitLong/RepDistiller": "b84f547c5db6a35318d4671d7d5c4de74c822403",
    "dvlab-research/ReviewKD": "cede6ea6387ae9b6127de0e561507177bf19c11e",
    "clovaai/overhaul-distillation": "76344a84a7ce23c894f41a2e05b866c9b73fd85a",
}

torch.set_num_threads(1)


def commit_of(repo):
    d = MIRRORS[repo]
    if os.path.isdir(d):
        try:
            return subprocess.check_output(["git", "--git-dir", d, "rev-parse", "HEAD"], text=True).strip()
        except Exception:
            pass
    return COMMITS[repo]


def load_by_path(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _f32(v):
    # shortest decimal string that round-trips to this float32
    return float(np.format_float_scientific(np.float32(v), unique=True, trim="-"))


def tl(t):
    """tensor -> nested list (float32 shortest repr; ints stay ints)."""
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu()
        if t.dtype in (torch.int64, torch.int32, torch.bool):
            return t.tolist()
        a = t.to(torch.float32).numpy()
    else:
        a = np.asarray(t)
        if a.dtype.kind in "iub":
            return a.tolist()
        a = a.astype(np.float32)
    if a.ndim == 0:
        return _f32(a)
    return _nest(a)


def _nest(a):
    if a.ndim == 1:
        return [_f32(x) for x in a]
    return [_nest(x) for x in a]


def state(module):
    """state_dict of a module as {name: nested list} (params + buffers)."""
    return {k: tl(v) for k, v in module.state_dict().items() if v.dtype.is_floating_point}


def provenance(repo, file, obj, arguments, extra=None):
    p = {
        "repo": repo,
        "commit": commit_of(repo),
        "file": file,
        "function/class": obj,
        "arguments": arguments,
        "dtype": "float32",
        "torch": torch.__version__,
        "device": "cpu",
        "float_format": "shortest decimal that round-trips to float32; load as float then cast to float32",
    }
    if extra:
        p.update(extra)
    return p


def write(method, obj, limit=40 * 1024):
    path = os.path.join(OUT, method + ".json")
    s = json.dumps(obj, separators=(",", ":"))
    with open(path, "w") as f:
        f.write(s)
    print(f"{path}: {len(s)} bytes" + ("  (OVER LIMIT)" if len(s) > limit else ""))
    return path


def split_cases(cases):
    """{case: {"inputs":..,"outputs":..,"grad":..}} -> {"inputs": {case:..}, "outputs": {case:..}, "grad": {case:..}}"""
    out = {"inputs": {}, "outputs": {}, "grad": {}}
    for c, d in cases.items():
        for k in out:
            if k in d:
                out[k][c] = d[k]
    return out
