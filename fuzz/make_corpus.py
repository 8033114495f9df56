#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/: small valid files in each format (and a few
variants that reach other branches). Deterministic; re-run it only to change the seeds, then commit
the files (scripts/fuzz never writes into fuzz/corpus). Needs numpy and Pillow (the kdbench venv has
both): ~/.cache/kdbench/venv/bin/python fuzz/make_corpus.py
"""
import gzip
import io
import json
import pathlib
import struct
import sys

import numpy as np
from PIL import Image

here = pathlib.Path(__file__).resolve().parent
root = here.parent
corpus = here / "corpus"
rng = np.random.default_rng(0)


def put(target, name, data):
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def gz(data):
    return gzip.compress(data, compresslevel=9, mtime=0)


# ---- hostile torch.save files (issue 24): deep nesting, and memory amplified from deflated records. Each is one
# DataError for kdbench; under scripts/fuzz's memory limit the amplifying ones made the fuzzer fail before the
# reader had its limits. Written as zip tools write (zipfile, deflated records; torch.save stores them), each
# under the 4096 bytes fuzz_torch_file reads. `make_corpus.py hostile` writes only these.
def hostile_torch_files():
    import zipfile

    def torch_zip(records):  # name in the archive folder -> (bytes, deflated)
        b = io.BytesIO()
        with zipfile.ZipFile(b, "w") as z:
            for name, (data, deflate) in records.items():
                info = zipfile.ZipInfo("archive/" + name, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
                z.writestr(info, data, compresslevel=9)
        return b.getvalue()

    def legacy(obj_pickle):  # torch/serialization.py's _legacy_save around one pickle, without storages
        magic = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + b"."
        return magic + b"\x80\x02M\xe9\x03." + b"\x80\x02}." + obj_pickle + b"\x80\x02]."

    def unicode(s):
        return b"X" + struct.pack("<I", len(s)) + s.encode()

    # OrderedDict {"w": a float tensor of 4 elements over storage "0"} as torch.save pickles it.
    state_dict = (b"\x80\x02ccollections\nOrderedDict\n)R(" + unicode("w") + b"ctorch._utils\n_rebuild_tensor_v2\n((" +
                  unicode("storage") + b"ctorch\nFloatStorage\n" + unicode("0") + unicode("cpu") + b"K\x04tQK\x00(K\x04t(K\x01t"
                  b"\x89ccollections\nOrderedDict\n)RtRu.")
    base = {"version": (b"3\n", False), "byteorder": (b"little", False)}
    files = {
        # One None in a million one-element tuples: a stack overflow when the values were freed.
        "nested_tuples_deflated.pt": torch_zip({**base, "data.pkl": (b"\x80\x02N" + b"\x85" * 1000000 + b".", True)}),
        # Three million Nones from 3 KB: about 0.6 GB of values.
        "values_deflated.pt": torch_zip({**base, "data.pkl": (b"\x80\x02" + b"N" * 3000000 + b".", True)}),
        # A storage of 4 floats whose record inflates to 3 MB.
        "record_deflated.pt": torch_zip({**base, "data.pkl": (state_dict, False), "data/0": (bytes(3 << 20), True)}),
        # Lists nested 1500 deep through marks, in the legacy format.
        "nested_lists_legacy.pt": legacy(b"\x80\x02" + b"(" * 1500 + b"N" + b"l" * 1500 + b"."),
        # A list that holds itself (through the memo), a thousand times.
        "self_holding_list_legacy.pt": legacy(b"\x80\x02}q\x00" + unicode("a") + b"]q\x01" + b"h\x01a" * 1000 + b"s."),
    }
    for name, data in files.items():
        assert len(data) <= 4096, (name, len(data))
        put("fuzz_torch_file", name, data)


if sys.argv[1:] == ["hostile"]:
    hostile_torch_files()
    sys.exit(0)

# ---- IDX: magic 0x000008NN (NN = rank), big-endian dims, then uint8 data.
def idx(arr):
    arr = np.asarray(arr, dtype=np.uint8)
    return struct.pack(">BBBB", 0, 0, 8, arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.tobytes()


images = idx(rng.integers(0, 256, size=(3, 4, 4)))
labels = idx([1, 0, 9])
put("fuzz_idx", "images-3x4x4.idx", images)
put("fuzz_idx", "labels-3.idx", labels)
put("fuzz_idx", "pair-images-labels.idx", images + labels)  # fuzz_idx splits it for read_idx_pair
put("fuzz_idx", "images-3x4x4.idx.gz", gz(images))
put("fuzz_idx", "labels-3.idx.gz", gz(labels))
put("fuzz_idx", "rank4-1x1x2x2.idx", idx(np.arange(4).reshape(1, 1, 2, 2)))

# ---- CIFAR binary: records of label byte(s) + 3072 bytes (R, G, B planes of 32x32).
pixels = rng.integers(0, 256, size=3072, dtype=np.uint8).tobytes()
smooth = np.repeat(np.arange(32, dtype=np.uint8) * 8, 96).tobytes()  # compresses well
put("fuzz_cifar", "cifar10-1-record.bin", bytes([7]) + pixels)
put("fuzz_cifar", "cifar100-1-record.bin", bytes([3, 42]) + pixels)  # coarse 3, fine 42
put("fuzz_cifar", "cifar10-2-records.bin.gz", gz(bytes([2]) + smooth + bytes([9]) + smooth))

# ---- images: tiny JPEGs and PNGs in the layouts decode_image converts.
def save(img, fmt, **kw):
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    return b.getvalue()


rgb = Image.fromarray(rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8), "RGB")
gray = rgb.convert("L")
put("fuzz_image", "rgb-5x6.jpg", save(rgb, "JPEG", quality=80))
put("fuzz_image", "rgb-5x6-progressive.jpg", save(rgb, "JPEG", quality=80, progressive=True))
put("fuzz_image", "gray-5x6.jpg", save(gray, "JPEG", quality=80))
put("fuzz_image", "cmyk-5x6.jpg", save(rgb.convert("CMYK"), "JPEG", quality=80))
put("fuzz_image", "rgb-5x6.png", save(rgb, "PNG"))
put("fuzz_image", "rgba-5x6.png", save(rgb.convert("RGBA"), "PNG"))
put("fuzz_image", "gray-5x6.png", save(gray, "PNG"))
put("fuzz_image", "gray-1bit-5x6.png", save(gray.convert("1"), "PNG"))
put("fuzz_image", "palette-5x6.png", save(rgb.convert("P", palette=Image.ADAPTIVE, colors=4), "PNG"))
put("fuzz_image", "palette-trns-5x6.png", save(rgb.convert("P", palette=Image.ADAPTIVE, colors=4), "PNG", transparency=0))
put("fuzz_image", "gray16-5x6.png", save(Image.fromarray((np.arange(30).reshape(6, 5) * 2000).astype(np.uint16)), "PNG"))

# ---- configs: the repo's ready sweeps, plus small ones that reach the other branches.
for f in sorted((root / "configs").glob("*.json")):
    put("fuzz_config", f.name, f.read_bytes())
small = {
    "minimal.json": {"name": "m", "dataset": {"name": "synthetic"}, "student": "cnn_tiny",
                     "methods": [{"method": "baseline"}]},
    "teachers.json": {
        "name": "t", "dataset": {"name": "cifar100", "labels": "coarse"}, "seeds": 3, "student": ["cnn_tiny"],
        "teachers": {"a": {"model": "cnn_large", "obtain": "checkpoint", "file": "a.pt"},
                     "b": {"obtain": "torchscript", "file": "b.pt", "taps": ["logits", "block1"]},
                     "c": {"model": "cnn_wide", "recipe": {"epochs": 2, "optimizer": "adamw", "nesterov": False, "schedule": "multistep",
                                                           "milestones": [1], "warmup_epochs": 0.5}}},
        "recipe": {"epochs": 2, "nesterov": True, "schedule": "step", "step_size": 1, "grad_clip": 5},
        "lockstep": 2, "report": False, "device": "cpu", "threads": 1,
        "methods": [{"method": "multi_teacher", "teachers": ["a", "c"],
                     "params": {"aggregation": "weighted", "teacher_weights": [1, 2]}},
                    {"method": "fitnets", "label": "f1", "teachers": ["c"], "grid": {"mode": ["one_stage"]}},
                    {"method": "progressive", "teachers": ["a"],
                     "params": {"assistants": ["cnn_medium", "cnn_tiny"],
                                "link_method": {"name": "attention"}}}]},
    "syntax-error.json": None,
}
for name, cfg in small.items():
    text = json.dumps(cfg, indent=1).encode() if cfg is not None else b'{"name": "x",\n "seeds": [1, 2,]}'
    put("fuzz_config", name, text)

# ---- torch.save files (teachers' state dicts): the zip and the legacy format, a checkpoint with the weights
# under "model", and a legacy file whose tensor is a strided view. (A zip file records a random
# serialization id, so these bytes differ from run to run.)
import torch  # noqa: E402

torch.manual_seed(0)
_sd = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2)).state_dict()
for _name, _obj, _zip in (("zip_state_dict.pt", _sd, True), ("legacy_state_dict.pt", _sd, False),
                          ("zip_checkpoint.pt", {"epoch": 3, "model": _sd, "acc": 1.5}, True),
                          ("legacy_view.pt", {"model": {"w": torch.arange(6.).view(2, 3)[:, 1:]}}, False)):
    _buf = io.BytesIO()
    torch.save(_obj, _buf, _use_new_zipfile_serialization=_zip)
    put("fuzz_torch_file", _name, _buf.getvalue())
put("fuzz_config", "pytorch-teachers.json", json.dumps({
    "name": "pt", "dataset": {"name": "synthetic"}, "student": "cnn_tiny", "seeds": [0],
    "teachers": {"rd": {"model": "resnet8", "obtain": "pytorch", "file": "a.pth", "key": "model",
                        "name_map": {"rename": {"head.weight": "fc.weight"}, "prefix": {"module.": "", "aux.": None}}},
                 "c": {"obtain": "export", "file": "t.pt2", "taps": ["logits", "block2"]}},
    "methods": [{"method": "logit_kd", "teachers": ["rd"]}, {"method": "attention", "teachers": ["c"]}]},
    indent=1).encode())

hostile_torch_files()

total = sum(p.stat().st_size for p in corpus.rglob("*") if p.is_file())
print(f"corpus: {sum(1 for p in corpus.rglob('*') if p.is_file())} files, {total} bytes")
