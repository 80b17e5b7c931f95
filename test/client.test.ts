/**
 * The client (`hono-agent-ws/client`) against the real demo server, on Node 20 with `ws` as its
 * WebSocket, and on Deno and Bun with their global WebSocket: each run is a child process
 * (test/helpers/client-runner.ts) that prints the client's events, and must exit by itself once
 * the client is closed: that is how "close() leaves no timers behind" is checked.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { backoffDelay, reconnectAfterClose, retryAfterStatus, statusFromError } from '../client/index.ts';
import { CLOSE_CODES } from '../plugin/close-codes.ts';
import { ROOT } from '../scripts/runtimes.ts';
import { bunClientDriver, denoClientDriver, nodeClientDriver } from './helpers/client-driver.ts';
import { clientScenarios, type Driver } from './helpers/client-scenarios.ts';

describe('client policy', () => {
  it('reconnects after every close code of the server table that says so, and after 1006 and Deno’s 0', () => {
    for (const [code, info] of Object.entries(CLOSE_CODES))
      assert.equal(reconnectAfterClose(Number(code)), info.reconnect);
    for (const code of [0, 1000, 1005, 1006, 1012, 1013]) assert.equal(reconnectAfterClose(code), true);
  });
  it("is docs/client.md's table: one row per code of CLOSE_CODES, with its reason and decision", () => {
    const page = readFileSync(join(ROOT, 'docs', 'client.md'), 'utf8');
    const table = /<!-- client-policy:start -->\n([\s\S]*?)<!-- client-policy:end -->/.exec(page)?.[1] ?? '';
    const rows = table
      .split('\n')
      .filter((line) => /^\| \d{4} \|/.test(line))
      .map((line) => line.split('|').map((cell) => cell.trim()));
    assert.deepEqual(
      rows.map(([, code, reason, decision]) => [Number(code), reason, decision]),
      Object.entries(CLOSE_CODES).map(([code, info]) => [
        Number(code),
        info.reason,
        reconnectAfterClose(Number(code)) ? 'reconnect' : 'stop',
      ]),
    );
  });
  it('stops on 400, 401, 403, 404; retries 408, 426, 429, 5xx', () => {
    for (const status of [400, 401, 403, 404]) assert.equal(retryAfterStatus(status), false);
    for (const status of [408, 426, 429, 500, 502, 503]) assert.equal(retryAfterStatus(status), true);
  });
  it('reads the status from the error of ws, Deno and Bun', () => {
    assert.equal(statusFromError('Unexpected server response: 401'), 401);
    assert.equal(statusFromError('NetworkError: failed to connect to WebSocket: Invalid status code: 403'), 403);
    assert.equal(statusFromError("WebSocket connection to 'ws://x' failed: Expected 101 status code: 401"), 401);
    assert.equal(statusFromError('connect ECONNREFUSED 127.0.0.1:1'), undefined);
    assert.equal(statusFromError(undefined), undefined);
  });
  it('backs off with full jitter, bounded', () => {
    const options = { initialDelayMs: 100, maxDelayMs: 1000 };
    assert.equal(
      backoffDelay(0, options, () => 0),
      0,
    );
    assert.equal(
      backoffDelay(0, options, () => 0.999),
      99,
    );
    assert.equal(
      backoffDelay(3, options, () => 0.5),
      400,
    );
    assert.equal(
      backoffDelay(30, options, () => 0.999),
      999,
    );
  });
});

const drivers: Driver[] = [nodeClientDriver, denoClientDriver, bunClientDriver];

for (const driver of drivers) {
  describe(`the client on ${driver.name}`, { concurrency: false, timeout: 120_000 }, () => {
    clientScenarios(driver);
  });
}
