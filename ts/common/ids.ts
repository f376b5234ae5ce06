// Branded ids: a ComputeId cannot be passed where a WorkUnitId is expected.
import { randomUUID } from 'node:crypto';

declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

export type ComputeId = Brand<string, 'ComputeId'>;
export type WorkUnitId = Brand<string, 'WorkUnitId'>;
export type ServerId = Brand<string, 'ServerId'>;
export type OrcId = Brand<string, 'OrcId'>;
export type GroupId = Brand<string, 'GroupId'>;

export const newWorkUnitId = (): WorkUnitId => randomUUID() as WorkUnitId;
export const newServerId = (): ServerId => randomUUID() as ServerId;
export const newGroupId = (): GroupId => randomUUID() as GroupId;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
export const isUuid = (s: string): boolean => UUID.test(s);

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
export function asComputeId(s: string): ComputeId {
  if (!NAME.test(s)) throw new Error(`invalid compute id ${JSON.stringify(s)}: letters, digits, . _ - (max 63)`);
  return s as ComputeId;
}
