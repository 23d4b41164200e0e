/**
 * Fault injection for the crash and fault tests. Disarmed unless the process runs with HEARTH_FAULT_INJECTION=1
 * (no configuration key reaches it) and a test armed a point: then the next write at that point runs a statement
 * that fails in the database, in the middle of the transaction, exactly as a real database error would.
 */
import { sql, type Transaction } from 'kysely';
import type { Database } from '../storage/schema.js';

export type FaultPoint = 'persist-event';

const armed = new Map<FaultPoint, number>();

/** Makes the next `times` writes at `point` fail. Throws unless fault injection is enabled by the environment. */
export function armFault(point: FaultPoint, times = 1): void {
  if (process.env.HEARTH_FAULT_INJECTION !== '1') throw new Error('fault injection is disabled');
  armed.set(point, times);
}

export async function injectFault(point: FaultPoint, trx: Transaction<Database>): Promise<void> {
  if (armed.size === 0 || process.env.HEARTH_FAULT_INJECTION !== '1') return;
  const left = armed.get(point) ?? 0;
  if (left <= 0) return;
  if (left === 1) armed.delete(point);
  else armed.set(point, left - 1);
  await sql`SELECT * FROM hearth_injected_fault`.execute(trx);
}
