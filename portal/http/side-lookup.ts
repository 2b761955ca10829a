/** How long a page waits for a side lookup before leaving it out. */
export const SIDE_LOOKUP_MS = 2_000;

/**
 * A lookup a page can do without (the launcher's access requests, the 403 page's "Pending"): its
 * result, or `fallback` when it fails or takes too long, so a slow database never holds the page.
 */
export async function sideLookup<T>(lookup: () => Promise<T>, fallback: T, onFailure: (err: unknown) => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${SIDE_LOOKUP_MS} ms`)), SIDE_LOOKUP_MS)));
  try {
    return await Promise.race([lookup(), late]);
  } catch (err) {
    onFailure(err);
    return fallback;
  } finally {
    clearTimeout(timer);
  }
}
