"""Run a shipped AKB codec with onnxruntime: :class:`AkbCodec`.

``encode`` goes image -> embedding -> KB index -> analysis (features, entropy map) -> channel-KB
policy (rate-level offsets) -> rate-preset map within the CBR budget -> symbols, and returns the
symbols with the side information the header carries (:class:`AkbSide`). ``decode`` needs the
received symbols and that side information. ``ckb=False`` / ``skb=False`` are the ablations
(fixed entropy-to-rate mapping; no source-KB conditioning). ``allocation="measured"`` replaces the
entropy map and the policy by the rate map that minimises the distortion the transmitter measures
by decoding the image at every rate level (:mod:`testbed.akb.allocation`).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.card import CARD_NAME, ModelCardError, read_card
from ..core.codecs import (Encoded, ModelError, Rate, check_no_mode, refuse_options, resolve_model_dir,
                           warn_outside_snr_range)
from ..core.ortsession import open_graphs
from ..core.symbol_channel import awgn_np
from ..core.wire import NO_KB, SideInfo, kb_hash16
from . import allocation as al
from . import ratemap as rm
from .allocation import ALLOCATIONS
from .card import AkbCard
from .source_kb.kb import KbError, KnowledgeBase

log = logging.getLogger(__name__)

@dataclass
class AkbSide:
    """Side information of one image (travels in the frame header)."""
    levels: np.ndarray            # [hb, wb] rate levels
    kb_index: int                 # NO_KB when the source KB is off
    offsets: np.ndarray | None = None   # the policy's action (TX-side only, for logs and figures)
    entropy_map: np.ndarray | None = None  # [h, w] bits per location (TX-side only)
    timing_ms: dict = field(default_factory=dict)
    allocation: str = "entropy"   # where the rate map came from (TX-side only, for logs and figures)


class AkbCodec:
    """The AKB codec (kind ``akb-jscc``), following :class:`testbed.core.codecs.Codec`."""
    card_class = AkbCard
    variable_rate = True
    OPTIONS = ("ckb", "skb", "allocation", "figures")
    DEFAULT_CBR = 0.0625

    def __init__(self, model: str | Path, threads: int = 0, verify: bool = True, kb: str | Path | None = None,
                 provider=None, spinning: bool = True):
        """``kb``: a KB file to use instead of the shipped one (``testbed kb build``); ``provider``: the
        embedding provider that KB was built with (default: the shipped ``embedder.onnx``)."""
        self.dir = resolve_model_dir(model)
        try:
            card = read_card(self.dir / CARD_NAME, AkbCard)
        except ModelCardError as e:
            raise ModelError(str(e)) from None
        self.card: AkbCard = card
        self.sess = open_graphs(self.dir, card, threads, verify, spinning)
        try:
            self.kb = KnowledgeBase.load(self.dir / card.kb["file"])
            if self.kb.sha256 != card.kb["sha256"]:
                raise ModelError(f"{self.dir / card.kb['file']}: KB sha256 {self.kb.sha256[:12]} does not match the "
                                 f"model card ({card.kb['sha256'][:12]})")
            if kb is not None:
                own_dim = self.kb.vectors.shape[1]
                self.kb = KnowledgeBase.load(kb)
                if self.kb.vectors.shape[1] != own_dim:
                    raise ModelError(f"{kb}: KB vectors have {self.kb.vectors.shape[1]} values, "
                                     f"{self.name if hasattr(self, 'name') else card.name} is conditioned on {own_dim}")
        except KbError as e:
            raise ModelError(str(e)) from None
        self.name = card.name
        self.sha256 = card.sha256
        self.snr_range = tuple(card.snr_range_db)
        self._cbr_range = (float(card.cbr_range[0]), float(card.cbr_range[1]))
        self.has_policy = "policy" in self.sess
        self.provider = provider
        self.kb_dim = int(self.kb.vectors.shape[1])

    # -- checks --------------------------------------------------------------------------------
    def check_snr(self, snr_db: float) -> None:
        warn_outside_snr_range(snr_db, self.snr_range, self.name)

    def cbr_range(self) -> tuple[float, float]:
        return self._cbr_range

    def check_cbr(self, cbr: float) -> None:
        lo, hi = self._cbr_range
        if not lo <= cbr <= hi:
            raise ModelError(f"CBR {cbr:g} is outside this model's range {lo:g}..{hi:g} ({self.dir})")

    def kb_vector(self, index: int) -> np.ndarray:
        if index == NO_KB:
            return np.zeros((1, self.kb_dim), np.float32)
        try:
            return self.kb.vector(index)[None].astype(np.float32)
        except KbError as e:
            raise ModelError(str(e)) from None

    # -- coding --------------------------------------------------------------------------------
    def encode_side(self, image: np.ndarray, snr_db: float, cbr: float, *, ckb: bool = True, skb: bool = True,
               prev_offsets: np.ndarray | None = None, allocation: str = "entropy") -> tuple[np.ndarray, AkbSide]:
        """[H, W, 3] uint8 -> (complex64 symbols, side information).

        ``allocation``: ``entropy`` (the rate-preset map of the entropy model, adjusted by the
        channel-KB policy when ``ckb``) or ``measured`` (:meth:`block_distortion` and
        :func:`~testbed.akb.allocation.optimal_levels`; it replaces the policy, so ``ckb``
        must be False)."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
        check_allocation(allocation, ckb)
        H, W = image.shape[:2]
        t = {}
        t0 = time.perf_counter()
        img = np.ascontiguousarray(image)[None]
        if skb:
            if self.provider is not None:
                emb = self.provider.embed(np.ascontiguousarray(image))
            else:
                emb = self.sess["embedder"].run(None, {"image": img})[0][0]
            try:
                kb_index, _ = self.kb.lookup(emb)
            except KbError as e:
                raise ModelError(str(e)) from None
        else:
            kb_index = NO_KB
        kbv = self.kb_vector(kb_index)
        t1 = time.perf_counter()
        feats, emap, bb = self.sess["encoder_analysis"].run(None, {
            "image": img, "snr_db": np.array([snr_db], np.float32),
            "target_cbr": np.array([cbr], np.float32), "kb_vector": kbv})
        t2 = time.perf_counter()
        offsets = None
        if ckb:
            if not self.has_policy:
                raise ModelError(f"{self.dir}: no channel-KB policy graph in this model (use --no-ckb)")
            prev = np.zeros(bb[0].shape, np.int64) if prev_offsets is None or prev_offsets.shape != bb[0].shape \
                else prev_offsets
            offsets = self.sess["policy"].run(None, {
                "block_bits": bb[0], "snr_db": np.array([snr_db], np.float32), "prev_offsets": prev,
                "target_cbr": np.array([cbr], np.float32)})[0]
        if allocation == "measured":
            levels = al.optimal_levels(self.block_distortion(image, feats, kbv, snr_db), cbr, H, W)
        else:
            levels = rm.preset_levels(bb[0], cbr, H, W, offsets)
        if rm.cbr_of(levels, H, W) > cbr * 1.0001:
            log.warning("CBR %g is below this image's minimum %.4f (%dx%d); sending the lowest rates",
                        cbr, rm.cbr_of(levels, H, W), W, H)
        t3 = time.perf_counter()
        sy = self.sess["encoder_symbols"].run(None, {"features": feats, "levels": levels[None]})[0][0]
        t4 = time.perf_counter()
        t.update(embed_ms=(t1 - t0) * 1e3, analysis_ms=(t2 - t1) * 1e3, ratemap_ms=(t3 - t2) * 1e3,
                 symbols_ms=(t4 - t3) * 1e3)
        return (sy[:, 0] + 1j * sy[:, 1]).astype(np.complex64), AkbSide(levels, kb_index, offsets, emap[0], t,
                                                                         allocation)

    def block_distortion(self, image: np.ndarray, feats: np.ndarray, kbv: np.ndarray, snr_db: float,
                         seed: int = 0) -> np.ndarray:
        """Squared error of every rate block when the whole image is sent at each rate level,
        [hb, wb, len(RATE_SET)]: symbols, AWGN at ``snr_db`` (one draw, seeded), decoder."""
        H, W = image.shape[:2]
        hb, wb = rm.block_grid(H, W)
        rng = np.random.default_rng(seed)
        ref = image.astype(np.float32)
        sse = np.empty((hb, wb, len(rm.RATE_SET)))
        for lv in range(len(rm.RATE_SET)):
            levels = np.full((1, hb, wb), lv, np.int64)
            sy = self.sess["encoder_symbols"].run(None, {"features": feats, "levels": levels})[0]
            noisy = awgn_np(sy[..., 0] + 1j * sy[..., 1], snr_db, rng)
            rx = np.stack([noisy.real, noisy.imag], axis=-1).astype(np.float32)
            out = self.sess["decoder"].run(None, {
                "symbols": rx, "snr_db": np.array([snr_db], np.float32), "levels": levels,
                "kb_vector": kbv, "image_size": np.array([H, W], np.int64)})[0][0]
            sse[..., lv] = al.block_sse(((out.astype(np.float32) - ref) ** 2).sum(axis=-1), hb, wb)
        return sse

    def decode(self, symbols: np.ndarray, snr_db: float, height: int, width: int, side=None,
               mode: int = 0, symbol_snr_db=None) -> np.ndarray:
        """``side``: an :class:`AkbSide` or the received :class:`testbed.core.wire.SideInfo`."""
        check_no_mode(mode, self.name)
        if side is None:
            raise ValueError("an AKB image needs its side information (rate map) to be decoded")
        s = np.asarray(symbols)
        hb, wb = rm.block_grid(height, width)
        if side.levels.shape != (hb, wb):
            raise ValueError(f"rate map is {side.levels.shape[0]}x{side.levels.shape[1]} blocks; a {width}x{height} "
                             f"image needs {hb}x{wb}")
        n_max = rm.n_symbols(side.levels, *rm.location_grid(height, width))
        if s.size == 0 or s.size > n_max:
            raise ValueError(f"{s.size} symbols received for this rate map; expected 1..{n_max}")
        stream = np.stack([s.real, s.imag], axis=-1).astype(np.float32)[None]
        return self.sess["decoder"].run(None, {
            "symbols": stream, "snr_db": np.array([snr_db], np.float32), "levels": side.levels[None].astype(np.int64),
            "kb_vector": self.kb_vector(side.kb_index), "image_size": np.array([height, width], np.int64)})[0][0]

    def cbr(self, side: AkbSide, height: int, width: int) -> float:
        return rm.cbr_of(side.levels, height, width)

    # -- the Codec interface -----------------------------------------------------------------------
    def rate(self, cbr: float | None = None, symbols_per_location: int | None = None, ckb: bool = True,
             skb: bool = True, allocation: str = "entropy", figures: bool = False, **options) -> Rate:
        """A target CBR (default 0.0625) with the channel / source KB on or off and the rate-map
        source (``entropy`` or ``measured``); ``figures`` is the experiments' option, allowed here."""
        refuse_options(self.name, self.OPTIONS, options)
        cbr = self.DEFAULT_CBR if cbr is None else float(cbr)
        self.check_cbr(cbr)
        check_allocation(allocation, ckb)
        return Rate(cbr=cbr, symbols_per_location=0,
                    options={"ckb": bool(ckb), "skb": bool(skb), "allocation": str(allocation)})

    def encode(self, image: np.ndarray, snr_db: float, rate: Rate, previous: Encoded | None = None) -> Encoded:
        """As :meth:`encode_side`; the policy sees the offsets it chose for ``previous``."""
        o = rate.options
        prev = previous.detail.offsets if previous is not None and previous.detail is not None else None
        s, side = self.encode_side(image, snr_db, rate.cbr, ckb=o.get("ckb", True), skb=o.get("skb", True),
                                   prev_offsets=prev, allocation=o.get("allocation", "entropy"))
        h, w = image.shape[:2]
        fields = {**self.received_fields(0, side, h, w), "ckb": int(o.get("ckb", True)),
                  "skb": int(o.get("skb", True)), "allocation": o.get("allocation", "entropy")}
        return Encoded(symbols=s, cbr=self.cbr(side, h, w), symbols_per_location=0,
                       side=SideInfo(kb_index=side.kb_index, levels=side.levels, kb_hash=kb_hash16(self.kb.sha256)),
                       fields=fields, detail=side)

    def n_symbols(self, symbols_per_location: int, side, height: int, width: int) -> int:
        if side is None:
            raise ValueError("an AKB image needs its side information (rate map)")
        return rm.n_symbols(side.levels, *rm.location_grid(height, width))

    def received_fields(self, symbols_per_location: int, side, height: int, width: int) -> dict:
        """Mean symbols per location (edge blocks hold fewer locations) and the KB index."""
        if side is None:
            return {"symbols_per_location": symbols_per_location, "kb_index": -1}
        h, w = rm.location_grid(height, width)
        return {"symbols_per_location": round(rm.n_symbols(side.levels, h, w) / (h * w), 3),
                "kb_index": side.kb_index}

    def decoded_fields(self, sent=None) -> dict:
        return {}

    def reference_fields(self, reference, symbols_per_location: int, mode: int) -> dict:
        return {}

    def check_side(self, side) -> str | None:
        if side is None:
            return "no side information (rate map) with the image"
        own = kb_hash16(self.kb.sha256)
        if side.kb_index != NO_KB and side.kb_hash != own:
            return (f"source-KB mismatch: the transmitter's KB is {side.kb_hash:04x}..., this receiver holds "
                    f"{own:04x}... ({self.kb.sha256[:12]})")
        return None


def check_allocation(allocation: str, ckb: bool) -> None:
    if allocation not in ALLOCATIONS:
        raise ValueError(f"allocation {allocation!r} is not one of {', '.join(ALLOCATIONS)}")
    if allocation == "measured" and ckb:
        raise ValueError("allocation 'measured' replaces the channel-KB policy: switch the policy off (ckb=False, --no-ckb)")
