"""The peers' published training settings, read from their own scripts, configs and argument parsers:
published_settings.json, read by tests/test_harness_protocol.cpp.

Each record is one published line (a script line, a config file with the command that runs it) for one teacher ->
student pair, resolved the way the peer's code resolves it: its argparse defaults and the line's arguments, its
yacs defaults merged with the YAML file, its per-model overrides (lr 0.01 or 0.02 for MobileNetV2 / ShuffleNet
students), its learning-rate schedule run epoch by epoch through the peer's own function, and which features its
loss reads (the subscripts of feat_s / feat_t in the peer's training loop, evaluated on the number of features
the peer's model returns). Nothing is copied into kdbench; the peer code runs from unmodified checkouts (`git
archive`s of the commits), with these exceptions, each only a way to run a piece on its own:
  * RepDistiller's parse_option() and get_teacher_name() are taken out of train_student.py with ast and run in a
    temporary folder (parse_option makes ./save/... folders); the per-method branches of helper/loops.py
    train_distill and helper/pretrain.py init are read with ast, not run;
  * the `if __name__ == "__main__":` block of mdistiller's (and logit-standardization-KD's) tools/train.py runs
    without its last statement (main(...), the training);
  * ReviewKD's and overhaul-distillation's module-level argparse calls and per-model / per-epoch rules are taken out
    with ast and run on the line's arguments;
  * torchdistill's YAML is read with a loader that keeps its custom tags (!import_call, !join, ...) as plain data
    (they build datasets and models, which are not settings).
Schedules are stated in kdbench's convention: `milestones` are the 0-based epochs whose lr is the first decayed one.

  KDBENCH_REFS_SRC=/path/to/checkouts KDBENCH_REFS_GIT=/path/to/git-dirs PYTHONPATH=/path/to/yacs-and-tqdm \
    ~/.cache/kdbench/venv/bin/python gen_published_settings.py
(checkouts: RepDistiller, mdistiller, logit-standardization-KD, DIST_KD, image_classification_sota, ReviewKD,
overhaul-distillation, torchdistill; yacs and tqdm are imported by mdistiller's engine and are not in kdbench's venv).
"""
import argparse
import ast
import contextlib
import importlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import types

import torch
import yaml

SRC = os.environ.get("KDBENCH_REFS_SRC", "/work/refs/src")
GIT = os.environ.get("KDBENCH_REFS_GIT", "/work/.mirror")
OUT = os.environ.get("KDBENCH_REFS_OUT", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

REPOS = {  # checkout folder -> (owner/name, git dir under GIT)
    "RepDistiller": ("HobbitLong/RepDistiller", "HobbitLong+RepDistiller/repo"),
    "mdistiller": ("megvii-research/mdistiller", "megvii-research+mdistiller/repo"),
    "logit-standardization-KD": ("sunshangquan/logit-standardization-KD", "sunshangquan+logit-standardization-KD/repo"),
    "DIST_KD": ("hunto/DIST_KD", "hunto+DIST_KD/repo"),
    "image_classification_sota": ("hunto/image_classification_sota", None),  # DIST_KD's submodule, by its gitlink
    "ReviewKD": ("dvlab-research/ReviewKD", "dvlab-research+ReviewKD/repo"),
    "overhaul-distillation": ("clovaai/overhaul-distillation", "clovaai+overhaul-distillation/repo"),
    "torchdistill": ("yoshitomo-matsubara/torchdistill", "yoshitomo-matsubara+torchdistill/repo"),
}


def git_dir(sub):
    d = os.path.join(GIT, sub)
    return d if os.path.exists(os.path.join(d, "HEAD")) else os.path.join(d, ".git")


def commit_of(name):
    if name == "image_classification_sota":  # the commit DIST_KD's gitlink 'classification' pins
        out = subprocess.check_output(["git", "--git-dir", git_dir(REPOS["DIST_KD"][1]), "ls-tree", "HEAD",
                                       "classification"], text=True)
        return out.split()[2]
    return subprocess.check_output(["git", "--git-dir", git_dir(REPOS[name][1]), "rev-parse", "HEAD"],
                                   text=True).strip()


def path(name, *parts):
    return os.path.join(SRC, name, *parts)


def read(name, *parts):
    with open(path(name, *parts)) as f:
        return f.read()


def record(name, file, args, teacher, student, method, **fields):
    r = {"repo": REPOS[name][0], "commit": commit_of(name), "file": file, "args": args, "teacher": teacher,
         "student": student, "method": method}
    r.update(fields)
    return r


def schedule_from_lrs(lrs):
    """Per-epoch lr list -> kdbench's multistep: lr, milestones (0-based first decayed epochs), gamma."""
    milestones = [e for e in range(1, len(lrs)) if abs(lrs[e] - lrs[e - 1]) > 1e-12 * max(lrs)]
    gammas = sorted({round(lrs[m] / lrs[m - 1], 12) for m in milestones})
    assert len(gammas) <= 1, gammas
    return {"lr": lrs[0], "schedule": "multistep" if milestones else "constant", "milestones": milestones,
            "gamma": gammas[0] if gammas else None}


def eval_index(expr, n, env):
    """feat_s[<expr>] with n features -> the list of indices it selects."""
    got = eval("list(range(n))[" + expr + "]", dict(env, n=n))
    return got if isinstance(got, list) else [got]


def distill_branches(func):
    """{"hint": [stmts], ...} for every `if/elif opt.distill == '...'` in a function (ast)."""
    out = {}
    for node in ast.walk(func):
        if (isinstance(node, ast.If) and isinstance(node.test, ast.Compare) and
                isinstance(node.test.left, ast.Attribute) and node.test.left.attr == "distill" and
                isinstance(node.test.ops[0], ast.Eq) and isinstance(node.test.comparators[0], ast.Constant)):
            out[node.test.comparators[0].value] = node.body
    return out


def feature_subscripts(stmts):
    """The subscripts of feat_s and feat_t in a branch, as source text: {"feat_s": [...], "feat_t": [...]}."""
    found = {"feat_s": [], "feat_t": []}
    for st in stmts:
        for node in ast.walk(st):
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in found:
                text = ast.unparse(node.slice)
                if text not in found[node.value.id]:
                    found[node.value.id].append(text)
    return found


def assigns_zero(stmts, name):
    return any(isinstance(s, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in s.targets) and
               isinstance(s.value, ast.Constant) and s.value.value == 0 for s in stmts)


def function(tree, name):
    return next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name)


