#!/usr/bin/python3
"""gen_optim_golden.py - writes tests/golden/optim.bin, the PyTorch goldens that
tests/test_optim.c replays with whisker's optimizers, gradient clipping and
learning-rate schedules.

Run with Debian's python (python3-torch):  /usr/bin/python3 scripts/gen_optim_golden.py
Deterministic (seeded, float32, one thread): two runs give the same bytes.
The file format is the one of tests/golden/README.md (WKGOLD01); the records
are listed there too.

The parameter arena: six tensors laid out in one float arena with gaps between
some of them (elements no parameter covers). Flags per step: "bias" and
"bn.gamma" are no-decay; "late.w" is frozen for steps 0..2 and trained from
step 3 (it starts its own momentum buffer / Adam step count then); "body.w" is
frozen throughout. In torch every parameter is its own param group (lr =
lr * lr_scale, weight_decay 0 for no-decay parameters unless the case decays
everything) and a frozen parameter has grad None, so torch skips it. The
gradient arena holds NaN in the gaps and for frozen parameters: an optimizer
that reads them shows it.

Hyper-parameters are rounded to float32 before torch sees them, so that the
float32 values stored in the file are exactly the ones torch used."""

import math
import os
import warnings

import numpy as np
import torch

from gen_golden import Writer  # the WKGOLD01 writer (its layout change is for 4-D only)

SEED = 20240612
STEPS = 6
SCHED_STEPS = 25
FROZEN, NO_DECAY = 1, 2
KIND_SGD, KIND_ADAMW = 0, 1
GAP_W = 7.0  # weights in the gaps; they must stay as they are

# (name, shape, gap before it, flags, lr_scale)
PARAMS = [
    ("conv.w", (4, 3, 3, 2), 0, 0, 1.0),
    ("bias", (5,), 3, NO_DECAY, 1.0),
    ("late.w", (33,), 0, 0, 1.0),
    ("bn.gamma", (16,), 2, NO_DECAY, 0.5),
    ("head.w", (41,), 0, 0, 0.25),
    ("body.w", (9,), 1, FROZEN, 1.0),
]
LATE, LATE_FROM = 2, 3  # "late.w" is frozen before step 3

# name: kind, lr, momentum, nesterov, weight_decay, decay_all, beta1, beta2, eps, one-cycle
CASES = {
    "sgd_plain": (KIND_SGD, 0.1, 0.0, 0, 0.0, 1, 0, 0, 0, 0),
    "sgd_momentum": (KIND_SGD, 0.05, 0.9, 0, 0.0, 1, 0, 0, 0, 0),
    "sgd_nesterov_wd": (KIND_SGD, 0.05, 0.9, 1, 0.01, 1, 0, 0, 0, 0),
    "sgd_wd_nodecay": (KIND_SGD, 0.05, 0.8, 0, 0.05, 0, 0, 0, 0, 0),
    "adamw": (KIND_ADAMW, 0.01, 0, 0, 0.01, 1, 0.9, 0.999, 1e-8, 0),
    "adamw_nodecay": (KIND_ADAMW, 0.02, 0, 0, 0.1, 0, 0.85, 0.99, 1e-6, 0),
    "sgd_onecycle": (KIND_SGD, 0.1, 0.9, 0, 5e-4, 0, 0, 0, 0, 1),
    "adamw_onecycle": (KIND_ADAMW, 0.01, 0, 0, 0.05, 0, 0.9, 0.999, 1e-8, 1),
}

# clip_grad_norm_ on the gradients of step 0: max_norm small (clips) and large (does not)
CLIP_MAX_NORMS = (1.0, 100.0)


def f32(x):
    return float(np.float32(x))


def layout():
    offsets, off = [], 0
    for _, shape, gap, _, _ in PARAMS:
        off += gap
        offsets.append(off)
        off += math.prod(shape)
    return offsets, off


def flags_at(step):
    fl = [p[3] for p in PARAMS]
    if step < LATE_FROM:
        fl[LATE] |= FROZEN
    return fl


