"""Shared helpers for the part1 reference-value generators.

Nothing here re-implements a loss: the generators import the peer
repositories' own loss code from checkouts under /work/refs/src and only
(a) build deterministic inputs, (b) call the peer functions, (c) write JSON.

Peer modules are loaded from their file paths inside a synthetic package
(so that relative imports such as ``from ._base import Distiller`` resolve
to the sibling file) WITHOUT executing the repository's package
``__init__.py`` (which would pull in unrelated dependencies).  No peer file
is modified and no import is stubbed.
"""
import importlib
import json
import os
import subprocess
import sys
import types

import torch

# Where the peers' checkouts are (one folder per repository, named as in REPOS, each an unmodified
# `git archive` of the recorded commit) and where their git directories are (to record the commit):
# KDBENCH_REFS_SRC and KDBENCH_REFS_GIT. The JSON files are written next to this folder's parent
# (tests/data/reference/) unless KDBENCH_REFS_OUT says otherwise.
SRC = os.environ.get("KDBENCH_REFS_SRC", "/work/refs/src")
GIT = os.environ.get("KDBENCH_REFS_GIT", "/work/.mirror")
OUT = os.environ.get("KDBENCH_REFS_OUT", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# name -> (checkout dir, bare git dir used to record the commit, upstream repo)
REPOS = {
    "RepDistiller": ("RepDistiller", os.path.join(GIT, "HobbitLong+RepDistiller/repo"),
                     "HobbitLong/RepDistiller"),
    "mdistiller": ("mdistiller", os.path.join(GIT, "megvii-research+mdistiller/repo"),
                   "megvii-research/mdistiller"),
    "logit-standardization-KD": ("logit-standardization-KD",
                                 os.path.join(GIT, "sunshangquan+logit-standardization-KD/repo"),
                                 "sunshangquan/logit-standardization-KD"),
    "DIST_KD": ("DIST_KD", os.path.join(GIT, "hunto+DIST_KD/repo"), "hunto/DIST_KD"),
}

# DIST_KD's classification/ is a git submodule (hunto/image_classification_sota)
# pinned by DIST_KD@HEAD to this commit; we extracted exactly that commit.
DIST_SUBMODULE = {
    "repo": "hunto/image_classification_sota",
    "commit": "d9662f7df68fe46b973c4580b7c9b896cedcd301",
    "checkout": os.path.join(SRC, "image_classification_sota"),
    "pinned_by": "hunto/DIST_KD (gitlink 'classification')",
}


def commit_of(name):
    _, gitdir, _ = REPOS[name]
    return subprocess.check_output(["git", "--git-dir", gitdir, "rev-parse", "HEAD"],
                                   text=True).strip()


def load_in_pkg(pkg_name, pkg_dir, mod):
    """Import ``pkg_dir/mod.py`` as ``pkg_name.mod`` without running pkg_dir/__init__.py."""
    if pkg_name not in sys.modules:
        pkg = types.ModuleType(pkg_name)
        pkg.__path__ = [pkg_dir]
        sys.modules[pkg_name] = pkg
    return importlib.import_module(pkg_name + "." + mod)


def repdistiller(mod):
    return load_in_pkg("_peer_repdistiller_zoo",
                       os.path.join(SRC, "RepDistiller", "distiller_zoo"), mod)


def repdistiller_models(mod):
    return load_in_pkg("_peer_repdistiller_models",
                       os.path.join(SRC, "RepDistiller", "models"), mod)


def mdistiller(mod):
    return load_in_pkg("_peer_mdistiller_distillers",
                       os.path.join(SRC, "mdistiller", "mdistiller", "distillers"), mod)


def lskd(mod):
    return load_in_pkg("_peer_lskd_distillers",
                       os.path.join(SRC, "logit-standardization-KD", "mdistiller", "distillers"),
                       mod)


def dist_kd():
    return load_in_pkg("_peer_dist_losses",
                       os.path.join(DIST_SUBMODULE["checkout"], "lib", "models", "losses"),
                       "dist_kd")


def rounded(t, nd=4):
    """Deterministic input rounded to nd decimals; returned as a float64 tensor whose
    values are exactly the decimal numbers written to JSON (parsing '0.1234' in C++
    with strtod gives the same double)."""
    return torch.tensor([[round(float(v), nd) for v in row] for row in t.reshape(t.shape[0], -1)],
                        dtype=torch.float64).reshape(t.shape)


def randn(shape, seed, scale=1.0, nd=4, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64) * scale
    return rounded(x, nd).to(dtype)


def tolist(x):
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dim() == 0:
            return float(x) if x.is_floating_point() else int(x)
        return x.tolist()
    return x


def scalar(x):
    x = x.detach()
    assert x.numel() == 1, x.shape
    return float(x.reshape(()))


def provenance(name, file, function, dtype, **extra):
    d = {
        "repo": REPOS[name][2],
        "commit": commit_of(name),
        "file": file,
        "function": function,
        "dtype": dtype,
        "torch": torch.__version__,
        "how": "peer function imported from an unmodified checkout (git archive of the commit) "
               "under /work/refs/src; inputs generated with torch.Generator().manual_seed and "
               "rounded to 4 decimals; outputs are the peer code's results (float repr, 17 sig. digits)",
    }
    d.update(extra)
    return d


def write(name, obj):
    path = os.path.join(OUT, name + ".json")
    with open(path, "w") as f:
        json.dump(obj, f, indent=None, separators=(",", ":"))
        f.write("\n")
    size = os.path.getsize(path)
    print(f"wrote {path} ({size} bytes)")
    return path
