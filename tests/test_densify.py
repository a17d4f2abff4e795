"""Densification edits parameters and Adam state consistently."""

import math

import torch
from torch import nn

from gsgroup.train.densify import Densifier, DensifyConfig


def make_params(n=6):
    g = torch.Generator().manual_seed(0)
    params = {
        "means": nn.Parameter(torch.randn(n, 3, generator=g)),
        "quats": nn.Parameter(torch.randn(n, 4, generator=g)),
        "scales": nn.Parameter(torch.log(torch.full((n, 3), 0.05))),
        "opacities": nn.Parameter(torch.zeros(n)),
        "sh0": nn.Parameter(torch.randn(n, 1, 3, generator=g)),
        "shN": nn.Parameter(torch.randn(n, 15, 3, generator=g)),
        "ids": nn.Parameter(torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 16)),
    }
    opt = torch.optim.Adam([{"params": [p], "lr": 1e-3, "name": k} for k, p in params.items()])
    loss = sum((p**2).sum() for p in params.values())
    loss.backward()
    opt.step()
    return params, opt


def test_clone_split_prune_keep_everything_aligned():
    params, opt = make_params()
    with torch.no_grad():
        params["scales"][3] = math.log(1.0)  # big -> split
        params["opacities"][5] = -10.0  # transparent -> pruned
    cfg = DensifyConfig(densify_from=0, densify_until=100, densify_every=1, reset_every=1000, percent_dense=0.1)
    d = Densifier(cfg, extent=1.0, n=6)
    grad = torch.zeros(6, 2)
    grad[[1, 3], 0] = 1.0  # high gradient on Gaussians 1 (small -> clone) and 3 (big -> split)
    d.accumulate(1, grad, torch.ones(6, dtype=torch.int32), width=100, height=100)
    old = {k: p.detach().clone() for k, p in params.items()}
    old_state = {k: opt.state[p]["exp_avg"].clone() for k, p in params.items()}
    assert d.step(1, params, opt)
    ids = params["ids"][:, 0].round().int().tolist()  # ids moved by < 0.01 in the Adam step
    # kept originals 0,1,2,4 ; clone of 1 ; two halves of split 3 ; 5 pruned, 3 replaced
    assert sorted(ids) == [0, 1, 1, 2, 3, 3, 4]
    assert len(params["means"]) == 7
    for k, p in params.items():
        assert opt.param_groups[[g["name"] for g in opt.param_groups].index(k)]["params"][0] is p
        st = opt.state[p]["exp_avg"]
        assert st.shape == p.shape
        for row, i in enumerate(ids):
            if i == 3 or (i == 1 and row > 3):
                assert torch.all(st[row] == 0)  # new Gaussians start with zero moments
            else:
                assert torch.equal(st[row], old_state[k][int(i)])
    which = torch.tensor(ids)
    halves = params["means"][which == 3]
    assert torch.allclose(torch.exp(params["scales"][which == 3]), torch.full((2, 3), 1 / 1.6))
    assert not torch.allclose(halves[0], halves[1])
    assert torch.equal(params["sh0"][which == 4][0], old["sh0"][4])


def test_cap_limits_growth_and_reset_opacity():
    params, opt = make_params()
    cfg = DensifyConfig(
        densify_from=0, densify_until=100, densify_every=1, reset_every=2, max_gaussians=7, percent_dense=0.1
    )
    d = Densifier(cfg, extent=1.0, n=6)
    d.accumulate(1, torch.ones(6, 2), torch.ones(6, dtype=torch.int32), 100, 100)
    d.step(1, params, opt)
    assert len(params["means"]) == 7
    with torch.no_grad():
        params["opacities"].fill_(3.0)
    d.step(2, params, opt)
    assert torch.allclose(torch.sigmoid(params["opacities"]), torch.full((7,), 0.01), atol=1e-4)