def normalize_of(source, func=None):
    """The per-channel mean and std of the first transforms.Normalize(...) in a file (or in one of its functions)."""
    import numpy as np
    tree = ast.parse(source)
    scope = function(tree, func) if func else tree
    call = next(n for n in ast.walk(scope) if isinstance(n, ast.Call) and ast.unparse(n.func).endswith("Normalize"))
    values = [eval(ast.unparse(a), {"np": np}) for a in call.args]
    kw = {k.arg: eval(ast.unparse(k.value), {"np": np}) for k in call.keywords}
    mean, std = (values + [kw.get("mean"), kw.get("std")])[:2] if values else (kw["mean"], kw["std"])
    return {"mean": [round(float(x), 6) for x in mean], "std": [round(float(x), 6) for x in std]}


# ---------------------------------------------------------------------------------------------- RepDistiller
REPD_PAIRS = [("wrn_40_2", "wrn_16_2"), ("wrn_40_2", "wrn_40_1"), ("resnet56", "resnet20"), ("resnet110", "resnet20"),
              ("resnet110", "resnet32"), ("resnet32x4", "resnet8x4"), ("vgg13", "vgg8"), ("vgg13", "MobileNetV2"),
              ("ResNet50", "MobileNetV2"), ("ResNet50", "vgg8"), ("resnet32x4", "ShuffleV1"),
              ("resnet32x4", "ShuffleV2"), ("wrn_40_2", "ShuffleV1")]  # README.md, Benchmark Results on CIFAR-100


def repdistiller_n_feats():
    sys.path.insert(0, path("RepDistiller"))
    from models import model_dict
    n = {}
    for m in sorted({x for p in REPD_PAIRS for x in p}):
        with contextlib.redirect_stdout(io.StringIO()):
            model = model_dict[m](num_classes=100)
        model.eval()
        with torch.no_grad():
            feat, _ = model(torch.randn(2, 3, 32, 32), is_feat=True)
        n[m] = len(feat)
    sys.path.remove(path("RepDistiller"))
    return n


def repdistiller_parse_option(argv, script_tree):
    """train_student.py's (or train_teacher.py's) own parse_option() on argv, run in a temporary folder."""
    ns = {"os": os, "argparse": argparse, "socket": __import__("socket")}
    for name in ("parse_option", "get_teacher_name"):
        try:
            exec(compile(ast.Module([function(script_tree, name)], []), "<peer>", "exec"), ns)
        except StopIteration:
            pass
    old_argv, old_cwd = sys.argv, os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        sys.argv = ["train.py"] + argv
        try:
            return ns["parse_option"]()
        finally:
            sys.argv = old_argv
            os.chdir(old_cwd)


