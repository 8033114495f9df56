"""py_crd: Contrastive Representation Distillation (Tian, Krishnan & Isola, ICLR 2020, Sec. 3.1-3.4, Eq. 10-18),
in Python.

    v_s = embed_s(f_s), v_t = embed_t(f_t)        Linear(d -> feat_dim) then x / ||x||_2 (no eps); both train
    M_s, M_t [n_data, feat_dim]                    memory banks (buffers), uniform(-1/sqrt(feat_dim/3), +...) at start
    idx[b] = [b's own index, K negatives]          "exact": negatives from the OTHER classes, K distinct ones when
                                                   there are at least K of them, else with replacement
    x_s[b, k] = exp(M_t[idx[b, k]] . v_s[b] / T) / Z_s,  x_t[b, k] = exp(M_s[idx[b, k]] . v_t[b] / T) / Z_t
                                                   Z = mean(exp(...)) * n_data, set ONCE from the first batch
    crd = ContrastLoss(x_s) + ContrastLoss(x_t),   ContrastLoss(x) = -(sum_b log(x_b0 / (x_b0 + K/n + 1e-7))
                                                   + sum_{b, k >= 1} log((K/n) / (x_bk + K/n + 1e-7))) / B
    then, without gradient, the batch's rows:      M[i] = normalise(m M[i] + (1 - m) v), m = nce_m
    L = (1 - alpha) CE + beta * crd (+ alpha * T^2 KL, only when alpha > 0)

The same method as kdbench's native ``crd`` (methods/crd.cpp, methods/crd_memory.cpp; losses::crd_contrast_loss and
losses::crd_l2_normalize in methods/feature_losses.cpp; ce_own_kd in methods/common_terms.cpp):
- the same module: prepare() returns a ``CRDHead`` whose children are embed_s (child ``linear``), embed_t (child
  ``linear``) and contrast (buffers params = [K, T, Z_s, Z_t, momentum], memory_v1 = the student's bank, memory_v2 =
  the teacher's), RepDistiller's state-dict names; created on the CPU in the native (and RepDistiller's) order:
  embed_s's Linear, embed_t's Linear, memory_v1's torch.rand, memory_v2's torch.rand; then moved to the run's device;
- the same negatives: after the module, prepare() draws one seed from torch's global generator exactly as the native
  code does (torch.randint(0, 2^62, (1,), int64) on the CPU) and the sampler runs the native ContrastSampler's
  algorithm on that seed: std::mt19937_64 (re-implemented here bit for bit, checked against the C++ standard's
  required 10000th output), Lemire's multiply-shift for a bounded draw, Floyd's algorithm for K distinct negatives,
  the same number and order of draws per sample; so one run seed gives the native run's negatives. The native
  sampler does not draw from torch's generator itself (only its seed comes from there), so neither does this one;
- the same terms: ce (1 - alpha), crd (beta), kd (alpha, only when alpha > 0), the same operations in the same order
  (also ``scalar / tensor``, which LibTorch computes as fill-then-divide and Python as reciprocal-times: written out).
Reference code: RepDistiller b84f547 crd/criterion.py (CRDLoss, Embed, ContrastLoss), crd/memory.py (ContrastMemory),
dataset/cifar100.py (CIFAR100InstanceSample). kdbench's own code, written from the native C++.
"""

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn

import kdbench as kd
from kdbench.terms import soft_kl, ce_own_kd


# ---- losses (methods/feature_losses.cpp) ----------------------------------------------------------------------
def crd_contrast_loss(scores, n_data):
    """losses::crd_contrast_loss: RepDistiller's ContrastLoss on [B, K+1] scores, the positive in column 0."""
    eps = 1e-7
    B = scores.size(0)
    m = float(scores.size(1) - 1)
    mPn = m / float(n_data)
    pos = scores.select(1, 0)
    neg = scores.narrow(1, 1, scores.size(1) - 1)
    log_d1 = torch.log(pos / (pos + (mPn + eps)))
    d0 = neg + (mPn + eps)
    # LibTorch's `double / Tensor` is empty_like(d).fill_(double).div_(d); Python's is d.reciprocal() * double.
    log_d0 = torch.log(torch.empty_like(d0, memory_format=torch.preserve_format).fill_(mPn).div_(d0))
    return -(log_d1.sum() + log_d0.sum()) / float(B)


