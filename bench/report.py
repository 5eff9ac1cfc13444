"""Figures of one measurement window, and the side-by-side table."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

RELAYS = ("zhixing", "naive")
TARGET_CPU_N, TARGET_CPU = 100, 0.3  # % of a core per viewer at N=100
TARGET_FPS_N, TARGET_FPS = 200, 29.5  # every viewer at N=200
TARGET_JOIN_MS = 250.0  # late-joiner first decoded frame, median
TARGET_RSS_MB = 1.0  # RSS growth per viewer
LOADGEN_BUSY = 90.0  # % of its core(s): above this the load generator may be the limit
LOADGEN_LAG_MS = 100.0
FOREIGN_CPU = 10.0  # % of a core taken by other processes: figures disturbed
SOURCE_FPS = 29.0  # below this the publisher itself was slow or dropped


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


@dataclass
class Row:
    """One relay at one number of viewers (0: the publisher alone)."""

    viewers: int
    cpu: float  # % of one core
    cpu_system: float  # the part of it spent in the kernel (sending UDP, mostly)
    rss_mb: float
    source_fps: float
    bitrate: float  # the publisher's video RTP payload, bits/s
    reported_bitrate: float | None  # the relay's own ingress figure
    loadgen_cpu: float  # % of one core, every load-generator process together
    loadgen_lag_ms: float  # largest event-loop delay in a load-generator process
    fps: list[float] = field(default_factory=list)  # per viewer
    connected: int = 0
    foreign_cpu: float = 0.0  # % of the relay's core used by anything but the relay
    loadgen_cores_busy: float = 0.0  # % busy of the load generator's core(s), anyone's use
    loadgen_foreign: float = 0.0  # % of a core taken from the load generator's core(s)
    attempts: int = 1  # windows measured (more when the relay's core was contended)
    lost: int = 0  # video packets the counting viewers missed (raw) or damaged frames (aiortc)
    latency_ms: float | None = None
    joins_ms: list[float | None] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cpu_per_viewer: float | None = None  # marginal: (cpu - cpu at N=0) / N
    rss_per_viewer: float | None = None  # (rss - rss at N=0) / N

    @property
    def fps_min(self) -> float | None:
        return min(self.fps) if self.fps else None

    @property
    def fps_median(self) -> float | None:
        return median(self.fps)

    @property
    def join_ms(self) -> float | None:
        return median(self.joins_ms)

    @property
    def contention(self) -> float:
        """The most any other process took of the relay's or the load generator's core."""
        return max(self.foreign_cpu, self.loadgen_foreign)

    @property
    def limit(self) -> str:
        """What bounds this window's figures, as far as can be told."""
        if self.source_fps < SOURCE_FPS:
            return "SOURCE"
        if self.contention > FOREIGN_CPU:
            return "CONTENDED"
        if self.loadgen_cpu > LOADGEN_BUSY or self.loadgen_lag_ms > LOADGEN_LAG_MS:
            return "LOADGEN"
        return "ok"

    def relative_to(self, baseline: Row) -> None:
        if self.viewers > 0:
            self.cpu_per_viewer = (self.cpu - baseline.cpu) / self.viewers
            self.rss_per_viewer = (self.rss_mb - baseline.rss_mb) / self.viewers


@dataclass
class RelayResult:
    name: str
    baseline: Row | None = None
    rows: dict[int, Row] = field(default_factory=dict)
    saturated_at: int | None = None
    error: str | None = None
    log_notes: list[str] = field(default_factory=list)


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b <= 0:
        return "-"
    return f"{a / b:.0f}x" if a / b >= 10 else f"{a / b:.1f}x"


def _table(header: Sequence[tuple[str, int]], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [w for _, w in header]
    lines = ["  ".join(title.rjust(w) for title, w in header)]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True))
              for row in rows]
    return lines


def _cell(result: RelayResult, n: int, cell: Callable[[Row], str]) -> str:
    row = result.rows.get(n)
    if row is not None:
        return cell(row)
    if result.saturated_at is not None and n > result.saturated_at:
        return "saturated"
    if result.error is None:
        return "not run"
    return "interrupted" if result.error == "interrupted" else "failed"


def _fps(row: Row) -> str:
    return f"{_f(row.fps_min)}/{_f(row.fps_median)}"