def repdistiller_lrs(opt, epochs):
    """helper/util.py adjust_learning_rate, called at the start of each 1-based epoch as train_student.py does."""
    sys.path.insert(0, path("RepDistiller"))
    util = importlib.import_module("helper.util")
    sys.path.remove(path("RepDistiller"))
    p = torch.nn.Parameter(torch.zeros(1))
    optim = torch.optim.SGD([p], lr=opt.learning_rate)
    lrs = []
    for epoch in range(1, epochs + 1):
        util.adjust_learning_rate(epoch, opt, optim)
        lrs.append(optim.param_groups[0]["lr"])
    return lrs


def repdistiller_records():
    name = "RepDistiller"
    student_tree = ast.parse(read(name, "train_student.py"))
    teacher_tree = ast.parse(read(name, "train_teacher.py"))
    loops = distill_branches(function(ast.parse(read(name, "helper/loops.py")), "train_distill"))
    pretrain_tree = ast.parse(read(name, "helper/pretrain.py"))
    init_fn = function(pretrain_tree, "init")
    init_branches = distill_branches(init_fn)
    init_lr_rule = next(n for n in init_fn.body if isinstance(n, ast.If) and
                        any(isinstance(t, ast.Name) and t.id == "lr" for s in n.body if isinstance(s, ast.Assign)
                            for t in s.targets))
    n_feats = repdistiller_n_feats()
    # The losses' own weights where a loss has them (distiller_zoo/RKD.py RKDLoss(w_d=25, w_a=50)): its defaults.
    sys.path.insert(0, path(name))
    import inspect
    rkd_sig = inspect.signature(importlib.import_module("distiller_zoo.RKD").RKDLoss.__init__).parameters
    sys.path.remove(path(name))
    rkd = {"w_d": rkd_sig["w_d"].default, "w_a": rkd_sig["w_a"].default}
    repd_norm = normalize_of(read(name, "dataset/cifar100.py"), "get_cifar100_dataloaders")
    out = []
    lines = read(name, "scripts/run_cifar_distill.sh").splitlines()
    for lineno, line in enumerate(lines, 1):
        if not line.startswith("python train_student.py"):
            continue
        argv = shlex.split(line)[2:]
        for t, s in REPD_PAIRS:
            a = list(argv)
            a[a.index("--path_t") + 1] = "./save/models/%s_vanilla/ckpt_epoch_240.pth" % t
            a[a.index("--model_s") + 1] = s
            opt = repdistiller_parse_option(a, student_tree)
            assert opt.model_t == t, (opt.model_t, t)
            env = {"opt": opt}
            main = loops[opt.distill]
            subs = feature_subscripts(main)
            # loops.py: loss = opt.gamma * loss_cls + opt.alpha * loss_div + opt.beta * loss_kd (loss_kd = 0: none)
            terms = {"ce": opt.gamma, "kd": opt.alpha,
                     "feature": 0.0 if assigns_zero(main, "loss_kd") else opt.beta}
            preact = opt.distill in ["abound"]  # loops.py: preact = True if opt.distill in ['abound']
            rec = record(name, "scripts/run_cifar_distill.sh", " ".join(a), t, s, opt.distill, line=lineno,
                         terms=terms, temperature=opt.kd_T,
                         features={"student": [i for e in subs["feat_s"] for i in eval_index(e, n_feats[s], env)],
                                   "teacher": [i for e in subs["feat_t"] for i in eval_index(e, n_feats[t], env)],
                                   "preact": preact, "n_student": n_feats[s], "n_teacher": n_feats[t]})
            if opt.distill in init_branches:
                ns = {"opt": opt}
                exec(compile(ast.Module([init_lr_rule], []), "<peer>", "exec"), ns)
                isubs = feature_subscripts(init_branches[opt.distill])
                ipre = {"opt": opt}
                # pretrain.py: preact = (opt.distill == 'abound'); loss = sum(loss_group) or criterion(...): weight 1
                exec("preact = (opt.distill == 'abound')", ipre)
                rec["init"] = {"epochs": opt.init_epochs, "lr": ns["lr"], "weight": 1.0,
                               "features": {"student": [i for e in isubs["feat_s"]
                                                        for i in eval_index(e, n_feats[s], env)],
                                            "teacher": [i for e in isubs["feat_t"]
                                                        for i in eval_index(e, n_feats[t], env)],
                                            "preact": ipre["preact"]}}
            rec["recipe"] = dict(schedule_from_lrs(repdistiller_lrs(opt, opt.epochs)), epochs=opt.epochs,
                                 batch_size=opt.batch_size, optimizer="sgd", momentum=opt.momentum, nesterov=False,
                                 weight_decay=opt.weight_decay)
            rec["options"] = {"hint_layer": opt.hint_layer, "feat_dim": opt.feat_dim, "nce_k": opt.nce_k,
                              "nce_t": opt.nce_t, "nce_m": opt.nce_m, "mode": opt.mode}
            if opt.distill == "rkd":
                rec["options"]["rkd"] = rkd
            rec["protocol"] = {"train_images": 50000, "validation_split": False,
                               "reported": "last epoch's test top-1 (train_student.py: 'The results reported in "
                                           "the paper/README is from the last epoch')"}
            rec["normalize"] = repd_norm
            out.append(rec)
    # The student trained alone: train_teacher.py --model <student> (scripts/run_cifar_vanilla.sh runs it so for
    # the teachers; the README's student column has no line of its own).
    assert "python train_teacher.py --model" in read(name, "scripts/run_cifar_vanilla.sh")
    for s in sorted({p[1] for p in REPD_PAIRS}):
        opt = repdistiller_parse_option(["--model", s], teacher_tree)
        rec = record(name, "train_teacher.py", "--model " + s, None, s, "vanilla",
                     terms={"ce": 1.0}, temperature=None, features=None)
        rec["recipe"] = dict(schedule_from_lrs(repdistiller_lrs(opt, opt.epochs)), epochs=opt.epochs,
                             batch_size=opt.batch_size, optimizer="sgd", momentum=opt.momentum, nesterov=False,
                             weight_decay=opt.weight_decay)
        rec["protocol"] = {"train_images": 50000, "validation_split": False,
                           "reported": "last epoch's test top-1 (train_teacher.py: 'The results reported in the "
                                       "paper/README is from the last epoch')"}
        rec["normalize"] = repd_norm
        out.append(rec)
    return out


