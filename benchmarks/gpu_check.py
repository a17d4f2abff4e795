"""Everything the CUDA path must show, in one go, on a machine with an NVIDIA GPU (target < 8 min):

1. environment: torch/CUDA/GPU; gsgroup importable (from src/, or installed); gsplat installed
   (``pip install -e '.[cuda]'``, or offline from ``--wheels DIR``: ``pip download gsplat==1.5.3
   jaxtyping wadler-lindig ninja rich -d DIR`` on a machine with network), then gsplat's CUDA code
   compiled (first use, timed; TORCH_CUDA_ARCH_LIST set to this GPU only, MAX_JOBS = cores);
2. the CUDA tests: tests/test_gsplat_adapter.py, tests/test_device.py, tests/test_device_commands.py and
   tests/test_edit_device.py (image and gradient equivalence with the Numba kernels to 1e-3, training on
   CUDA loading on the CPU, the commands and edits on CUDA against the CPU);
3. the built-in scene; a 1000-iteration reconstruction on CUDA; 200 identity iterations from it
   (``--no-densify``, ground-truth masks as the associated masks) on the CPU and on CUDA; mIoU of
   both with ``gsgroup eval --gt`` (they should agree within 0.02);
4. ``--device`` on lift, render, eval and associate: each command on the reconstruction with
   ``--device cpu`` and ``--device cuda`` (seconds of each; lifted labels, rendered ids, PSNR and the
   associated objects compared); batched cameras: ``rasterize_batch`` with 8 cameras at 1920x1080
   (100k Gaussians) against 8 per-camera calls (largest difference, time of each, median of 5);
   ``--device`` on the edits that render and fit: ``edit remove`` (the scene fill), ``edit inpaint`` and
   ``edit restyle --effect oil`` of one object of the CPU identity run, with ``--device cpu`` and
   ``--device cuda`` (seconds of each, Gaussians after, PSNR between the two runs' preview renders,
   which should be >= ``EDIT_PSNR_MIN`` dB: the two rasterizers differ in the faint tails, so the fits
   do not agree bit for bit);
5. training time per iteration at 100k and 1M Gaussians at 1920x1080 on CUDA (median of 20 steps);
6. the whole ``gsgroup run`` on the built-in scene with ``--device cuda`` (wall time, scores).

Each step runs in a subprocess with its own time limit; a failing step is recorded and the next one
runs; steps that no longer fit the budget (``--budget``, default 450 s) are skipped and said so.
Writes one JSON (benchmarks/results/gpu_check.json, and $OUT/gpu_check.json when $OUT is set)
and prints it.

    python benchmarks/gpu_check.py [--wheels DIR] [--budget 450] [--work /tmp/gsgroup_gpu_check]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
T0 = time.perf_counter()


def elapsed() -> float:
    return time.perf_counter() - T0


def sh(cmd: list[str], timeout: float, env: dict | None = None) -> dict:
    """Run a command; returns {rc, seconds, tail} (rc 124 on timeout)."""
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(1, timeout))
        rc, out = p.returncode, (p.stdout or "") + (p.stderr or "")
    except subprocess.TimeoutExpired as e:
        rc = 124
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
    except OSError as e:
        rc, out = 127, str(e)
    return {"rc": rc, "seconds": round(time.perf_counter() - t, 1), "tail": out[-2500:]}


def python_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("MAX_JOBS", str(os.cpu_count() or 4))
    return env


PROBE = r"""
import json, torch
info = {"torch": torch.__version__, "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(gpu=p.name, gpu_memory_gb=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}")
for mod in ("numba", "scipy", "cv2", "tqdm", "gsplat", "gsgroup"):
    try:
        info[mod] = getattr(__import__(mod), "__version__", "ok")
    except Exception as e:
        info[mod] = None
        info[mod + "_error"] = repr(e)[:200]
print(json.dumps(info))
"""

COMPILE = r"""
import time, torch
from gsgroup.render import rasterize
t = time.perf_counter()
n = 1000
g = torch.Generator(device="cuda").manual_seed(0)
means = torch.randn(n, 3, device="cuda", generator=g) * 0.3 + torch.tensor([0, 0, 3.0], device="cuda")
out = rasterize(means, torch.randn(n, 4, device="cuda"), torch.full((n, 3), 0.02, device="cuda"),
                torch.full((n,), 0.8, device="cuda"), torch.rand(n, 3, device="cuda"),
                torch.eye(4, device="cuda"), torch.tensor([[100.0, 0, 64], [0, 100, 48], [0, 0, 1]], device="cuda"), 128, 96)
