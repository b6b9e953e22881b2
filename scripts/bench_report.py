#!/usr/bin/env python3
"""Turns scripts/bench-compare.sh results (JSON lines, one per engine) into a Markdown table with
ratios to the best peer and an SVG plot of throughput vs batch size (no plotting library needed).

    python3 scripts/bench_report.py target/bench-compare/results.jsonl --svg out.svg
"""
import argparse
import json

COLORS = ["#d62728", "#ff7f0e", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf"]


def best(e, key):
    return max(r[key] for r in e["rows"])


def table(engines):
    peers = [e for e in engines if not e["engine"].startswith("nlpd")]
    ref = max(peers, key=lambda e: best(e, "sorted")) if peers else None
    lines = [
        "| engine | best throughput, corpus order / length-sorted (sent/s) | batch-1 latency | vs best peer |",
        "|---|---|---|---|",
    ]
    for e in engines:
        ratio = f"{best(e, 'sorted') / best(ref, 'sorted'):.2f}×" if ref else "n/a"
        lines.append(
            f"| {e['engine']} | {best(e, 'corpus_order'):.0f} / {best(e, 'sorted'):.0f} "
            f"| {e['latency_ms']:.2f} ms | {ratio} |"
        )
    if ref:
        lines.append(f"\nRatios: length-sorted throughput over {ref['engine']}'s.")
    batches = sorted({r["batch"] for e in engines for r in e["rows"]})
    lines.append("\n| engine | " + " | ".join(f"batch {b}" for b in batches) + " |")
    lines.append("|---|" + "---|" * len(batches))
    for e in engines:
        by = {r["batch"]: r for r in e["rows"]}
        cells = [f"{by[b]['corpus_order']:.0f} / {by[b]['sorted']:.0f}" if b in by else "" for b in batches]
        lines.append(f"| {e['engine']} | " + " | ".join(cells) + " |")
    e0 = engines[0]
    lines.append(
        f"\n{e0.get('sentences')} sentences, {e0.get('avg_tokens')} word pieces on average, "
        f"{e0.get('threads')} threads; cells: sent/s in corpus order / length-sorted."
    )
    return "\n".join(lines)


def svg(engines, path):
    w, h, ml, mr, mt, mb = 760, 420, 70, 250, 30, 50
    batches = sorted({r["batch"] for e in engines for r in e["rows"]})
    ymax = max(best(e, "sorted") for e in engines) * 1.1
    pw, ph = w - ml - mr, h - mt - mb

    def x(b):
        i = batches.index(b)
        return ml + (pw * i / max(1, len(batches) - 1))

    def y(v):
        return mt + ph - ph * v / ymax

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{ml}" y="18" font-size="14">Encoder throughput vs batch size (length-sorted batches)</text>']
    for k in range(6):
        v = ymax * k / 5
        out.append(f'<line x1="{ml}" y1="{y(v):.1f}" x2="{ml + pw}" y2="{y(v):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{ml - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.0f}</text>')
    for b in batches:
        out.append(f'<text x="{x(b):.1f}" y="{mt + ph + 18}" text-anchor="middle">{b}</text>')
    out.append(f'<text x="{ml + pw / 2}" y="{h - 10}" text-anchor="middle">batch size</text>')
    out.append(f'<text x="16" y="{mt + ph / 2}" transform="rotate(-90 16 {mt + ph / 2})" text-anchor="middle">sentences / s</text>')
    for i, e in enumerate(engines):
        c = COLORS[i % len(COLORS)]
        pts = " ".join(f"{x(r['batch']):.1f},{y(r['sorted']):.1f}" for r in sorted(e["rows"], key=lambda r: r["batch"]))
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{pts}"/>')
        for r in e["rows"]:
            out.append(f'<circle cx="{x(r["batch"]):.1f}" cy="{y(r["sorted"]):.1f}" r="3" fill="{c}"/>')
        ly = mt + 20 + i * 20
        out.append(f'<line x1="{ml + pw + 15}" y1="{ly - 4}" x2="{ml + pw + 35}" y2="{ly - 4}" stroke="{c}" stroke-width="2"/>')
        label = e["engine"].replace("&", "&amp;").replace("<", "&lt;")
        out.append(f'<text x="{ml + pw + 40}" y="{ly}" font-size="11">{label[:36]}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("results")
    ap.add_argument("--svg")
    a = ap.parse_args()
    engines = [json.loads(l) for l in open(a.results) if l.strip().startswith("{")]
    print(table(engines))
    if a.svg:
        svg(engines, a.svg)


if __name__ == "__main__":
    main()