# ---------------------------------------------------------------------------------- mdistiller and its fork
def mdistiller_cfg(name, cfg_file, extra_argv):
    """tools/train.py's __main__ block (without its final main(...)) on argv; returns the merged cfg."""
    pkg = "_peer_cfg_" + re.sub(r"\W", "_", name)
    if pkg not in sys.modules:
        m = types.ModuleType(pkg)
        m.__path__ = [path(name, "mdistiller", "engine")]
        sys.modules[pkg] = m
    cfg_mod = importlib.import_module(pkg + ".cfg")
    tree = ast.parse(read(name, "tools/train.py"))
    block = next(n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test))
    body = [s for s in block.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Call) and
                                          ast.unparse(s.value.func) == "main")]
    ns = {"cfg": cfg_mod.CFG.clone()}
    old_argv, old_cwd = sys.argv, os.getcwd()
    os.chdir(path(name))
    sys.argv = ["tools/train.py", "--cfg", cfg_file] + extra_argv
    try:
        exec(compile(ast.Module(body, []), "<peer>", "exec"), ns)
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
    return ns["cfg"]


def mdistiller_lrs(name, cfg):
    """mdistiller/engine/utils.py adjust_learning_rate at each 1-based epoch, as its trainer calls it."""
    pkg = "_peer_cfg_" + re.sub(r"\W", "_", name)
    utils = importlib.import_module(pkg + ".utils")
    p = torch.nn.Parameter(torch.zeros(1))
    optim = torch.optim.SGD([p], lr=cfg.SOLVER.LR)
    lrs = []
    for epoch in range(1, cfg.SOLVER.EPOCHS + 1):
        lrs.append(utils.adjust_learning_rate(epoch, cfg, optim))
    return lrs


def mdistiller_recipe(name, cfg):
    return dict(schedule_from_lrs(mdistiller_lrs(name, cfg)), epochs=cfg.SOLVER.EPOCHS,
                batch_size=cfg.SOLVER.BATCH_SIZE, optimizer=cfg.SOLVER.TYPE.lower(), momentum=cfg.SOLVER.MOMENTUM,
                nesterov=False, weight_decay=cfg.SOLVER.WEIGHT_DECAY)


