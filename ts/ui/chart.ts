// Draws a laid-out statechart as SVG, and updates which state is current, done or failed without
// redrawing: the layout depends only on the machine, the statuses on the live record.
import type { ELK } from 'elkjs/lib/elk-api.js';
import { svg } from './dom.js';
import { layoutChart, type ChartLayout, type PlacedEdge } from './layout.js';
import type { NodeView } from './model.js';
import type { Chart, EdgeKind } from './statechart.js';

export const LABEL_FONT = '600 13px ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace';

let engine: Promise<ELK> | undefined;
/** The layout engine is a large chunk: loaded on the first page that draws a chart. */
export function layoutEngine(): Promise<ELK> {
  engine ??= import('elkjs/lib/elk.bundled.js').then((m) => {
    // A CommonJS module: depending on interop its constructor is the default or the default's default.
    const d = m.default as unknown as { default?: unknown };
    const Elk = (typeof d === 'function' ? d : d.default) as new () => ELK;
    return new Elk();
  });
  return engine;
}

let canvas: CanvasRenderingContext2D | null | undefined;
function measure(text: string): number {
  canvas ??= document.createElement('canvas').getContext('2d');
  if (!canvas) return text.length * 8;
  canvas.font = LABEL_FONT;
  return Math.ceil(canvas.measureText(text).width);
}

export async function layOut(chart: Chart, direction: 'DOWN' | 'RIGHT' = 'DOWN'): Promise<ChartLayout> {
  return layoutChart(chart, await layoutEngine(), { direction, measure });
}

export interface DrawnChart {
  element: SVGSVGElement;
  update(views: ReadonlyMap<string, NodeView>, tooltips?: ReadonlyMap<string, string>): void;
}

let uid = 0;

function pathOf(e: PlacedEdge): string {
  return e.points.map((p, i) => `${i === 0 ? 'M' : 'L'}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(' ');
}

const KINDS: EdgeKind[] = ['always', 'done', 'error', 'event'];

export function drawChart(layout: ChartLayout, title: string): DrawnChart {
  const id = `chart${++uid}`;
  const pad = 24; // room for the initial-state dot left of the first node
  const defs = svg(
    'defs',
    {},
    ...KINDS.map((k) =>
      svg(
        'marker',
        { id: `${id}-arrow-${k}`, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse', class: `arrow arrow-${k}` },
        svg('path', { d: 'M0,0 L10,5 L0,10 z' }),
      ),
    ),
  );
  const edgeEls = new Map<string, SVGGElement>();
  const edges = layout.edges.map((e) => {
    const g = svg(
      'g',
      { class: `edge edge-${e.kind}`, 'data-edge': e.id, 'data-source': e.source, 'data-target': e.target },
      svg('path', { d: pathOf(e), 'marker-end': `url(#${id}-arrow-${e.kind})` }),
      e.label &&
        svg(
          'g',
          { class: 'edge-label' },
          svg('rect', { x: e.label.x - 2, y: e.label.y - 1, width: e.label.width + 4, height: e.label.height + 2, rx: 3 }),
          svg('text', { x: e.label.x + e.label.width / 2, y: e.label.y + e.label.height - 3, 'text-anchor': 'middle' }, e.label.text),
        ),
    );
    edgeEls.set(e.id, g);
    return g;
  });
  const nodeEls = new Map<string, { g: SVGGElement; detail: SVGTextElement; tip: SVGTitleElement }>();
  const nodes = layout.nodes.map((n) => {
    const cx = n.x + n.width / 2;
    const detail = svg('text', { class: 'node-detail', x: cx, y: n.y + n.height - 13, 'text-anchor': 'middle' });
    const tip = svg('title', {}, n.id);
    const g = svg(
      'g',
      {
        class: `node node-${n.kind}`,
        'data-state-node': n.id,
        'data-kind': n.kind,
        'data-status': 'pending',
        'data-current': 'false',
      },
      tip,
      svg('rect', { class: 'node-box', x: n.x, y: n.y, width: n.width, height: n.height, rx: n.kind === 'final' ? 16 : 8 }),
      n.kind === 'final' &&
        svg('rect', { class: 'node-inner', x: n.x + 4, y: n.y + 4, width: n.width - 8, height: n.height - 8, rx: 12 }),
      n.initial && svg('circle', { class: 'initial-dot', cx: n.x - 14, cy: n.y + n.height / 2, r: 5 }),
      n.initial && svg('path', { class: 'initial-line', d: `M${n.x - 9},${n.y + n.height / 2} L${n.x},${n.y + n.height / 2}` }),
      svg('text', { class: 'node-name', x: cx, y: n.y + 21, 'text-anchor': 'middle' }, n.id),
      detail,
    );
    nodeEls.set(n.id, { g, detail, tip });
    return g;
  });
  const element = svg(
    'svg',
    {
      class: 'statechart',
      id,
      viewBox: `${-pad} 0 ${layout.width + pad} ${layout.height}`,
      width: layout.width + pad,
      height: layout.height,
      role: 'img',
      'aria-label': title,
    },
    svg('title', {}, title),
    defs,
    svg('g', { class: 'edges' }, ...edges),
    svg('g', { class: 'nodes' }, ...nodes),
  );

  const update: DrawnChart['update'] = (views, tooltips) => {
    for (const [name, el] of nodeEls) {
      const v = views.get(name) ?? { status: 'pending', current: false, detail: null };
      el.g.setAttribute('data-status', v.status);
      el.g.setAttribute('data-current', String(v.current));
      el.detail.textContent = v.detail ?? '';
      el.tip.textContent = tooltips?.get(name) ?? (v.detail ? `${name}: ${v.detail}` : name);
    }
    // The transitions the unit actually took: from a completed state to one it reached.
    const reached = (s: string | undefined) => s !== undefined && s !== 'pending';
    const firstReached = layout.edges.find((e) => e.kind === 'always' && reached(views.get(e.target)?.status));
    for (const e of layout.edges) {
      const from = views.get(e.source)?.status;
      const to = views.get(e.target)?.status;
      const taken =
        e.kind === 'always'
          ? e === firstReached && from === 'done'
          : e.kind === 'error'
            ? from === 'failed' && reached(to)
            : from === 'done' && reached(to);
      edgeEls.get(e.id)?.setAttribute('data-taken', String(taken));
    }
  };
  return { element, update };
}
