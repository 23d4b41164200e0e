/**
 * Client transaction ids are idempotent per (user, device, request path), as in Synapse: the same txnId used for a
 * message in room A and one in room B names two different requests. The stored id carries that scope.
 */
const SEP = '\u001f';

export function scopedTxnId(scope: string, txnId: string): string {
  return `${scope}${SEP}${txnId}`;
}

/** The txnId the client sent, as echoed in unsigned.transaction_id. */
export function clientTxnId(stored: string): string {
  const i = stored.indexOf(SEP);
  return i < 0 ? stored.replace(/^redact:/, '') : stored.slice(i + 1);
}
