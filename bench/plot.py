"""Plots "batch_size rate" lines as a small self-contained SVG (no plotting library needed)."""
import sys

rows = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
W, H, L, R, T, B = 640, 400, 80, 20, 40, 60
xs = [r[0] for r in rows]
ys = [r[1] for r in rows]
import math
lx = [math.log10(x) for x in xs]
x0, x1 = min(lx), max(lx)
y1 = max(ys) * 1.1
def px(x): return L + (math.log10(x) - x0) / ((x1 - x0) or 1) * (W - L - R)
def py(y): return H - B - y / y1 * (H - T - B)
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{W/2}" y="22" text-anchor="middle" font-size="15">order_cache ingest rate against batch size</text>',
       f'<line x1="{L}" y1="{H-B}" x2="{W-R}" y2="{H-B}" stroke="black"/>',
       f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H-B}" stroke="black"/>',
       f'<text x="{W/2}" y="{H-15}" text-anchor="middle">batch size (messages per transaction, log scale)</text>',
       f'<text x="18" y="{H/2}" text-anchor="middle" transform="rotate(-90 18 {H/2})">orders / s</text>']
for i in range(6):
    y = y1 * i / 5
    out.append(f'<line x1="{L-4}" y1="{py(y):.1f}" x2="{W-R}" y2="{py(y):.1f}" stroke="#ddd"/>')
    out.append(f'<text x="{L-8}" y="{py(y)+4:.1f}" text-anchor="end">{y:,.0f}</text>')
for x in xs:
    out.append(f'<text x="{px(x):.1f}" y="{H-B+18}" text-anchor="middle">{x:g}</text>')
pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in rows)
out.append(f'<polyline points="{pts}" fill="none" stroke="#2457c5" stroke-width="2"/>')
for x, y in rows:
    out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="#2457c5"/>')
    out.append(f'<text x="{px(x):.1f}" y="{py(y)-10:.1f}" text-anchor="middle">{y:,.0f}</text>')
out.append("</svg>")
open(sys.argv[2], "w").write("\n".join(out))
