// DOM building without HTML strings: every text goes in through a Text node or an attribute
// value, so names and error messages (which users and libvirt supply) can never become markup.
// Nothing in ts/ui assigns innerHTML; a unit test keeps it that way.

export type Child = Node | string | number | null | undefined | false;
type AttrValue = string | number | boolean | null | undefined;
export type Attrs = Record<string, AttrValue | EventListener>;

const SVG_NS = 'http://www.w3.org/2000/svg';

function apply(el: Element, attrs: Attrs | undefined, children: Child[]): void {
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (typeof v === 'function') el.addEventListener(k.replace(/^on/, ''), v);
    else if (v === true) el.setAttribute(k, '');
    else if (v !== false && v !== null && v !== undefined) el.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === 'object' ? c : document.createTextNode(String(c)));
  }
}

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attrs, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  apply(el, attrs, children);
  return el;
}

export function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs?: Attrs, ...children: Child[]): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs, children);
  return el;
}

/** Replaces an element's children. */
export function fill(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  apply(el, undefined, children);
}

/** An in-app link; ids are URL-encoded, so an odd id cannot escape its path segment. */
export const link = (path: string, ...children: Child[]): HTMLAnchorElement => h('a', { href: path }, ...children);
export const unitHref = (id: string): string => `/ui/work-units/${encodeURIComponent(id)}`;
export const serverHref = (id: string): string => `/ui/servers/${encodeURIComponent(id)}`;

export const badge = (state: string): HTMLSpanElement => h('span', { class: `badge badge-${state.toLowerCase().replace(/[^a-z]/g, '')}`, 'data-badge': state }, state);

export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '—';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86_400)} d ago`;
}

export const shortId = (id: string): string => id.slice(0, 8);
