"""Plots bench/scale's points as a small self-contained SVG (no plotting library needed).

Usage: plot_scale.py POINTS SVG [NOTE]. POINTS has tab-separated lines
"orders budget ready_s rss_mib note" (# starts a comment; "-" for a value
not measured). Two panels, RSS at ready and seconds to ready, both log-log
against the number of orders, a line for each budget. A run that failed or
was skipped is a cross with its reason: where the server exited, at the
seconds and the highest RSS seen until then; where it never started, at
the top of the panel. NOTE goes under the title (where the data comes from).
"""
import math
import re
import sys
import textwrap
from html import escape

COLOURS = ["#2457c5", "#d9730d", "#2a9d55", "#9b3fb5"]
# White around a label, so that lines under it do not cross its letters.
HALO = 'paint-order="stroke" stroke="white" stroke-width="3"'
UNITS = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def number(s):
    return None if s in ("-", "") else float(s)


def budget_mib(budget):
    """The budget in MiB, or None for unlimited and auto. What follows the
    first word ("256MiB zstd") names the run, not the budget."""
    m = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", budget.split(" ")[0])
    if not m or m.group(2).lower() not in UNITS:
        return None
    return int(m.group(1)) * UNITS[m.group(2).lower()] / 2**20


def orders_label(n):
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:g}{suffix}"
    return f"{n:g}"


def value_label(v, unit):
    return f"{v:,.0f} {unit}" if v >= 100 else f"{v:.3g} {unit}"


def read(path):
    rows = []
    for line in open(path):
        if not line.strip() or line.startswith("#"):
            continue
        orders, budget, ready, rss, note = (line.rstrip("\n").split("\t") + [""] * 5)[:5]
        rows.append({"orders": float(orders), "budget": budget, "ready": number(ready),
                     "rss": number(rss), "note": note or "ok"})
    return rows


def decades(lo, hi, steps=(1, 2, 5)):
    """Ticks at steps × powers of ten within lo..hi (both > 0); every
    multiple where that gives fewer than three."""
    ticks = [m * 10**e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
             for m in steps if lo <= m * 10**e <= hi]
    if len(ticks) < 3 and steps != tuple(range(1, 10)):
        return decades(lo, hi, tuple(range(1, 10)))
    return ticks


