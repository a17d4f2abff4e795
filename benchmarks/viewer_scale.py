"""`gsgroup view` at real scale: load time and edit round-trip in a real (headless) browser.

Builds synthetic segmented runs of N Gaussians (a grey floor, id 0, holding all but 8 objects of
5000 Gaussians each; object 1, red, left of the GUI panel in view), starts the viewer, opens
Debian's chromium headless (640x400) through Playwright and measures, for the earlier path (every
visible splat re-sent on each change, ``ViewerApp(full_resend=True)``) and the current one (splats
sent once, edits as changes):

  load      viewer constructor start -> server ready -> the browser's websocket has received every
            splat record (Playwright's frame events, polled every 10 ms) -> (N <= --drawn-max)
            object 1's pixel shows red in a screenshot
  edits     hide, undo, recolour, translate of object 1, run on the server as its panel button runs
            them (the op under the lock, then the redraw): op start -> redraw done (server) -> the
            frame carrying the change is received; with --edits-drawn also -> the object's pixel
            has changed (mean |RGB difference| > 40). Triggered on the server, not clicked: the
            page's main thread is busy for whole software-rendered frames, which would delay a click
  sent      bytes of splat records the server sent for the load and for each edit
  memory    the server process's resident memory growth (VmRSS) from before the viewer to after
            its first redraw, and the process's peak (VmHWM, includes the loaded run)

Each (N, path) runs in a fresh process; medians over --repeats runs. Chromium renders with
SwiftShader (software WebGL on the CPU): a frame of 100k splats takes seconds, of 1M about 30 s
on the 2-core test machine, so the "drawn" times measure SwiftShader, not the viewer.

    python benchmarks/viewer_scale.py [--sizes 100000,1000000] [--repeats 3] [--work /tmp/viewer_scale]
    python benchmarks/viewer_scale.py --sizes 100000 --repeats 1 --paths changes --edits-drawn --out viewer_scale_drawn
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, median, save, table

OBJECTS, PER_OBJECT, ID_DIM = 8, 5000, 16
TARGET = (0.0, 0.0, 0.25)  # object 1's centre; the camera looks right of it, so it shows left of the panel
CAMERA = {"position": (0.8, -2.2, 1.5), "look_at": (0.8, 0.0, 0.25), "fov_deg": 50}
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]
EDITS = ("hide", "undo", "recolor", "translate")
VIEWPORT = {"width": 640, "height": 400}


def build_run(path: Path, n: int, seed: int = 0) -> Path:
    """A segmented run of n Gaussians: a floor (id 0) and OBJECTS blobs of PER_OBJECT Gaussians, object
    1 red at the look-at point, the others on a circle; a classifier whose class k reads identity channel k."""
    import torch

    from gsgroup.model import Gaussians
    from gsgroup.model.sh import rgb_to_sh
    from gsgroup.run import DataConfig, Run, RunConfig
    from gsgroup.segment.identity import IdentityClassifier
    from gsgroup.segment.segmentation import Segmentation
    from gsgroup.train.config import TrainConfig

    rng = np.random.default_rng(seed)
    n_floor = n - OBJECTS * PER_OBJECT
    floor = np.c_[rng.uniform(-3, 3, (n_floor, 2)), rng.normal(0, 0.002, n_floor)]
    angles = np.linspace(0, 2 * np.pi, OBJECTS - 1, endpoint=False)
    centres = [np.array(TARGET)] + [np.array([1.6 * np.cos(a), 1.6 * np.sin(a), 0.25]) for a in angles]
    means = np.concatenate([floor] + [c + rng.normal(0, 0.08, (PER_OBJECT, 3)) for c in centres])
    labels = np.repeat(np.arange(OBJECTS + 1), [n_floor] + [PER_OBJECT] * OBJECTS)
    colours = np.r_[[[0.9, 0.1, 0.1]], rng.uniform(0.2, 0.9, (OBJECTS - 1, 3))]
    rgb = np.empty((n, 3))
    rgb[labels == 0] = rng.uniform(0.35, 0.6, (n_floor, 1))
    rgb[labels > 0] = colours[labels[labels > 0] - 1]
    spacing = 6.0 / np.sqrt(n_floor)
    scales = np.where(labels[:, None] == 0, np.log([1.2 * spacing, 1.2 * spacing, 0.002]), np.log(0.03))
    ids = np.zeros((n, ID_DIM), np.float32)
    ids[np.arange(n), labels] = 1.0
    g = Gaussians(
        means=torch.tensor(means, dtype=torch.float32),
        quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
        scales=torch.tensor(scales, dtype=torch.float32),
        opacities=torch.full((n,), 3.0),
        sh0=rgb_to_sh(torch.tensor(rgb, dtype=torch.float32))[:, None, :],
        shN=torch.zeros(n, 0, 3),
        ids=torch.from_numpy(ids),
    )
    clf = IdentityClassifier(OBJECTS + 1, ID_DIM)
    with torch.no_grad():
        clf.linear.weight.zero_()
        clf.linear.weight[:, : OBJECTS + 1] = 20.0 * torch.eye(OBJECTS + 1)
        clf.linear.bias.zero_()
    path.mkdir(parents=True, exist_ok=True)
    run = Run.create(path, RunConfig(DataConfig(str(path / "no_data")), TrainConfig(background=(1.0, 1.0, 1.0))))
    run.save_gaussians(g)
    run.save_segmentation(Segmentation(clf))
    return path


def _rss() -> dict:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            out[line.split(":")[0]] = int(line.split()[1]) / 1024  # MiB
    return out


def _target_xy(client, box) -> tuple[float, float]:
    """Page coordinates of object 1's centre (TARGET) in the client's camera."""
    from gsgroup.viewer import splats

    cam = client.camera
    x, y = splats.project(np.array([TARGET]), cam.position, cam.wxyz, cam.fov, cam.image_width, cam.image_height)[0]
    return box["x"] + x * box["width"] / cam.image_width, box["y"] + y * box["height"] / cam.image_height


def _centre_pixel(page, xy) -> np.ndarray:
    import cv2

    x, y = xy
    png = page.screenshot(clip={"x": x - 2, "y": y - 2, "width": 5, "height": 5})
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1].reshape(-1, 3).mean(0)


def _poll(page, cond, timeout: float, step_ms: int = 10):
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        v = cond()
        if v:
            return v
        page.wait_for_timeout(step_ms)  # lets Playwright deliver its events (the frame receipts)
    return None


def _received(frames: list, since: float, nbytes: int) -> float | None:
    """Receipt time of the first websocket frame after ``since`` of at least ``nbytes`` bytes."""
    return next((t for t, b in frames if t >= since and b >= nbytes), None)


def _do_edit(app, name: str) -> None:
    """What the panel's button does (``ViewerApp._guarded``): the op under the lock, then the redraw."""
    with app.lock:
        if name == "hide":
            app.state.hide()
        elif name == "undo":
            app.state.undo()
        elif name == "recolor":
            app.state.recolor((0, 255, 0))  # stays far from the floor grey under the selection tint
        elif name == "translate":
            app.state.translate((0.6, 0.0, 0.0))
        app.redraw(name)


