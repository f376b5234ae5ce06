// What a lifecycle function answers: the next record, or a refusal that says why (a code a caller
// can act on, and a message a person can read). Refusals are values, not exceptions: most writers
// meet them in ordinary races (the record moved on) and simply leave the record alone.

export interface Refusal {
  ok: false;
  code: string;
  message: string;
}

export type Transition<R> = { ok: true; next: R } | Refusal;

export const accept = <R>(next: R): Transition<R> => ({ ok: true, next });
export const refuse = (code: string, message: string): Refusal => ({ ok: false, code, message });

/** For a writer to whom a refusal can only mean a bug: the next record, or an error saying why. */
export function must<R>(t: Transition<R>): R {
  if (!t.ok) throw new Error(`refused transition (${t.code}): ${t.message}`);
  return t.next;
}
