"""The trend chart of /report and the digest, as PNG bytes: NPS by week as promoters,
passives and detractors stacked (shares of the week's answers) under the NPS line; for a
survey without NPS, its main metric by week. Pure and blocking (matplotlib renders on the
CPU): call it off the event loop, e.g. `await asyncio.to_thread(trend_png, ...)`. Built
on a Figure of its own, not pyplot: pyplot's global figure registry is not thread-safe,
and two reports may render at once in two worker threads."""

from __future__ import annotations

import io

from bot.services.metrics import Group
from bot.services.report_text import headline, main_metric

_LABELS = {"csat": "CSAT, % satisfied", "ces": "CES, mean", "cli": "CLI, mean"}


def trend_png(title: str, groups: list[Group], metrics: set[str]) -> bytes | None:
    """The chart of weekly `groups` (compute's, group_by="week"); None when there is
    nothing to draw (no answers, or no scored metric)."""
    metric = main_metric(metrics)
    weeks = [group for group in groups if metric and headline(group, metric) is not None]
    if metric is None or not weeks:
        return None
    labels = [group.key.split("-", 1)[1] for group in weeks]  # "W09": the year is in the title
    x = range(len(weeks))
    # Imported here: matplotlib costs every process a second at start, most never chart.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), dpi=100)
    axes = figure.subplots()
    try:
        if metric == "nps":
            shares = {kind: [100 * getattr(g.nps, kind) / g.nps.total for g in weeks]
                      for kind in ("detractors", "passives", "promoters")}
            bottom = [0.0] * len(weeks)
            for kind, colour in (("detractors", "#d9534f"), ("passives", "#c8c8c8"),
                                 ("promoters", "#5cb85c")):
                axes.bar(x, shares[kind], bottom=bottom, color=colour, label=kind, width=0.7)
                bottom = [b + s for b, s in zip(bottom, shares[kind], strict=True)]
            axes.set_ylim(0, 100)
            axes.set_ylabel("% of answers")
            line = axes.twinx()
            line.plot(x, [g.nps.score or 0.0 for g in weeks], color="#1f3b73", marker="o",
                      linewidth=2, label="NPS")
            line.set_ylim(-100, 100)
            line.set_ylabel("NPS")
            handles = axes.get_legend_handles_labels()
            more = line.get_legend_handles_labels()
            axes.legend(handles[0] + more[0], handles[1] + more[1], loc="upper left",
                        fontsize=8, ncol=4)
        else:
            axes.plot(x, [headline(g, metric) or 0.0 for g in weeks], color="#1f3b73", marker="o",
                      linewidth=2)
            axes.set_ylabel(_LABELS[metric])
            if metric == "csat":
                axes.set_ylim(0, 100)
        axes.set_xticks(list(x), labels, rotation=45 if len(weeks) > 8 else 0, fontsize=8)
        axes.set_title(title)
        figure.tight_layout()
        out = io.BytesIO()
        figure.savefig(out, format="png")
        return out.getvalue()
    finally:
        figure.clear()  # nothing registers it anywhere: dropping it frees it
