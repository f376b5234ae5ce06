// How `quark api` faces the network: HTTPS when given a certificate; plain HTTP only on loopback
// unless the operator insists (--insecure); on a loopback bind, only requests naming a loopback
// Host are answered (a web page that rebinds its own name to 127.0.0.1 still sends its own Host).
import { readFileSync } from 'node:fs';
import { isLoopbackBind, loopbackHosts } from './guard.js';

export interface SurfaceOptions {
  host: string;
  port: number;
  tlsCert?: string;
  tlsKey?: string;
  insecure?: boolean;
  /** More Host values to accept (a name this machine is reached by). */
  extraHosts?: readonly string[];
}

export interface Surface {
  tls?: { cert: Buffer; key: Buffer };
  allowedHosts: Set<string> | null;
  /** Said once at start, loudly. */
  warnings: string[];
  scheme: 'http' | 'https';
}

export class SurfaceRefused extends Error {}

/** Decides the surface; throws SurfaceRefused with the reason and the fix. Reads the PEM files given. */
export function planSurface(o: SurfaceOptions, read: (f: string) => Buffer = (f) => readFileSync(f)): Surface {
  if (!!o.tlsCert !== !!o.tlsKey) throw new SurfaceRefused('--tls-cert and --tls-key go together');
  const tls = o.tlsCert && o.tlsKey ? { cert: read(o.tlsCert), key: read(o.tlsKey) } : undefined;
  const loopback = isLoopbackBind(o.host);
  const warnings: string[] = [];
  if (!loopback && !tls) {
    if (!o.insecure) {
      throw new SurfaceRefused(
        `refusing to serve plain HTTP on ${o.host}: bearer tokens would cross the network in the clear. ` +
          'Give --tls-cert and --tls-key, bind 127.0.0.1, or pass --insecure to do it anyway.',
      );
    }
    warnings.push(`INSECURE: serving plain HTTP on ${o.host}:${o.port}; every token sent to it can be read on the network (--insecure)`);
  }
  let allowedHosts: Set<string> | null = null;
  if (loopback) allowedHosts = loopbackHosts(o.port, o.extraHosts ?? []);
  else if (o.extraHosts && o.extraHosts.length > 0) allowedHosts = new Set(o.extraHosts.flatMap((h) => [h.toLowerCase(), `${h.toLowerCase()}:${o.port}`]));
  return { tls, allowedHosts, warnings, scheme: tls ? 'https' : 'http' };
}
