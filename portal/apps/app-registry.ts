import type { AppFailure } from '../../lib/apps/discovery.ts';
import type { AppTable } from './dispatch.ts';

/** The apps the portal serves and the folders it had to skip, for the launcher and admin console. */
export interface AppRegistry {
  table: AppTable;
  failures(): AppFailure[];
}
