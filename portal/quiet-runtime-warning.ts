/**
 * oidc-provider 9 prints "Unsupported runtime" on every start under Node 20, its policy being
 * "current LTS only". Atrium supports Node 20.19+ and 22 (README, "Requirements"), and CI runs the
 * whole suite, embedded provider included, on Node 20. So that one line, and only while the
 * provider module loads, is dropped: an operator reads warnings that ask them to act. Imported first
 * by the entry point, so it runs before the provider's module is evaluated.
 */
const SUPPORTED_NODE = /^v(2[2-9]|[3-9]\d)\.|^v20\.(19|[2-9]\d)\./;
const RUNTIME_WARNING = 'oidc-provider WARNING: Unsupported runtime.';

if (SUPPORTED_NODE.test(process.version)) {
  const warn = console.warn;
  console.warn = (...args: unknown[]) => {
    if (typeof args[0] === 'string' && args[0].includes(RUNTIME_WARNING)) return;
    warn(...args);
  };
  // Once the provider's module has loaded, console.warn is the original again.
  void import('oidc-provider').finally(() => {
    console.warn = warn;
  });
}
