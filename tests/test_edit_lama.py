"""The LaMa generator: big-lama layout, checkpoint loading (random weights), Fourier unit, inference."""

import numpy as np
import pytest
import torch

from gsgroup.edit.inpainting import InpaintOptions, make_inpainter
from gsgroup.edit.lama import FourierUnit, LamaGenerator, LamaInpainter, infer_config
from gsgroup.errors import InputError


def test_big_lama_layout():
    """Default instance = big-lama: 51M parameters and the official key names / shapes."""
    g = LamaGenerator()
    sd = g.state_dict()
    assert abs(sum(p.numel() for p in g.parameters()) / 1e6 - 51.0) < 0.1
    expect = {
        "model.1.ffc.convl2l.weight": (64, 4, 7, 7),
        "model.2.ffc.convl2l.weight": (128, 64, 3, 3),
        "model.4.ffc.convl2g.weight": (384, 256, 3, 3),
        "model.4.bn_g.running_mean": (384,),
        "model.5.conv1.ffc.convl2l.weight": (128, 128, 3, 3),
        "model.5.conv1.ffc.convg2l.weight": (128, 384, 3, 3),
        "model.5.conv1.ffc.convg2g.conv1.0.weight": (192, 384, 1, 1),
        "model.5.conv1.ffc.convg2g.conv1.1.weight": (192,),
        "model.5.conv1.ffc.convg2g.fu.conv_layer.weight": (384, 384, 1, 1),
        "model.5.conv1.ffc.convg2g.fu.bn.running_var": (384,),
        "model.5.conv1.ffc.convg2g.conv2.weight": (384, 192, 1, 1),
        "model.22.conv2.bn_l.weight": (128,),
        "model.24.weight": (512, 256, 3, 3),
        "model.25.running_mean": (256,),
        "model.30.weight": (128, 64, 3, 3),
        "model.34.weight": (3, 64, 7, 7),
        "model.34.bias": (3,),
    }
    for k, shape in expect.items():
        assert tuple(sd[k].shape) == shape, k
    assert not any(".lfu." in k or "model.23." in k or "model.35." in k for k in sd)
    assert infer_config(sd) == {"ngf": 64, "n_downsampling": 3, "n_blocks": 18, "ratio": 0.75}


def test_fourier_unit_against_numpy():
    """With a 1x1 conv that swaps real and imaginary parts (BN at its initial state), the unit is
    irfft2(relu(Im F) + i relu(Re F)) * bn_scale."""
    torch.manual_seed(0)
    c, h, w = 3, 6, 10
    fu = FourierUnit(c, c).eval()
    wgt = torch.zeros(2 * c, 2 * c, 1, 1)
    for i in range(c):
        wgt[2 * i, 2 * i + 1] = 1.0
        wgt[2 * i + 1, 2 * i] = 1.0
    with torch.no_grad():
        fu.conv_layer.weight.copy_(wgt)
    x = torch.randn(1, c, h, w, dtype=torch.float32)
    got = fu(x)[0].detach().numpy()
    F = np.fft.rfft2(x[0].numpy().astype(np.float64), norm="ortho")
    s = 1 / np.sqrt(1 + fu.bn.eps)
    ref = np.fft.irfft2(np.maximum(F.imag * s, 0) + 1j * np.maximum(F.real * s, 0), s=(h, w), norm="ortho")
    assert np.allclose(got, ref, atol=1e-5)


@pytest.mark.parametrize("size", [(37, 50), (32, 48)])
def test_tiny_random_checkpoint_loads_and_inpaints(tmp_path, size):
    torch.manual_seed(1)
    gen = LamaGenerator(ngf=8, n_downsampling=2, n_blocks=2)
    for m in gen.modules():  # non-trivial BN statistics, to check they are loaded
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    ckpt = {
        "state_dict": {
            **{f"generator.{k}": v for k, v in gen.state_dict().items()},
            "discriminator.model0.0.weight": torch.zeros(1),
        },
        "epoch": 3,
    }
    path = tmp_path / "tiny.ckpt"
    torch.save(ckpt, path)
    inp = LamaInpainter.from_checkpoint(path)
    for k, v in gen.state_dict().items():
        assert torch.equal(inp.generator.state_dict()[k], v)
    h, w = size
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 1, (h, w, 3)).astype(np.float32)
    hole = np.zeros((h, w), bool)
    hole[10:20, 15:30] = True
    out = inp(img, hole)
    assert out.shape == img.shape and np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert np.array_equal(out[~hole], img[~hole])
    assert not np.allclose(out[hole], img[hole])
    # the same through the inpaint pipeline's factory; the generator's own output in the hole
    f = make_inpainter(InpaintOptions(inpainter="lama", lama_checkpoint=str(path)))
    assert np.allclose(f(img, hole), out)
    if h % 4 == 0 and w % 4 == 0:
        x = torch.cat(
            [
                torch.from_numpy(img).permute(2, 0, 1)[None] * (1 - torch.from_numpy(hole).float()),
                torch.from_numpy(hole).float()[None, None],
            ],
            1,
        )
        with torch.no_grad():
            ref = gen.eval()(x)[0].permute(1, 2, 0).numpy()
        assert np.allclose(out[hole], ref[hole], atol=1e-6)


def test_lama_bad_checkpoint(tmp_path):
    path = tmp_path / "bad.pt"
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="LaMa"):
        LamaInpainter.from_checkpoint(path)
    with pytest.raises(InputError, match="inpainter lama needs a lama_checkpoint"):
        make_inpainter(InpaintOptions(inpainter="lama"))