def panel(out, rows, budgets, key, unit, title, x0, w, top, h, xr, extra_lines):
    """One log-log panel at (x0, top) of size w × h."""
    L, B = 70, 50
    pw, ph = w - L - 20, h - B - 30
    left, bottom = x0 + L, top + 30 + ph
    ys = [r[key] for r in rows if r[key]] + [v for v, _ in extra_lines]
    y_lo, y_hi = (min(ys) / 1.6, max(ys) * 1.6) if ys else (0.1, 10)
    xl, xh = xr

    def px(x):
        return left + (math.log10(x) - math.log10(xl)) / (math.log10(xh) - math.log10(xl)) * pw

    def py(y):
        return bottom - (math.log10(y) - math.log10(y_lo)) / (math.log10(y_hi) - math.log10(y_lo)) * ph

    out.append(f'<text x="{left + pw / 2}" y="{top + 18}" text-anchor="middle" font-size="14">{escape(title)}</text>')
    for t in decades(y_lo, y_hi):
        out.append(f'<line x1="{left}" y1="{py(t):.1f}" x2="{left + pw}" y2="{py(t):.1f}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{left - 6}" y="{py(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    # A grid line at each power of ten, a label at each size measured.
    for t in (10**e for e in range(math.ceil(math.log10(xl)), math.floor(math.log10(xh)) + 1)):
        out.append(f'<line x1="{px(t):.1f}" y1="{top + 30}" x2="{px(t):.1f}" y2="{bottom}" stroke="#e4e4e4"/>')
    for t in sorted({r["orders"] for r in rows}):
        out.append(f'<line x1="{px(t):.1f}" y1="{bottom}" x2="{px(t):.1f}" y2="{bottom + 4}" stroke="black"/>')
        out.append(f'<text x="{px(t):.1f}" y="{bottom + 16}" text-anchor="middle">{orders_label(t)}</text>')
    out.append(f'<line x1="{left}" y1="{bottom}" x2="{left + pw}" y2="{bottom}" stroke="black"/>')
    out.append(f'<line x1="{left}" y1="{top + 30}" x2="{left}" y2="{bottom}" stroke="black"/>')
    out.append(f'<text x="{left + pw / 2}" y="{bottom + 36}" text-anchor="middle">stored orders (log scale)</text>')
    out.append(f'<text x="{x0 + 16}" y="{top + 30 + ph / 2}" text-anchor="middle" '
               f'transform="rotate(-90 {x0 + 16} {top + 30 + ph / 2})">{escape(unit)} (log scale)</text>')
    for v, label in extra_lines:
        out.append(f'<line x1="{left}" y1="{py(v):.1f}" x2="{left + pw}" y2="{py(v):.1f}" '
                   f'stroke="#888" stroke-dasharray="5,4"/>')
        out.append(f'<text x="{left + 6}" y="{py(v) + 15:.1f}" fill="#666" {HALO}>{escape(label)}</text>')
    # At each size, the highest value's label goes above its point, the
    # others' below, so that close values do not write over each other.
    highest = {}
    for r in rows:
        if r["note"] == "ok" and r[key]:
            highest[r["orders"]] = max(highest.get(r["orders"], 0), r[key])
    failed_at = {}  # labels of failed runs drawn at each size, stacked
    for i, budget in enumerate(budgets):
        colour = COLOURS[i % len(COLOURS)]
        mine = sorted((r for r in rows if r["budget"] == budget), key=lambda r: r["orders"])
        good = [r for r in mine if r["note"] == "ok" and r[key]]
        if len(good) > 1:
            pts = " ".join(f"{px(r['orders']):.1f},{py(r[key]):.1f}" for r in good)
            out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for r in good:
            x, y = px(r["orders"]), py(r[key])
            dy = 14
            if highest.get(r["orders"]) == r[key]:
                dy = -7
                del highest[r["orders"]]  # a tie: the next one goes below
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>')
            out.append(f'<text x="{x + 7:.1f}" y="{y + dy:.1f}" fill="{colour}" {HALO}>'
                       f'{escape(value_label(r[key], unit.split()[0]))}</text>')
        for r in mine:
            if r["note"] == "ok":
                continue
            x = px(r["orders"])
            y = py(r[key]) if r[key] else top + 40 + 14 * i
            out.append(f'<path d="M{x - 6:.1f},{y - 6:.1f}L{x + 6:.1f},{y + 6:.1f}M{x - 6:.1f},{y + 6:.1f}'
                       f'L{x + 6:.1f},{y - 6:.1f}" stroke="{colour}" stroke-width="2.5"/>')
            lines = textwrap.wrap(f"{budget}: {r['note']}", 38)[:4]
            stacked = failed_at.get(r["orders"], 0)
            failed_at[r["orders"]] = stacked + len(lines)
            ly = y + 4 - 6 * (len(lines) - 1) + 13 * stacked * (-1 if y > top + h / 2 else 1)
            out.append(f'<text x="{x - 9:.1f}" y="{ly:.1f}" text-anchor="end" '
                       f'fill="{colour}" font-size="11" {HALO}>')
            for j, line in enumerate(lines):
                out.append(f'<tspan x="{x - 9:.1f}" dy="{12 if j else 0}">{escape(line)}</tspan>')
            out.append("</text>")


def main():
    rows = read(sys.argv[1])
    note = sys.argv[3] if len(sys.argv) > 3 else ""
    budgets = list(dict.fromkeys(r["budget"] for r in rows))
    xs = [r["orders"] for r in rows] or [1, 10]
    xr = (min(xs) / 3, max(xs) * 3)
    contracts = {m * 1.25 + 128: f"contract for {b.split(' ')[0]}: {m * 1.25 + 128:,.0f} MiB"
                 for b in budgets if (m := budget_mib(b))}
    contracts = sorted(contracts.items())
    W, H, top = 1250, 470, 56
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="16">order_cache after a restart: '
           f'RSS and time to ready against stored orders</text>',
           f'<text x="{W / 2}" y="40" text-anchor="middle" fill="#555">{escape(note)}</text>']
    panel(out, rows, budgets, "rss", "MiB RSS at ready", "RSS at ready", 0, W / 2, top, H - top - 30, xr, contracts)
    panel(out, rows, budgets, "ready", "s to /readyz", "seconds from start to ready", W / 2, W / 2, top,
          H - top - 30, xr, [])
    x = 70
    for i, budget in enumerate(budgets):
        colour = COLOURS[i % len(COLOURS)]
        first, _, rest = budget.partition(" ")
        label = ("no budget (unlimited)" if first == "unlimited" else f"budget {first}") + (f", {rest}" if rest else "")
        out.append(f'<line x1="{x}" y1="{H - 14}" x2="{x + 24}" y2="{H - 14}" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{x + 30}" y="{H - 10}">{escape(label)}</text>')
        x += 60 + 7 * len(label)
    out.append(f'<text x="{x}" y="{H - 10}" fill="#555">× not ready (or not started), with why</text>')
    out.append("</svg>")
    with open(sys.argv[2], "w") as f:
        f.write("\n".join(out) + "\n")


main()
