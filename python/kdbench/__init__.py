"""Write a distillation method in Python and let kdbench train it.

A kdbench method is a class with the same contract as a C++ method (methods/method.h): a name, a one-line
description, hyperparameters with defaults, ranges and docs, the feature taps it needs from the student and from
each teacher, optionally a module of its own (regressors, embeddings) and several stages, and ``compute``, which
returns the UNWEIGHTED loss terms of one batch with the weights its hyperparameters give them. kdbench weights and
sums the terms, logs each one, runs backward through the graph your code built and steps the optimizer.

A complete method (Hinton et al. 2015)::

    from dataclasses import dataclass
    import torch.nn.functional as F
    import kdbench as kd

    class HintonKD(kd.Method):
        \"\"\"Hinton et al. 2015: T^2 KL(teacher || student) at temperature T, plus cross-entropy.\"\"\"
        name = "my_kd"

        @dataclass
        class Options:
            temperature: float = kd.option(4.0, range=(0.05, 100.0), doc="softmax temperature T")
            alpha: float = kd.option(0.9, range=(0.0, 1.0), doc="weight of the KD term; CE gets 1 - alpha")

        def compute(self, inp):
            t, s = inp.teachers[0]["logits"], inp.student["logits"]
            T = self.opt.temperature
            kl = F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction="batchmean") * T * T
            return [kd.Term("ce", F.cross_entropy(s, inp.labels), 1 - self.opt.alpha),
                    kd.Term("kd", kl, self.opt.alpha)]

A config names the file (``"plugins": ["my_kd.py"]``, relative to the config) or the command line does
(``kdbench sweep CONFIG --plugin my_kd.py``); its methods then take part in sweeps as native ones do: the same
batches, initial weights, seeds and shared teacher forward, grids validated against the declared ranges before
anything trains, run ids that cover the file's content, the same store and reports.

How it runs: inside the kdbench process, in the interpreter of the venv whose torch wheel kdbench links, so the
tensors you receive are kdbench's own (no copies) and the autograd graph you build is the one kdbench's backward
runs. Lockstep runs are stepped on several threads; kdbench holds the GIL only while it calls your code, and
PyTorch's operators release it while they compute.

Rules that follow from that:
- ``compute`` must return terms whose values depend on the inputs through torch operations (so gradients flow).
  Do not call ``.backward()``, ``.item()`` on a term, or step an optimizer yourself.
- Randomness: use torch's global generator (``torch.rand``, ``torch.randint``, module initialisation); kdbench seeds
  it before ``prepare`` from the run's seed, exactly as for native methods.
- A module's buffers (e.g. a memory bank) must be updated in place (``buf.index_copy_``, ``buf.mul_``), never
  rebound (``self.bank = torch.cat(...)``): kdbench holds the same tensors, saves them beside the checkpoint and moves
  them between train and eval mode with the student.
- Python methods run eagerly (never inside a captured CUDA graph).
- An exception raised in ``compute`` fails that run only; the store keeps its type, message and your file:line.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch

__all__ = ["Method", "Term", "Stage", "Input", "Context", "option", "OptionError", "kd_alpha", "kd_temperature",
           "form_option", "check_paired_taps"]


class OptionError(ValueError):
    """Raised by ``Options.validate()`` for a bad combination of values: ``OptionError("key", "what is wrong")``.

    kdbench reports it as a config error naming the method entry's key, before anything trains.
    """

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def option(default: Any, *, range: Optional[Tuple[float, float]] = None, choices: Optional[Sequence[str]] = None,
           doc: str = "") -> Any:
    """A hyperparameter of a method: a field of its ``Options`` dataclass.

    ``default`` is required. ``range=(lo, hi)`` (inclusive) is required for ``float`` and ``int`` fields;
    ``choices`` restricts a ``str`` field. The field's type annotation gives its kind: ``float``, ``int``,
    ``bool``, ``str``, ``List[str]`` (``list[str]``) or ``dict`` (any JSON). ``doc`` is what ``kdbench methods``
    prints. kdbench checks every declaration when the plugin is loaded: a default outside its range fails there.
    """
    meta = {"kdbench": {"range": range, "choices": list(choices) if choices is not None else None, "doc": doc}}
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: typing.cast(Any, value).copy(), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# ---- option pieces: the native methods' pieces (methods/method.h: kd_term, paired_taps, form), one line each ----
def kd_alpha() -> Any:
    """The optional KD term's weight (``alpha: float = kd.kd_alpha()``): in [0, 1], default 0; CE gets 1 - alpha.

    With :func:`kd_temperature` and ``kdbench.terms.ce_own_kd`` it is the native methods' KD term piece.
    """
    return option(0.0, range=(0.0, 1.0), doc="weight of an added KD term; CE gets 1 - alpha")


def kd_temperature() -> Any:
    """The optional KD term's temperature (``temperature: float = kd.kd_temperature()``): in [0.05, 100], default 4."""
    return option(4.0, range=(0.05, 100.0), doc="KD temperature when alpha > 0")