def crd_l2_normalize(x):
    """losses::crd_l2_normalize: x / ||x||_2 per row, without an eps (RepDistiller's Normalize)."""
    return x / x.pow(2).sum(1, True).pow(0.5)


# ---- std::mt19937_64, bit for bit (vectorised with numpy) ---------------------------------------------------------
_U64 = np.uint64
_MASK64 = (1 << 64) - 1


class MT19937_64:
    """The C++ standard's std::mt19937_64 (w 64, n 312, m 156, r 31), seeded as std::mt19937_64::seed(value).

    Its words follow x[k + 312] = x[k + 156] ^ mix(x[k], x[k + 1]) (the standard's definition; the in-place "twist"
    of implementations computes the same words), output tempered; generated here 156 words per numpy step."""

    N, M = 312, 156
    _A = _U64(0xB5026F5AA96619E9)
    _UPPER = _U64(0xFFFFFFFF80000000)
    _LOWER = _U64(0x7FFFFFFF)

    def __init__(self, seed):
        x = [int(seed) & _MASK64]
        for i in range(1, self.N):
            prev = x[-1]
            x.append((6364136223846793005 * (prev ^ (prev >> 62)) + i) & _MASK64)
        self._state = np.array(x, dtype=np.uint64)  # the last 312 words
        self._out = np.empty(0, dtype=np.uint64)  # tempered outputs not yet used
        self._pos = 0

    def _words(self, blocks):
        """The next 312 * blocks words, the state advanced past them."""
        n, m = self.N, self.M
        x = np.empty(n * (blocks + 1), dtype=np.uint64)
        x[:n] = self._state
        one = _U64(1)
        for s in range(n, len(x), n - m):
            k = s - n
            y = (x[k:k + n - m] & self._UPPER) | (x[k + 1:k + n - m + 1] & self._LOWER)
            x[s:s + n - m] = x[k + m:k + n] ^ (y >> one) ^ ((y & one) * self._A)
        self._state = x[-n:].copy()
        return x[n:]

    @staticmethod
    def _temper(z):
        z = z ^ ((z >> _U64(29)) & _U64(0x5555555555555555))
        z ^= (z << _U64(17)) & _U64(0x71D67FFFEDA60000)
        z ^= (z << _U64(37)) & _U64(0xFFF7EEE000000000)
        z ^= z >> _U64(43)
        return z

    def next(self, count):
        """The next `count` outputs, uint64 [count]."""
        have = len(self._out) - self._pos
        if count > have:
            blocks = -(-(count - have) // self.N)
            self._out = np.concatenate([self._out[self._pos:], self._temper(self._words(blocks))])
            self._pos = 0
        out = self._out[self._pos:self._pos + count]
        self._pos += count
        return out


def _mulhi(a, b):
    """The high 64 bits of the 128-bit products a * b (uint64 arrays), in 32-bit halves."""
    m32 = _U64(0xFFFFFFFF)
    s32 = _U64(32)
    a_lo, a_hi = a & m32, a >> s32
    b_lo, b_hi = b & m32, b >> s32
    lo_lo = a_lo * b_lo
    hi_lo = a_hi * b_lo
    lo_hi = a_lo * b_hi
    hi_hi = a_hi * b_hi
    cross = (lo_lo >> s32) + (hi_lo & m32) + lo_hi
    return (hi_lo >> s32) + (cross >> s32) + hi_hi


def _below(raw, n):
    """ContrastSampler::below: Lemire's multiply-shift, (raw * n) >> 64, for n >= 1 (int64 result)."""
    return _mulhi(raw, np.asarray(n, dtype=np.int64).astype(np.uint64)).astype(np.int64)


def _floyd(p, j, lowest_j):
    """Floyd's algorithm resolved for many rows at once. Row r, step k drew p[r, k] uniform in [0, j[r, k]],
    j[r, k] = lowest_j[r] + k; the step takes p unless an earlier step of the row took it, and then takes j. Returns the
    K distinct positions taken, in step order: exactly the sequential algorithm's.

    Before step k the row has taken every earlier draw p[i] (taken then, or already taken) and the j[i] of the
    earlier steps that collided; j[i] = p[k] means i = p[k] - lowest_j. So step k collides iff p[k] repeats an
    earlier draw, or i = p[k] - lowest_j is an earlier step (0 <= i < k) that collided: a recursion along i < k,
    solved by iterating to its (unique) fixed point."""
    p_t = torch.from_numpy(p)
    R, K = p_t.shape
    steps = torch.arange(K, dtype=torch.long).expand(R, K)
    # p[k] repeats an earlier draw of its row: not the first of its value in a stable sort.
    _, order = torch.sort(p_t, dim=1, stable=True)
    sorted_p = p_t.gather(1, order)
    repeat_sorted = torch.zeros(R, K, dtype=torch.bool)
    repeat_sorted[:, 1:] = sorted_p[:, 1:] == sorted_p[:, :-1]
    repeat = torch.zeros(R, K, dtype=torch.bool).scatter_(1, order, repeat_sorted)
    ptr = p_t - torch.from_numpy(lowest_j)[:, None]
    linked = (ptr >= 0) & (ptr < steps)
    ptr = torch.where(linked, ptr, torch.zeros_like(ptr))
    collided = repeat.clone()
    while True:
        now = repeat | (linked & collided.gather(1, ptr))
        if torch.equal(now, collided):
            break
        collided = now
    return np.where(collided.numpy(), j, p)


class ContrastSampler:
    """crd::ContrastSampler: [B, K+1] contrast indices, column 0 the positive, columns 1..K the negatives.

    exact:   positive = the sample itself; negatives uniform over the samples of the OTHER classes, K distinct ones
             when there are at least K (Floyd's algorithm), else with replacement;
    relax:   positive = a uniformly drawn sample of the same class (possibly itself), drawn first; negatives as exact;
    uniform: negatives uniform over all samples with replacement (the positive's index may recur).
    Without labels (None), every sample is its own class."""

    def reset(self, train_labels, n_data, seed):
        self.n = int(n_data)
        self.rng = MT19937_64(seed)
        self.labels = None
        if train_labels is None:
            return
        labels = train_labels.to("cpu", torch.long).contiguous().numpy().astype(np.int64)
        classes = int(labels.max()) + 1 if labels.size else 0
        self.count = np.bincount(labels, minlength=classes).astype(np.int64)
        self.start = np.concatenate([[0], np.cumsum(self.count)[:-1]]).astype(np.int64)
        self.order = np.argsort(labels, kind="stable").astype(np.int64)  # indices sorted by class, stable
        self.labels = labels

    def _at(self, positions):
        return positions if self.labels is None else self.order[positions]

    def draw(self, indices, K, mode):
        idx = indices.to("cpu", torch.long).contiguous().numpy().astype(np.int64)
        B, K = idx.shape[0], int(K)
        out = np.empty((B, K + 1), dtype=np.int64)
        out[:, 0] = idx
        if B == 0:
            return torch.from_numpy(out)
        if mode == "uniform":
            out[:, 1:] = _below(self.rng.next(B * K).reshape(B, K), self.n)
            return torch.from_numpy(out)
        if self.labels is None:
            lo, n_c = idx.copy(), np.ones(B, dtype=np.int64)
        else:
            c = self.labels[idx]
            lo, n_c = self.start[c], self.count[c]
        relax = mode == "relax"
        raw = self.rng.next(B * (K + relax)).reshape(B, K + relax)
        if relax:
            out[:, 0] = self._at(lo + _below(raw[:, 0], n_c))
            raw = raw[:, 1:]
        M = self.n - n_c
        if (M <= 0).any():  # (the native sampler reads past its arrays here)
            raise ValueError("CRD: a sample has no negatives: every training sample is of its class")
        pos = np.empty((B, K), dtype=np.int64)
        repl = K > M  # fewer others than K: with replacement
        if repl.any():
            pos[repl] = _below(raw[repl], M[repl][:, None])
        floyd = ~repl
        if floyd.any():
            j = (M[floyd][:, None] - K) + np.arange(K, dtype=np.int64)[None, :]  # j = M - K, ..., M - 1
            p = _below(raw[floyd], j + 1)
            pos[floyd] = _floyd(p, j, M[floyd] - K)
        negative = np.where(pos < lo[:, None], pos, pos + n_c[:, None])
        out[:, 1:] = self._at(negative)
        return torch.from_numpy(out)


# ---- the module (methods/crd_memory.cpp, CRDHeadImpl) -------------------------------------------------------------
class Embed(nn.Module):
    """RepDistiller's Embed: a Linear (child ``linear``); the L2 normalisation is crd_l2_normalize."""

    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x):
        return self.linear(x)