torch.cuda.synchronize()
print("compiled_and_rendered_s", round(time.perf_counter() - t, 1), float(out.image.sum()))
"""

TIMING = r"""
import json, sys, time, torch, numpy as np
sys.path.insert(0, "benchmarks")
from memory import make_gaussians
from gsgroup.data.scene import Scene, View
from gsgroup.model import from_points
from gsgroup.train.config import TrainConfig
from gsgroup.train.device import move_trainer
from gsgroup.train.trainer import Trainer
from pathlib import Path
rows = []
for n in (100_000, 1_000_000):
    w, h = 1920, 1080
    means, quats, scales, opac, V, K = make_gaussians(n, w, h)
    rng = np.random.default_rng(3)
    view = View("v", Path("v.png"), K.numpy(), V.numpy(), w, h, rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    scene = Scene(Path("."), [view], [], None, None, 1.0, np.zeros(3, np.float32), "synthetic")
    g = from_points(means.numpy(), rng.uniform(0, 1, (n, 3)).astype(np.float32), 3, 0, 0)
    g.scales = scales.log()
    t = Trainer(scene, TrainConfig(iterations=10_000), gaussians=g)
    move_trainer(t, "cuda")
    times = []
    for i in range(25):
        torch.cuda.synchronize(); t0 = time.perf_counter()
        t.train_step()
        torch.cuda.synchronize(); times.append(time.perf_counter() - t0)
    rows.append({"gaussians": n, "size": f"{w}x{h}", "ms_per_iteration": 1e3 * float(np.median(times[5:])),
                 "peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 2**30})
    del t
    torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
print(json.dumps(rows))
"""


DEVICE_COMMANDS = r"""
import json, sys, time
import numpy as np
from gsgroup.cli import main
from gsgroup.data.masks import read_mask
scene, recon, work, dev = sys.argv[1:5]
res = {}
for d in ("cpu", dev):
    t = {}
    for name, argv in (
        ("lift", ["lift", recon, "--masks", f"{scene}/gt_mask", "--out", f"{work}/lift_{d}", "--force"]),
        ("render", ["render", f"{work}/lift_{d}", "--out", f"{work}/render_{d}", "--split", "all"]),
        ("eval", ["eval", f"{work}/lift_{d}"]),
        ("associate", ["associate", scene, "--masks", f"{scene}/gt_mask", "--model", recon, "--out", f"{work}/assoc_{d}", "--force"]),
    ):
        t0 = time.perf_counter()
        rc = main([*argv, "--device", d, "--quiet"])
        t[name] = {"rc": rc, "seconds": round(time.perf_counter() - t0, 2)}
    res[d] = t
a, b = (np.load(f"{work}/lift_{d}/labels.npy") for d in ("cpu", dev))
res["labels_agree"] = float(np.mean(a["id"] == b["id"]))
import pathlib
ids = sorted(pathlib.Path(f"{work}/render_cpu/ids").iterdir())
res["ids_agree"] = float(np.mean([np.mean(read_mask(p) == read_mask(pathlib.Path(f"{work}/render_{dev}/ids") / p.name)) for p in ids]))
m = [json.loads(pathlib.Path(f"{work}/lift_{d}/metrics.json").read_text()) for d in ("cpu", dev)]
res["test_psnr"] = [m[0]["psnr"], m[1]["psnr"]]
o = [json.loads(pathlib.Path(f"{work}/assoc_{d}/objects.json").read_text())["stats"]["objects"] for d in ("cpu", dev)]
res["associated_objects"] = o
print(json.dumps(res))
"""

BATCHED = r"""
import json, sys, time, torch, numpy as np
sys.path.insert(0, "benchmarks")
from memory import make_gaussians
from gsgroup.render import rasterize
from gsgroup.render.batched import rasterize_batch
w, h, c = 1920, 1080, 8
means, quats, scales, opac, V, K = (t.cuda() for t in make_gaussians(100_000, w, h))
feats = torch.rand(c, len(means), 3, device="cuda")
ang = torch.linspace(-0.05, 0.05, c)
viewmats = V.expand(c, 4, 4).clone()
viewmats[:, 0, 3] = ang.cuda()
Ks = K.expand(c, 3, 3).contiguous()
def batched():
    return rasterize_batch(means, quats, scales, opac, feats, viewmats, Ks, w, h)
def loop():
    return [rasterize(means, quats, scales, opac, feats[i], viewmats[i], Ks[i], w, h) for i in range(c)]
with torch.no_grad():
    b, per = batched(), loop()
    diff = max(float((b.image[i] - per[i].image).abs().max()) for i in range(c))
    times = {}
    for name, fn in (("batched", batched), ("per_camera", loop)):
        ts = []
        for _ in range(6):
            torch.cuda.synchronize(); t0 = time.perf_counter(); fn(); torch.cuda.synchronize()
            ts.append(time.perf_counter() - t0)
        times[name + "_ms"] = 1e3 * float(np.median(ts[1:]))
print(json.dumps({"cameras": c, "size": f"{w}x{h}", "gaussians": 100_000, "max_abs_difference": diff, **times}))
"""


EDIT_PSNR_MIN = 30.0  # dB between the CPU and CUDA edits' after/ previews: the tolerance of the edit check

EDIT_COMMANDS = r"""
import json, pathlib, sys, time
import cv2, numpy as np
from gsgroup.cli import main
source, work, dev, oid, iters, tol = sys.argv[1:7]
ops = {
    "remove": ["remove", "--objects", oid],
    "inpaint": ["inpaint", "--objects", oid, "--iterations", iters],
    "restyle": ["restyle", "--objects", oid, "--effect", "oil", "--iterations", iters],
}
res = {}
for name, argv in ops.items():
    row = {}
    for d in ("cpu", dev):
        out = pathlib.Path(work) / f"edit_{name}_{d}"
        t0 = time.perf_counter()
        rc = main(["edit", argv[0], source, *argv[1:], "--out", str(out), "--force", "--device", d, "--quiet"])
        info = json.loads((out / "edit.json").read_text()) if rc == 0 else {}
        row[d] = {"rc": rc, "seconds": round(time.perf_counter() - t0, 2), "gaussians_after": info.get("gaussians_after")}
    psnrs = []
    for p in sorted((pathlib.Path(work) / f"edit_{name}_cpu" / "after").glob("*.png")):
        other = pathlib.Path(work) / f"edit_{name}_{dev}" / "after" / p.name
        a, b = (cv2.imread(str(q)).astype(np.float64) / 255.0 for q in (p, other))
        psnrs.append(round(float(10 * np.log10(1.0 / max(float(np.mean((a - b) ** 2)), 1e-12))), 2))
    row["after_psnr_db"] = psnrs
    row["within_tolerance"] = bool(psnrs and min(psnrs) >= float(tol))
    res[name] = row
res["psnr_min_db"] = float(tol)
print(json.dumps(res))
"""


def last_json(text: str):
    for line in reversed(text.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheels", default=None, help="folder of wheels for an offline install of gsplat and its deps")
    ap.add_argument("--budget", type=float, default=450.0, help="seconds for the whole check (default 450)")
    ap.add_argument("--work", default="/tmp/gsgroup_gpu_check", help="scratch folder (scene, runs)")
    ap.add_argument(
        "--device", default="cuda", help="cpu: a self-test of the script's steps on a machine without a GPU"
    )
    ap.add_argument("--recon-iterations", type=int, default=1000)
    ap.add_argument("--edit-object", type=int, default=5, help="object id the edit check removes and restyles")
    ap.add_argument(
        "--edit-iterations", type=int, default=100, help="fitting steps of the edit check's inpaint/restyle"
    )
    ap.add_argument("--edit-self-test", action="store_true", help="with --device cpu: run the edit check (cpu vs cpu)")
    args = ap.parse_args(argv)
    py, env, work = sys.executable, python_env(), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    res: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "steps": {}}
    steps = res["steps"]

    def left() -> float:
        return args.budget - elapsed()

    def step(name, cmd, limit, need=10.0):
        if left() < need:
            steps[name] = {"skipped": f"{left():.0f} s left of the budget"}
            return None
        r = sh(cmd, min(limit, left()), env)
        steps[name] = r
        print(f"[{elapsed():6.1f} s] {name}: rc {r['rc']} in {r['seconds']} s", flush=True)
        return r

    # 1. environment and gsplat
    probe = step("probe", [py, "-c", PROBE], 120)
    info = last_json(probe["tail"]) if probe else None
    res["environment"] = info
    gpu = args.device != "cpu"
    if gpu and (not info or not info.get("cuda_available")):
        res["verdict"] = "no CUDA: torch sees no GPU (or torch is missing); nothing else checked"
        return finish(res)
    if gpu:
        env["TORCH_CUDA_ARCH_LIST"] = env.get("TORCH_CUDA_ARCH_LIST", info["capability"])
    if not info.get("gsplat"):
        pip = [py, "-m", "pip", "install", "--no-deps"]
        pip += ["--no-index", "--find-links", args.wheels] if args.wheels else []
        step("install_gsplat", pip + ["gsplat==1.5.3", "jaxtyping", "wadler-lindig", "ninja", "rich"], 180)
    missing = [m for m in ("numba", "scipy", "cv2", "tqdm") if not info.get(m)]
    if missing:
        step("install_deps", [py, "-m", "pip", "install", "-e", str(ROOT), "--no-build-isolation"], 240)
    if gpu:
        step("compile_gsplat", [py, "-c", COMPILE], 420, need=60)
        # 2. CUDA tests
        tests = ["tests/test_gsplat_adapter.py", "tests/test_device.py", "tests/test_device_commands.py"]
        tests.append("tests/test_edit_device.py")
        step("cuda_tests", [py, "-m", "pytest", "-q", "-s", "-x", *tests], 240)
    # 3. identity training on CPU and CUDA from one reconstruction
    scene, gsg = work / "scene", [py, "-m", "gsgroup"]
    if not (scene / "scene.json").exists():
        step(
            "built_in_scene",
            [py, "-c", f"from gsgroup.data.synthetic import make_scene; make_scene({str(scene)!r})"],
            180,
        )
    recon = work / "recon"
    step(
        f"recon_{args.device}_{args.recon_iterations}",
        gsg
        + ["train", str(scene), "--out", str(recon), "--iterations", str(args.recon_iterations), "--eval"]
        + ["--force", "--quiet", "--device", args.device],
        150,
    )
    miou = {}
    for dev in ("cpu", args.device) if gpu else ("cpu",):
        out = work / f"identity_{dev}"
        cmd = gsg + [
            "train",
            str(scene),
            "--out",
            str(out),
            "--masks",
            str(scene / "gt_mask"),
            "--init-from",
            str(recon),
        ]
        cmd += ["--iterations", "200", "--no-densify", "--eval", "--force", "--quiet", "--device", dev]
        r = step(f"identity_200_{dev}", cmd, 150)
        if r and r["rc"] == 0:
            step(f"eval_{dev}", gsg + ["eval", str(out), "--gt", str(scene / "gt_mask")], 90)
            try:
                miou[dev] = json.loads((out / "seg_metrics.json").read_text())["miou"]
            except (OSError, ValueError, KeyError):
                miou[dev] = None
            steps[f"identity_200_{dev}"]["train_seconds"] = (last_json(r["tail"]) or {}).get("train_seconds")
    res["identity_miou"] = miou
    if gpu and miou.get("cpu") is not None and miou.get("cuda") is not None:
        res["identity_miou"]["abs_difference"] = abs(miou["cpu"] - miou["cuda"])
        res["identity_miou"]["within_0.02"] = abs(miou["cpu"] - miou["cuda"]) <= 0.02
    # 4. --device on lift/render/eval/associate, and batched cameras against per-camera calls
    if gpu:
        r = step("device_commands", [py, "-c", DEVICE_COMMANDS, str(scene), str(recon), str(work), args.device], 120)
        res["device_commands"] = last_json(r["tail"]) if r else None
        r = step("batched_render", [py, "-c", BATCHED], 60)
        res["batched_render"] = last_json(r["tail"]) if r else None
    # 4b. --device on the edits that render and fit (selection, scene fill, inpaint, restyle)
    source = work / "identity_cpu"
    if (gpu or args.edit_self_test) and (source / "config.json").exists():
        cmd = [py, "-c", EDIT_COMMANDS, str(source), str(work), args.device, str(args.edit_object)]
        r = step("edit_commands", cmd + [str(args.edit_iterations), str(EDIT_PSNR_MIN)], 240, need=60)
        res["edit_commands"] = last_json(r["tail"]) if r else None
    # 5. per-iteration time at 100k and 1M Gaussians, 1080p
    if gpu:
        r = step("timing_1080p", [py, "-c", TIMING], 150)
        res["timing"] = last_json(r["tail"]) if r else None
    # 6. the whole pipeline
    run = work / "run"
    cmd = gsg + ["run", str(scene), "--out", str(run), "--eval", "--force", "--quiet", "--device", args.device]
    r = step(f"gsgroup_run_{args.device}", cmd, 300)
    if r:
        res["gsgroup_run"] = {"seconds": r["seconds"], "rc": r["rc"], "summary": last_json(r["tail"])}
    return finish(res)


def finish(res: dict) -> int:
    res["total_seconds"] = round(elapsed(), 1)
    text = json.dumps(res, indent=1)
    targets = [ROOT / "benchmarks" / "results" / "gpu_check.json"]
    if os.environ.get("OUT"):
        targets.append(Path(os.environ["OUT"]) / "gpu_check.json")
    for path in targets:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            shutil.move(tmp, path)
        except OSError as e:
            print(f"could not write {path}: {e}", file=sys.stderr)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
