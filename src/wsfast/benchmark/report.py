"""The results as a person reads them: markdown tables and PNG charts."""

from __future__ import annotations

import os
from typing import Any, Optional

from . import c100k, fanout, sync
from ._common import import_module
from .runner import LABELS, SCENARIOS, installed, size_label

__all__ = ["markdown", "charts", "write"]

_ORDER = list(LABELS)


def _rate(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e4:
        return f"{value / 1e3:.0f}k"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def _spread(summary: dict[str, float]) -> str:
    """Half the min-max range as a share of the median."""
    median = summary["median"]
    if median <= 0:
        return ""
    return f" ±{(summary['max'] - summary['min']) / 2 / median:.0%}"


def _time(us: float) -> str:
    return f"{us / 1000:.1f} ms" if us >= 10000 else f"{us:.0f} µs"


def _cell(point: Optional[dict[str, Any]], kind: str) -> str:
    if point is None:
        return ""
    if point["status"] != "ok":
        return "failed"
    summary = point["summary"]
    ratio = point.get("ratio_to_ceiling")
    ratio_text = f" · {ratio:.2f}x" if ratio is not None and point["impl"] != "raw" else ""
    if kind == "rate":
        return f"{_rate(summary['msgs_per_s']['median'])}/s{_spread(summary['msgs_per_s'])}{ratio_text}"
    if kind == "cpu":
        cpu = summary.get("cpu_us_per_msg")
        if cpu is None:
            return "n/a"
        top = point.get("ceiling_cpu_us")
        return f"{cpu['median']:.1f} µs" + (f" ({cpu['median'] - top:+.1f})" if top is not None else "")
    if kind == "latency":
        return f"{_time(summary['p50_us']['median'])} / {_time(summary['p99_us']['median'])}"
    if kind == "broadcast":
        ms = summary["ms_to_last"]
        return f"{ms['median']:.1f} ms ({ms['min']:.1f}-{ms['max']:.1f}){ratio_text}"
    kb = summary["bytes_per_connection"]
    return f"{kb['median'] / 1000:.1f} KB ({kb['min'] / 1000:.1f}-{kb['max'] / 1000:.1f})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _cpu_line(points: list[dict[str, Any]], role: str) -> str:
    client = [p["summary"]["client_cpu"]["max"] for p in points if p["status"] == "ok" and "client_cpu" in p["summary"]]
    server = [p["summary"]["server_cpu"]["max"] for p in points if p["status"] == "ok" and "server_cpu" in p["summary"]]
    if not client:
        return ""
    if role == "server":
        busiest: dict[int, float] = {}
        for p in points:
            if p["status"] == "ok" and "client_cpu" in p["summary"]:
                busiest[p["size"]] = max(busiest.get(p["size"], 0.0), p["summary"]["client_cpu"]["max"])
        per_size = ", ".join(f"{size_label(size)} {share:.0%}" for size, share in sorted(busiest.items()))
        text = f"CPU share of the fixed client, at most: {per_size} of a core"
        if server:
            text += f" (servers under test: up to {max(server):.0%})"
        if max(client) >= 0.9:
            text += (
                ". Near 100 %, the client and the server share the bottleneck (loopback TCP costs both sides"
                " the same system calls, which the client cannot avoid): there the CPU time per round trip,"
                " not the message rate, ranks the servers"
            )
    else:
        text = f"CPU share of the fixed server: at most {max(server):.0%} of a core" if server else ""
        text += f" (clients under test: up to {max(client):.0%})"
    return text + "."


def markdown(results: dict[str, Any]) -> str:
    """The results as markdown: one table per scenario and event loop."""
    env = results["environment"]
    config = results["config"]
    wsfast = env["wsfast"]
    lines = [
        "# wsfast bench",
        "",
        f"`{results['command'] or 'wsfast bench'}`, {results['created']}, {results['elapsed_s']:.0f} s."
        f" wsfast {wsfast['version']} ({wsfast['codec']} codec), Python {env['python']} ({env['implementation']}),"
        f" {env['platform']}, {env['cpus']} CPUs; load average {env['load_average_start']} at the start,"
        f" {env['load_average_end']} at the end.",
    ]
    if any(p["scenario"] not in ("fanout", "sync", "c100k") for p in results["points"]):
        lines += [
            "",
            f"Each cell is the median of {config['runs']} runs of {config['duration']} s (after"
            f" {config['warmup']} s of warm-up), ± half their range, and the ratio to the raw TCP echo ceiling"
            f" of the same scenario, size and loop. Processes: {env['pinning']}; the fixed counterpart runs on"
            f" {env['counterpart_loop']}.",
        ]
    if results["skipped"]:
        lines += ["", "Skipped: " + "; ".join(f"{s['what']} ({s['reason']})" for s in results["skipped"]) + "."]
    points = results["points"]
    for name, scenario in SCENARIOS.items():
        for loop in config["loops"]:
            mine = [p for p in points if p["scenario"] == name and p["loop"] == loop]
            if not mine:
                continue
            if scenario.role == "fanout":
                lines += [""] + fanout.markdown(mine, config, f"{scenario.title} ({loop})")
                continue
            if scenario.role == "sync":
                continue  # below: its points are per placement, not per event loop
            if scenario.role == "c100k":
                lines += [""] + c100k.markdown(mine, config, f"{scenario.title} ({loop})", _ORDER)
                continue
            lines += ["", f"## {scenario.title} ({loop})", ""]
            if scenario.role in ("server", "client"):
                impls = sorted({p["impl"] for p in mine}, key=_ORDER.index)
                by_key = {(p["impl"], p["size"]): p for p in mine}
                sizes = sorted({p["size"] for p in mine})
                header = ["implementation"] + [size_label(s) for s in sizes]
                lines += ["Messages per second:", ""]
                rows = [[LABELS[i]] + [_cell(by_key.get((i, s)), "rate") for s in sizes] for i in impls]
                lines += _table(header, rows)
                lines += ["", "Round trip, p50 / p99:", ""]
                rows = [[LABELS[i]] + [_cell(by_key.get((i, s)), "latency") for s in sizes] for i in impls]
                lines += _table(header, rows)
                side = "client" if scenario.role == "client" else "server"
                lines += [
                    "",
                    f"CPU time of the {side} under test per round trip (in brackets: more than the ceiling):",
                    "",
                ]
                for p in mine:
                    top = by_key.get(("raw", p["size"]))
                    if p["impl"] != "raw" and top is not None and "cpu_us_per_msg" in top.get("summary", {}):
                        p["ceiling_cpu_us"] = top["summary"]["cpu_us_per_msg"]["median"]
                rows = [[LABELS[i]] + [_cell(by_key.get((i, s)), "cpu") for s in sizes] for i in impls]
                lines += _table(header, rows)
                cpu = _cpu_line(mine, scenario.role)
                if cpu:
                    lines += ["", cpu]
            else:
                kind = "broadcast" if scenario.role == "broadcast" else "memory"
                count = f"{mine[0]['connections']:,} connections"
                header = [
                    "implementation",
                    f"time until the last of {count} has it" if kind == "broadcast" else f"RSS growth / {count}",
                ]
                rows = [
                    [LABELS[p["impl"]], _cell(p, kind)] for p in sorted(mine, key=lambda p: _ORDER.index(p["impl"]))
                ]
                lines += _table(header, rows)
            failed = [p for p in mine if p["status"] != "ok" or p["note"]]
            for p in failed:
                lines.append(f"\n- {LABELS[p['impl']]} {size_label(p['size'])}: {p['note']}")
    synced = [p for p in points if p["scenario"] == "sync"]
    if synced:
        lines += [""] + sync.markdown(synced, config, SCENARIOS["sync"].title)
    descriptions = env.get("descriptions", {})
    if descriptions:
        lines += ["", "## Implementations", ""]
        lines += [f"- {key}: {value}" for key, value in sorted(descriptions.items())]
    return "\n".join(lines) + "\n"


def _ratio_bars(ax: Any, here: list[dict[str, Any]], impls: list[str], metric: str, label: str) -> None:
    """Grouped bars, one group per size: each implementation's median over the
    ceiling's (for CPU time, the ceiling's over the implementation's, so that
    higher is better in both), with the runs' min-max as error bars."""
    sizes = sorted({p["size"] for p in here})
    width = 0.8 / max(len(impls), 1)
    ceiling = {q["size"]: q["summary"].get(metric) for q in here if q["impl"] == "raw"}
    for k, impl in enumerate(impls):
        xs, ys, low, high = [], [], [], []
        for j, size in enumerate(sizes):
            p = next((q for q in here if q["impl"] == impl and q["size"] == size), None)
            top = ceiling.get(size)
            if p is None or top is None or metric not in p["summary"]:
                continue
            mine = p["summary"][metric]
            if metric == "cpu_us_per_msg":
                ratio, worst, best = (top["median"] / mine[key] for key in ("median", "max", "min"))
            else:
                ratio, worst, best = (mine[key] / top["median"] for key in ("median", "min", "max"))
            xs.append(j + (k - (len(impls) - 1) / 2) * width)
            ys.append(ratio)
            low.append(ratio - worst)
            high.append(best - ratio)
        ax.bar(xs, ys, width, yerr=[low, high], capsize=2, error_kw={"linewidth": 0.7}, label=LABELS[impl])
    ax.set_xticks(range(len(sizes)), [size_label(s) for s in sizes])
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylabel(f"{label}\n(median; bars: min-max of the runs)", fontsize=9)


def charts(results: dict[str, Any], directory: str) -> list[str]:
    """One PNG per scenario, one column per event loop: for request-response,
    msgs/s and CPU time per message as ratios to the ceiling, per size; for
    broadcast and memory, absolute figures. Returns the files written; needs
    matplotlib."""
    matplotlib = import_module("matplotlib")
    matplotlib.use("Agg")
    plt = import_module("matplotlib.pyplot")
    written = []
    points = [p for p in results["points"] if p["status"] == "ok"]
    loops = results["config"]["loops"]
    for name, scenario in SCENARIOS.items():
        mine = [p for p in points if p["scenario"] == name]
        if not mine:
            continue
        if scenario.role in ("sync", "c100k"):
            continue  # the tables say it all
        if scenario.role == "fanout":
            path = os.path.join(directory, f"{name}.png")
            loop = mine[0]["loop"]
            fanout.chart([p for p in mine if p["loop"] == loop], path, f"{scenario.title} ({loop})")
            written.append(path)
            continue
        panels = [loop for loop in loops if any(p["loop"] == loop for p in mine)]
        rated = scenario.role in ("server", "client")
        rows = 2 if rated else 1
        fig, axes = plt.subplots(rows, len(panels), figsize=(6.5 * len(panels), 4.2 * rows), squeeze=False)
        for column, loop in enumerate(panels):
            ax = axes[0][column]
            here = [p for p in mine if p["loop"] == loop]
            impls = sorted({p["impl"] for p in here}, key=_ORDER.index)
            if rated:
                side = "client" if scenario.role == "client" else "server"
                _ratio_bars(ax, here, impls, "msgs_per_s", "messages/s, ratio to the raw TCP echo")
                _ratio_bars(
                    axes[1][column],
                    here,
                    impls,
                    "cpu_us_per_msg",
                    f"raw echo's CPU time per message / the {side}'s\n(1.0: no CPU spent on WebSocket work)",
                )
                axes[1][column].set_title(f"CPU efficiency ({loop}): less sensitive to other load", fontsize=10)
            else:
                metric = "ms_to_last" if scenario.role == "broadcast" else "bytes_per_connection"
                scale = 1.0 if metric == "ms_to_last" else 1 / 1000
                values = []
                for impl in impls:
                    p = next(q for q in here if q["impl"] == impl)
                    values.append(p["summary"][metric]["median"] * scale)
                bars = ax.barh([LABELS[i] for i in impls], values, color=[f"C{k}" for k in range(len(impls))])
                ax.bar_label(bars, fmt="%.1f", padding=2, fontsize=8)
                ax.invert_yaxis()
                ax.set_xlabel("ms until the last client has it" if metric == "ms_to_last" else "KB per idle connection")
            ax.set_title(f"{scenario.title}\n({loop})", fontsize=10)
        handles, labels = axes[0][0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8)
            fig.subplots_adjust(bottom=0.25)
        fig.tight_layout(rect=(0, (0.12 / rows) if handles else 0, 1, 1))
        path = os.path.join(directory, f"{name}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write(results: dict[str, Any], directory: str) -> list[str]:
    """Write ``results.json``, ``results.md`` and the charts (or a note in
    the markdown that matplotlib is missing); return the paths written."""
    import json

    os.makedirs(directory, exist_ok=True)
    paths = []
    if installed("matplotlib"):
        pngs = charts(results, directory)
        results["charts"] = [os.path.basename(p) for p in pngs]
        paths += pngs
        extra = "\n## Charts\n\n" + "\n".join(f"![{name}]({name})" for name in results["charts"]) + "\n"
    else:
        results["charts"] = []
        note = {"what": "charts", "reason": "matplotlib not installed"}
        if note not in results["skipped"]:
            results["skipped"].append(note)
        extra = "\nNo charts: matplotlib not installed (`pip install 'wsfast[bench]'`).\n"
    md_path = os.path.join(directory, "results.md")
    with open(md_path, "w", encoding="utf-8") as f:
        f.write(markdown(results) + extra)
    json_path = os.path.join(directory, "results.json")
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    return [json_path, md_path, *paths]