class ContrastMemory(nn.Module):
    """The buffers of RepDistiller's ContrastMemory: params [K, T, Z_s, Z_t, momentum], memory_v1, memory_v2."""

    def __init__(self, feat_dim, n_data, K, T, m):
        super().__init__()
        stdv = 1.0 / math.sqrt(float(feat_dim) / 3.0)
        self.register_buffer("params", torch.tensor([float(K), float(T), -1.0, -1.0, float(m)], dtype=torch.float32))
        self.register_buffer("memory_v1", torch.rand(n_data, feat_dim).mul_(2 * stdv).add_(-stdv))
        self.register_buffer("memory_v2", torch.rand(n_data, feat_dim).mul_(2 * stdv).add_(-stdv))


class CRDOut(NamedTuple):
    loss: torch.Tensor  # ContrastLoss(student scores) + ContrastLoss(teacher scores), a scalar
    v_s: torch.Tensor  # the embeddings [B, feat_dim]
    v_t: torch.Tensor
    out_s: torch.Tensor  # the scores [B, K+1]: student vs the teacher's bank, teacher vs the student's
    out_t: torch.Tensor


class CRDHead(nn.Module):
    """crd::CRDHead: embeds, scores against the banks, sets Z once, updates the banks; returns the loss."""

    def __init__(self, s_dim, t_dim, feat_dim, n_data, nce_k, nce_t, nce_m):
        super().__init__()
        self.n_data, self.nce_k, self.feat_dim = int(n_data), int(nce_k), int(feat_dim)
        self.nce_t, self.nce_m = float(nce_t), float(nce_m)
        # RepDistiller's construction order (embed_s, embed_t, then the banks): the order of the random draws.
        self.embed_s = Embed(s_dim, feat_dim)
        self.embed_t = Embed(t_dim, feat_dim)
        self.contrast = ContrastMemory(feat_dim, n_data, nce_k, nce_t, nce_m)

    def forward(self, f_s, f_t, indices, contrast_idx):
        mem = self.contrast
        v_s = crd_l2_normalize(self.embed_s(f_s.flatten(1))).to(mem.memory_v1.dtype)
        v_t = crd_l2_normalize(self.embed_t(f_t.flatten(1))).to(mem.memory_v1.dtype)
        B, K1, D = v_s.size(0), contrast_idx.size(1), self.feat_dim
        idx = contrast_idx.to(mem.memory_v1.device, torch.long).reshape(-1)
        w_t = mem.memory_v2.index_select(0, idx).view(B, K1, D)
        out_s = torch.exp(torch.bmm(w_t, v_s.view(B, D, 1)).squeeze(2) / self.nce_t)
        w_s = mem.memory_v1.index_select(0, idx).view(B, K1, D)
        out_t = torch.exp(torch.bmm(w_s, v_t.view(B, D, 1)).squeeze(2) / self.nce_t)
        with torch.no_grad():
            # Z: set once, from the first batch, as mean score x n_data (a float32 value, then a constant).
            if mem.params[2].item() < 0:
                mem.params[2] = out_s.mean() * float(self.n_data)
            if mem.params[3].item() < 0:
                mem.params[3] = out_t.mean() * float(self.n_data)
            z_s = mem.params[2].item()
            z_t = mem.params[3].item()
        out_s = out_s / z_s
        out_t = out_t / z_t
        loss = crd_contrast_loss(out_s, self.n_data) + crd_contrast_loss(out_t, self.n_data)
        with torch.no_grad():  # after scoring: the batch's rows become normalise(m * row + (1 - m) * v), in place
            y = indices.to(mem.memory_v1.device, torch.long)
            for bank, v in ((mem.memory_v1, v_s), (mem.memory_v2, v_t)):
                row = bank.index_select(0, y).mul_(self.nce_m).add_(v.detach() * (1 - self.nce_m))
                bank.index_copy_(0, y, row / row.pow(2).sum(1, True).pow(0.5))
        return CRDOut(loss, v_s, v_t, out_s, out_t)


