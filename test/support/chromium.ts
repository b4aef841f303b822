/**
 * The headless browser of the e2e tests and the dashboard benchmark: Debian's chromium
 * (scripts/install-test-deps.sh installs it), with the flags both launch it with.
 */

import { existsSync } from 'node:fs';

export const CHROMIUM = '/usr/bin/chromium';

/** No sandbox (root in CI), no GPU, and nothing that would reach beyond loopback. */
export const CHROMIUM_ARGS: readonly string[] = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Why the browser cannot run here, or undefined when it can. */
export function chromiumMissing(): string | undefined {
  return existsSync(CHROMIUM)
    ? undefined
    : `${CHROMIUM} is missing: install Debian's chromium (scripts/install-test-deps.sh does, as root)`;
}
