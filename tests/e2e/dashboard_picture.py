"""Draw the Grafana dashboard from real Prometheus results, laid out as its panels' grid (no Grafana
server can run here). tests/e2e/test_prometheus.py calls `draw` when STO_DASHBOARD_PICTURE names a
PNG path; matplotlib comes with the bench extras (`pip install -e '.[bench]'`).

`results` maps a panel id to one entry per target, in the panel's order: (target, series), where
series are Prometheus API results (`values` for range queries, `value` for instant ones).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Series = list[dict[str, Any]]
Results = dict[int, list[tuple[dict[str, Any], Series]]]

BACKGROUND, PANEL, TEXT, MUTED, GRID = "#111217", "#181b1f", "#d8d9da", "#8e8e8e", "#2c3235"
PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#fade2a", "#96d98d"]
ROW_UNITS = 30  # pixels of one grid row (Grafana draws them 30 px high)


def legend(target: dict[str, Any], metric: dict[str, str]) -> str:
    fmt = target.get("legendFormat") or ""
    if not fmt or fmt == "__auto":
        return ", ".join(f"{k}={v}" for k, v in sorted(metric.items()) if k != "__name__") or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt)


def human(value: float, unit: str | None) -> str:
    if value != value:  # NaN
        return "n/a"
    if unit == "percentunit":
        return f"{value * 100:.0f}%"
    if unit == "s":
        for size, suffix in ((86400, "d"), (3600, "h"), (60, "min")):
            if abs(value) >= size:
                return f"{value / size:.1f} {suffix}"
        return f"{value:.2g} s" if abs(value) < 10 else f"{value:.0f} s"
    return f"{value:g}" if abs(value) < 1e4 else f"{value:.3g}"


def draw(dashboard: dict[str, Any], results: Results, path: Path, subtitle: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dashboard["panels"])
    width_px, height_px = 1600, (bottom * ROW_UNITS) + 70
    fig = plt.figure(figsize=(width_px / 100, height_px / 100), dpi=100, facecolor=BACKGROUND)
    fig.text(0.008, 1 - 18 / height_px, dashboard["title"], color=TEXT, fontsize=15, weight="bold", va="center")
    if subtitle:
        fig.text(0.992, 1 - 18 / height_px, subtitle, color=MUTED, fontsize=9, ha="right", va="center")
    top_px, gap = 40, 4

    def box(pos: dict[str, int]) -> tuple[float, float, float, float]:
        left = pos["x"] / 24 * width_px + gap
        width = pos["w"] / 24 * width_px - 2 * gap
        top = top_px + pos["y"] * ROW_UNITS + gap
        height = pos["h"] * ROW_UNITS - 2 * gap
        return left / width_px, 1 - (top + height) / height_px, width / width_px, height / height_px

    for panel in dashboard["panels"]:
        left, low, width, height = box(panel["gridPos"])
        if panel["type"] == "row":
            fig.text(left, low + height / 2, panel["title"], color=TEXT, fontsize=12, weight="bold", va="center")
            continue
        frame = fig.add_axes((left, low, width, height), facecolor=PANEL)
        frame.set_xticks([])
        frame.set_yticks([])
        for spine in frame.spines.values():
            spine.set_color(GRID)
        title_h = 24 / height_px
        fig.text(left + 0.005, low + height - title_h / 2, panel["title"], color=TEXT, fontsize=10, va="center")
        # Room inside the panel for tick labels (wider on the left for bar names).
        margin_left = (130 if panel["type"] == "bargauge" else 48) / width_px
        margin_bottom = 22 / height_px
        inner = (
            left + margin_left,
            low + margin_bottom,
            width - margin_left - 10 / width_px,
            height - title_h - margin_bottom - 6 / height_px,
        )
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        entries = results.get(panel["id"], [])
        if panel["type"] == "stat":
            _stat(fig, (left, low, width, height - title_h), entries, unit, panel)
        elif panel["type"] == "bargauge":
            _bars(fig.add_axes(inner, facecolor=PANEL), entries, unit)
        else:
            _lines(fig.add_axes(inner, facecolor=PANEL), entries, unit, mdates)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, facecolor=BACKGROUND)
    plt.close(fig)
    return path


def _instant(series: Series) -> float:
    return float(series[0]["value"][1]) if series else float("nan")


def _stat(fig: Any, inner: tuple[float, float, float, float], entries: Any, unit: str | None, panel: Any) -> None:
    value = _instant(entries[0][1]) if entries else float("nan")
    steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps") or []
    color = PALETTE[0]
    for step in steps:
        if step.get("value") is None or value >= step["value"]:
            color = {"green": PALETTE[0], "red": PALETTE[4]}.get(step["color"], step["color"])
    left, low, width, height = inner
    fig.text(left + width / 2, low + height * 0.45, human(value, unit), color=color, fontsize=26, weight="bold",
             ha="center", va="center")  # fmt: skip


def _style(ax: Any) -> None:
    ax.tick_params(colors=MUTED, labelsize=7.5)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.grid(color=GRID, linewidth=0.6)
    ax.set_axisbelow(True)


def _bars(ax: Any, entries: Any, unit: str | None) -> None:
    labels, values = [], []
    for target, series in entries:
        for item in series:
            labels.append(legend(target, item["metric"]))
            values.append(float(item["value"][1]))
    _style(ax)
    ax.grid(axis="y", visible=False)
    positions = range(len(values))[::-1]
    ax.barh(list(positions), values, color=[PALETTE[i % len(PALETTE)] for i in range(len(values))], height=0.6)
    ax.set_yticks(list(positions), labels, color=TEXT, fontsize=8)
    for y, value in zip(positions, values, strict=True):
        ax.text(value, y, f" {human(value, unit)}", color=TEXT, fontsize=8, va="center")
    ax.set_xlim(0, (max(values) if values else 1) * 1.25 or 1)
    ax.xaxis.set_major_formatter(lambda v, _: human(v, unit))


def _lines(ax: Any, entries: Any, unit: str | None, mdates: Any) -> None:
    _style(ax)
    drawn = 0
    for target, series in entries:
        for item in series:
            points = [(datetime.fromtimestamp(float(t), UTC), float(v)) for t, v in item.get("values", ())]
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, color=PALETTE[drawn % len(PALETTE)], linewidth=1.4, label=legend(target, item["metric"]))
            drawn += 1
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    ax.yaxis.set_major_formatter(lambda v, _: human(v, unit))
    ax.set_ylim(bottom=0)
    if drawn:
        ax.legend(loc="upper left", fontsize=7, frameon=False, labelcolor=TEXT, ncol=2 if drawn > 4 else 1)


if __name__ == "__main__":
    import json
    import sys

    from prometheus_support import load_dashboard

    saved = json.loads(Path(sys.argv[1]).read_text())
    print(draw(load_dashboard(), {int(k): [tuple(e) for e in v] for k, v in saved.items()}, Path(sys.argv[2])))
