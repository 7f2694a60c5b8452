"""``testbed compare RUN_DIR...``: several runs side by side.

From each run folder of ``testbed eval`` or ``testbed loopback`` (its ``summary.json`` and
``results.csv``):

* ``compare_psnr.png``: PSNR against SNR, one line per run (learned codecs, digital codecs at a
  fixed MCS or ``auto``), on one plot;
* ``compare_grid.png``: one image reconstructed at a few SNRs by each run's codec and settings
  (CBR, MCS, KB options, channel model, seed), over the ideal symbol channel of ``testbed eval``
  (for an eval run this is the very image its row scored; for a loopback run, the same codec and
  settings without the radio path);
* ``compare.html``: a self-contained report (both pictures embedded, the numbers of every
  ``summary.json``), and ``compare.json`` with the same numbers.
"""
from __future__ import annotations

import base64
import html
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.metrics import psnr
from ..core.runlog import read_csv_rows, write_bytes_atomic, write_json_atomic

log = logging.getLogger(__name__)


class CompareError(ValueError):
    pass


@dataclass
class Run:
    path: Path
    summary: dict
    rows: list[dict]
    kind: str                  # "eval" or "loopback"

    @property
    def label(self) -> str:
        s = self.summary
        mcs = f" {s['mcs']}" if s.get("mcs") else ""
        ab = "".join(f" no-{k}" for k in ("ckb", "skb") if s.get(k) is False)
        return f"{s['model']}{mcs}{ab}, CBR {s['cbr']:.4f}, {self.kind}"

    def snrs(self) -> list[float]:
        return [float(r["snr_db"]) for r in self.summary.get("results", [])]


def load_run(path: str | Path) -> Run:
    p = Path(path)
    f = p / "summary.json"
    try:
        summary = json.loads(f.read_text())
    except OSError as e:
        raise CompareError(f"{f}: cannot read ({e.strerror}); is {p} a run folder of testbed eval or loopback?") from None
    except ValueError as e:
        raise CompareError(f"{f}: not JSON ({e})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("results"), list) or "model" not in summary:
        raise CompareError(f"{f}: not a summary of testbed eval or loopback (no 'model' and 'results')")
    if "impairments" in summary:
        kind = "loopback"
    elif "channel" in summary:
        kind = "eval"
    else:
        raise CompareError(f"{f}: compare takes runs of testbed eval and testbed loopback (this one has neither "
                           f"'channel' nor 'impairments'; an ota run's results are per TX gain, not per SNR)")
    try:
        rows = read_csv_rows(p / "results.csv")
    except (OSError, ValueError) as e:
        raise CompareError(f"{p / 'results.csv'}: {e}") from None
    return Run(p, summary, rows, kind)


def _image_of(runs: list[Run], name: str | None) -> str:
    common = None
    for r in runs:
        names = [x["image"] for x in r.rows]
        common = names if common is None else [n for n in common if n in names]
    if name is not None:
        if not all(any(x["image"] == name for x in r.rows) for r in runs):
            raise CompareError(f"--image {name!r}: not in every run (runs: {', '.join(str(r.path) for r in runs)})")
        return name
    if not common:
        raise CompareError("the runs share no image: give --image, or compare runs over the same images")
    return common[0]


def _grid_snrs(runs: list[Run], snrs: list[float] | None) -> list[float]:
    if snrs:
        return snrs
    shared = sorted(set.intersection(*(set(r.snrs()) for r in runs)))
    pool = shared if len(shared) >= 3 else sorted(set().union(*(r.snrs() for r in runs)))
    if len(pool) <= 4:
        return pool
    return [pool[round(i * (len(pool) - 1) / 3)] for i in range(4)]


def _reconstruct(run: Run, image_name: str, snrs: list[float], images_dir: str | None) -> tuple[np.ndarray, list]:
    """The run's image, and its reconstructions at ``snrs`` over the ideal symbol channel (eval's
    random streams: the same image as its row when the run is an eval run at that SNR)."""
    from ..core.codecs import rate_for
    from ..core.images import load_images
    from ..core.symbol_channel import apply_channel_np
    from ..zoo import open_codec

    s = run.summary
    folder = images_dir or s.get("data") or s.get("images")
    loaded = load_images(folder)[0] if folder and Path(folder).is_dir() else []   # eval's order and indices
    names = [p.name for p, _ in loaded]
    if image_name not in names:
        raise CompareError(f"{run.path}: image {image_name} not found in {folder!r} (give --images DIR)")
    index = names.index(image_name)
    img = loaded[index][1]
    model = s.get("model_dir") if s.get("model_dir") and Path(s["model_dir"], "model_card.yaml").is_file() else s["model"]
    codec = open_codec(model)
    if codec.sha256 != s.get("model_sha256", codec.sha256):
        raise CompareError(f"{run.path}: ran model {s['model_sha256'][:12]}, {model} is now {codec.sha256[:12]}")
    opts = {k: s[k] for k in ("ckb", "skb", "allocation", "mcs") if s.get(k) is not None}
    rate = rate_for(codec, s.get("cbr"), **opts)
    channel, seed = s.get("channel", "awgn"), int(s.get("seed", 0))
    run_snrs = run.snrs()
    out = []
    for snr in snrs:
        j = run_snrs.index(snr) if snr in run_snrs else len(run_snrs) + len(out)
        rng = np.random.default_rng([seed, index, j])
        enc = codec.encode(img, snr, rate)
        rx, snr_rx = apply_channel_np(enc.symbols, snr, channel, rng)
        rec = codec.decode(rx, snr_rx, img.shape[0], img.shape[1], side=enc.side, mode=enc.mode)
        out.append((snr, rec, psnr(img, rec)))
    return img, out


def _plot_psnr(runs: list[Run], path: Path) -> None:
    from ..core.plotting import plt, save_png

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for i, r in enumerate(runs):
        pts = [(float(x["snr_db"]), x["psnr_db"]) for x in r.summary["results"] if x.get("psnr_db") is not None]
        if pts:
            ax.plot(*zip(*pts), marker="os^Dv<>ph"[i % 9], linestyle="-" if r.kind == "eval" else "--", label=r.label)
    ax.set_xlabel("SNR (Es/N0) [dB]")
    ax.set_ylabel("PSNR [dB]")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path)