def mdistiller_records():
    out = []
    for name, folder, extra in [("mdistiller", "configs/cifar100/dkd", []),
                                ("logit-standardization-KD", "configs/cifar100/dkd",
                                 ["--logit-stand", "--base-temp", "2", "--kd-weight", "9"]),
                                ("logit-standardization-KD", "configs/cifar100/kd",
                                 ["--logit-stand", "--base-temp", "2", "--kd-weight", "9"])]:
        for f in sorted(os.listdir(path(name, folder))):
            rel = folder + "/" + f
            cfg = mdistiller_cfg(name, rel, extra)
            args = " ".join(["tools/train.py", "--cfg", rel] + extra)
            t, s = cfg.DISTILLER.TEACHER, cfg.DISTILLER.STUDENT
            if cfg.DISTILLER.TYPE == "DKD":
                rec = record(name, rel, args, t, s, "dkd",
                             terms={"ce": cfg.DKD.CE_WEIGHT, "tckd": cfg.DKD.ALPHA, "nckd": cfg.DKD.BETA},
                             temperature=cfg.DKD.T, features=None, options={"warmup": cfg.DKD.WARMUP})
            else:
                rec = record(name, rel, args, t, s, "kd",
                             terms={"ce": cfg.KD.LOSS.CE_WEIGHT, "kd": cfg.KD.LOSS.KD_WEIGHT},
                             temperature=cfg.KD.TEMPERATURE, features=None, options={})
            if name == "logit-standardization-KD":
                rec["options"]["logit_stand"] = bool(cfg.EXPERIMENT.LOGIT_STAND)
            rec["recipe"] = mdistiller_recipe(name, cfg)
            rec["normalize"] = normalize_of(read(name, "mdistiller/dataset/cifar100.py"),
                                            "get_cifar100_train_transform")
            rec["protocol"] = {"train_images": 50000, "validation_split": False,
                               "reported": "best test top-1 over the epochs (engine/trainer.py writes best_acc)"}
            out.append(rec)
    return out


# ----------------------------------------------------------------------------------------------------- DIST
def dist_records():
    readme = read("DIST_KD", "README.md")
    cifar = readme[readme.index("### CIFAR-100"):]
    cifar = cifar[:cifar.index("\n### ", 5)]
    commands = re.findall(r"^sh tools/dist_train.sh .*$", cifar, re.M)
    plain, low_lr = commands[0], commands[1]  # the second: "For MobileNetV2, ShuffleNetV1, and ShuffleNetV2"
    note = re.search(r"\*\*NOTE\*\*: For (.*?), `lr`", cifar).group(1)
    low_lr_students = {"MobileNetV2": "cifar_mobile_half", "ShuffleNetV1": "cifar_ShuffleV1",
                       "ShuffleNetV2": "cifar_ShuffleV2"}
    low = {low_lr_students[n.strip().strip("`")] for n in re.split(r",\s*(?:and\s+)?", note)}
    rows = re.findall(r"^\|[^|]+\|[^|]+\|[^|]+\|`(cifar_\w+)`\|`(cifar_\w+)`\|", cifar, re.M)
    sota = "image_classification_sota"
    sys.path.insert(0, path(sota))
    args_mod = importlib.import_module("lib.utils.args")
    sched_mod = importlib.import_module("lib.utils.scheduler")
    sys.path.remove(path(sota))
    kd_loss = ast.parse(read(sota, "lib/models/losses/kd_loss.py"))
    out = []
    for model, t_model in rows:
        cmd = low_lr if model in low else plain
        words = shlex.split(cmd)[2:]  # after "sh tools/dist_train.sh": GPUS CONFIG MODEL PY_ARGS...
        config = words[1]
        shown = [{"${MODEL}": model, "${T_MODEL}": t_model}.get(w, w) for w in words]
        # dist_train.sh runs tools/train.py -c CONFIG --model MODEL PY_ARGS (placeholder experiment name and path)
        py_args = [{"${EXP_NAME}": "exp", "${CKPT}": "ckpt.pth"}.get(w, w) for w in shown[3:]]
        old_argv, old_cwd = sys.argv, os.getcwd()
        os.chdir(path(sota))
        sys.argv = ["tools/train.py", "-c", config, "--model", model] + py_args
        try:
            args, _ = args_mod.parse_args()
        finally:
            sys.argv = old_argv
            os.chdir(old_cwd)
        # kd_loss.py: kd_method 'dist_t<tau>' -> DIST(beta=..., gamma=..., tau=tau)
        call = next(n for n in ast.walk(kd_loss) if isinstance(n, ast.If) and "dist_t" in ast.unparse(n.test))
        kw = {k.arg: k.value for k in call.body[-1].value.keywords}
        beta, gamma = kw["beta"].value, kw["gamma"].value
        tau = float(args.kd[len("dist_t"):])
        # The schedule, per iteration as tools/train.py steps it (len(train_loader): 50,000 images, drop_last).
        steps = 50000 // args.batch_size
        p = torch.nn.Parameter(torch.zeros(1))
        optim = torch.optim.SGD([p], lr=args.lr, momentum=args.momentum)
        with contextlib.redirect_stderr(io.StringIO()):
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sched = sched_mod.build_scheduler(args.sched, optim, args.warmup_epochs * steps, args.warmup_lr,
                                                  args.decay_epochs * steps, args.decay_rate, args.epochs * steps,
                                                  steps_per_epoch=steps, decay_by_epoch=args.decay_by_epoch,
                                                  min_lr=args.min_lr)
                first, last, within = [], [], []
                for epoch in range(args.epochs):
                    for b in range(steps):
                        lr = optim.param_groups[0]["lr"]
                        if b == 0:
                            first.append(lr)
                        elif abs(lr - first[-1]) > 1e-15 and (not within or within[-1]["epoch"] != epoch):
                            within.append({"epoch": epoch, "from_step": b, "steps": steps})
                        sched.step(epoch * steps + b + 1)
                    last.append(lr)
        # The epochs in which the decayed lr is first used (here after the first step(s) of the epoch).
        recipe = dict(schedule_from_lrs(last), epochs=args.epochs, batch_size=args.batch_size,
                      optimizer=args.opt, momentum=args.momentum, nesterov=not args.sgd_no_nesterov,
                      weight_decay=args.weight_decay)
        recipe["lr"] = first[0]
        recipe["lr_changes_within_an_epoch"] = within
        rec = record(sota, config, "tools/dist_train.sh " + " ".join(shown), t_model, model, "dist",
                     terms={"ce": args.ori_loss_weight, "inter": args.kd_loss_weight * beta,
                            "intra": args.kd_loss_weight * gamma},
                     temperature=tau, features=None, recipe=recipe,
                     normalize={"mean": [round(float(x), 6) for x in args.image_mean],
                                "std": [round(float(x), 6) for x in args.image_std]},
                     options={"readme": "hunto/DIST_KD @ " + commit_of("DIST_KD") + " README.md, CIFAR-100"},
                     protocol={"train_images": 50000, "validation_split": False,
                               "reported": "mean ± std of the runs' test top-1 (README); the logs are per epoch"})
        out.append(rec)
    return out


