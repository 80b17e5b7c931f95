/**
 * Turns the raw per-repeat figures into median [min–max] summaries, paired ratios, goal
 * verdicts, a Markdown report and an SVG chart (hand-written, no chart dependency).
 */

/** Figures of one server in one repeat, by metric key. */
export type Sample = Record<string, number>;

/** Every repeat: server name → figures. */
export type Repeats = Record<string, Sample>[];

export interface Summary {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function summarize(values: readonly number[]): Summary | undefined {
  const finite = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b);
  if (finite.length === 0) return undefined;
  const mid = finite.length >> 1;
  const median =
    finite.length % 2 ? (finite[mid] as number) : ((finite[mid - 1] as number) + (finite[mid] as number)) / 2;
  return { median, min: finite[0] as number, max: finite[finite.length - 1] as number, n: finite.length };
}

/** Summary of one metric of one server over every repeat. */
export const figure = (repeats: Repeats, server: string, key: string) =>
  summarize(repeats.map((repeat) => repeat[server]?.[key] ?? Number.NaN));

/** A ratio (or difference) of two figures, paired within each repeat. */
export interface RatioDef {
  id: string;
  label: string;
  num: [string, string];
  den: [string, string];
  /** `ratio` (default) divides, `diff` subtracts. */
  kind?: 'ratio' | 'diff';
}

export const paired = (repeats: Repeats, def: RatioDef) =>
  summarize(
    repeats.map((repeat) => {
      const a = repeat[def.num[0]]?.[def.num[1]] ?? Number.NaN;
      const b = repeat[def.den[0]]?.[def.den[1]] ?? Number.NaN;
      return def.kind === 'diff' ? a - b : a / b;
    }),
  );

export interface GoalDef {
  text: string;
  /** A ratio id, or `server:metric` for a plain figure. */
  of: string;
  op: '<=' | '>=';
  limit: number;
  unit?: string;
}

export interface GoalResult extends GoalDef {
  value: Summary | undefined;
  verdict: 'pass' | 'miss' | 'n/a';
}

export function judge(repeats: Repeats, ratios: readonly RatioDef[], goals: readonly GoalDef[]): GoalResult[] {
  return goals.map((goal) => {
    const ratio = ratios.find((def) => def.id === goal.of);
    let value: Summary | undefined;
    if (ratio) value = paired(repeats, ratio);
    else {
      const [server, key] = goal.of.split(':') as [string, string];
      value = figure(repeats, server, key);
    }
    const verdict = !value
      ? 'n/a'
      : (goal.op === '<=' ? value.median <= goal.limit : value.median >= goal.limit)
        ? 'pass'
        : 'miss';
    return { ...goal, value, verdict };
  });
}

// ---- formatting ------------------------------------------------------------------------

export function fmt(value: number, unit = ''): string {
  if (!Number.isFinite(value)) return '–';
  const abs = Math.abs(value);
  let text: string;
  if (unit === '/s' || unit === 'req/s') {
    text =
      abs >= 1e6
        ? `${(value / 1e6).toFixed(2)} M`
        : abs >= 1e3
          ? `${(value / 1e3).toFixed(abs >= 1e5 ? 0 : 1)} k`
          : value.toFixed(0);
    return `${text}${unit === 'req/s' ? '' : ''}`.trim();
  }
  if (unit === 'B') return abs >= 1024 ? `${(value / 1024).toFixed(1)} KB` : `${value.toFixed(0)} B`;
  text = abs >= 100 ? value.toFixed(0) : abs >= 10 ? value.toFixed(1) : abs >= 1 ? value.toFixed(2) : value.toFixed(3);
  return unit ? `${text} ${unit}` : text;
}

export function fmtSummary(summary: Summary | undefined, unit = ''): string {
  if (!summary) return '–';
  if (summary.n === 1) return fmt(summary.median, unit);
  return `${fmt(summary.median, unit)} [${fmt(summary.min, unit)}–${fmt(summary.max, unit)}]`;
}

export interface Column {
  title: string;
  key: string;
  unit: string;
}

