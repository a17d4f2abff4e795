"""A LaMa inpainting generator (FFC ResNet) in plain torch, loading the official big-lama weights.

Expected checkpoint: the official **big-lama** ``models/best.ckpt`` of saic-mdal/lama (a PyTorch
Lightning checkpoint whose ``state_dict`` holds ``generator.model.<i>...`` keys; the discriminator
and loss keys are ignored), or a plain generator state dict with ``model.<i>...`` keys (with or
without the ``generator.`` prefix). Its architecture, ``configs/training/big-lama.yaml``
(``kind: ffc_resnet``): input_nc 4 (masked RGB + mask), output_nc 3, ngf 64, n_downsampling 3,
n_blocks 18, sigmoid output; init and downsampling convs local only (ratio_gin = ratio_gout = 0,
except the last downsampling conv, ratio_gout 0.75); resnet blocks ratio_gin = ratio_gout = 0.75;
enable_lfu false; reflect padding; BatchNorm + ReLU. ``nn.Sequential`` indices (n_downsampling 3,
n_blocks 18): 0 ReflectionPad2d(3), 1 FFC_BN_ACT 7x7, 2-4 stride-2 FFC_BN_ACT, 5-22 FFCResnetBlock,
23 ConcatTupleLayer, 24-32 (ConvTranspose2d, BatchNorm2d, ReLU) x 3, 33 ReflectionPad2d(3),
34 Conv2d 7x7, 35 Sigmoid. Module and parameter names follow the official ones
(``ffc.convl2l/convl2g/convg2l/convg2g``, ``bn_l/bn_g``, ``convg2g.conv1.0``, ``convg2g.fu.conv_layer``,
``convg2g.fu.bn``, ``convg2g.conv2``), so ``load_state_dict(strict=True)`` checks the layout.
The architecture sizes are read from the checkpoint itself, so smaller instances (tests) load too.

Inference as in the official predictor: image in [0,1] times (1 - mask), concatenated with the
mask, padded to a multiple of 2^n_downsampling, output composited with the input outside the mask.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import InputError


class FourierUnit(nn.Module):
    """Real FFT over (H,W) -> 1x1 conv + BN + ReLU on stacked (real, imag) -> inverse FFT."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv_layer = nn.Conv2d(in_channels * 2, out_channels * 2, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels * 2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        f = torch.fft.rfftn(x, dim=(-2, -1), norm="ortho")
        f = torch.stack((f.real, f.imag), dim=-1).permute(0, 1, 4, 2, 3).contiguous()  # [B,C,2,H,W/2+1]
        f = f.view(b, -1, *f.shape[3:])
        f = self.relu(self.bn(self.conv_layer(f)))
        f = f.view(b, -1, 2, *f.shape[2:]).permute(0, 1, 3, 4, 2).contiguous()
        return torch.fft.irfftn(torch.complex(f[..., 0], f[..., 1]), s=x.shape[-2:], dim=(-2, -1), norm="ortho")