# ------------------------------------------------------------------------------------------------- ReviewKD
def module_argparse(tree):
    """A parser with the script's module-level parser.add_argument(...) calls."""
    parser = argparse.ArgumentParser()
    calls = [s for s in tree.body if isinstance(s, ast.Expr) and isinstance(s.value, ast.Call) and
             ast.unparse(s.value.func) == "parser.add_argument"]
    exec(compile(ast.Module(calls, []), "<peer>", "exec"), {"parser": parser})
    return parser


def reviewkd_records():
    name = "ReviewKD"
    tree = ast.parse(read(name, "CIFAR-100/train.py"))
    parser = module_argparse(tree)
    lr_rule = next(s for s in tree.body if isinstance(s, ast.If) and "shuffle" in ast.unparse(s.test))
    sgd = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) == "torch.optim.SGD")
    sgd_kw = {k.arg: ast.unparse(k.value) for k in sgd.keywords}
    warm = next(n for n in ast.walk(tree) if isinstance(n, ast.Assign) and
                "review_kd_loss" in ast.unparse(n.targets[0]))
    sys.path.insert(0, path(name, "CIFAR-100"))
    misc = importlib.import_module("util.misc")
    sys.path.remove(path(name, "CIFAR-100"))
    out = []
    for lineno, line in enumerate(read(name, "CIFAR-100/script/reviewKD.sh").splitlines(), 1):
        if not line.startswith("python train.py"):
            continue
        argv = shlex.split(line)[2:]
        args = parser.parse_args(argv)
        exec(compile(ast.Module([lr_rule], []), "<peer>", "exec"), {"args": args})
        p = torch.nn.Parameter(torch.zeros(1))
        optim = torch.optim.SGD([p], lr=args.lr)
        lr, lrs = args.lr, []
        for epoch in range(args.epochs):  # train.py: train epoch, test, then lr = lr_schedule(lr, epoch, ...)
            lrs.append(lr)
            lr = misc.lr_schedule(lr, epoch, optim, args)
        recipe = dict(schedule_from_lrs(lrs), epochs=args.epochs, batch_size=args.batch_size, optimizer="sgd",
                      momentum=float(sgd_kw["momentum"]), nesterov=sgd_kw["nesterov"] == "True",
                      weight_decay=args.wd)
        out.append(record(name, "CIFAR-100/script/reviewKD.sh", " ".join(argv), args.teacher, args.model,
                          "reviewkd", line=lineno,
                          terms={"ce": args.ce_loss_weight, "reviewkd": args.kd_loss_weight,
                                 "kd": args.kl_loss_weight if args.use_kl else 0.0},
                          temperature=None, features=None, recipe=recipe,
                          normalize=normalize_of(read(name, "CIFAR-100/train.py")),
                          options={"warmup": args.kd_warm_up, "warmup_rule": ast.unparse(warm.value)},
                          protocol={"train_images": 50000, "validation_split": False,
                                    "reported": "train.py logs test_acc and best_acc per epoch; the paper's "
                                                "table does not say which"}))
    return out


