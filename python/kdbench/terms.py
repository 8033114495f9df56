"""Terms and checks that kdbench's native methods share (methods/common_terms.cpp, methods/losses.cpp), in Python.

The ports in python/ports use them, and a plugin may too: ``from kdbench.terms import soft_kl, ce_own_kd``. Each
does the same operations in the same order as its C++ counterpart, so a port trains bit for bit as the native
method (tests/test_pybridge_twins.cpp).
"""

import torch
import torch.nn.functional as F

from . import Term

__all__ = ["soft_kl", "ce_own_kd", "standardize_logits", "pool_to_common_size", "check_batch", "check_logits"]


def soft_kl(student_logits, teacher_logits, T):
    """losses::soft_kl: T^2 * (1/B) sum_b sum_c p_t (log p_t - log p_s), p = softmax(logits / T)."""
    teacher_probs = torch.softmax(teacher_logits / T, 1)
    log_ps = torch.log_softmax(student_logits / T, 1)
    per_sample = (torch.xlogy(teacher_probs, teacher_probs) - teacher_probs * log_ps).sum(1)
    return per_sample.mean() * (T * T)


def ce_own_kd(inp, own, alpha, temperature):
    """common_terms' ce_own_kd: ce (1 - alpha), the method's own terms, then kd (alpha) only when alpha > 0."""
    logits = inp.student["logits"]
    terms = [Term("ce", F.cross_entropy(logits, inp.labels), 1.0 - alpha)]
    terms.extend(own)
    if alpha > 0:
        terms.append(Term("kd", soft_kl(logits, inp.teachers[0]["logits"], temperature), alpha))
    return terms


def standardize_logits(z, form):
    """losses::standardize_logits: z-score each row; form "reference" (Bessel std + 1e-7) or "paper"."""
    centred = z - z.mean(-1, True)
    if form == "reference":
        return centred / (z.std(-1, unbiased=True, keepdim=True) + 1e-7)
    return centred / z.std(-1, unbiased=False, keepdim=True)


def pool_to_common_size(a, b):
    """losses::pool_to_common_size: the larger map along each dimension adaptive-average-pooled to the smaller."""
    if a.dim() != 4 or b.dim() != 4:
        raise ValueError(f"pool_to_common_size: expected two [B,C,H,W] maps, got {a.dim()}-D and {b.dim()}-D")
    h = min(a.size(2), b.size(2))
    w = min(a.size(3), b.size(3))

    def pool(x):
        if x.size(2) == h and x.size(3) == w:
            return x
        return F.adaptive_avg_pool2d(x, [h, w])

    return pool(a), pool(b)


def check_batch(what, s, t, min_batch):
    """Features [B, ...] of one batch from student and teacher, and at least min_batch samples (else ValueError)."""
    if s.dim() < 2 or t.dim() < 2 or s.size(0) != t.size(0):
        raise ValueError(f"{what}: expected student and teacher features [B, ...] of one batch, got {s.dim()}-D and "
                         f"{t.dim()}-D tensors")
    if s.size(0) < min_batch:
        raise ValueError(f"{what}: needs a batch of at least {min_batch} samples, got {s.size(0)}")


def check_logits(what, s, t):
    """Student and teacher logits of one shape [B, C] (else ValueError)."""
    if s.dim() != 2 or t.dim() != 2 or s.shape != t.shape:
        raise ValueError(f"{what}: expected student and teacher logits of one shape [B, C], got {s.dim()}-D and "
                         f"{t.dim()}-D tensors of {s.numel()} and {t.numel()} elements")
