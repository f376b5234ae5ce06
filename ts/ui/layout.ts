// Lays a Chart out with ELK's layered (Sugiyama) algorithm: node positions, orthogonal edge routes
// and edge-label positions all come from the layout engine, none are placed by hand.
import type { ELK, ElkExtendedEdge, ElkNode } from 'elkjs/lib/elk-api.js';
import type { Chart, ChartEdge, ChartNode } from './statechart.js';

export interface Point {
  x: number;
  y: number;
}

export interface PlacedNode extends ChartNode {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface PlacedEdge extends ChartEdge {
  points: Point[];
  label: { text: string; x: number; y: number; width: number; height: number } | null;
}

export interface ChartLayout {
  width: number;
  height: number;
  nodes: PlacedNode[];
  edges: PlacedEdge[];
}

export interface LayoutOptions {
  direction?: 'DOWN' | 'RIGHT';
  /** Width in px of a text in the label font; the browser measures, tests estimate. */
  measure?: (text: string) => number;
  /** Room under a node's name for its detail line (a duration, an error code). */
  nodeHeight?: number;
  minNodeWidth?: number;
}

export const LABEL_HEIGHT = 14;
const estimate = (text: string): number => text.length * 7;

export async function layoutChart(chart: Chart, elk: ELK, o: LayoutOptions = {}): Promise<ChartLayout> {
  const measure = o.measure ?? estimate;
  const nodeHeight = o.nodeHeight ?? 50;
  const minWidth = o.minNodeWidth ?? 140;
  const graph: ElkNode = {
    id: 'root',
    layoutOptions: {
      'elk.algorithm': 'layered',
      'elk.direction': o.direction ?? 'DOWN',
      'elk.edgeRouting': 'ORTHOGONAL',
      'elk.layered.nodePlacement.strategy': 'NETWORK_SIMPLEX',
      'elk.layered.spacing.nodeNodeBetweenLayers': '46',
      'elk.spacing.nodeNode': '34',
      'elk.spacing.edgeLabel': '4',
      'elk.spacing.edgeNode': '16',
      'elk.edgeLabels.placement': 'CENTER',
      'elk.layered.edgeLabels.sideSelection': 'SMART_DOWN',
      'elk.padding': '[top=16,left=16,bottom=16,right=16]',
      'elk.json.edgeCoords': 'ROOT',
    },
    children: chart.nodes.map((n) => ({
      id: n.id,
      width: Math.max(minWidth, measure(n.id) + 40),
      height: nodeHeight,
    })),
    edges: chart.edges.map(
      (e): ElkExtendedEdge => ({
        id: e.id,
        sources: [e.source],
        targets: [e.target],
        labels: [{ id: `${e.id}#label`, text: e.labels.join(', '), width: measure(e.labels.join(', ')) + 6, height: LABEL_HEIGHT }],
      }),
    ),
  };
  const out = await elk.layout(graph);
  const placed = new Map((out.children ?? []).map((c) => [c.id, c]));
  const nodes = chart.nodes.map((n): PlacedNode => {
    const p = placed.get(n.id);
    if (!p || p.x === undefined || p.y === undefined) throw new Error(`layout lost state ${n.id}`);
    return { ...n, x: p.x, y: p.y, width: p.width ?? minWidth, height: p.height ?? nodeHeight };
  });
  const routed = new Map((out.edges ?? []).map((e) => [e.id, e as ElkExtendedEdge]));
  const edges = chart.edges.map((e): PlacedEdge => {
    const r = routed.get(e.id);
    const points: Point[] = [];
    for (const s of r?.sections ?? []) points.push(s.startPoint, ...(s.bendPoints ?? []), s.endPoint);
    const l = r?.labels?.[0];
    const label =
      l && l.x !== undefined && l.y !== undefined
        ? { text: l.text ?? '', x: l.x, y: l.y, width: l.width ?? 0, height: l.height ?? LABEL_HEIGHT }
        : null;
    return { ...e, points, label };
  });
  return { width: out.width ?? 0, height: out.height ?? 0, nodes, edges };
}
