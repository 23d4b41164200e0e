/**
 * Who may create an alias (spec "Server admin style permissions", Synapse's create_association): an application
 * service only inside its alias namespace; anyone else only outside every exclusive alias namespace (M_EXCLUSIVE).
 */
import { MatrixError } from '../api/errors.js';
import type { AppServiceRegistry } from './registration.js';

export function checkAliasClaim(
  registry: AppServiceRegistry | undefined,
  actor: { userId: string; appServiceId?: string | undefined },
  alias: string,
): void {
  if (!registry) return;
  const as = actor.appServiceId !== undefined ? registry.byId(actor.appServiceId) : undefined;
  if (as) {
    if (!registry.isInterestedInAlias(as, alias))
      throw new MatrixError('M_EXCLUSIVE', 'This application service has not reserved this kind of alias');
    return;
  }
  const owner = registry.exclusiveAliasOwner(alias);
  // The owner's sender user may use its own namespace also through an ordinary access token.
  if (owner && owner.senderUserId !== actor.userId)
    throw new MatrixError('M_EXCLUSIVE', 'This alias is reserved by an application service');
}