def main_table(results: dict[str, RelayResult], ns: Sequence[int]) -> list[str]:
    zx, nv = results["zhixing"], results["naive"]
    header = [("N", 4), ("CPU% zx", 7), ("CPU% nv", 9), ("%/v zx", 6), ("%/v nv", 6),
              ("nv/zx", 5), ("fps zx min/med", 14), ("fps nv min/med", 14), ("RSS zx", 6),
              ("RSS nv", 6), ("MB/v zx", 7), ("MB/v nv", 7), ("nv/zx", 5), ("join zx", 7),
              ("join nv", 7), ("lat zx", 6), ("lat nv", 6), ("limit zx", 9), ("limit nv", 9)]
    blank = [""] * len(header)
    rows: list[list[str]] = []
    if zx.baseline or nv.baseline:
        row = list(blank)
        row[0] = "0"
        for result, cpu, rss in ((zx, 1, 8), (nv, 2, 9)):
            if result.baseline is not None:
                row[cpu], row[rss] = _f(result.baseline.cpu), _f(result.baseline.rss_mb, 0)
        rows.append(row)
    for n in ns:
        z, v = zx.rows.get(n), nv.rows.get(n)
        rows.append([
            str(n),
            _cell(zx, n, lambda r: _f(r.cpu)), _cell(nv, n, lambda r: _f(r.cpu)),
            _cell(zx, n, lambda r: _f(r.cpu_per_viewer, 2)),
            _cell(nv, n, lambda r: _f(r.cpu_per_viewer, 2)),
            _ratio(v.cpu_per_viewer if v else None, z.cpu_per_viewer if z else None),
            _cell(zx, n, _fps), _cell(nv, n, _fps),
            _cell(zx, n, lambda r: _f(r.rss_mb, 0)), _cell(nv, n, lambda r: _f(r.rss_mb, 0)),
            _cell(zx, n, lambda r: _f(r.rss_per_viewer, 2)),
            _cell(nv, n, lambda r: _f(r.rss_per_viewer, 2)),
            _ratio(v.rss_per_viewer if v else None, z.rss_per_viewer if z else None),
            _cell(zx, n, lambda r: _f(r.join_ms, 0)), _cell(nv, n, lambda r: _f(r.join_ms, 0)),
            _cell(zx, n, lambda r: _f(r.latency_ms, 0)),
            _cell(nv, n, lambda r: _f(r.latency_ms, 0)),
            _cell(zx, n, lambda r: r.limit), _cell(nv, n, lambda r: r.limit),
        ])
    zr, vr = list(zx.rows.values()), list(nv.rows.values())
    z_cpu, v_cpu = median(r.cpu_per_viewer for r in zr), median(r.cpu_per_viewer for r in vr)
    z_rss, v_rss = median(r.rss_per_viewer for r in zr), median(r.rss_per_viewer for r in vr)
    row = list(blank)
    row[0], row[3], row[4], row[5] = "med", _f(z_cpu, 2), _f(v_cpu, 2), _ratio(v_cpu, z_cpu)
    row[6] = "  " + _f(median(r.fps_median for r in zr))
    row[7] = "  " + _f(median(r.fps_median for r in vr))
    row[10], row[11], row[12] = _f(z_rss, 2), _f(v_rss, 2), _ratio(v_rss, z_rss)
    row[13] = _f(median(j for r in zr for j in r.joins_ms), 0)
    row[14] = _f(median(j for r in vr for j in r.joins_ms), 0)
    row[15] = _f(median(r.latency_ms for r in zr), 0)
    row[16] = _f(median(r.latency_ms for r in vr), 0)
    rows.append(row)
    return _table(header, rows)


def health_table(results: dict[str, RelayResult]) -> list[str]:
    header = [("relay", 7), ("N", 4), ("tries", 5), ("conn", 7), ("src fps", 7),
              ("src kbps", 8), ("rly kbps", 8), ("rly sys%", 8), ("lost", 5), ("other%", 6),
              ("lg CPU%", 7), ("lg other%", 9), ("lag ms", 6), ("limit", 9)]
    rows: list[list[str]] = []
    for name in RELAYS:
        result = results[name]
        all_rows = ([result.baseline] if result.baseline else []) + list(result.rows.values())
        for row in all_rows:
            rows.append([
                name, str(row.viewers), str(row.attempts), f"{row.connected}/{row.viewers}",
                _f(row.source_fps), _f(row.bitrate / 1000, 0),
                _f(None if row.reported_bitrate is None else row.reported_bitrate / 1000, 0),
                _f(row.cpu_system), str(row.lost), _f(row.foreign_cpu), _f(row.loadgen_cpu),
                _f(row.loadgen_foreign), _f(row.loadgen_lag_ms, 0), row.limit,
            ])
    return _table(header, rows)


HEALTH_LEGEND = """\
conn = viewers connected; src = what the publisher sent (video); rly kbps = the relay's own
ingress figure; rly sys% = the part of the relay's CPU% spent in the kernel; lost = video
packets the counting viewers never got; other% = share of the relay's core used by other
processes; lg CPU% = all load-generator processes, % of one core; lg other% = what other
processes took of the load generator's core(s); lag = worst event-loop delay in a
load-generator process."""


