/**
 * Loads an in-process app's entry module. From the sources (`npm start`, tests) the whole portal
 * runs under tsx, so a plain import() takes .ts and .js alike. The production build is plain
 * JavaScript with no loader: there a TypeScript app is compiled on its own import through tsx's
 * scoped API, which transforms that module tree only and registers nothing process-wide.
 */
const PORTAL_IS_COMPILED = !import.meta.url.endsWith('.ts');

export async function importAppModule(url: string): Promise<unknown> {
  const typescript = /\.[mc]?ts(\?|$)/.test(url);
  if (!PORTAL_IS_COMPILED || !typescript) return import(url);
  const { tsImport } = await import('tsx/esm/api');
  return tsImport(url, import.meta.url);
}
