"""Agent adaptation (pure, no MQTT): pick a model and CBR for a link from the model cards and the
measured SNR, and decide when to re-plan.

The catalogue comes from the cards' evaluation tables (Kodak PSNR vs SNR per CBR, written by
``testbed eval --record-in-card``). A link's images are not Kodak, so the controller learns a
per-link *content offset*: the EWMA of (measured PSNR - table PSNR at the measured SNR), and
adds it to every prediction for that link. Choosing: among the operating points within the
bandwidth budget (and latency target, once measured), the cheapest whose predicted PSNR clears
the target by ``margin_db``; if none does, the one with the highest predicted PSNR (best effort).
"""
from __future__ import annotations

import bisect
import math
import re
from collections import deque
from dataclasses import dataclass, field


_KEY = re.compile(r"^kodak/awgn/cbr=([0-9.]+)(?:/(.*))?$")


@dataclass(frozen=True)
class OperatingPoint:
    model: str
    sha256: str
    cbr: float
    snr_db: tuple[float, ...]
    psnr_db: tuple[float, ...]
    mcs: str = ""                       # a digital codec's table at one fixed MCS ("": auto / none)

    def predict(self, snr_db: float) -> float:
        """Table PSNR at ``snr_db``: linear in SNR; beyond the table, the end segments' slope
        (a conservative extrapolation below the lowest SNR, flat above the highest)."""
        x, y = self.snr_db, self.psnr_db       # plain floats: numpy costs more than it saves here
        if snr_db <= x[0] and len(x) > 1:
            slope = (y[1] - y[0]) / (x[1] - x[0])
            return float(y[0] - slope * (x[0] - snr_db))
        if snr_db >= x[-1] or len(x) == 1:
            return float(y[-1])
        i = bisect.bisect_right(x, snr_db)      # x[i-1] <= snr_db < x[i]
        t = (snr_db - x[i - 1]) / (x[i] - x[i - 1])
        return float(y[i - 1] + t * (y[i] - y[i - 1]))

    @property
    def key(self) -> str:
        return f"{self.model}@{self.cbr:.4f}" + (f"/{self.mcs}" if self.mcs else "")


def catalogue_from_card(name: str, card) -> list[OperatingPoint]:
    """Operating points of one card: its Kodak/AWGN rows with every knowledge base on (a digital
    codec's: MCS auto, and each fixed MCS evaluated)."""
    ops = []
    for key, ev in (card.evaluation or {}).items():
        m = _KEY.match(key)
        mcs = m.group(2)[len("mcs="):] if m and m.group(2) and m.group(2).startswith("mcs=") else ""
        if not m or (m.group(2) not in (None, "ckb,skb") and not mcs):
            continue
        table = sorted((float(s), float(p)) for s, p in ev.get("psnr_db", {}).items())
        if len(table) < 2:
            continue
        ops.append(OperatingPoint(name, card.sha256, float(m.group(1)), tuple(s for s, _ in table),
                                  tuple(p for _, p in table), mcs))
    return sorted(ops, key=lambda o: o.cbr)


def load_catalogue(models: dict, builtins: bool = True) -> list[OperatingPoint]:
    """``models``: name -> model folder (e.g. :func:`testbed.core.paths.shipped_models`); with
    ``builtins``, also the built-in codecs' tables (the digital baselines, recorded in
    ``testbed/data/digital_eval.json``), unless a model folder has the same name."""
    from ..zoo import CARD_NAME, builtin_codecs, load_card, open_codec

    ops = []
    for name, d in models.items():
        ops += catalogue_from_card(name, load_card(d / CARD_NAME))
    for name in builtin_codecs() if builtins else ():
        if name not in models:
            ops += catalogue_from_card(name, open_codec(name).card)
    return ops


@dataclass
class Choice:
    op: OperatingPoint
    predicted_db: float
    feasible: bool
    reason: str


@dataclass
class LinkState:
    """What the controller knows about one link's channel and content."""
    snr_db: float | None = None          # EWMA of the receiver's SNR estimates
    offsets: deque = field(default_factory=lambda: deque(maxlen=8))   # measured - table PSNR, recent images
    recent_miss: deque = field(default_factory=lambda: deque(maxlen=4))
    since_plan: int = 0                  # reports since the last (re)plan
    latency_ms: dict = field(default_factory=dict)   # model -> EWMA latency

    @property
    def offset_db(self) -> float:
        """Content offset vs the Kodak tables, planned for the hardest of the recent images (the
        target holds per image, and a link's images differ)."""
        return min(self.offsets) if self.offsets else 0.0

    @property
    def misses(self) -> int:
        """Images below the PSNR target among the last four."""
        return sum(self.recent_miss)

    def replanned(self) -> None:
        self.since_plan = 0
        self.recent_miss.clear()