def make_data(n_elems, offsets):
    """Initial weights and per-step gradients in arena layout, NaN where unread."""
    w0 = torch.full((n_elems,), GAP_W)
    grads = torch.full((STEPS, n_elems), float("nan"))
    for (_, shape, _, _, _), off in zip(PARAMS, offsets):
        n = math.prod(shape)
        w0[off:off + n] = 0.5 * torch.randn(n)
    for s in range(STEPS):
        fl = flags_at(s)
        for i, ((_, shape, _, _, _), off) in enumerate(zip(PARAMS, offsets)):
            if not fl[i] & FROZEN:
                n = math.prod(shape)
                grads[s, off:off + n] = (1.0 + 0.5 * s) * torch.randn(n)
    return w0, grads


def build_optimizer(case, tensors):
    kind, lr, mom, nesterov, wd, decay_all, b1, b2, eps, _ = case
    groups = []
    for (_, _, _, flags, scale), t in zip(PARAMS, tensors):
        g_wd = wd if (decay_all or not flags & NO_DECAY) else 0.0
        groups.append({"params": [t], "lr": f32(lr) * scale, "weight_decay": f32(g_wd)})
    if kind == KIND_SGD:
        return torch.optim.SGD(groups, lr=f32(lr), momentum=f32(mom), nesterov=bool(nesterov))
    return torch.optim.AdamW(groups, lr=f32(lr), betas=(f32(b1), f32(b2)), eps=f32(eps))


def run_case(w, name, case, w0, grads, offsets):
    kind, lr, one_cycle = case[0], case[1], case[9]
    tensors = [w0[o:o + math.prod(p[1])].clone().reshape(p[1]).requires_grad_(True)
               for p, o in zip(PARAMS, offsets)]
    opt = build_optimizer(case, tensors)
    sched = None
    if one_cycle:
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[f32(lr) * p[4] for p in PARAMS], total_steps=STEPS)
    arena = w0.clone()
    history = torch.empty(STEPS, w0.numel())
    for s in range(STEPS):
        fl = flags_at(s)
        for i, (t, off) in enumerate(zip(tensors, offsets)):
            frozen = fl[i] & FROZEN
            t.grad = None if frozen else grads[s, off:off + t.numel()].clone().reshape(t.shape)
        opt.step()
        if sched:
            sched.step()
        for t, off in zip(tensors, offsets):
            arena[off:off + t.numel()] = t.detach().reshape(-1)
        history[s] = arena
    w.add(f"{name}.cfg", torch.tensor([float(x) for x in case]))
    w.add(f"{name}.w", history)
    if kind == KIND_ADAMW:
        keys = ["exp_avg", "exp_avg_sq"]
    else:
        keys = ["momentum_buffer"] if case[2] else []
    for key in keys:
        st = torch.zeros(w0.numel())
        for t, off in zip(tensors, offsets):
            if key in opt.state[t] and opt.state[t][key] is not None:
                st[off:off + t.numel()] = opt.state[t][key].reshape(-1)
        w.add(f"{name}.state.{key}", st)
    if kind == KIND_ADAMW:
        w.add(f"{name}.steps", torch.tensor(
            [int(opt.state[t]["step"].item()) if "step" in opt.state[t] else 0 for t in tensors]))


def clip_goldens(w, grads, offsets):
    fl = flags_at(0)
    norms, clipped = [], []
    for max_norm in CLIP_MAX_NORMS:
        g = grads[0].clone()
        ts = []
        for i, ((_, shape, _, _, _), off) in enumerate(zip(PARAMS, offsets)):
            if not fl[i] & FROZEN:
                t = torch.zeros(shape, requires_grad=True)
                t.grad = g[off:off + t.numel()].clone().reshape(shape)
                ts.append((t, off))
        norms.append(torch.nn.utils.clip_grad_norm_([t for t, _ in ts], max_norm).item())
        for t, off in ts:
            g[off:off + t.numel()] = t.grad.reshape(-1)
        clipped.append(g)
    w.add("clip.max_norm", torch.tensor(CLIP_MAX_NORMS))
    w.add("clip.norm", torch.tensor(norms))
    w.add("clip.g", torch.stack(clipped))


