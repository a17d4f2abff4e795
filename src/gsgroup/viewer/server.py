"""``gsgroup view RUN``: a local web viewer of a segmented run, built on viser.

Why the splats are drawn in the browser: viser's splat nodes ship the Gaussians once (32 bytes
each: float32 centre, float16 covariance, RGBA8) and the browser sorts and rasterises them with
WebGL at interactive frame rates. Server-side rendering with the project's CPU rasteriser would
cost ~50-200 ms per frame per client and stream an image per camera move.

Edits travel as changes (``scene.SplatScene``): the splats live in one node per object id (large
ids split into spatial chunks), so hiding an object sends a visibility flag, moving it a node
position, recolouring or selecting it that object's records only. ``full_resend=True`` is the
earlier behaviour (all visible splats re-sent on every change), kept for the benchmark.

The server is pure wiring: the model (selection, edits, undo, save) is ``ViewerState``.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np

from ..edit.stylize import EFFECTS as RESTYLE_EFFECTS
from ..errors import InputError
from .scene import SplatScene
from .state import MODES, ViewerState, open_run

NONE = "(none)"
HOST, PORT = "127.0.0.1", 8080  # where `gsgroup view` serves by default: this machine only


def check_port(host: str, port: int) -> None:
    """InputError when (host, port) cannot be bound (in use, or a host that is not local)."""
    if not (0 <= int(port) <= 65535):
        raise InputError(f"--port {port}: must be between 0 and 65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise InputError(f"--host {host}: unknown host name; use 127.0.0.1 (this machine) or 0.0.0.0") from None
    family, _, _, _, addr = infos[0]
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(addr)
    except OSError as e:
        if e.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise InputError(
                f"--port {port}: already in use on {host}; stop the other server or pick another --port"
            ) from None
        raise InputError(
            f"--host {host} --port {port}: cannot listen there ({e.strerror}); use --host 127.0.0.1 or another --port"
        ) from None
    finally:
        s.close()


def _object_label(oid: int, count: int) -> str:
    return f"{oid}{' (background)' if oid == 0 else ''}: {count} Gaussians"


def _fmt(v) -> str:
    return "-" if v is None else "(" + ", ".join(f"{x:.3f}" for x in v) + ")"


class ViewerApp:
    """A running viewer: ``state`` (ViewerState), ``server`` (viser.ViserServer), ``port``.

    Every GUI callback takes ``lock``; ``redraw()`` sends what changed in the splats and the panel;
    ``last_sent`` / ``splats.sent`` count the splat records and bytes of the last redraw / all of them."""

    def __init__(
        self,
        run: str | Path,
        host: str = HOST,
        port: int = PORT,
        verbose: bool = True,
        full_resend: bool = False,
        device: str = "cpu",
    ):
        self.state = ViewerState(open_run(run), device=str(device))  # errors before any socket is opened
        check_port(host, port)
        import viser

        self.lock = threading.RLock()
        self.server = viser.ViserServer(host=host, port=port, label=f"gsgroup: {Path(run).name}", verbose=verbose)
        self.port = self.server.get_port()
        if port != 0 and self.port != port:  # lost a race for the port: viser moved to the next one
            self.server.stop()
            raise InputError(f"--port {port}: already in use on {host}; stop the other server or pick another --port")
        self.host = host
        self.redraws = 0
        self.full_resend = full_resend
        self.splats = SplatScene(self.server.scene, self.state.labels, self.state.act["means"])
        self.last_sent: dict = {}
        self._build_gui()
        self._default_camera()
        self.redraw()

    # ------------------------------------------------------------------ setup
    def _default_camera(self) -> None:
        means = self.state.act["means"]
        lo, hi = np.percentile(means, 5, axis=0), np.percentile(means, 95, axis=0)
        centre = 0.5 * (lo + hi)
        ext = float(np.linalg.norm(hi - lo)) or 1.0
        cam = self.server.initial_camera
        cam.look_at = tuple(centre)
        cam.position = tuple(centre + ext * np.array([0.0, -1.2, 0.6]))
        cam.up = (0.0, 0.0, 1.0)

    def _build_gui(self) -> None:
        gui = self.server.gui
        gui.add_markdown(f"**{self.state.src.path.name}** — {len(self.state.src.gaussians)} Gaussians")
        self.mode = gui.add_dropdown("Display", MODES, initial_value="RGB")
        self.objects = gui.add_dropdown("Object", self._object_options(), initial_value=NONE)
        self.info = gui.add_markdown("Click an object, choose it in the list, or name it.")
        with gui.add_folder("Select by text", expand_by_default=False):
            self.prompt = gui.add_text("Prompt", "")
            self.detector = gui.add_text("Grounding DINO folder", "")
            self.b_text = gui.add_button("Select by text")
        with gui.add_folder("Selection"):
            self.b_hide = gui.add_button("Hide")
            self.b_isolate = gui.add_button("Isolate")
            self.b_remove = gui.add_button("Remove", color="red")
            self.color = gui.add_rgb("Color", (51, 102, 255))
            self.b_recolor = gui.add_button("Recolor")
            self.effect = gui.add_dropdown("Restyle", (*RESTYLE_EFFECTS, "style image"), initial_value="watercolor")
            self.style_path = gui.add_text("Style image", "")
            self.b_restyle = gui.add_button("Restyle (fits for minutes)")
            self.offset = gui.add_vector3("Translate by", (0.0, 0.0, 0.0), step=0.01)
            self.b_translate = gui.add_button("Translate")
            self.b_undo = gui.add_button("Undo")
        with gui.add_folder("Save"):
            run = self.state.src.path
            self.out_run = gui.add_text("New run folder", str(run.parent / f"{run.name}_edited"))
            self.b_save = gui.add_button("Save as new run")
            self.out_ply = gui.add_text("Export PLY", str(run.parent / f"{run.name}_selection.ply"))
            self.b_export = gui.add_button("Export selection as PLY")
        self.status = gui.add_markdown("")

        self._syncing = False
        self.mode.on_update(self._guarded(self._on_mode))
        self.objects.on_update(self._guarded(self._on_object))
        self.b_hide.on_click(self._guarded(lambda _: self.state.hide(), "hid the object"))
        self.b_isolate.on_click(self._guarded(self._on_isolate))
        self.b_remove.on_click(self._guarded(lambda _: self.state.remove(), "removed the object"))
        self.b_recolor.on_click(self._guarded(lambda _: self.state.recolor(self.color.value), "recolored"))
        self.b_translate.on_click(self._guarded(lambda _: self.state.translate(self.offset.value), "moved"))
        self.b_restyle.on_click(self._guarded(self._on_restyle, "restyled"))
        self.b_undo.on_click(self._guarded(self._on_undo))
        self.b_text.on_click(self._guarded(self._on_text))
        self.b_save.on_click(self._guarded(self._on_save))
        self.b_export.on_click(self._guarded(self._on_export))
        self.server.scene.on_click()(self._guarded(self._on_scene_click))

    def _on_restyle(self, _event) -> None:
        style = self.effect.value == "style image"
        self.state.restyle(None if style else self.effect.value, self.style_path.value if style else None)

    def _guarded(self, fn, done: str | None = None):
        """Wrap a callback: take the lock, skip echo events of our own GUI sync, show errors in the panel."""

        def wrapped(event):
            if self._syncing:
                return
            with self.lock:
                try:
                    msg = fn(event)
                    self.redraw(msg if isinstance(msg, str) else done)
                except InputError as e:
                    self._set_status(f"⚠️ {e}")

        return wrapped

    # ------------------------------------------------------------------ callbacks
    def _on_mode(self, _):
        self.state.mode = self.mode.value
        return f"display: {self.mode.value}"

    def _on_object(self, _):
        v = self.objects.value
        self.state.select(None if v == NONE else int(v.split(":")[0].split(" ")[0]))
        return None

    def _on_text(self, _):
        ids = self.state.select_text(self.prompt.value, self.detector.value)
        return f"{self.prompt.value!r}: objects {ids}, selected {ids[0]}"

    def _on_isolate(self, _):
        if self.state.selected is None:
            raise InputError("isolate: select an object first (click it or pick it in the list)")
        self.state.mode = "isolate"
        return f"isolated object {self.state.selected}"

    def _on_undo(self, _):
        return "undone" if self.state.undo() else "nothing to undo"

    def _on_save(self, _):
        info = self.state.save_run(self.out_run.value.strip())
        return f"saved {info['gaussians_after']} Gaussians to {self.out_run.value.strip()}"

    def _on_export(self, _):
        info = self.state.export_selection(self.out_ply.value.strip())
        return f"exported {info['gaussians']} Gaussians to {info['path']}"

    def _on_scene_click(self, event):
        oid = self.state.pick(event.ray_origin, event.ray_direction)
        self.last_click = {"ray_origin": event.ray_origin, "ray_direction": event.ray_direction, "id": oid}
        if oid is None:
            return "no object under the click"
        self.state.select(oid)
        return f"picked object {oid}"

    # ------------------------------------------------------------------ display
    def _object_options(self) -> list[str]:
        counts = np.bincount(self.state.labels) if len(self.state.labels) else np.zeros(0, int)
        return [NONE] + [_object_label(i, int(counts[i])) for i in self.state.object_ids()]

    def _set_status(self, text: str) -> None:
        self.status.content = text

    def redraw(self, message: str | None = None) -> None:
        """Send what changed in the splats (current mode, hidden, selection) and refresh the panel."""
        st = self.state
        self.redraw_started_at = time.perf_counter()
        with self.server.atomic():
            if self.full_resend:
                self.last_sent = self._resend_all()
            else:
                self.last_sent = self.splats.update(st.display_rows(), st.labels, st.act["means"], st.visible())
        info = st.selection_info()  # highlighted by a yellow tint (RGB/ids) or isolation
        self._syncing = True
        try:
            self.objects.options = self._object_options()
            self.objects.value = (
                NONE
                if st.selected is None
                else next(o for o in self.objects.options if o.split(":")[0].split(" ")[0] == str(st.selected))
            )
            self.mode.value = st.mode
        finally:
            self._syncing = False
        if info is None:
            self.info.content = "No selection. Click an object, or choose it in the list."
        else:
            c = info["mean_color"]
            hexc = "-" if c is None else "#" + "".join(f"{int(round(255 * x)):02x}" for x in c)
            self.info.content = (
                f"**Selected object: id {info['id']}**  \n"
                f"Gaussians: {info['gaussians']}  \n"
                f"bbox min: {_fmt(info['bbox_min'])}  \n"
                f"bbox max: {_fmt(info['bbox_max'])}  \n"
                f"mean color: {hexc}"
            )
        n_ops = len(st.ops)
        self._set_status((message or "") + (f"  \n{n_ops} op(s) so far; undo available" if st.history else ""))
        self.redraws += 1
        self.redrawn_at = time.perf_counter()

    def _resend_all(self) -> dict:
        """The earlier path: every visible splat re-sent as one node."""
        arrays = self.state.splat_arrays()
        n = len(arrays["centers"])
        if n:
            self.server.scene.add_gaussian_splats("/splats_all", **arrays)
        else:
            self.server.scene.remove_by_name("/splats_all")
        return {"splats": n, "bytes": 32 * n}

    # ------------------------------------------------------------------ control
    def set_camera(self, position, look_at, up=(0.0, 0.0, 1.0), fov_deg: float | None = None) -> None:
        """Point every connected client's camera (and new clients') at look_at from position."""
        cam = self.server.initial_camera
        cam.position, cam.look_at, cam.up = tuple(position), tuple(look_at), tuple(up)
        if fov_deg is not None:
            cam.fov = float(np.deg2rad(fov_deg))
        for client in self.server.get_clients().values():
            with client.atomic():
                client.camera.up_direction = tuple(up)
                client.camera.position = tuple(position)
                client.camera.look_at = tuple(look_at)
                if fov_deg is not None:
                    client.camera.fov = float(np.deg2rad(fov_deg))

    def stop(self) -> None:
        self.server.stop()


def serve(run: str | Path, host: str = HOST, port: int = PORT, device: str = "cpu") -> int:
    """Start the viewer (restyle on ``device``) and block until Ctrl-C."""
    app = ViewerApp(run, host, port, device=device)
    print(f"gsgroup view: http://{host}:{app.port}  (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        app.stop()
    return 0
