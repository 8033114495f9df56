"""kdbench's model zoo in PyTorch: the same architectures as models/*.cpp, under the same parameter and
buffer names (RepDistiller's for the CIFAR models, torchvision's for resnet18/34/50), so a student
exported by `kdbench export` loads with `model.load_state_dict(torch.load(FILE))` (strict) and gives
kdbench's logits. kdbench's own code, written from its C++ definitions; `kdbench export --format export`
uses it to rebuild a student before compiling it with torch.export and AOTInductor.

    import kdbench_zoo
    model = kdbench_zoo.create("resnet8x4", num_classes=100)
    model.load_state_dict(torch.load("student.pt"))

`create(name, num_classes, in_channels=3, taps=False)`: with taps=True the forward returns a dict of
kdbench's taps (stem, blockK, preact_blockK, raw_blockK for WRN, pool, logits) instead of the logits alone. resnet18/34/50
come from torchvision (taps=False only).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def _conv(cin, cout, k, stride=1, groups=1, bias=False):
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=bias)


class _Tapped(nn.Module):
    """Base: forward returns the logits, or every tap when built with taps=True."""

    def __init__(self, taps):
        super().__init__()
        self.taps = taps

    def _out(self, t):
        return t if self.taps else t["logits"]

    def _pool_classify(self, h, fc, t):
        t["pool"] = h.mean((2, 3))
        t["logits"] = fc(t["pool"])
        return t


# ---- small CNNs (models/cnn.cpp) -----------------------------------------------------------------
class SmallCnn(_Tapped):
    def __init__(self, widths, double_first, num_classes, in_channels=3, taps=False):
        super().__init__(taps)
        self.stem = _conv(in_channels, widths[0], 3)
        self.stem_bn = nn.BatchNorm2d(widths[0])
        for i in range(1, len(widths)):
            layers = [_conv(widths[i - 1], widths[i], 3, 2 if i <= 2 else 1), nn.BatchNorm2d(widths[i])]
            if double_first and i == 1:
                layers += [nn.ReLU(), _conv(widths[i], widths[i], 3), nn.BatchNorm2d(widths[i])]
            setattr(self, "block%d" % i, nn.Sequential(*layers))
        self.nblocks = len(widths) - 1
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x):
        t = {}
        h = F.relu(self.stem_bn(self.stem(x)))
        t["stem"] = h
        for i in range(1, self.nblocks + 1):
            pre = getattr(self, "block%d" % i)(h)
            h = F.relu(pre)
            t["preact_block%d" % i], t["block%d" % i] = pre, h
        return self._out(self._pool_classify(h, self.fc, t))


# ---- CIFAR ResNets (models/resnet.cpp) -----------------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = _conv(cin, planes, 3, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(_conv(cin, planes, 1, stride), nn.BatchNorm2d(planes))

    def forward(self, x):  # the residual sum before the final ReLU
        h = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return h + (self.downsample(x) if self.downsample is not None else x)


class CifarResNet(_Tapped):
    def __init__(self, depth, widths, num_classes, in_channels=3, taps=False):
        super().__init__(taps)
        n = (depth - 2) // 6
        self.conv1 = _conv(in_channels, widths[0], 3)
        self.bn1 = nn.BatchNorm2d(widths[0])
        cin = widths[0]
        for s in range(3):
            blocks = []
            for b in range(n):
                blocks.append(BasicBlock(cin, widths[s + 1], 2 if (b == 0 and s > 0) else 1))
                cin = widths[s + 1]
            setattr(self, "layer%d" % (s + 1), nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        t = {}
        h = F.relu(self.bn1(self.conv1(x)))
        t["stem"] = h
        for s in range(1, 4):
            for block in getattr(self, "layer%d" % s):
                pre = block(h)
                h = F.relu(pre)
            t["preact_block%d" % s], t["block%d" % s] = pre, h
        return self._out(self._pool_classify(h, self.fc, t))


# ---- wide ResNets (models/wrn.cpp) ---------------------------------------------------------------
class WideBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.equal = cin == cout
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = _conv(cin, cout, 3, stride)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = _conv(cout, cout, 3)
        if not self.equal:
            self.convShortcut = _conv(cin, cout, 1, stride)

    def forward(self, x, a):  # a = relu(bn1(x))
        h = self.conv2(F.relu(self.bn2(self.conv1(a))))
        return (x if self.equal else self.convShortcut(a)) + h


class _Stage(nn.Module):
    def __init__(self, blocks):
        super().__init__()
        self.layer = nn.Sequential(*blocks)


class WideResNet(_Tapped):
    def __init__(self, depth, widen, num_classes, in_channels=3, taps=False):
        super().__init__(taps)
        n = (depth - 4) // 6
        w = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = _conv(in_channels, w[0], 3)
        cin = w[0]
        for s in range(3):
            blocks = []
            for b in range(n):
                blocks.append(WideBlock(cin, w[s + 1], 2 if (b == 0 and s > 0) else 1))
                cin = w[s + 1]
            setattr(self, "block%d" % (s + 1), _Stage(blocks))
        self.bn1 = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        t = {}
        h = self.conv1(x)
        t["stem"] = h
        for s in range(1, 4):
            for i, block in enumerate(getattr(self, "block%d" % s).layer):
                pre = block.bn1(h)
                a = F.relu(pre)
                if i == 0 and s > 1:  # the BN + ReLU that opens stage s follows stage s - 1
                    t["preact_block%d" % (s - 1)], t["block%d" % (s - 1)] = pre, a
                h = block(h, a)
            t["raw_block%d" % s] = h  # the stage's residual sum (RepDistiller's WRN features)
        pre = self.bn1(h)
        h = F.relu(pre)
        t["preact_block3"], t["block3"] = pre, h
        return self._out(self._pool_classify(h, self.fc, t))


# ---- VGG (models/vgg.cpp) ------------------------------------------------------------------------
class Vgg(_Tapped):
    def __init__(self, groups, num_classes, in_channels=3, taps=False):
        super().__init__(taps)
        cin = in_channels
        self.ngroups = len(groups)
        for g, widths in enumerate(groups):
            layers = []
            for i, w in enumerate(widths):
                if i > 0:
                    layers.append(nn.ReLU())
                layers += [_conv(cin, w, 3, bias=True), nn.BatchNorm2d(w)]
                cin = w
            setattr(self, "block%d" % g, nn.Sequential(*layers))
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x):
        t = {}
        pool_after_group3 = x.shape[2] == 64
        h = x
        for g in range(self.ngroups):
            pre = getattr(self, "block%d" % g)(h)
            h = F.relu(pre)
            if g == 0:
                t["stem"] = h
            else:
                t["preact_block%d" % g], t["block%d" % g] = pre, h
            if g < 3 or (g == 3 and pool_after_group3):
                h = F.max_pool2d(h, 2, 2)
        return self._out(self._pool_classify(h, self.classifier, t))


# ---- MobileNetV2 (models/mobilenetv2.cpp) --------------------------------------------------------
class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        mid = cin * expand
        self.use_residual = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            _conv(cin, mid, 1), nn.BatchNorm2d(mid), nn.ReLU(),
            _conv(mid, mid, 3, stride, groups=mid), nn.BatchNorm2d(mid), nn.ReLU(),
            _conv(mid, cout, 1), nn.BatchNorm2d(cout))

    def forward(self, x):
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(_Tapped):
    def __init__(self, num_classes, in_channels=3, expand=6, width=0.5, taps=False):
        super().__init__(taps)
        stem = int(32 * width)
        self.conv1 = nn.Sequential(_conv(in_channels, stem, 3, 2), nn.BatchNorm2d(stem), nn.ReLU())
        groups = [(1, 16, 1, 1), (expand, 24, 2, 1), (expand, 32, 3, 2), (expand, 64, 4, 2),
                  (expand, 96, 3, 1), (expand, 160, 3, 2), (expand, 320, 1, 1)]
        self.blocks = nn.ModuleList()
        cin = stem
        for t_, c, n, s in groups:
            cout = int(c * width)
            layers = []
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t_))
                cin = cout
            self.blocks.append(nn.Sequential(*layers))
        last = int(1280 * width) if width > 1.0 else 1280
        self.conv2 = nn.Sequential(_conv(cin, last, 1), nn.BatchNorm2d(last), nn.ReLU())
        self.classifier = nn.Sequential(nn.Linear(last, num_classes))

    def forward(self, x):
        t = {}
        h = self.conv1(x)
        t["stem"] = h
        for g, group in enumerate(self.blocks):
            h = group(h)
            k = {1: 1, 2: 2, 4: 3, 6: 4}.get(g)
            if k:
                t["preact_block%d" % k] = t["block%d" % k] = h
        h = self.conv2(h)
        return self._out(self._pool_classify(h, self.classifier, t))


# ---- ShuffleNet V1 and V2 (models/shufflenet.cpp) ------------------------------------------------
def _shuffle(x, groups):
    if groups == 1:
        return x
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).permute(0, 2, 1, 3, 4).reshape(n, c, h, w)


class ShuffleV1Block(nn.Module):
    def __init__(self, cin, cout, stride, groups):
        super().__init__()
        self.stride = stride
        self.first_groups = 1 if cin == 24 else groups
        mid = cout // 4
        self.conv1 = _conv(cin, mid, 1, groups=self.first_groups)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = _conv(mid, mid, 3, stride, groups=mid)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = _conv(mid, cout, 1, groups=groups)
        self.bn3 = nn.BatchNorm2d(cout)

    def forward(self, x):  # before the final ReLU
        h = _shuffle(F.relu(self.bn1(self.conv1(x))), self.first_groups)
        h = F.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        if self.stride == 2:
            return torch.cat([h, F.avg_pool2d(x, 3, 2, 1)], 1)
        return h + x


class ShuffleNetV1(_Tapped):
    def __init__(self, num_classes, in_channels=3, widths=(240, 480, 960), depths=(4, 8, 4), groups=3, taps=False):
        super().__init__(taps)
        self.conv1 = _conv(in_channels, 24, 1)
        self.bn1 = nn.BatchNorm2d(24)
        cin = 24
        for s, (w, d) in enumerate(zip(widths, depths)):
            blocks = []
            for i in range(d):
                blocks.append(ShuffleV1Block(cin, w - (cin if i == 0 else 0), 2 if i == 0 else 1, groups))
                cin = w
            setattr(self, "layer%d" % (s + 1), nn.Sequential(*blocks))
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, x):
        t = {}
        h = F.relu(self.bn1(self.conv1(x)))
        t["stem"] = h
        for s in range(1, 4):
            for block in getattr(self, "layer%d" % s):
                pre = block(h)
                h = F.relu(pre)
            t["preact_block%d" % s], t["block%d" % s] = pre, h
        return self._out(self._pool_classify(h, self.linear, t))


class ShuffleV2Basic(nn.Module):
    def __init__(self, channels):
        super().__init__()
        half = self.half = channels // 2
        self.conv1 = _conv(half, half, 1)
        self.bn1 = nn.BatchNorm2d(half)
        self.conv2 = _conv(half, half, 3, groups=half)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = _conv(half, half, 1)
        self.bn3 = nn.BatchNorm2d(half)

    def forward(self, x):  # (output, concatenation before the last ReLU and shuffle)
        x1, x2 = x[:, :self.half], x[:, self.half:]
        h = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x2)))))
        pre = self.bn3(self.conv3(h))
        return _shuffle(torch.cat([x1, F.relu(pre)], 1), 2), torch.cat([x1, pre], 1)


class ShuffleV2Down(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        mid = cout // 2
        self.conv1 = _conv(cin, cin, 3, 2, groups=cin)
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv2 = _conv(cin, mid, 1)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = _conv(cin, mid, 1)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv4 = _conv(mid, mid, 3, 2, groups=mid)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = _conv(mid, mid, 1)
        self.bn5 = nn.BatchNorm2d(mid)

    def forward(self, x):
        left = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = F.relu(self.bn3(self.conv3(x)))
        right = F.relu(self.bn5(self.conv5(self.bn4(self.conv4(right)))))
        return _shuffle(torch.cat([left, right], 1), 2)


class ShuffleNetV2(_Tapped):
    def __init__(self, num_classes, in_channels=3, widths=(116, 232, 464), depths=(3, 7, 3), last=1024, taps=False):
        super().__init__(taps)
        self.conv1 = _conv(in_channels, 24, 1)
        self.bn1 = nn.BatchNorm2d(24)
        cin = 24
        for s, (w, d) in enumerate(zip(widths, depths)):
            setattr(self, "layer%d" % (s + 1), nn.Sequential(ShuffleV2Down(cin, w), *[ShuffleV2Basic(w) for _ in range(d)]))
            cin = w
        self.conv2 = _conv(cin, last, 1)
        self.bn2 = nn.BatchNorm2d(last)
        self.linear = nn.Linear(last, num_classes)

    def forward(self, x):
        t = {}
        h = F.relu(self.bn1(self.conv1(x)))
        t["stem"] = h
        for s in range(1, 4):
            layer = getattr(self, "layer%d" % s)
            h = layer[0](h)
            pre = None
            for block in list(layer)[1:]:
                h, pre = block(h)
            t["preact_block%d" % s] = pre if pre is not None else h
            t["block%d" % s] = h
        h = F.relu(self.bn2(self.conv2(h)))
        return self._out(self._pool_classify(h, self.linear, t))


# ---- the table -----------------------------------------------------------------------------------
def _torchvision(name):
    def make(num_classes, in_channels=3, taps=False):
        import torchvision
        if taps:
            raise ValueError("%s comes from torchvision, whose forward returns the logits only" % name)
        m = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
        if in_channels != 3:
            m.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        return m
    return make


MODELS = {
    "cnn_tiny": lambda num_classes, in_channels=3, taps=False: SmallCnn([4, 6, 8, 8], False, num_classes, in_channels, taps),
    "cnn_medium": lambda num_classes, in_channels=3, taps=False: SmallCnn([8, 16, 24, 32], False, num_classes, in_channels, taps),
    "cnn_large": lambda num_classes, in_channels=3, taps=False: SmallCnn([16, 32, 64, 64], True, num_classes, in_channels, taps),
    "cnn_wide": lambda num_classes, in_channels=3, taps=False: SmallCnn([24, 48, 64, 64], False, num_classes, in_channels, taps),
    "mobilenetv2": lambda num_classes, in_channels=3, taps=False: MobileNetV2(num_classes, in_channels, taps=taps),
    "shufflenetv1": lambda num_classes, in_channels=3, taps=False: ShuffleNetV1(num_classes, in_channels, taps=taps),
    "shufflenetv2": lambda num_classes, in_channels=3, taps=False: ShuffleNetV2(num_classes, in_channels, taps=taps),
    "resnet18": _torchvision("resnet18"),
    "resnet34": _torchvision("resnet34"),
    "resnet50": _torchvision("resnet50"),
}
for _d in (8, 14, 20, 32, 44, 56, 110):
    MODELS["resnet%d" % _d] = (lambda d: lambda num_classes, in_channels=3, taps=False: CifarResNet(
        d, [16, 16, 32, 64], num_classes, in_channels, taps))(_d)
for _d in (8, 32):
    MODELS["resnet%dx4" % _d] = (lambda d: lambda num_classes, in_channels=3, taps=False: CifarResNet(
        d, [32, 64, 128, 256], num_classes, in_channels, taps))(_d)
for _d, _k in ((16, 1), (16, 2), (40, 1), (40, 2)):
    MODELS["wrn_%d_%d" % (_d, _k)] = (lambda d, k: lambda num_classes, in_channels=3, taps=False: WideResNet(
        d, k, num_classes, in_channels, taps))(_d, _k)
for _name, _groups in (("vgg8", [[64], [128], [256], [512], [512]]),
                       ("vgg11", [[64], [128], [256, 256], [512, 512], [512, 512]]),
                       ("vgg13", [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]])):
    MODELS[_name] = (lambda g: lambda num_classes, in_channels=3, taps=False: Vgg(g, num_classes, in_channels, taps))(_groups)


def create(name, num_classes, in_channels=3, taps=False):
    if name not in MODELS:
        raise KeyError("unknown kdbench model '%s' (known: %s)" % (name, ", ".join(sorted(MODELS))))
    return MODELS[name](num_classes, in_channels=in_channels, taps=taps)
