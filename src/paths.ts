/**
 * Where the package's own files are. This module sits one directory below the package root both
 * as source (`src/paths.ts`, run by tsx in the tests) and inside the built bundle
 * (`dist/shoal.js`), so `..` from it is the package root either way; every lookup of a file that
 * ships with shoal (package.json, the dashboard under web/) goes through here.
 */

import { fileURLToPath } from 'node:url';

export const PACKAGE_ROOT: string = fileURLToPath(new URL('..', import.meta.url));
