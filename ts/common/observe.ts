// Where the ZooKeeper client and the libvirt wrapper report what they did, without knowing who
// listens: ts/common/metrics.ts sets these when a process loads it; unset, nothing is measured.
export type Outcome = string;

export const observers: {
  /** A ZooKeeper request answered (or failed) after `seconds`; outcome 'ok' or the error code. */
  zkRequest?: (op: string, seconds: number, outcome: Outcome) => void;
  /** A session moved between connection states (undefined: not yet connected, or closed). */
  zkState?: (from: string | undefined, to: string | undefined) => void;
  /** A libvirt call answered (or failed) after `seconds`. */
  libvirtCall?: (call: string, seconds: number, outcome: Outcome) => void;
} = {};