@dataclass
class Policy:
    catalogue: list[OperatingPoint]
    margin_db: float = 0.5
    alpha: float = 0.3                   # EWMA weight of a new report
    snr_jump_db: float = 3.0             # re-plan when the SNR moved this much since the plan
    miss_limit: int = 2                  # ... or after this many misses among the last four images
    relax_after: int = 8                 # ... or try a cheaper point after this many reports

    def choose(self, snr_db: float, *, psnr_target: float | None, cbr_max: float | None = None,
               latency_target: float | None = None, models: list[str] | None = None,
               state: LinkState | None = None, mcs: str = "") -> Choice:
        """``mcs``: a fixed MCS of the digital codecs (their tables at that MCS if evaluated, else
        their ``auto`` tables, the reason says so)."""
        st = state or LinkState()
        ops = [o for o in self.catalogue if (not models or o.model in models)]
        fixed = mcs not in ("", "auto")
        pinned = [o for o in ops if fixed and o.mcs == mcs]
        ops = pinned or [o for o in ops if not o.mcs]
        if not ops:
            raise ValueError(f"no operating point for models {models or 'any'} (are their cards evaluated?)")
        ch = self._choose(ops, snr_db, psnr_target, cbr_max, latency_target, st)
        if fixed and not pinned:
            ch.reason += f" (MCS {mcs}: predicted from the auto table, no table at {mcs})"
        return ch

    def _choose(self, ops, snr_db, psnr_target, cbr_max, latency_target, st) -> Choice:
        in_budget = [o for o in ops if cbr_max is None or o.cbr <= cbr_max + 1e-9]
        if not in_budget:
            cheapest = min(ops, key=lambda o: o.cbr)
            return Choice(cheapest, cheapest.predict(snr_db) + st.offset_db, False,
                          f"no operating point within the bandwidth budget CBR {cbr_max:g}; "
                          f"using the cheapest, {cheapest.key}")
        if latency_target is not None:
            fast = [o for o in in_budget if st.latency_ms.get(o.model, 0.0) <= latency_target]
            in_budget = fast or in_budget
        pred = {o: o.predict(snr_db) + st.offset_db for o in in_budget}
        if psnr_target is None:
            best = max(in_budget, key=lambda o: (pred[o], -o.cbr))
            return Choice(best, pred[best], True, f"no PSNR target: best predicted quality within budget "
                                                    f"({pred[best]:.2f} dB at {snr_db:.1f} dB SNR)")
        ok = [o for o in in_budget if pred[o] >= psnr_target + self.margin_db]
        if ok:
            best = min(ok, key=lambda o: (o.cbr, -pred[o]))
            return Choice(best, pred[best], True,
                          f"cheapest point predicted to meet PSNR >= {psnr_target:g} dB at {snr_db:.1f} dB SNR: "
                          f"{best.key} predicts {pred[best]:.2f} dB (content offset {st.offset_db:+.2f} dB)")
        best = max(in_budget, key=lambda o: (pred[o], -o.cbr))
        return Choice(best, pred[best], False,
                      f"no point predicted to meet PSNR >= {psnr_target:g} dB at {snr_db:.1f} dB SNR; best effort "
                      f"{best.key} predicts {pred[best]:.2f} dB (content offset {st.offset_db:+.2f} dB)")

    def observe(self, st: LinkState, op: OperatingPoint, *, snr_est_db: float | None, psnr_db: float | None,
                latency_ms: float | None, psnr_target: float | None) -> None:
        """Fold one QoS report into the link state."""
        st.since_plan += 1
        if snr_est_db is not None and math.isfinite(snr_est_db):
            # a large jump replaces the average at once: the channel changed, not noise
            if st.snr_db is None or abs(snr_est_db - st.snr_db) > self.snr_jump_db:
                st.snr_db = snr_est_db
            else:
                st.snr_db += self.alpha * (snr_est_db - st.snr_db)
            if psnr_db is not None:
                st.offsets.append(psnr_db - op.predict(snr_est_db))
        if latency_ms is not None:
            old = st.latency_ms.get(op.model)
            st.latency_ms[op.model] = latency_ms if old is None else old + self.alpha * (latency_ms - old)
        if psnr_target is not None:
            st.recent_miss.append(psnr_db is None or psnr_db < psnr_target)

    def should_replan(self, st: LinkState, planned_snr_db: float) -> str | None:
        """A reason to re-plan, or None."""
        if st.misses >= self.miss_limit:
            return f"{st.misses} of the last {len(st.recent_miss)} images below the PSNR target"
        if st.snr_db is not None and abs(st.snr_db - planned_snr_db) > self.snr_jump_db:
            return f"SNR moved from {planned_snr_db:.1f} dB to {st.snr_db:.1f} dB"
        if st.since_plan >= self.relax_after:
            return f"periodic review after {st.since_plan} images"
        return None