export function table(
  repeats: Repeats,
  servers: readonly { name: string; label: string }[],
  columns: readonly Column[],
): string {
  const rows = servers
    .map((server) => ({ server, cells: columns.map((column) => figure(repeats, server.name, column.key)) }))
    .filter((row) => row.cells.some((cell) => cell !== undefined));
  if (rows.length === 0) return '';
  const head = `| server | ${columns.map((column) => column.title).join(' | ')} |`;
  const rule = `|---|${columns.map(() => '---:').join('|')}|`;
  const body = rows.map(
    (row) =>
      `| ${row.server.label} | ${row.cells.map((cell, i) => fmtSummary(cell, columns[i]?.unit ?? '')).join(' | ')} |`,
  );
  return [head, rule, ...body].join('\n');
}

// ---- chart -----------------------------------------------------------------------------

export interface ChartPanel {
  title: string;
  unit: string;
  bars: { label: string; value: Summary | undefined; highlight: boolean }[];
}

const escapeXml = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Horizontal bar panels side by side; bars show the median, whiskers the min–max. */
export function chartSvg(title: string, panels: readonly ChartPanel[]): string {
  const panelWidth = 300;
  const labelWidth = 150;
  const barHeight = 18;
  const gap = 6;
  const top = 50;
  const rows = Math.max(...panels.map((panel) => panel.bars.length));
  const height = top + rows * (barHeight + gap) + 40;
  const width = labelWidth + panels.length * (panelWidth + 20) + 10;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="10" y="18" font-size="14" font-weight="bold">${escapeXml(title)}</text>`,
  ];
  const labels = panels[0]?.bars.map((bar) => bar.label) ?? [];
  labels.forEach((label, row) => {
    const y = top + row * (barHeight + gap) + barHeight / 2 + 4;
    out.push(`<text x="${labelWidth - 6}" y="${y}" text-anchor="end">${escapeXml(label)}</text>`);
  });
  panels.forEach((panel, index) => {
    const x0 = labelWidth + index * (panelWidth + 20);
    const max = Math.max(...panel.bars.map((bar) => bar.value?.max ?? 0), 1e-9);
    const scale = (panelWidth - 70) / max;
    out.push(`<text x="${x0}" y="${top - 12}" font-weight="bold">${escapeXml(panel.title)}</text>`);
    out.push(`<line x1="${x0}" y1="${top - 4}" x2="${x0}" y2="${height - 30}" stroke="#999"/>`);
    panel.bars.forEach((bar, row) => {
      const y = top + row * (barHeight + gap);
      if (!bar.value) {
        out.push(`<text x="${x0 + 4}" y="${y + barHeight / 2 + 4}" fill="#999">n/a</text>`);
        return;
      }
      const w = Math.max(1, bar.value.median * scale);
      const fill = bar.highlight ? '#e36209' : '#8c959f';
      out.push(`<rect x="${x0}" y="${y}" width="${w.toFixed(1)}" height="${barHeight}" fill="${fill}"/>`);
      if (bar.value.n > 1) {
        const lo = x0 + bar.value.min * scale;
        const hi = x0 + bar.value.max * scale;
        const mid = y + barHeight / 2;
        out.push(
          `<path d="M${lo.toFixed(1)} ${mid}H${hi.toFixed(1)}M${lo.toFixed(1)} ${mid - 4}V${mid + 4}M${hi.toFixed(1)} ${mid - 4}V${mid + 4}" stroke="#222" stroke-width="1"/>`,
        );
      }
      out.push(
        `<text x="${(x0 + Math.max(w, bar.value.max * scale) + 4).toFixed(1)}" y="${y + barHeight / 2 + 4}">${escapeXml(fmt(bar.value.median, panel.unit))}</text>`,
      );
    });
  });
  out.push(
    `<text x="10" y="${height - 10}" fill="#555">Bars: median over repeats; whiskers: min–max. Orange: hono-agent-ws.</text>`,
    '</svg>',
  );
  return `${out.join('\n')}\n`;
}
