import type { Config } from '../../lib/config.ts';
import type { AppIsolation } from './app-sandbox.ts';

/** How far apps are kept from the portal: shown on /readyz, in the admin console and at start-up. */
export interface IsolationReport {
  /** Each app on its own origin (APP_ORIGIN): its scripts cannot reach the portal's pages. */
  appOrigins: boolean;
  /** Whether `command` apps run as another OS user (APPS_USER). */
  commandApps: AppIsolation;
  /** What an operator should fix, one sentence each naming the setting; production only. */
  warnings: string[];
}

export function isolationReport(config: Config, commandApps: AppIsolation): IsolationReport {
  const warnings: string[] = [];
  if (config.env === 'production') {
    if (!config.appOrigin) {
      warnings.push(
        'Apps share the portal’s origin (APP_ORIGIN is not set): a script in any app page can act as the visiting user on the portal. ' +
          'Set APP_ORIGIN, e.g. https://{tier}-{name}.apps.example.com, to give every app its own origin.',
      );
    }
    if (!commandApps.isolated) warnings.push(`Command apps are not isolated: ${commandApps.reason}. Set APPS_USER to an unprivileged OS user and run the portal as root so it can switch to it.`);
  }
  return { appOrigins: config.appOrigin !== undefined, commandApps, warnings };
}