def _plot_grid(original: np.ndarray, recs: list[tuple[Run, list]], path: Path, image_name: str) -> None:
    from ..core.plotting import plt, save_png

    cols = max(len(x) for _, x in recs) + 1
    fig, axes = plt.subplots(len(recs), cols, figsize=(2.4 * cols, 1.9 * len(recs) + 0.4), dpi=110, squeeze=False)
    for row, (run, items) in enumerate(recs):
        axes[row][0].imshow(original)
        axes[row][0].set_title("original" if row == 0 else "", fontsize=7)
        axes[row][0].set_ylabel(run.label, fontsize=6)
        for c, (snr, rec, score) in enumerate(items, start=1):
            axes[row][c].imshow(rec)
            axes[row][c].set_title(f"{snr:g} dB: {score:.2f} dB", fontsize=7)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{image_name}: reconstructions over the ideal symbol channel", fontsize=8)
    fig.tight_layout()
    save_png(fig, path)


def _table_html(runs: list[Run]) -> str:
    snrs = sorted(set().union(*(r.snrs() for r in runs)))
    head = "".join(f"<th>{s:g} dB</th>" for s in snrs)
    body = []
    for r in runs:
        by = {float(x["snr_db"]): x for x in r.summary["results"]}
        cells = "".join(
            f'<td class="psnr" data-snr="{s:g}">{by[s]["psnr_db"]:.2f}</td>' if s in by and by[s].get("psnr_db") is not None
            else "<td>-</td>" for s in snrs)
        body.append(f'<tr data-run="{html.escape(str(r.path))}"><th>{html.escape(r.label)}</th>{cells}</tr>')
    return f"<table><tr><th>run \\ SNR</th>{head}</tr>{''.join(body)}</table>"


def _runs_html(runs: list[Run]) -> str:
    items = []
    for r in runs:
        s = r.summary
        items.append(f"<li><code>{html.escape(str(r.path))}</code>: {html.escape(r.kind)} of "
                     f"<b>{html.escape(str(s['model']))}</b> (sha256 {html.escape(str(s.get('model_sha256', ''))[:12])}), "
                     f"CBR {s['cbr']:.4f}, {s.get('n_images', len(r.rows))} images"
                     + (f", MCS {html.escape(str(s['mcs']))}" if s.get("mcs") else "")
                     + (f", channel {html.escape(str(s['channel']))}" if s.get("channel") else "") + "</li>")
    return "<ul>" + "".join(items) + "</ul>"


def _img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img class="figure" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>testbed compare</title>
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #bbb;padding:.25em .6em;text-align:right}}th:first-child{{text-align:left}}
img.figure{{max-width:100%;display:block;margin:1em 0}}</style></head>
<body data-images-loaded="0/0">
<h1>PSNR of {n} runs</h1>
{runs}
<h2>PSNR [dB] per SNR (means over each run's images, from its summary.json)</h2>
{table}
<h2>PSNR against SNR</h2>
{plot}
<h2>Reconstructions of {image}</h2>
{grid}
<script>
function count() {{
  const imgs = Array.from(document.images);
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.imagesLoaded = ok + "/" + imgs.length;
}}
window.addEventListener("load", count);
count();
</script>
</body></html>
"""


def compare(run_dirs: list[str], out: Path, image: str | None = None, snrs: list[float] | None = None,
            images_dir: str | None = None) -> dict:
    """Write the plot, the grid, the HTML report and compare.json of ``run_dirs`` into ``out``."""
    if not run_dirs:
        raise CompareError("give at least one run folder")
    runs = [load_run(d) for d in run_dirs]
    name = _image_of(runs, image)
    grid_snrs = _grid_snrs(runs, snrs)
    for s in grid_snrs:
        if not math.isfinite(s):
            raise CompareError(f"--snr-db {s!r}: not a number")
    _plot_psnr(runs, out / "compare_psnr.png")
    recs, original = [], None
    for r in runs:
        log.info("compare: reconstructing %s with %s", name, r.label)
        original, items = _reconstruct(r, name, grid_snrs, images_dir)
        recs.append((r, items))
    _plot_grid(original, recs, out / "compare_grid.png", name)
    page = _PAGE.format(n=len(runs), runs=_runs_html(runs), table=_table_html(runs), image=html.escape(name),
                        plot=_img_tag(out / "compare_psnr.png", "PSNR against SNR"),
                        grid=_img_tag(out / "compare_grid.png", f"reconstructions of {name}"))
    write_bytes_atomic(out / "compare.html", page.encode())
    result = {"runs": [{"run_dir": str(r.path), "label": r.label, "kind": r.kind, "model": r.summary["model"],
                        "cbr": r.summary["cbr"], "mcs": r.summary.get("mcs"),
                        "results": [{"snr_db": x["snr_db"], "psnr_db": x.get("psnr_db")} for x in r.summary["results"]],
                        "grid": [{"snr_db": s, "psnr_db": p} for s, _, p in items]}
                       for r, items in recs],
              "image": name, "grid_snrs_db": grid_snrs, "out": str(out),
              "files": {k: str(out / k) for k in ("compare.html", "compare_psnr.png", "compare_grid.png")}}
    write_json_atomic(out / "compare.json", result)
    return result
