/**
 * The web dashboard in a real browser (Debian's chromium, headless, driven by playwright-core)
 * against a mesh of three real peers on 127.0.0.1. Each peer has its own admin key, so a page
 * uses the key of the server that serves it, entered in the page's key dialog.
 *
 * Without /usr/bin/chromium (scripts/install-test-deps.sh installs it as root) every test is
 * skipped, with the reason printed. Screenshots go to test-results/ (git-ignored).
 */

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import type { ShoalNode } from '../../src/store/store.ts';
import { CHROMIUM, CHROMIUM_ARGS, chromiumMissing } from '../support/chromium.ts';
import { call, fullMesh, type PeerProcess, TestCluster, waitFor } from '../support/cluster.ts';

const RESULTS = fileURLToPath(new URL('../../test-results/', import.meta.url));
/** The most the page may weigh, gzip-compressed, all files it loads together. */
const MAX_PAGE_GZIP_BYTES = 300 * 1024;
const DESKTOP = { width: 1440, height: 900 };
const PHONE = { width: 390, height: 844 };

const skip = chromiumMissing() ?? false;
if (skip) console.error(`dashboard e2e tests skipped: ${skip}`);
const options = { skip, timeout: 60_000 };

/** A page expression (this project has no DOM types): how many elements match `selector`. */
const countOf = (selector: string): string => `document.querySelectorAll(${JSON.stringify(selector)}).length`;