# ---------------------------------------------------------------------------------------------------- OFD
def ofd_records():
    name = "overhaul-distillation"
    file = "CIFAR-100/train_with_distillation.py"
    tree = ast.parse(read(name, file))
    parser = module_argparse(tree)
    readme = read(name, "CIFAR-100/README.md")
    cmd = re.search(r"```\npython train_with_distillation.py \\\n(.*?)```", readme, re.S).group(1)
    argv = shlex.split(cmd.replace("\\\n", " "))
    # The README says --setting a; the script's argparse has --paper_setting (default 'a') and no --setting, so that
    # pair of words is not an argument of the script (recorded under options.unknown_args).
    args, unknown = parser.parse_known_args(argv)
    loop = next(n for n in tree.body if isinstance(n, ast.For) and ast.unparse(n.target) == "epoch")
    # The loop's first statement builds a new SGD at epoch 0, epochs // 2 and epochs * 3 // 4.
    chain, lrs_at, nesterov = loop.body[0], {}, None
    while isinstance(chain, ast.If):
        epoch_at = eval(ast.unparse(chain.test.comparators[0]), {"args": args})
        call = next(n for n in ast.walk(chain.body[0]) if isinstance(n, ast.Call) and "SGD" in ast.unparse(n.func))
        kw = {k.arg: k.value for k in call.keywords}
        lrs_at[epoch_at] = eval(ast.unparse(kw["lr"]), {"args": args})
        nesterov = ast.unparse(kw["nesterov"]) == "True"
        chain = chain.orelse[0] if chain.orelse else None
    lrs, lr = [], None
    for epoch in range(args.epochs):
        lr = lrs_at.get(epoch, lr)
        lrs.append(lr)
    loss = next(n for n in ast.walk(function(tree, "train_with_distill")) if isinstance(n, ast.Assign) and
                ast.unparse(n.targets[0]) == "loss")
    # loss = loss_CE + loss_distill.sum() / batch_size / 1000: the constant divisor is the weight's inverse
    divisor = [n.right.value for n in ast.walk(loss.value) if isinstance(n, ast.BinOp) and
               isinstance(n.op, ast.Div) and isinstance(n.right, ast.Constant)]
    recipe = dict(schedule_from_lrs(lrs), epochs=args.epochs, batch_size=args.batch_size, optimizer="sgd",
                  momentum=args.momentum, nesterov=nesterov, weight_decay=args.weight_decay,
                  optimizer_rebuilt_at=sorted(lrs_at))
    return [record(name, "CIFAR-100/README.md", " ".join(argv), None, None, "ofd",
                   terms={"ce": 1.0, "ofd": 1.0 / divisor[0]}, temperature=None, features=None, recipe=recipe,
                   normalize=normalize_of(read(name, file)),
                   options={"loss": ast.unparse(loss.value), "unknown_args": unknown,
                            "pairs": "the authors' settings (a)-(f): WRN-28-4 and PyramidNet-200 teachers "
                                     "(load_settings.py); none of RepDistiller's pairs"},
                   protocol={"train_images": 50000, "validation_split": False,
                             "reported": "the README's error rates; train_with_distillation.py prints the test "
                                         "accuracy each epoch and saves the best"})]


# ---------------------------------------------------------------------------------------------- torchdistill
class KeepTags(yaml.SafeLoader):
    pass


def _any_tag(loader, suffix, node):
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


KeepTags.add_multi_constructor("!", _any_tag)


