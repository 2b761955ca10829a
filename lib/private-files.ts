import { chmodSync, closeSync, lstatSync, mkdirSync, openSync, readdirSync, statSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from './errors.ts';

/**
 * The portal's own files (database, keys, secrets) are for the portal's OS user alone: folders
 * 0700, files 0600, set explicitly where they are made (whatever the umask) and tightened at start
 * when an older install left them wider, so an app process running as another user cannot read
 * them.
 */

const DIR_MODE = 0o700;
const FILE_MODE = 0o600;
const GROUP_OR_OTHER = 0o077;
const STICKY = 0o1000;

/** Creates `dir` (and missing parents) 0700, or tightens it and the files in it if it exists. */
export function makePrivateDir(dir: string, setting: string): void {
  mkdirSync(dir, { recursive: true, mode: DIR_MODE });
  tightenPrivateDir(dir, setting);
}

/**
 * An existing folder of the portal's: the folder 0700, every file directly in it 0600. A shared
 * folder such as /tmp (sticky bit) is refused rather than changed: closing it would break every
 * other user of the machine, and leaving the portal's secrets in it would expose them.
 */
export function tightenPrivateDir(dir: string, setting: string): void {
  // A symlinked data folder is common (a volume mounted elsewhere): follow it.
  const stats = statIfExists(dir, statSync);
  if (!stats) return;
  if (!stats.isDirectory()) throw new ConfigError([`${setting}: ${dir} is not a folder`]);
  if (stats.mode & STICKY) {
    throw new ConfigError([`${setting}: ${dir} is a shared folder (sticky bit, like /tmp); give the portal a folder of its own for its secrets, e.g. ${setting}=data`]);
  }
  restrict(dir, stats, DIR_MODE, setting);
  for (const name of readdirSync(dir)) tightenPrivateFile(join(dir, name), setting);
}

/** Creates `file` empty and 0600 if it is missing (before anything writes it), or tightens it. */
export function makePrivateFile(file: string, setting: string): void {
  closeSync(openSync(file, 'a', FILE_MODE));
  tightenPrivateFile(file, setting);
}

/** An existing regular file made 0600 if group or others could read it; symlinks are left alone. */
export function tightenPrivateFile(file: string, setting: string): void {
  const stats = statIfExists(file, lstatSync);
  if (stats?.isFile()) restrict(file, stats, FILE_MODE, setting);
}

function restrict(path: string, stats: Stats, mode: number, setting: string): void {
  if ((stats.mode & GROUP_OR_OTHER) === 0) return;
  try {
    chmodSync(path, mode);
  } catch (err) {
    const was = (stats.mode & 0o777).toString(8);
    throw new ConfigError([
      `${setting}: ${path} is open to other users (mode ${was}) and the portal cannot make it ${mode.toString(8)} (${(err as NodeJS.ErrnoException).code}); run chmod ${mode.toString(8)} ${path} as its owner`,
    ]);
  }
}

function statIfExists(path: string, stat: (path: string) => Stats): Stats | undefined {
  try {
    return stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
