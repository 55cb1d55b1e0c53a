#!/usr/bin/env python3
"""PyTorch float64 references for the official linear probe's parts (tests/check_linprobe.sh):
torch.nn.BatchNorm1d(F, affine=False, eps=1e-6) in training mode over a few batches, then in eval
mode, and the LARS optimizer of the official util/lars.py (written here as a torch.optim.Optimizer
from its definition in ../shared/MAE_REFERENCE.md section 8) over a few steps on a 2-D weight and
a 1-D bias. Inputs are float32 values (what the C side holds) drawn from a fresh seed each run.

usage: gen_linprobe.py OUT.txt [SEED]   writes whitespace-separated numbers (repr, round-trip
exact) that build/tests/test_linprobe --torch OUT.txt reads and checks."""
import random
import sys

import torch


class Lars(torch.optim.Optimizer):
    """LARS as util/lars.py (MoCo v3): tensors with ndim > 1 get weight decay and the trust
    ratio; 1-D ones neither. Momentum buffer mu = momentum * mu + d; p -= lr * mu."""

    def __init__(self, params, lr, weight_decay, momentum, trust_coefficient):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum,
                                      trust_coefficient=trust_coefficient))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                d = p.grad
                if p.ndim > 1:
                    d = d.add(p, alpha=group["weight_decay"])
                    pn, dn = torch.norm(p), torch.norm(d)
                    one = torch.ones_like(pn)
                    q = torch.where(pn > 0, torch.where(dn > 0, group["trust_coefficient"] * pn / dn, one), one)
                    d = d.mul(q)
                st = self.state[p]
                if "mu" not in st:
                    st["mu"] = torch.zeros_like(p)
                st["mu"].mul_(group["momentum"]).add_(d)
                p.add_(st["mu"], alpha=-group["lr"])


def f32(shape, scale=1.0, shift=0.0):
    return (torch.randn(*shape, dtype=torch.float32) * scale + shift).double()


def main():
    out = sys.argv[1]
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else random.randrange(1 << 30)
    torch.manual_seed(seed)
    nums = []

    def put(t):
        nums.extend(repr(float(v)) for v in t.reshape(-1).tolist())

    # BatchNorm1d: F features, batches of b rows with per-feature offsets and scales
    F, b, nb = 7, 5, 3
    bn = torch.nn.BatchNorm1d(F, affine=False, eps=1e-6).double()
    shift = (torch.randn(F) * 3).float().double()
    scale = (torch.rand(F) * 2 + 0.1).float().double()
    nums += [str(F), str(b), str(nb)]
    bn.train()
    for _ in range(nb):
        x = (f32((b, F)) * scale + shift).float().double()
        put(x)
        put(bn(x))
    put(bn.running_mean)
    put(bn.running_var)
    bn.eval()
    x = (f32((b, F)) * scale + shift).float().double()
    put(x)
    put(bn(x))

    # LARS: weight [K, F] and bias [K], steps with random gradients; weight decay non-zero so
    # that its (2-D only) application is checked, one step with a zero weight gradient
    K, steps, lr, wd, momentum, trust = 3, 4, 0.7, 0.05, 0.9, 0.001
    w = torch.nn.Parameter(f32((K, F), 0.01))
    bias = torch.nn.Parameter(f32((K,), 0.1))
    opt = Lars([w, bias], lr=lr, weight_decay=wd, momentum=momentum, trust_coefficient=trust)
    nums += [str(K), str(F), str(steps)] + [repr(v) for v in (lr, wd, momentum, trust)]
    put(w.detach())
    put(bias.detach())
    for s in range(steps):
        gw = f32((K, F), 0.5) * (0 if s == 2 else 1)
        gb = f32((K,), 0.5)
        put(gw)
        put(gb)
        w.grad, bias.grad = gw.clone(), gb.clone()
        opt.step()
        put(w.detach())
        put(bias.detach())
    with open(out, "w") as fh:
        fh.write("%d\n" % seed)
        fh.write("\n".join(nums) + "\n")


if __name__ == "__main__":
    main()