describe('the web dashboard', () => {
  // Made in before(), so a skipped run leaves no temporary directory behind.
  let cluster: TestCluster | undefined;
  const peers: PeerProcess[] = [];
  let profile = '';
  let context: BrowserContext | undefined;
  const pageErrors: string[] = [];

  /** Opens `peer`'s dashboard, entering its key when the page asks, and waits until it is live. */
  async function open(peer: PeerProcess, viewport = DESKTOP): Promise<Page> {
    const page = await context!.newPage();
    page.on('pageerror', (err) => pageErrors.push(`${peer.name}: ${err.message}`));
    await page.setViewportSize(viewport);
    await page.goto(`${peer.url}/`);
    await page.waitForSelector('#key-input, [data-conn="live"]');
    if (await page.isVisible('#key-input')) {
      await page.fill('#key-input', peer.apiKey);
      await page.press('#key-input', 'Enter');
    }
    await page.waitForSelector('[data-conn="live"]');
    return page;
  }

  const row = (page: Page, id: string) => page.locator(`.tree .row[data-id="${id}"]`);

  before(async () => {
    if (skip) return;
    cluster = new TestCluster();
    for (const name of ['kitchen', 'garage', 'lab']) peers.push(await cluster.start({ name }));
    await waitFor('a full mesh', () => fullMesh(peers), 20_000);
    profile = mkdtempSync(join(tmpdir(), 'shoal-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [...CHROMIUM_ARGS],
    });
  });

  after(async () => {
    await context?.close().catch(() => {});
    await cluster?.stop();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  test(
    'asks for the key, refuses a wrong one, then shows the mesh: 3 servers, their links with RTTs, a row each',
    options,
    async () => {
      const [a, b, c] = peers as [PeerProcess, PeerProcess, PeerProcess];
      const page = await context!.newPage();
      page.on('pageerror', (err) => pageErrors.push(err.message));
      await page.goto(`${a.url}/`);
      await page.fill('#key-input', 'not-the-key');
      await page.press('#key-input', 'Enter');
      await page.waitForSelector('.key-dialog .form-error:has-text("refused")');
      await page.fill('#key-input', a.apiKey);
      await page.press('#key-input', 'Enter');
      await page.waitForSelector('[data-conn="live"]');

      await page.waitForFunction(`${countOf('.graph .srv')} === 3`);
      assert.equal(await page.getAttribute(`.srv[data-id="${a.id}"]`, 'data-state'), 'self');
      for (const other of [b, c]) {
        await page.waitForSelector(`.srv[data-id="${other.id}"][data-state="connected"]`);
      }
      await page.waitForFunction(`${countOf('.graph line.link')} === 3`);
      // Every link shows its RTT (once both ends have measured one).
      await page.waitForFunction(
        `[...document.querySelectorAll('.graph .rtt-label text')].filter((t) => /^\\d+(\\.\\d+)? ms$/.test(t.textContent)).length === 3`,
      );

      const rows = page.locator('table.peers tbody tr[data-peer]');
      await waitFor('3 rows in the servers table', async () => (await rows.count()) === 3);
      for (const peer of peers) {
        const text = await page.locator(`tr[data-peer="${peer.id}"]`).textContent();
        assert.ok(text?.includes(peer.name), `the row of ${peer.name} names it`);
        assert.ok(text?.includes('0.1.0'), `the row of ${peer.name} shows its version`);
      }
      await page.waitForFunction(`${countOf('.tree .row[data-type="Server"]')} === 3`);
      await page.close();
    },
  );

  test(
    'a value set on one server’s page, for a data point another server owns, shows on a third server’s page',
    options,
    async () => {
      const [a, b, c] = peers as [PeerProcess, PeerProcess, PeerProcess];
      const point = await call<ShoalNode>(a, 'POST', '/api/v1/nodes', {
        type: 'DataPoint',
        name: 'Boiler temperature',
        owner: c.id,
        meta: { unit: '°C' },
      });
      assert.equal(point.parent, c.id, 'it hangs under its owner');
      const [pageA, pageB] = await Promise.all([open(a), open(b)]);

      await row(pageA, point.id).click();
      await pageA.waitForSelector(`.detail[data-detail-id="${point.id}"]`);
      // A value that is not a number is refused in the page, with a message.
      await pageA.fill('.set-value input', 'warm');
      await pageA.click('.set-value button[type="submit"]');
      await pageA.waitForSelector('.set-value .form-error:has-text("number")');

      await pageA.fill('.set-value input', '42.5');
      await pageA.click('.set-value button[type="submit"]');
      await pageB.waitForSelector(`.tree [data-value-id="${point.id}"]:text-is("42.5")`, { timeout: 10_000 });
      await pageA.waitForSelector(`.bigvalue [data-value-id="${point.id}"]:text-is("42.5")`);
      const stored = await call<ShoalNode>(c, 'GET', `/api/v1/nodes/${point.id}`);
      assert.equal(stored.value, 42.5, 'the owner stored it');
      await Promise.all([pageA.close(), pageB.close()]);
    },
  );

  test(
    'creates, renames and deletes a project and a data point, on a server other than the page’s',
    options,
    async () => {
      const [a, b] = peers as [PeerProcess, PeerProcess, PeerProcess];
      const [pageA, pageB] = await Promise.all([open(a), open(b)]);

      // A project on garage, from kitchen's page.
      await row(pageA, b.id).click();
      await pageA.click('.create-actions button:has-text("Project")');
      await pageA.fill('form.create input[name="name"]', 'Workshop');
      await pageA.click('form.create button[type="submit"]');
      const project = await waitFor('the project', async () =>
        (await call<{ nodes: ShoalNode[] }>(b, 'GET', `/api/v1/nodes?type=Project&owner=${b.id}`)).nodes.find(
          (n) => n.name === 'Workshop',
        ),
      );
      assert.equal(project.parent, b.id);
      await row(pageB, project.id).waitFor();

      // A data point in it (the page selects the new project).
      await pageA.waitForSelector(`.detail[data-detail-id="${project.id}"]`);
      await pageA.click('.create-actions button:has-text("Data point")');
      await pageA.fill('form.create input[name="name"]', 'Humidity');
      await pageA.fill('form.create input[name="unit"]', '%');
      await pageA.click('form.create button[type="submit"]');
      const point = await waitFor('the data point', async () =>
        (await call<{ nodes: ShoalNode[] }>(b, 'GET', `/api/v1/nodes?parent=${project.id}`)).nodes.find(
          (n) => n.name === 'Humidity',
        ),
      );
      assert.equal(point.owner, b.id, 'a new node belongs to its parent’s owner by default');
      await row(pageB, point.id).waitFor();

      // Rename the project.
      await row(pageA, project.id).click();
      await pageA.click('.detail .rename');
      await pageA.fill('.rename-input', 'Wood shop');
      await pageA.press('.rename-input', 'Enter');
      await row(pageB, project.id).locator('.name:text-is("Wood shop")').waitFor();

      // Delete it and what is under it.
      await pageA.click('.danger button:has-text("Delete")');
      await pageA.click('.danger .danger-button');
      await row(pageB, project.id).waitFor({ state: 'detached' });
      await row(pageB, point.id).waitFor({ state: 'detached' });
      await Promise.all([pageA.close(), pageB.close()]);
    },
  );

  test(
    'a long tree is laid out in blocks of rows, and the arrow keys walk across them',
    options,
    async () => {
      const [a] = peers as [PeerProcess, PeerProcess, PeerProcess];
      const project = await call<ShoalNode>(a, 'POST', '/api/v1/nodes', { type: 'Project', name: 'Many' });
      for (let i = 0; i < 45; i++) {
        await call(a, 'POST', '/api/v1/nodes', { type: 'DataPoint', name: `p${i}`, parent: project.id });
      }
      const page = await open(a);
      await row(page, project.id).waitFor();
      const shape = (): Promise<number[]> =>
        page.evaluate(
          "[...document.querySelectorAll('.tree .rows')].map((b) => b.querySelectorAll('.row').length)",
        );
      await waitFor('every row on the page', async () => {
        const blocks = await shape();
        return blocks.reduce((sum, n) => sum + n, 0) >= 48 && blocks;
      });
      const blocks = await shape();
      assert.ok(blocks.length >= 3 && blocks.every((n) => n <= 20), `blocks of at most 20 rows: ${blocks}`);
      // From the last row of the first block to the first of the second, and back.
      const ids: string[] = await page.evaluate(
        "[...document.querySelectorAll('.tree .row')].map((r) => r.dataset.id)",
      );
      await page.focus(`.tree .row[data-id="${ids[19]}"]`);
      await page.keyboard.press('ArrowDown');
      assert.equal(await page.evaluate('document.activeElement.dataset.id'), ids[20]);
      await page.keyboard.press('ArrowUp');
      assert.equal(await page.evaluate('document.activeElement.dataset.id'), ids[19]);
      // A node added above moves that row to the next block: it keeps the focus.
      const first = await call<ShoalNode>(a, 'POST', '/api/v1/nodes', {
        type: 'DataPoint',
        name: 'a first',
        parent: project.id,
      });
      await row(page, first.id).waitFor();
      const moved: string[] = await page.evaluate(
        "[...document.querySelectorAll('.tree .row')].map((r) => r.dataset.id)",
      );
      assert.equal(moved.indexOf(ids[19]!), 20, 'the row moved to the next block');
      assert.equal(await page.evaluate('document.activeElement.dataset.id'), ids[19]);
      await call(a, 'DELETE', `/api/v1/nodes/${project.id}`);
      await page.close();
    },
  );

  test('screenshots of the dashboard, on a desktop and on a phone', options, async () => {
    const [a, b, c] = peers as [PeerProcess, PeerProcess, PeerProcess];
    // Something worth looking at: projects, data points with history, automation.
    const garden = await call<ShoalNode>(a, 'POST', '/api/v1/nodes', { type: 'Project', name: 'Garden' });
    const soil = await call<ShoalNode>(a, 'POST', '/api/v1/nodes', {
      type: 'DataPoint',
      name: 'Soil moisture',
      parent: garden.id,
      meta: { unit: '%' },
    });
    const pump = await call<ShoalNode>(a, 'POST', '/api/v1/nodes', {
      type: 'DataPoint',
      name: 'Pump',
      parent: garden.id,
      meta: { kind: 'boolean' },
    });
    const dry = await call<ShoalNode>(a, 'POST', '/api/v1/nodes', {
      type: 'LowThreshold',
      name: 'Too dry',
      parent: soil.id,
      meta: { threshold: 30, hysteresis: 2 },
    });
    await call(a, 'POST', '/api/v1/nodes', {
      type: 'SetValue',
      name: 'Start the pump',
      parent: dry.id,
      meta: { target: pump.id, value: true },
    });
    const rack = await call<ShoalNode>(c, 'POST', '/api/v1/nodes', { type: 'Project', name: 'Rack' });
    const power = await call<ShoalNode>(c, 'POST', '/api/v1/nodes', {
      type: 'DataPoint',
      name: 'Power draw',
      parent: rack.id,
      meta: { unit: 'W' },
    });
    const ups = await call<ShoalNode>(c, 'POST', '/api/v1/nodes', {
      type: 'DataPoint',
      name: 'UPS status',
      parent: rack.id,
      meta: { kind: 'string' },
    });
    const garage = await call<ShoalNode>(b, 'POST', '/api/v1/nodes', { type: 'Project', name: 'Garage' });
    const door = await call<ShoalNode>(b, 'POST', '/api/v1/nodes', {
      type: 'DataPoint',
      name: 'Door open',
      parent: garage.id,
      meta: { kind: 'boolean' },
    });
    const charger = await call<ShoalNode>(b, 'POST', '/api/v1/nodes', {
      type: 'DataPoint',
      name: 'EV charger',
      parent: garage.id,
      meta: { unit: 'kW' },
    });
    await call(c, 'PUT', `/api/v1/nodes/${ups.id}/value`, { value: 'online' });
    await call(b, 'PUT', `/api/v1/nodes/${door.id}/value`, { value: false });
    await call(a, 'PUT', `/api/v1/nodes/${pump.id}/value`, { value: false });

    const page = await open(a);
    // Live history while the page watches, so the chart and the log have something to show.
    for (let i = 0; i < 40; i++) {
      await Promise.all([
        call(a, 'PUT', `/api/v1/nodes/${soil.id}/value`, {
          value: Math.round(450 + 80 * Math.sin(i / 5)) / 10,
        }),
        call(c, 'PUT', `/api/v1/nodes/${power.id}/value`, { value: Math.round(230 + 35 * Math.sin(i / 3)) }),
        call(b, 'PUT', `/api/v1/nodes/${charger.id}/value`, {
          value: Math.round(700 + 40 * Math.cos(i / 4)) / 100,
        }),
      ]);
      if (i === 5) await row(page, soil.id).click();
      await new Promise((r) => setTimeout(r, 40));
    }
    await page.waitForSelector('.chart canvas');
    await page.waitForTimeout(1000);
    mkdirSync(RESULTS, { recursive: true });
    await page.evaluate('window.scrollTo(0, 0)');
    await page.screenshot({ path: join(RESULTS, 'dashboard.png'), fullPage: true });

    const phone = await open(a, PHONE);
    await phone.waitForSelector(`.tree [data-value-id="${soil.id}"]`);
    await phone.waitForTimeout(500);
    await phone.screenshot({ path: join(RESULTS, 'dashboard-phone.png') });
    // Nothing is wider than the screen (the servers table scrolls inside its card).
    const overflow = await phone.evaluate<number>('document.documentElement.scrollWidth - window.innerWidth');
    assert.ok(overflow <= 0, `the page is ${overflow} px wider than a phone`);
    await Promise.all([page.close(), phone.close()]);
  });

  test(`the page weighs less than ${MAX_PAGE_GZIP_BYTES / 1024} KB gzip-compressed`, options, async () => {
    const [a] = peers as [PeerProcess];
    const page = await context!.newPage();
    const files: Promise<{ path: string; raw: number; gzip: number }>[] = [];
    page.on('response', (response) => {
      const url = new URL(response.url());
      if (url.pathname.startsWith('/api/')) return;
      files.push(
        response
          .body()
          .then((body) => ({ path: url.pathname, raw: body.length, gzip: gzipSync(body).length })),
      );
    });
    // A fresh load, not from the browser's cache.
    await page.route('**/*', (route) => route.continue());
    await page.goto(`${a.url}/`);
    await page.waitForSelector('[data-conn="live"]');
    await page.waitForLoadState('networkidle');
    const loaded = await Promise.all(files);
    const total = loaded.reduce((sum, f) => sum + f.gzip, 0);
    console.log(
      [
        'page weight (gzip):',
        ...loaded.map(
          (f) =>
            `  ${f.path.padEnd(24)} ${String(f.raw).padStart(7)} B raw ${String(f.gzip).padStart(7)} B gzip`,
        ),
        `  ${'total'.padEnd(24)} ${String(loaded.reduce((s, f) => s + f.raw, 0)).padStart(7)} B raw ${String(total).padStart(7)} B gzip`,
      ].join('\n'),
    );
    const paths = loaded.map((f) => f.path);
    for (const expected of ['/', '/app.js', '/style.css', '/vendor/preact.mjs', '/vendor/uplot.mjs']) {
      assert.ok(paths.includes(expected), `${expected} was loaded`);
    }
    assert.ok(total < MAX_PAGE_GZIP_BYTES, `the page weighs ${total} B gzip`);
    await page.close();
  });

  test(
    'a killed server turns grey within seconds, writes to it fail with a message, and it comes back by itself; its own page reconnects and catches up',
    options,
    async () => {
      const [a, b, c] = peers as [PeerProcess, PeerProcess, PeerProcess];
      const point = await call<ShoalNode>(a, 'POST', '/api/v1/nodes', {
        type: 'DataPoint',
        name: 'Lab fan',
        owner: c.id,
      });
      const elsewhere = await call<ShoalNode>(a, 'POST', '/api/v1/nodes', {
        type: 'DataPoint',
        name: 'Hall light',
        owner: b.id,
      });
      const [page, pageC] = await Promise.all([open(a), open(c)]);
      await page.waitForSelector(`.srv[data-id="${c.id}"][data-state="connected"]`);
      await row(pageC, elsewhere.id).waitFor();

      const killedAt = Date.now();
      await c.kill();
      await page.waitForSelector(`.srv[data-id="${c.id}"][data-state="disconnected"]`, { timeout: 5000 });
      const greyAfterMs = Date.now() - killedAt;
      console.log(`a killed server was grey in the page after ${greyAfterMs} ms`);
      await page.waitForSelector(`tr[data-peer="${c.id}"][data-state="disconnected"]`);
      await page.waitForFunction(`${countOf(`line[data-a="${c.id}"], line[data-b="${c.id}"]`)} === 0`);
      // The killed server's own page says it lost its server.
      await pageC.waitForSelector('[data-conn="down"]');
      await pageC.waitForSelector('.banner:has-text("Lost the connection")');

      // Its data point: dimmed, and a write is refused with the server's message.
      await row(page, point.id).click();
      await page.waitForSelector('.detail .note.warn:has-text("offline")');
      await page.fill('.set-value input', '1');
      await page.click('.set-value button[type="submit"]');
      await page.waitForSelector('.set-value .form-error:has-text("SHOAL_OWNER_UNREACHABLE")', {
        timeout: 15_000,
      });
      // A change the killed server's page cannot hear about.
      await call(a, 'PUT', `/api/v1/nodes/${elsewhere.id}/value`, { value: 7 });

      // It comes back (same data directory and port, same id) and turns green again, with its
      // links; its page reconnects by itself and reads what it missed.
      const restarted = await cluster!.start({ name: c.name, dataDir: c.dataDir, port: c.port });
      peers[2] = restarted;
      assert.equal(restarted.id, c.id);
      await page.waitForSelector(`.srv[data-id="${c.id}"][data-state="connected"]`, { timeout: 10_000 });
      await page.waitForFunction(`${countOf('.graph line.link')} === 3`, undefined, { timeout: 10_000 });
      await pageC.waitForSelector('[data-conn="live"]', { timeout: 15_000 });
      await pageC.waitForSelector(`.tree [data-value-id="${elsewhere.id}"]:text-is("7")`, {
        timeout: 10_000,
      });
      await Promise.all([page.close(), pageC.close()]);
    },
  );

  test(
    'Forget on an offline server retires it: it leaves the page, and its nodes leave every server',
    options,
    async () => {
      const [a, b] = peers as [PeerProcess, PeerProcess];
      const shed = await cluster!.start({ name: 'shed' });
      await waitFor('the shed in the mesh', () => fullMesh([...peers, shed]), 20_000);
      const point = await call<ShoalNode>(shed, 'POST', '/api/v1/nodes', {
        type: 'DataPoint',
        name: 'Shed door',
      });
      const page = await open(a);
      await row(page, point.id).waitFor();
      await shed.kill();
      await page.waitForSelector(`tr[data-peer="${shed.id}"][data-state="disconnected"]`, {
        timeout: 10_000,
      });

      await row(page, shed.id).click();
      await page.click('button:has-text("Forget this server")');
      await page.click('button:has-text("Forget shed and delete its nodes everywhere?")');
      await page.waitForFunction(
        `${countOf(`tr[data-peer="${shed.id}"]`)} === 0 && ${countOf(`.srv[data-id="${shed.id}"]`)} === 0 && ${countOf(`.tree .row[data-id="${point.id}"]`)} === 0`,
        undefined,
        { timeout: 10_000 },
      );
      await waitFor("the shed's data point gone from another server", async () => {
        const { nodes } = await call<{ nodes: ShoalNode[] }>(b, 'GET', '/api/v1/nodes');
        return !nodes.some((n) => n.id === point.id || n.id === shed.id);
      });
      await page.close();
    },
  );

  test('no script error in any page', options, () => {
    assert.deepEqual(pageErrors, []);
  });
});