def loadgen_summary(results: dict[str, RelayResult]) -> list[str]:
    """Whether the load generator ever bounded the figures, and its capacity."""
    rows = [r for result in results.values() for r in result.rows.values()]
    if not rows:
        return []
    bound = sorted({f"N={r.viewers}" for r in rows if r.limit == "LOADGEN"})
    busiest = max(r.loadgen_cpu for r in rows)
    lag = max(r.loadgen_lag_ms for r in rows)
    verdict = ("it bounded the figures at " + ", ".join(bound)) if bound else (
        "it never bounded the figures")
    lines = [f"Load generator: {verdict} (at most {busiest:.0f} % of a core, event loops "
             f"lagged at most {lag:.0f} ms)."]
    # Its cost per counting viewer, from zhixing rows where every viewer got every frame.
    full = sorted((r for r in results["zhixing"].rows.values()
                   if (r.fps_min or 0) >= TARGET_FPS), key=lambda r: r.viewers)
    if len(full) >= 2 and full[-1].viewers > full[0].viewers:
        first, last = full[0], full[-1]
        per_viewer = (last.loadgen_cpu - first.loadgen_cpu) / (last.viewers - first.viewers)
        if per_viewer > 0:
            capacity = first.viewers + (LOADGEN_BUSY - first.loadgen_cpu) / per_viewer
            lines.append(
                f"  A counting viewer at full rate costs it {per_viewer:.2f} % of a core, on "
                f"top of {first.loadgen_cpu:.0f} % for the publisher and the verifier: its "
                f"core holds about {capacity:.0f} viewers receiving every frame.")
    return lines


def targets(zx: RelayResult) -> list[str]:
    lines = ["Targets for zhixing (shown, not asserted):"]

    def line(what: str, target: str, row: Row | None, value: str, met: bool | None,
             needs_ok: bool = False) -> None:
        verdict = "not run" if met is None else ("met" if met else "MISSED")
        if needs_ok and row is not None and met is not None and row.limit != "ok":
            verdict += f" (inconclusive: {row.limit})"
        at = f" (N={row.viewers})" if row is not None else ""
        lines.append(f"  {what + at:<38} {target:<22} {value:<14} {verdict}")

    row = zx.rows.get(TARGET_CPU_N)
    cpu = row.cpu_per_viewer if row else None
    line("CPU per viewer", f"<= {TARGET_CPU} % of a core", row,
         f"{_f(cpu, 2)} %", None if cpu is None else cpu <= TARGET_CPU, needs_ok=True)
    row = zx.rows.get(TARGET_FPS_N)
    fps = row.fps_min if row else None
    line("slowest viewer", f">= {TARGET_FPS} fps", row, f"{_f(fps)} fps",
         None if fps is None else fps >= TARGET_FPS, needs_ok=True)
    joins = [j for r in zx.rows.values() for j in r.joins_ms]
    join = median(joins)
    line(f"late-joiner first frame, {len(joins)} joins", f"<= {TARGET_JOIN_MS:.0f} ms median",
         None, f"{_f(join, 0)} ms", None if join is None else join <= TARGET_JOIN_MS)
    row = zx.rows[max(zx.rows)] if zx.rows else None
    rss = row.rss_per_viewer if row else None
    line("RSS growth per viewer", f"<= {TARGET_RSS_MB:.0f} MB", row, f"{_f(rss, 2)} MB",
         None if rss is None else rss <= TARGET_RSS_MB)
    return lines


LEGEND = """\
zx = zhixing relay, nv = naive (stock aiortc MediaRelay: decode once, encode per viewer).
N = viewers (counting viewers + 1 decoding verifier); N=0: the publisher alone.
CPU% = relay process CPU over the window, % of one core (pinned to its own core).
%/v = (CPU% at N - CPU% at 0) / N, the marginal cost of a viewer; nv/zx = ratio naive/zhixing.
fps min/med = delivered video frames/s per viewer (slowest / median); above the source's
  30 fps a viewer was catching up on frames the relay had fallen behind with.
RSS = relay resident memory, MB; MB/v = (RSS at N - RSS at 0) / N.
join = late joiner: offer sent -> first decoded frame, ms (median of the joins at that N).
lat = capture -> decoded at the verifier viewer, ms (median over the window).
med = median over the N measured; limit = what bounds the row (see the second table)."""


def render(results: dict[str, RelayResult], ns: Sequence[int], notes: Sequence[str]) -> str:
    lines = main_table(results, ns)
    lines += ["", LEGEND, "", "Load generator and source (limit: which side bounds the figures):"]
    lines += health_table(results)
    lines += ["", HEALTH_LEGEND, "", *loadgen_summary(results)]
    lines += ["", *targets(results["zhixing"])]
    for result in results.values():
        if result.error:
            lines.append(f"{result.name}: stopped early: {result.error}")
        for row in result.rows.values():
            for error in row.errors[:3]:
                lines.append(f"{result.name} N={row.viewers}: {error}")
            if len(row.errors) > 3:
                lines.append(f"{result.name} N={row.viewers}: ... {len(row.errors) - 3} more")
        for note in result.log_notes:
            lines.append(f"{result.name} log: {note}")
    lines += list(notes)
    return "\n".join(lines)