def torchdistill_records():
    name = "torchdistill"
    folder = "configs/official/ilsvrc2012/yoshitomo-matsubara/rrpr2020"
    out = []
    for method, f in [("kd", "kd-resnet18_from_resnet34.yaml"), ("at", "at-resnet18_from_resnet34.yaml")]:
        rel = folder + "/" + f
        with open(path(name, rel)) as fh:
            cfg = yaml.load(fh, Loader=KeepTags)
        train = cfg["train"]
        sub = train["criterion"]["kwargs"]["sub_terms"]
        terms, features, temperature = {}, None, None
        for key, term in sub.items():
            crit = term["criterion"]
            w = float(term["weight"])
            if crit["key"] == "KDLoss":  # mid_level.py KDLoss: alpha * CE + beta * T^2 * KL, beta = 1 - alpha
                kw = crit["kwargs"]
                alpha = float(kw["alpha"])
                beta = float(kw["beta"]) if kw.get("beta") is not None else 1 - alpha
                terms["ce"], terms["kd"] = w * alpha, w * beta
                temperature = float(kw["temperature"])
            elif crit["key"] == "CrossEntropyLoss":
                terms["ce"] = w
            elif crit["key"] == "ATLoss":
                pairs = crit["kwargs"]["at_pairs"]
                terms["at"] = w
                features = {"student": [p["student"]["path"] for p in pairs.values()],
                            "teacher": [p["teacher"]["path"] for p in pairs.values()],
                            "pair_weights": [float(p.get("weight", 1)) for p in pairs.values()],
                            "mode": crit["kwargs"].get("mode", "code")}
        opt, sch = train["optimizer"], train["scheduler"]
        assert sch["key"] == "MultiStepLR"
        recipe = {"lr": opt["kwargs"]["lr"], "schedule": "multistep", "milestones": sch["kwargs"]["milestones"],
                  "gamma": sch["kwargs"]["gamma"], "epochs": train["num_epochs"],
                  "batch_size": train["train_data_loader"]["kwargs"]["batch_size"], "optimizer": opt["key"].lower(),
                  "momentum": opt["kwargs"]["momentum"], "nesterov": bool(opt["kwargs"].get("nesterov", False)),
                  "weight_decay": opt["kwargs"]["weight_decay"]}
        out.append(record(name, rel, "examples/torchvision/image_classification.py --config " + rel,
                          cfg["models"]["teacher_model"]["key"], cfg["models"]["student_model"]["key"], method,
                          terms=terms, temperature=temperature, features=features, recipe=recipe,
                          options={"teacher_weights": "torchvision ResNet34_Weights.IMAGENET1K_V1 (1000 classes)"},
                          protocol={"train_images": "ILSVRC 2012 train (1000 classes)", "validation_split": False,
                                    "reported": "top-1 on ILSVRC 2012 val (README, Reported Results)"}))
    # The student alone: the README's "Pretrained" column is torchvision's pretrained ResNet-18, trained by
    # torchvision's reference scripts; torchdistill ships no recipe for it.
    readme = folder + "/README.md"
    assert "Pretrained" in read(name, readme)
    out.append(record(name, readme, "", None, "resnet18", "vanilla", terms={"ce": 1.0}, temperature=None,
                      features=None, recipe=None,
                      options={"weights": "torchvision ResNet18_Weights.IMAGENET1K_V1 (the 'Pretrained' column)"},
                      protocol={"train_images": "ILSVRC 2012 train (1000 classes)", "validation_split": False,
                                "reported": "top-1 on ILSVRC 2012 val (README, Reported Results)"}))
    return out


def main():
    torch.manual_seed(0)
    records = (repdistiller_records() + mdistiller_records() + dist_records() + reviewkd_records() +
               ofd_records() + torchdistill_records())
    doc = {
        "provenance": {
            "generator": "tests/data/reference/protocol/generators/gen_published_settings.py",
            "torch": torch.__version__,
            "commits": {REPOS[n][0]: commit_of(n) for n in REPOS},
            "how": __doc__.strip().splitlines()[0] + " (see the generator's docstring)",
            "conventions": "pairs: the peer's model names; terms: the weight of each loss term as the peer's code applies it (RepDistiller: ce = "
                           "-r/gamma, kd = -a/alpha, feature = -b/beta, 0 where its loop sets loss_kd = 0); "
                           "features: indices into the peer model's feat list (model(x, is_feat=True), preact as "
                           "given), or module paths (torchdistill); recipe.milestones: the 0-based epochs in which "
                           "a decayed lr is first used (lr_changes_within_an_epoch: from which step, where the peer "
                           "steps its schedule per iteration); normalize: the per-channel mean and std of the "
                           "peer's CIFAR-100 transforms.Normalize",
        },
        "records": records,
    }
    out = os.path.join(OUT, "published_settings.json")
    with open(out, "w") as f:
        f.write("{\n")
        f.write('"provenance": ' + json.dumps(doc["provenance"], indent=1) + ",\n")
        f.write('"records": [\n')
        f.write(",\n".join(json.dumps(r, sort_keys=True) for r in records))
        f.write("\n]\n}\n")
    print("wrote", out, len(records), "records")


if __name__ == "__main__":
    main()