def trace(opt, sched, n, momentum_key=None):
    lrs, moms = [], []
    for _ in range(n):
        g = opt.param_groups[0]
        lrs.append(g["lr"])
        if momentum_key:
            moms.append(g[momentum_key])
        opt.step()
        sched.step()
    # computed in double by torch, stored as float32
    to_f32 = lambda v: torch.tensor(v, dtype=torch.float64).float()
    return to_f32(lrs), to_f32(moms)


def schedule_goldens(w):
    def sgd(lr):
        return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr, momentum=0.9)

    # one-cycle, torch defaults; cfg: max_lr, total, pct_start, div, final_div, base_m, max_m
    for name, lr, total, pct, div, fdiv, bm, mm in (
            ("onecycle", 0.1, SCHED_STEPS, 0.3, 25.0, 1e4, 0.85, 0.95),
            ("onecycle2", 0.4, 40, 0.25, 10.0, 100.0, 0.8, 0.9)):
        opt = sgd(lr)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=lr, total_steps=total, pct_start=pct, div_factor=div,
            final_div_factor=fdiv, base_momentum=bm, max_momentum=mm)
        lrs, moms = trace(opt, sched, total, "momentum")
        w.add(f"sched.{name}.cfg", torch.tensor([lr, total, pct, div, fdiv, bm, mm]))
        w.add(f"sched.{name}.lr", lrs)
        w.add(f"sched.{name}.momentum", moms)
    # LinearLR warm-up then cosine; cfg: lr, total, warmup, start_factor, eta_min
    lr, warmup, start, eta_min = 0.1, 5, 0.1, 1e-3
    opt = sgd(lr)
    s1 = torch.optim.lr_scheduler.LinearLR(opt, start_factor=start, end_factor=1.0,
                                           total_iters=warmup)
    s2 = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=SCHED_STEPS - warmup,
                                                    eta_min=eta_min)
    sched = torch.optim.lr_scheduler.SequentialLR(opt, [s1, s2], milestones=[warmup])
    with warnings.catch_warnings():  # SequentialLR itself calls step(0) at the milestone
        warnings.filterwarnings("ignore", message="The epoch parameter")
        lrs, _ = trace(opt, sched, SCHED_STEPS)
    w.add("sched.cosine.cfg", torch.tensor([lr, SCHED_STEPS, warmup, start, eta_min]))
    w.add("sched.cosine.lr", lrs)
    # StepLR; cfg: lr, step_size, gamma
    lr, step_size, gamma = 0.1, 7, 0.5
    opt = sgd(lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=gamma)
    lrs, _ = trace(opt, sched, SCHED_STEPS)
    w.add("sched.step.cfg", torch.tensor([lr, step_size, gamma]))
    w.add("sched.step.lr", lrs)


def main():
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    offsets, n_elems = layout()
    w0, grads = make_data(n_elems, offsets)

    w = Writer()
    w.add("layout.offset", torch.tensor(offsets))
    w.add("layout.numel", torch.tensor([math.prod(p[1]) for p in PARAMS]))
    w.add("layout.lr_scale", torch.tensor([p[4] for p in PARAMS]))
    w.add("layout.flags", torch.tensor([flags_at(s) for s in range(STEPS)]))
    w.add("init.w", w0)
    w.add("grad", grads)
    for name, case in CASES.items():
        run_case(w, name, case, w0, grads, offsets)
    clip_goldens(w, grads, offsets)
    schedule_goldens(w)

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden",
                        "optim.bin")
    n = w.write(os.path.normpath(path))
    print(f"wrote {os.path.normpath(path)}: {len(w.records)} records, {n} bytes")


if __name__ == "__main__":
    main()
