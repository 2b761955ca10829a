/** oidc-provider's internal AsyncLocalStorage (see provider-als.ts for why the portal touches it). */
declare module 'oidc-provider/lib/helpers/als.js' {
  import type { AsyncLocalStorage } from 'node:async_hooks';
  const als: AsyncLocalStorage<unknown>;
  export default als;
}