def _received_all(frames: list, since: float, nbytes: int) -> float | None:
    """Receipt time of the frame after ``since`` with which ``nbytes`` bytes in all have arrived (the
    load's nodes may come in several frames)."""
    total = 0
    for t, b in frames:
        if t >= since:
            total += b
            if total >= nbytes:
                return t
    return None


def _time_edit(page, app, box, name: str, frames: list, timeout: float, drawn: bool) -> dict:
    """One edit triggered on the server as a click would; times from the op's start."""
    before = _centre_pixel(page, box) if drawn else None
    start = time.perf_counter()
    _do_edit(app, name)
    sent = dict(app.last_sent)
    out = {f"{name}_server_s": app.redrawn_at - start, f"{name}_bytes": sent["bytes"]}
    t_ws = _poll(page, lambda: _received(frames, app.redraw_started_at, sent["bytes"]), timeout)
    out[f"{name}_received_s"] = None if t_ws is None else t_ws - start
    if drawn:
        changed = _poll(page, lambda: np.abs(_centre_pixel(page, box) - before).mean() > 40, timeout, 50)
        out[f"{name}_drawn_s"] = time.perf_counter() - start if changed else None
    return out


def measure_once(run: Path, full: bool, timeout: float, drawn_load: bool, drawn_edits: bool) -> dict:
    """One viewer process: load, then the EDITS (see the module docstring)."""
    from playwright.sync_api import sync_playwright

    from gsgroup.viewer.server import ViewerApp

    res = {"path": "full resend" if full else "changes"}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=FLAGS)
        page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
        page.set_default_timeout(timeout * 1000)
        frames = []
        page.on("websocket", lambda ws: ws.on("framereceived", lambda p: frames.append((time.perf_counter(), len(p)))))
        mem0 = _rss()
        t0 = time.perf_counter()
        app = ViewerApp(run, "127.0.0.1", 0, verbose=False, full_resend=full)
        res["server_ready_s"] = time.perf_counter() - t0
        mem1 = _rss()
        res["server_rss_mib"] = mem1["VmRSS"] - mem0["VmRSS"]
        res["server_peak_rss_mib"] = mem1["VmHWM"]
        res["load_bytes"] = app.last_sent["bytes"]
        res["gaussians"] = len(app.state.labels)
        try:
            app.set_camera(CAMERA["position"], CAMERA["look_at"], fov_deg=CAMERA["fov_deg"])
            page.goto(f"http://127.0.0.1:{app.port}")
            t_ws = _poll(page, lambda: _received_all(frames, t0, res["load_bytes"]), timeout)
            res["load_received_s"] = None if t_ws is None else t_ws - t0
            client = _poll(page, lambda: next(iter(app.server.get_clients().values()), None), timeout)
            _poll(page, lambda: client.camera.image_width > 0, timeout)
            app.set_camera(CAMERA["position"], CAMERA["look_at"], fov_deg=CAMERA["fov_deg"])
            box = page.locator("canvas").first.bounding_box()
            _poll(page, lambda: np.allclose(client.camera.look_at, CAMERA["look_at"], atol=1e-3), timeout)
            box = _target_xy(client, box)  # from here on: the pixel to watch
            res["target_px"] = [round(v) for v in box]

            def red():
                c = _centre_pixel(page, box)
                return c[0] > 150 and c[0] > c[1] + 60 and c[0] > c[2] + 60

            if drawn_load:
                ok = _poll(page, red, timeout, 50)
                res["load_drawn_s"] = time.perf_counter() - t0 if ok else None
            for name in EDITS:
                if name != "undo" and app.state.selected is None:
                    with app.lock:  # select object 1 (as a click would), untimed
                        app.state.select(1)
                        app.redraw()
                    _poll(page, lambda: _received(frames, app.redraw_started_at, app.last_sent["bytes"]), timeout)
                    page.wait_for_timeout(1000)
                res.update(_time_edit(page, app, box, name, frames, timeout, drawn_edits))
        finally:
            app.stop()
            browser.close()
    return res


