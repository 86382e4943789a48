#!/usr/bin/env python3
"""Print the wsfast codec benchmarks as markdown tables, with ratios.

Usage::

    python -m pytest bench --benchmark-only --benchmark-json=run1.json
    python bench/report.py run1.json [run2.json ...] [--vs websockets] [--matrix]

For each group (mask-new, mask-inplace, mask-pure, reader-chunked,
reader-whole, utf8) one table: per case (size), each implementation's median
time per call, its throughput (GB/s = 10^9 bytes/s; frames/s for the
readers) and its speed relative to the group's reference, measured in the
same run::

    speed vs ref = reference median / entry median

so 2.00x is twice as fast as the reference and 0.50x half as fast. The
"(by min)" column gives the same ratio from the fastest rounds, a check on
noise. Given several runs, each ratio is still taken within one run, and the
table shows the median over the runs, with their range. ``--vs NAME`` adds a
column relative to another entry (matched on a substring of its label, e.g.
``--vs websockets``); ``--matrix`` adds a compact case x implementation grid
of the ratios. Only the standard library is used.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from typing import Optional

GROUP_ORDER = ["mask-new", "mask-inplace", "mask-pure", "reader-chunked", "reader-whole", "utf8"]
GROUP_TITLES = {
    "mask-new": "Masking into new bytes (reference: bytes(bytearray) copy, the memory-bandwidth ceiling)",
    "mask-inplace": "In-place masking of a bytearray (reference: aiohttp _websocket_mask_cython)",
    "mask-pure": "Pure-Python masking (reference: wsproto XorMaskerSimple)",
    "reader-chunked": "Frame reading, ~2 MiB stream fed in 64 KiB chunks (reference: aiohttp compiled reader)",
    "reader-whole": "Frame reading, ~2 MiB stream fed in one call (reference: aiohttp compiled reader)",
    "utf8": "UTF-8 validation of valid text (reference: bytes.decode('utf-8'))",
}
# A ratio is flagged when its two estimates (median, min) or its runs disagree by more.
DISAGREE = 0.25

Key = tuple  # (group, case, impl)


def fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def fmt_rate(value: float, unit: str) -> str:
    for prefix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def fmt_ratio(ratio: Optional[float]) -> str:
    if ratio is None:
        return "–"
    return f"{ratio:.2f}x" if ratio < 100 else f"{ratio:.0f}x"


def load_run(path: str) -> tuple[dict, dict[Key, dict]]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    entries: dict[Key, dict] = {}
    for b in data.get("benchmarks", []):
        info = b.get("extra_info", {})
        if "impl" not in info:
            continue  # not one of ours
        stats = b["stats"]
        entries[(info["group"], info["case"], info["impl"])] = {
            **info,
            "median": stats["median"],
            "min": stats["min"],
            "iqr": stats.get("iqr", 0.0),
        }
    return data, entries


class Row:
    """One implementation in one case, over one or more runs."""

    def __init__(self, key: Key, runs: list[dict[Key, dict]], ref: Optional[Key]) -> None:
        present = [r for r in runs if key in r]
        self.info = present[0][key]
        self.median = statistics.median(r[key]["median"] for r in present)
        self.spread = statistics.median(r[key]["iqr"] / r[key]["median"] for r in present)
        both = [r for r in present if ref in r]
        self.ratios = [r[ref]["median"] / r[key]["median"] for r in both]
        self.min_ratios = [r[ref]["min"] / r[key]["min"] for r in both]
        self.ratio = statistics.median(self.ratios) if self.ratios else None
        self.min_ratio = statistics.median(self.min_ratios) if self.min_ratios else None

    def throughput(self) -> str:
        nbytes = self.info["bytes"] / self.median
        frames = self.info.get("frames")
        if frames:
            return f"{fmt_rate(frames / self.median, 'frames/s')} ({nbytes / 1e9:.3g} GB/s)"
        return f"{nbytes / 1e9:.3g} GB/s"

    def shaky(self) -> bool:
        if self.ratio is None or self.min_ratio is None:
            return False
        if abs(self.min_ratio / self.ratio - 1) > DISAGREE:
            return True
        return len(self.ratios) > 1 and max(self.ratios) / min(self.ratios) - 1 > DISAGREE


def header(datas: list[dict], out: list[str]) -> None:
    data = datas[0]
    m = data.get("machine_info", {})
    cpu = m.get("cpu", {}).get("brand_raw") or m.get("processor", "?")
    when = ", ".join(d.get("datetime", "?")[:19] for d in datas)
    out.append(f"# wsfast codec benchmarks ({len(datas)} run{'s' if len(datas) > 1 else ''}: {when})")
    out.append("")
    out.append(f"- machine: {cpu}; {m.get('system', '?')} {m.get('release', '')}; "
               f"{m.get('python_implementation', '?')} {m.get('python_version', '?')}")
    wsfast = m.get("wsfast")
    if wsfast:
        out.append(f"- wsfast: {', '.join(f'{k}={v}' for k, v in wsfast.items())}")
    peers = m.get("peers")
    if peers:
        out.append(f"- peers: {', '.join(f'{k} {v}' for k, v in peers.items())}")
    for d in datas:
        mi = d.get("machine_info", {})
        load = mi.get("loadavg_at_end")
        if load:
            line = f"- load average at the end of a run (1, 5, 15 min): {load}; {mi.get('cpu_count', '?')} CPUs"
            if load[1] > 1.5:
                line += (" — **other processes were busy during this run (the benchmark alone is"
                         " ~1.0): prefer ratios that hold in the (by min) column and across runs**")
            out.append(line)
    commit = data.get("commit_info", {})
    if commit.get("id"):
        dirty = " (dirty)" if commit.get("dirty") else ""
        out.append(f"- commit: {commit['id'][:12]}{dirty}")
    out.append("- median: per call; ± = IQR / median; throughput from the median (GB = 10^9 bytes)")
    out.append("- speed vs ref = reference median / entry median, within one run: >1 is faster than "
               "the group's reference. (by min) = the same ratio from the fastest rounds. "
               + ("Several runs: the median of the per-run ratios, [min–max] over the runs "
                  "(time columns: the median of the per-run figures). "
                  if len(datas) > 1 else "")
               + f"⚠ = the estimates disagree by more than {DISAGREE:.0%}: noise, re-run before quoting")
    out.append("")


def group_table(name: str, runs: list[dict[Key, dict]], vs: list[str], matrix: bool,
                out: list[str]) -> None:
    keys = {k for r in runs for k in r if k[0] == name}
    cases: dict[str, list[Key]] = defaultdict(list)
    order_of: dict[str, int] = {}
    impl_order: dict[str, int] = {}
    for k in keys:
        cases[k[1]].append(k)
        info = next(r[k] for r in runs if k in r)
        order_of[k[1]] = info["case_order"]
        impl_order[k[2]] = info["impl_order"]
    order = sorted(cases, key=lambda c: order_of[c])
    multi = len(runs) > 1

    out.append(f"## {name}: {GROUP_TITLES.get(name, '')}")
    out.append("")
    cols = ["case", "implementation", "median", "±", "throughput", "speed vs ref", "(by min)"]
    if multi:
        cols.append("runs")
    cols += [f"vs {v}" for v in vs]
    cols.append("note")
    right = {"median", "±", "throughput", "speed vs ref", "(by min)", "runs"}
    out.append("| " + " | ".join(cols) + " |")
    out.append("|" + "|".join("---:" if c in right or c.startswith("vs ") else "---" for c in cols) + "|")
    grid: dict[str, dict[str, Row]] = {}
    for case in order:
        ks = sorted(cases[case], key=lambda k: impl_order[k[2]])
        ref = next((k for k in ks if next(r[k] for r in runs if k in r).get("role") == "reference"), None)
        rows = {k[2]: Row(k, runs, ref) for k in ks}
        grid[case] = rows
        for k in ks:
            row = rows[k[2]]
            label = f"**{k[2]}** (ref)" if k == ref else k[2]
            cells = [
                case,
                label,
                fmt_time(row.median),
                f"{100 * row.spread:.0f}%",
                row.throughput(),
                fmt_ratio(row.ratio) + (" ⚠" if row.shaky() else ""),
                fmt_ratio(row.min_ratio),
            ]
            if multi:
                cells.append(f"[{min(row.ratios):.2f}–{max(row.ratios):.2f}]" if row.ratios else "–")
            for v in vs:
                other = next((impl for impl in sorted(rows, key=lambda i: impl_order[i])
                              if v.lower() in impl.lower()), None)
                if other is None:
                    cells.append("–")
                else:
                    per_run = [r[(name, case, other)]["median"] / r[k]["median"]
                               for r in runs if k in r and (name, case, other) in r]
                    cells.append(fmt_ratio(statistics.median(per_run)) if per_run else "–")
            cells.append(row.info.get("note", ""))
            out.append("| " + " | ".join(cells) + " |")
    out.append("")
    if matrix:
        names = sorted(impl_order, key=lambda i: impl_order[i])
        out.append("Speed vs ref, case x implementation:")
        out.append("")
        out.append("| case | " + " | ".join(names) + " |")
        out.append("|---|" + "---:|" * len(names))
        for case in order:
            out.append(f"| {case} | " + " | ".join(
                fmt_ratio(grid[case][n].ratio) if n in grid[case] else "–" for n in names) + " |")
        out.append("")
    if name == "mask-pure":
        crossover(grid, order, out)


def crossover(grid: dict[str, dict[str, Row]], order: list[str], out: list[str]) -> None:
    """Where bytes.translate overtakes int.from_bytes, and whether the fallback follows."""
    def pick(case: str, needle: str) -> Optional[Row]:
        return next((row for impl, row in grid[case].items() if needle in impl), None)

    rows = []
    for case in order:
        i, t, fb = pick(case, "int.from_bytes"), pick(case, "translate"), pick(case, "_fallback")
        if i and t:
            rows.append((case, i.info["bytes"], i.median / t.median, i.min_ratio and t.min_ratio
                         and t.min_ratio / i.min_ratio, fb.median / min(i.median, t.median) if fb else None))
    if not rows:
        return
    out.append("Crossover of the two pure methods (int.from_bytes XOR vs bytes.translate):")
    out.append("")
    out.append("| case | faster (by median) | int time / translate time | same, by min "
               "| fallback time / faster method's |")
    out.append("|---|---|---:|---:|---:|")
    for case, _, q, qmin, f in rows:
        faster = "translate" if q > 1 else "int.from_bytes"
        out.append(f"| {case} | {faster} | {q:.2f} | {'–' if not qmin else f'{qmin:.2f}'} "
                   f"| {'–' if f is None else f'{f:.2f}'} |")
    out.append("")
    # The crossover: the smallest size from which translate wins at every larger size.
    sizes = [(n, q) for _, n, q, _, _ in rows]
    start = None
    for idx in range(len(sizes)):
        if all(q > 1 for _, q in sizes[idx:]):
            start = idx
            break
    if start is None:
        out.append("bytes.translate does not win at every size from some point on: no crossover.")
    elif start == 0:
        out.append(f"bytes.translate is faster at every measured size (from {rows[0][0]}).")
    else:
        out.append(f"bytes.translate is faster from {rows[start][0]} up; int.from_bytes at "
                   f"{rows[start - 1][0]}: the crossover lies between them on this machine.")
    out.append("")


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("json", nargs="+", help="files written by pytest --benchmark-json=FILE")
    p.add_argument("--vs", action="append", default=[], metavar="NAME",
                   help="add a ratio column against the entry whose label contains NAME")
    p.add_argument("--matrix", action="store_true", help="add a case x implementation ratio grid")
    p.add_argument("--group", action="append", default=[], help="only these groups")
    args = p.parse_args(argv)
    loaded = [load_run(path) for path in args.json]
    datas = [d for d, _ in loaded]
    runs = [e for _, e in loaded]
    if not any(runs):
        print("no wsfast benchmarks in these files", file=sys.stderr)
        return 1
    out: list[str] = []
    header(datas, out)
    groups = {k[0] for r in runs for k in r}
    limit = datas[0].get("machine_info", {}).get("wsfast", {}).get("_fallback._INT_XOR_LIMIT")
    for name in sorted(groups, key=lambda g: (GROUP_ORDER.index(g) if g in GROUP_ORDER else 99, g)):
        if args.group and name not in args.group:
            continue
        group_table(name, runs, args.vs, args.matrix, out)
        if name == "mask-pure" and limit is not None:
            out.append(f"wsfast._fallback uses int.from_bytes up to _INT_XOR_LIMIT = {limit} bytes, "
                       "translate above.")
            out.append("")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
