"""Reference: the MT+LC training step in PyTorch, for comparing CPU throughput with
scripts/benchmark.py on the same machine.

    pip install torch   # not a dependency of lcmt_tf
    python benchmarks/benchmark_torch.py --steps=4 --repeats=3 --output=torch.json

It follows the authors' step: 32 labeled + 128 unlabeled images, two random
translations (reflection padding, 2 px) and flips per image, student and teacher in
training mode, CE + 100 * softmax MSE + 10 * LC (epsilon 50), SGD Nesterov with
weight decay, EMA teacher update. Only what is timed matters here; it is not a
second implementation of the package.

Two variants:
  --layers=batch_norm  Conv2d + BatchNorm2d, as lcmt_tf's conv_large (default);
  --layers=weight_norm weight-normalized convolutions with mean-only batch
                       normalization, the layer type of the authors' PyTorch code.
  --passes=joint       one student and one teacher pass over all 160 images, as
                       lcmt_tf's MeanTeacher (default);
  --passes=separate    labeled and unlabeled images through each network
                       separately (four passes), as the authors' training loop.
"""

import argparse
import copy
import json
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn


class WeightNormConv2d(nn.Module):
    """w = g * v / ||v|| per output channel, followed by mean-only batch normalization
    (subtract the batch mean, or its running average in eval mode, then add a bias)."""

    def __init__(self, cin, cout, kernel, padding):
        super().__init__()
        self.padding = padding
        self.v = nn.Parameter(torch.randn(cout, cin, kernel, kernel) * 0.05)
        self.g = nn.Parameter(torch.ones(cout))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.register_buffer("running_mean", torch.zeros(cout))

    def forward(self, x):
        norm = self.v.flatten(1).norm(dim=1)
        y = F.conv2d(x, self.v * (self.g / norm)[:, None, None, None], padding=self.padding)
        if self.training:
            mean = y.mean((0, 2, 3))
            with torch.no_grad():
                self.running_mean.mul_(0.9).add_(0.1 * mean)
        else:
            mean = self.running_mean
        return y - mean[None, :, None, None] + self.bias[None, :, None, None]


def conv_large(num_classes=10, width=1.0, layers="batch_norm"):
    def c(channels):
        return max(1, int(round(channels * width)))

    def block(cin, cout, kernel, padding):
        if layers == "weight_norm":
            return [WeightNormConv2d(cin, cout, kernel, padding), nn.LeakyReLU(0.1)]
        return [
            nn.Conv2d(cin, cout, kernel, padding=padding, bias=False),
            nn.BatchNorm2d(cout),
            nn.LeakyReLU(0.1),
        ]

    layers = block(3, c(128), 3, 1) + block(c(128), c(128), 3, 1) + block(c(128), c(128), 3, 1)
    layers += [nn.MaxPool2d(2), nn.Dropout(0.5)]
    layers += (
        block(c(128), c(256), 3, 1) + block(c(256), c(256), 3, 1) + block(c(256), c(256), 3, 1)
    )
    layers += [nn.MaxPool2d(2), nn.Dropout(0.5)]
    layers += (
        block(c(256), c(512), 3, 0) + block(c(512), c(256), 1, 0) + block(c(256), c(128), 1, 0)
    )
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    features = nn.Sequential(*layers)
    return features, nn.Linear(c(128), num_classes)


class Network(nn.Module):
    def __init__(self, width, layers):
        super().__init__()
        self.features, self.classifier = conv_large(width=width, layers=layers)

    def forward(self, x):
        z = self.features(x)
        return z, self.classifier(z)


def augment(images):
    batch, _, height, width = images.shape
    padded = F.pad(images, (2, 2, 2, 2), mode="reflect")
    dy = torch.randint(0, 5, (batch,))
    dx = torch.randint(0, 5, (batch,))
    rows = (dy[:, None] + torch.arange(height)[None])[:, None, :, None].expand(
        batch, images.shape[1], height, width + 4
    )
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(width)[None])[:, None, None, :].expand(
        batch, images.shape[1], height, width
    )
    out = out.gather(3, cols)
    flip = torch.rand(batch) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def lc_loss(z_labeled, z_unlabeled, epsilon):
    def term(a, b):
        d = ((a[:, None] - b[None]) ** 2).mean(-1)
        mask = (d <= epsilon).float()
        count = mask.sum()
        return (mask * torch.exp(-d / epsilon) * d).sum() / count.clamp(min=1)

    return term(z_labeled, z_unlabeled) + term(z_unlabeled, z_unlabeled)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup_steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", choices=["batch_norm", "weight_norm"], default="batch_norm")
    parser.add_argument("--passes", choices=["joint", "separate"], default="joint")
    parser.add_argument("--output", default="")
    args = parser.parse_args()
    torch.manual_seed(0)
    student = Network(args.width, args.layers)
    teacher = copy.deepcopy(student)
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    optimizer = torch.optim.SGD(
        student.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4
    )
    labeled = torch.rand(32, 3, 32, 32)
    unlabeled = torch.rand(128, 3, 32, 32)
    labels = torch.randint(0, 10, (32,))
    images = torch.cat([labeled, unlabeled])

    def forward(network, batch):
        if args.passes == "joint":
            return network(batch)
        labeled_out, unlabeled_out = network(batch[:32]), network(batch[32:])
        return tuple(torch.cat(pair) for pair in zip(labeled_out, unlabeled_out))

    def step():
        student_features, student_logits = forward(student, augment(images))
        with torch.no_grad():
            _, teacher_logits = forward(teacher, augment(images))
        loss = F.cross_entropy(student_logits[:32], labels)
        loss = (
            loss + 100 * ((F.softmax(student_logits, 1) - F.softmax(teacher_logits, 1)) ** 2).mean()
        )
        loss = loss + 10 * lc_loss(student_features[:32], student_features[32:], 50.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for t, s in zip(teacher.parameters(), student.parameters()):
                t.mul_(0.99).add_(s, alpha=0.01)

    for _ in range(args.warmup_steps):
        step()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        times.append((time.perf_counter() - start) / args.steps)
    step_time = statistics.median(times)
    record = {
        "mode": "mtlc",
        "framework": f"torch {torch.__version__}",
        "threads": torch.get_num_threads(),
        "layers": args.layers,
        "passes": args.passes,
        "width": args.width,
        "step_time_ms": round(1000 * step_time, 2),
        "step_time_min_ms": round(1000 * min(times), 2),
        "images_per_s": round(160 / step_time, 1),
        "step_times_ms": [round(1000 * t, 2) for t in times],
    }
    print(json.dumps(record))
    if args.output:
        with open(args.output, "w") as file:
            json.dump([record], file, indent=2)


if __name__ == "__main__":
    main()