def _row(group: dict) -> dict:
    """Medians over the successful runs of one (N, path) group."""
    runs = group["runs"]
    ok = [r for r in runs if "error" not in r]
    path = "full resend" if group["full_resend"] else "changes"
    row = {"gaussians": group["gaussians"], "path": path, "runs_ok": f"{len(ok)}/{len(runs)}"}
    for k in sorted({k for r in ok for k in r if k.endswith(("_s", "_bytes", "_mib"))}):
        vals = [r[k] for r in ok if r.get(k) is not None]
        row[k] = median(vals) if len(vals) == len(ok) and vals else None
    return row


def _write(raw: list, args) -> Path:
    """Write the results so far (every group's runs and their medians) and print the table."""
    rows = [_row(g) for g in raw]
    payload = {
        "machine": {**machine(), "browser": "Debian chromium, headless, SwiftShader (software WebGL on the CPU)"},
        "setup": {"objects": OBJECTS, "per_object": PER_OBJECT, "camera": CAMERA, "viewport": VIEWPORT},
        "rows": rows,
        "raw": raw,
    }
    path = save(args.out, payload)
    cols = ["gaussians", "path", "runs_ok", "load_bytes", "server_ready_s", "load_received_s", "load_drawn_s"]
    cols += [f"{e}_{x}" for e in EDITS for x in ("bytes", "server_s", "received_s", "drawn_s")]
    cols += ["server_rss_mib"]
    print(table(rows, [c for c in cols if any(c in r for r in rows)]))
    print(f"wrote {path}")
    return path


def _measure_group(run: Path, n: int, full: bool, args) -> list:
    runs = []
    load = "1" if n <= args.drawn_max else "0"
    edits = "1" if args.edits_drawn and load == "1" else "0"
    for _ in range(args.repeats):
        cmd = [sys.executable, __file__, "--one", str(run), "1" if full else "0", str(args.timeout), load, edits]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=20 * args.timeout)
        line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            runs.append({"error": (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]})
            print(f"N={n} full={full}: failed: {runs[-1]['error']}", flush=True)
            continue
        runs.append(json.loads(line[7:]))
        print(f"N={n} full={full}: {runs[-1]}", flush=True)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000", help="numbers of Gaussians, comma-separated")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("/tmp/viewer_scale"))
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for each signal")
    ap.add_argument("--out", default="viewer_scale", help="results name under benchmarks/results/")
    ap.add_argument("--drawn-max", type=int, default=100000, help="wait for the loaded picture up to this N")
    ap.add_argument("--edits-drawn", action="store_true", help="also wait for each edit's pixel change")
    ap.add_argument("--paths", default="full,changes", help="which paths: full (resend everything), changes")
    ap.add_argument("--resume", action="store_true", help="keep the groups already in the results file")
    ap.add_argument("--one", nargs=5, metavar=("RUN", "FULL", "TIMEOUT", "LOAD", "EDITS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        run, full, timeout, load, edits = args.one
        print("RESULT " + json.dumps(measure_once(Path(run), full == "1", float(timeout), load == "1", edits == "1")))
        return
    old = RESULTS / f"{args.out}.json"
    raw = json.loads(old.read_text())["raw"] if args.resume and old.exists() else []
    for n in [int(s) for s in args.sizes.split(",")]:
        run = args.work / f"run_{n}"
        if not (run / "point_cloud.ply").exists():
            build_run(run, n)
        for full in [p == "full" for p in args.paths.split(",")]:
            if any(g["gaussians"] == n and g["full_resend"] == full for g in raw):
                continue
            raw.append({"gaussians": n, "full_resend": full, "runs": _measure_group(run, n, full, args)})
            _write(raw, args)  # after each group: an interrupted benchmark keeps what it measured
    _write(raw, args)


if __name__ == "__main__":
    main()