class CRD(kd.Method):
    """Tian et al. 2020 (Python port of crd): contrastive objective with memory-bank negatives."""

    name = "py_crd"
    description = ("Tian et al. 2020: contrastive objective between teacher and student embeddings with "
                   "negatives from memory banks over the training set")
    citation = ("Tian et al. 2020 (ICLR), Sec. 3 Eq. 10-18; reference RepDistiller crd/criterion.py, crd/memory.py, "
                "dataset/cifar100.py @ b84f547")
    teachers = (1, 1)

    @dataclass
    class Options:
        student_tap: str = kd.option("pool", doc="student features to embed (RepDistiller: feat[-1], pooled)")
        teacher_tap: str = kd.option("pool", doc="teacher features to embed")
        feat_dim: int = kd.option(128, range=(1, 1 << 16), doc="embedding width (RepDistiller 128)")
        nce_k: int = kd.option(16384, range=(1, 1 << 24), doc="negatives per sample (RepDistiller 16384)")
        nce_t: float = kd.option(0.07, range=(1e-4, 100.0), doc="temperature of the scores (RepDistiller 0.07)")
        nce_m: float = kd.option(0.5, range=(0.0, 1.0), doc="momentum of the memory-bank update (RepDistiller 0.5)")
        negatives: str = kd.option(
            "exact", choices=("exact", "relax", "uniform"),
            doc="exact: other classes (reference default); relax: positive from the same class; uniform: any sample")
        beta: float = kd.option(0.8, range=(0.0, 1e6), doc="weight of the crd term (RepDistiller: 0.8)")
        alpha: float = kd.kd_alpha()
        temperature: float = kd.kd_temperature()

    def __init__(self, opt):
        super().__init__(opt)
        self.head = None
        self.sampler = ContrastSampler()

    def student_taps(self):
        return ["logits", self.opt.student_tap]

    def teacher_taps(self, i):
        return ["logits", self.opt.teacher_tap]

    def prepare(self, ctx):
        o = self.opt
        n_data = int(ctx.train_size)
        if n_data < 2:
            raise ValueError("CRD needs the training split's size (at least 2 samples) for its memory bank")
        if ctx.train_labels is not None and ctx.train_labels.numel() != n_data:
            raise RuntimeError(f"CRD: train_labels has {ctx.train_labels.numel()} entries for {n_data} samples")

        def flat(shape):
            n = 1
            for d in shape[1:]:
                n *= d
            return n

        # On the CPU (the generator the run's seed seeded, as the native module's initialisation), then moved.
        self.head = CRDHead(flat(ctx.student[o.student_tap]), flat(ctx.teachers[0][o.teacher_tap]), o.feat_dim,
                            n_data, o.nce_k, o.nce_t, o.nce_m)
        self.head.to(ctx.device)
        # The sampler's stream from the generator the trainer seeded with the run's seed (after the bank's draws).
        seed = int(torch.randint(0, 1 << 62, (1,), dtype=torch.long).item())
        self.sampler.reset(ctx.train_labels, n_data, seed)
        return self.head

    def compute(self, inp):
        o = self.opt
        contrast_idx = self.sampler.draw(inp.indices, o.nce_k, o.negatives)
        out = self.head(inp.student[o.student_tap], inp.teachers[0][o.teacher_tap], inp.indices, contrast_idx)
        return ce_own_kd(inp, [kd.Term("crd", out.loss, float(o.beta))], float(o.alpha), float(o.temperature))
