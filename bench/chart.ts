/**
 * An SVG line chart of handoffs per second against the number of contenders, one line per lock, one panel per
 * etcd topology. The y axis is logarithmic: the floor and the slowest lock are two orders of magnitude apart.
 * Hand-written SVG: no dependency, and it renders on GitHub as an image.
 */

export interface Series {
  label: string;
  /** Handoffs per second at each K, in the order of the chart's K values. */
  values: number[];
}

export interface Panel {
  title: string;
  series: Series[];
}

const COLORS = ['#7f7f7f', '#1f77b4', '#2ca02c', '#d62728', '#9467bd', '#ff7f0e', '#8c564b'];
const WIDTH = 420;
const HEIGHT = 300;
const MARGIN = { left: 56, right: 16, top: 34, bottom: 42 };

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Decades that cover `values`: from the power of ten at or below the smallest to the one at or above the largest. */
function decades(values: number[]): { low: number; high: number } {
  const positive = values.filter((value) => Number.isFinite(value) && value > 0);
  if (positive.length === 0) return { low: 0, high: 1 };
  const low = Math.floor(Math.log10(Math.min(...positive)));
  const high = Math.max(low + 1, Math.ceil(Math.log10(Math.max(...positive))));
  return { low, high };
}

function panelSvg(panel: Panel, ks: number[], offsetX: number): string {
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const { low, high } = decades(panel.series.flatMap((series) => series.values));
  const x = (i: number) => offsetX + MARGIN.left + (ks.length === 1 ? plotW / 2 : (i * plotW) / (ks.length - 1));
  const y = (value: number) => MARGIN.top + plotH - ((Math.log10(value) - low) / (high - low)) * plotH;
  const parts: string[] = [
    `<text x="${offsetX + WIDTH / 2}" y="18" text-anchor="middle" font-weight="bold">${escape(panel.title)}</text>`,
  ];
  for (let exponent = low; exponent <= high; exponent++) {
    const value = 10 ** exponent;
    parts.push(
      `<line x1="${offsetX + MARGIN.left}" x2="${offsetX + WIDTH - MARGIN.right}" y1="${y(value)}" y2="${y(value)}" stroke="#ddd"/>`,
      `<text x="${offsetX + MARGIN.left - 6}" y="${y(value) + 4}" text-anchor="end">${Math.round(value)}</text>`,
    );
  }
  ks.forEach((k, i) => {
    parts.push(`<text x="${x(i)}" y="${HEIGHT - MARGIN.bottom + 16}" text-anchor="middle">${k}</text>`);
  });
  parts.push(
    `<text x="${offsetX + MARGIN.left + plotW / 2}" y="${HEIGHT - 8}" text-anchor="middle">contenders (K)</text>`,
    `<text transform="translate(${offsetX + 14} ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle">handoffs / s (log)</text>`,
  );
  panel.series.forEach((series, s) => {
    const color = COLORS[s % COLORS.length]!;
    const points = series.values
      .map((value, i) =>
        Number.isFinite(value) && value > 0 ? `${x(i).toFixed(1)},${y(value).toFixed(1)}` : undefined,
      )
      .filter((point) => point !== undefined);
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${points.join(' ')}"/>`);
    for (const point of points) {
      const [cx, cy] = point.split(',');
      parts.push(`<circle cx="${cx}" cy="${cy}" r="3" fill="${color}"/>`);
    }
  });
  return parts.join('\n');
}

export function handoffChart(ks: number[], panels: Panel[]): string {
  const labels = [...new Set(panels.flatMap((panel) => panel.series.map((series) => series.label)))];
  const legendY = HEIGHT + 8;
  const legend = labels.map((label, i) => {
    const color = COLORS[i % COLORS.length]!;
    const lx = 16 + (i % 3) * 280;
    const ly = legendY + Math.floor(i / 3) * 18;
    return `<rect x="${lx}" y="${ly}" width="12" height="12" fill="${color}"/><text x="${lx + 18}" y="${ly + 10}">${escape(label)}</text>`;
  });
  const height = legendY + Math.ceil(labels.length / 3) * 18 + 8;
  // Keep each lock's colour the same in every panel.
  const colored = panels.map((panel) => ({
    ...panel,
    series: labels.map((label) => panel.series.find((series) => series.label === label) ?? { label, values: [] }),
  }));
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH * panels.length}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...colored.map((panel, i) => panelSvg(panel, ks, i * WIDTH)),
    ...legend,
    '</svg>',
    '',
  ].join('\n');
}