class SpectralTransform(nn.Module):
    """The global branch (no local Fourier unit, as big-lama: enable_lfu false)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.downsample = nn.AvgPool2d(kernel_size=2, stride=2) if stride == 2 else nn.Identity()
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, out_channels // 2, kernel_size=1, bias=False),
            nn.BatchNorm2d(out_channels // 2),
            nn.ReLU(inplace=True),
        )
        self.fu = FourierUnit(out_channels // 2, out_channels // 2)
        self.conv2 = nn.Conv2d(out_channels // 2, out_channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.downsample(x))
        return self.conv2(x + self.fu(x))


class FFC(nn.Module):
    """Fast Fourier convolution on a (local, global) channel split."""

    def __init__(
        self,
        cin: int,
        cout: int,
        k: int,
        ratio_gin: float,
        ratio_gout: float,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
    ):
        super().__init__()
        in_g = int(cin * ratio_gin)
        in_l = cin - in_g
        out_g = int(cout * ratio_gout)
        out_l = cout - out_g
        self.ratio_gout = ratio_gout

        def conv(a, b):
            if a == 0 or b == 0:
                return nn.Identity()
            return nn.Conv2d(a, b, k, stride, padding, dilation, 1, False, padding_mode="reflect")

        self.convl2l = conv(in_l, out_l)
        self.convl2g = conv(in_l, out_g)
        self.convg2l = conv(in_g, out_l)
        self.convg2g = SpectralTransform(in_g, out_g, stride) if in_g and out_g else nn.Identity()

    def forward(self, x):
        x_l, x_g = x if isinstance(x, tuple) else (x, 0)
        out_l, out_g = 0, 0
        if self.ratio_gout != 1:
            out_l = self.convl2l(x_l) + (self.convg2l(x_g) if torch.is_tensor(x_g) else 0)
        if self.ratio_gout != 0:
            out_g = self.convl2g(x_l) + (self.convg2g(x_g) if torch.is_tensor(x_g) else 0)
        return out_l, out_g


class FFC_BN_ACT(nn.Module):
    def __init__(
        self,
        cin: int,
        cout: int,
        k: int,
        ratio_gin: float,
        ratio_gout: float,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
    ):
        super().__init__()
        self.ffc = FFC(cin, cout, k, ratio_gin, ratio_gout, stride, padding, dilation)
        out_g = int(cout * ratio_gout)
        self.bn_l = nn.BatchNorm2d(cout - out_g) if ratio_gout != 1 else nn.Identity()
        self.bn_g = nn.BatchNorm2d(out_g) if ratio_gout != 0 else nn.Identity()
        self.act_l = nn.ReLU(inplace=True) if ratio_gout != 1 else nn.Identity()
        self.act_g = nn.ReLU(inplace=True) if ratio_gout != 0 else nn.Identity()

    def forward(self, x):
        x_l, x_g = self.ffc(x)
        x_l = self.act_l(self.bn_l(x_l)) if torch.is_tensor(x_l) else x_l
        x_g = self.act_g(self.bn_g(x_g)) if torch.is_tensor(x_g) else x_g
        return x_l, x_g


class FFCResnetBlock(nn.Module):
    def __init__(self, dim: int, ratio: float):
        super().__init__()
        self.conv1 = FFC_BN_ACT(dim, dim, 3, ratio, ratio, padding=1)
        self.conv2 = FFC_BN_ACT(dim, dim, 3, ratio, ratio, padding=1)

    def forward(self, x):
        x_l, x_g = x if isinstance(x, tuple) else (x, 0)
        y_l, y_g = self.conv2(self.conv1((x_l, x_g)))
        return x_l + y_l, x_g + y_g


class ConcatTupleLayer(nn.Module):
    def forward(self, x):
        x_l, x_g = x
        return torch.cat([x_l, x_g], dim=1) if torch.is_tensor(x_g) else x_l


class LamaGenerator(nn.Module):
    """FFCResNetGenerator with the big-lama configuration (defaults). forward(x [B,4,H,W]) -> [B,3,H,W]
    in (0,1); H and W must be multiples of 2^n_downsampling."""

    def __init__(
        self, ngf: int = 64, n_downsampling: int = 3, n_blocks: int = 18, ratio: float = 0.75, max_features: int = 1024
    ):
        super().__init__()
        self.n_downsampling = n_downsampling
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), FFC_BN_ACT(4, ngf, 7, 0, 0)]
        for i in range(n_downsampling):
            cin, cout = min(max_features, ngf * 2**i), min(max_features, ngf * 2 ** (i + 1))
            layers.append(FFC_BN_ACT(cin, cout, 3, 0, ratio if i == n_downsampling - 1 else 0, stride=2, padding=1))
        dim = min(max_features, ngf * 2**n_downsampling)
        layers += [FFCResnetBlock(dim, ratio) for _ in range(n_blocks)]
        layers.append(ConcatTupleLayer())
        for i in range(n_downsampling):
            m = 2 ** (n_downsampling - i)
            cin, cout = min(max_features, ngf * m), min(max_features, ngf * m // 2)
            layers += [
                nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Sigmoid()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def generator_state(raw: dict) -> dict[str, torch.Tensor]:
    """The generator's ``model.*`` tensors from a Lightning checkpoint or a plain state dict."""
    sd = raw.get("state_dict", raw) if isinstance(raw, dict) else {}
    out = {}
    for k, v in sd.items():
        key = k.removeprefix("generator.")
        if key.startswith("model.") and torch.is_tensor(v):
            out[key] = v
    return out


def infer_config(sd: dict[str, torch.Tensor]) -> dict:
    """ngf, n_downsampling, n_blocks and ratio of a generator state dict."""
    try:
        ngf = sd["model.1.ffc.convl2l.weight"].shape[0]
        blocks = sorted({int(m.group(1)) for k in sd if (m := re.match(r"model\.(\d+)\.conv1\.ffc\.", k))})
        n_down = blocks[0] - 2
        dim = min(1024, ngf * 2**n_down)
        out_g = sd[f"model.{blocks[0]}.conv1.ffc.convl2g.weight"].shape[0]
    except (KeyError, IndexError):
        raise InputError(
            "the checkpoint is not a LaMa FFC-ResNet generator (no model.1.ffc.convl2l / resnet block "
            "keys); use big-lama's models/best.ckpt"
        ) from None
    return {"ngf": ngf, "n_downsampling": n_down, "n_blocks": len(blocks), "ratio": out_g / dim}


class LamaInpainter:
    """Callable (image [H,W,3] float in [0,1], hole [H,W] bool) -> inpainted [H,W,3] float32."""

    def __init__(self, generator: LamaGenerator):
        self.generator = generator.eval()

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> LamaInpainter:
        path = Path(path)
        if not path.exists():
            raise InputError(
                f"lama_checkpoint {path}: not found; download big-lama and pass models/best.ckpt", "lama_checkpoint"
            )
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - Lightning checkpoints pickle their config; the user chose this file
            print(f"note: {path} holds more than tensors (a Lightning checkpoint); loading it with pickle")
            raw = torch.load(path, map_location="cpu", weights_only=False)
        sd = generator_state(raw)
        gen = LamaGenerator(**infer_config(sd))
        try:
            gen.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise InputError(f"{path}: weights do not fit the big-lama layout ({str(e).splitlines()[0]})") from None
        return cls(gen)

    @torch.no_grad()
    def __call__(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        h, w = hole.shape
        mod = 2**self.generator.n_downsampling
        ph, pw = (-h) % mod, (-w) % mod
        img = torch.from_numpy(np.ascontiguousarray(image, np.float32)).permute(2, 0, 1)[None]
        m = torch.from_numpy(hole.astype(np.float32))[None, None]
        x = torch.cat([img * (1 - m), m], dim=1)
        if ph or pw:
            x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="reflect" if (ph < h and pw < w) else "replicate")
        y = self.generator(x)[:, :, :h, :w]
        out = y[0].permute(1, 2, 0).numpy()
        return np.where(hole[..., None], out, image).astype(np.float32)