def form_option(doc: str) -> Any:
    """A method's form (``form: str = kd.form_option("reference: ...; paper: ...")``): "reference" (the code behind
    the published table, the default) or "paper" (the paper's equations)."""
    return option("reference", choices=("reference", "paper"), doc=doc)


def check_paired_taps(student_taps: Sequence[str], teacher_taps: Sequence[str], min_pairs: int = 1) -> None:
    """For ``Options.validate()``: student and teacher tap lists paired in order, at least ``min_pairs`` of them;
    raises the OptionError the native methods' paired-taps piece raises."""
    if len(student_taps) < min_pairs:
        raise OptionError("student_taps", f"needs at least {min_pairs} tap{'' if min_pairs == 1 else 's'}, "
                                          f"got {len(student_taps)}")
    if len(teacher_taps) != len(student_taps):
        raise OptionError("teacher_taps", f"needs as many taps as student_taps ({len(student_taps)}), "
                                          f"got {len(teacher_taps)}")


class Term(NamedTuple):
    """One named loss term: its unweighted value (a scalar tensor) and the weight its hyperparameters give it."""

    name: str
    value: torch.Tensor
    weight: float = 1.0


@dataclasses.dataclass
class Stage:
    """A training stage (see methods/method.h, StageSpec). Most methods have one.

    epochs: 0 = the recipe's epochs. train_until_tap: train only the student's parameters upstream of this tap
    ("" = all of it). train_student: False freezes the student (eval mode) and trains only the method's module.
    train_modules: names of the direct children of the method's module that train in this stage ([] = all).
    eval_modules: names of direct children that neither train nor leave eval mode in this stage (e.g. connectors
    fitted in an earlier stage). lr: this stage's base learning rate (0 = the recipe's).
    """

    name: str = "main"
    epochs: int = 0
    train_until_tap: str = ""
    train_student: bool = True
    train_modules: List[str] = dataclasses.field(default_factory=list)
    eval_modules: List[str] = dataclasses.field(default_factory=list)
    lr: float = 0.0


class Input(NamedTuple):
    """What ``compute`` receives for one batch.

    student: tap name -> tensor (always "logits"); teachers: one such dict per teacher of the run (detached,
    computed in eval mode); labels: int64 [B]; indices: int64 [B], the samples' indices in the training split;
    stage: index into ``stages()``; epoch: the run's epoch (0-based, over all stages); stage_epoch: the epoch
    within the stage; step: the step within the epoch; steps_per_epoch.
    """

    student: Dict[str, torch.Tensor]
    teachers: List[Dict[str, torch.Tensor]]
    labels: torch.Tensor
    indices: torch.Tensor
    stage: int
    epoch: int
    stage_epoch: int
    step: int
    steps_per_epoch: int


class Context(NamedTuple):
    """What ``prepare`` receives, once per run before training.

    student: tap name -> shape (a tuple, batch dimension included) of every student tap; teachers: the same per
    teacher; device: where the run trains (build your module there); train_size: samples in the training split;
    num_classes; train_labels: int64 [train_size] (CPU), the label of each training sample by index, or None.
    """

    student: Dict[str, Tuple[int, ...]]
    teachers: List[Dict[str, Tuple[int, ...]]]
    device: torch.device
    train_size: int
    num_classes: int
    train_labels: Optional[torch.Tensor]


class Method:
    """Base class of a kdbench method written in Python. Subclass it; kdbench finds the subclasses of a plugin file.

    Class attributes:
      name         the registry name (``[a-z0-9_]+``, unique among native and plugin methods)
      description  one line for ``kdbench methods`` (default: the first line of the class docstring)
      citation     the paper and the reference code the formula comes from (optional)
      teachers     (min, max) number of teachers a run of it uses; default (1, 1)
      Options      a dataclass whose fields are declared with :func:`option`; default: no hyperparameters

    The constructor receives the resolved Options (``self.opt``). Override the methods below as needed.
    """

    name: str = ""
    description: str = ""
    citation: str = ""
    teachers: Tuple[int, int] = (1, 1)

    @dataclasses.dataclass
    class Options:
        pass

    def __init__(self, opt: Any):
        self.opt = opt

    def student_taps(self) -> List[str]:
        """Taps needed from the student ("logits" is always there)."""
        return ["logits"]

    def teacher_taps(self, i: int) -> List[str]:
        """Taps needed from teacher ``i`` (an empty list: that teacher is not run for this method)."""
        return ["logits"]

    def stages(self) -> List[Stage]:
        """The training stages; one ``Stage()`` by default."""
        return [Stage()]

    def prepare(self, ctx: Context) -> Optional[torch.nn.Module]:
        """Called once per run before training, with the real tap shapes. Return the method's own trainable
        module (regressors, embeddings; built on ``ctx.device``), or None. Its parameters train with the student's
        optimizer and weight decay, count as the method's extra parameters and are saved beside the checkpoint."""
        return None

    def compute(self, inp: Input) -> Sequence[Term]:
        """The unweighted loss terms of one batch, each with its weight."""
        raise NotImplementedError(f"{type(self).__name__}.compute is not written")
