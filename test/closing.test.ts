/**
 * A connection stops counting as soon as a close frame is received: updates published after
 * that go to the agent's other connections or, if there are none, to its offline queue. The
 * clients here send a close frame and keep TCP open (`test/helpers/raw-socket.ts`), which is
 * what a client does between its close frame and the server's FIN, and what a stalled client
 * does for as long as the server lets it (with `ws`, 30 s), so any update published in that time
 * would otherwise be written to a socket that will never deliver it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ServerMessage, TaskUpdate } from '../plugin/index.ts';
import { TestClient } from './helpers/client.ts';
import { validateServerFrame } from './helpers/contract.ts';
import { newAgentId } from './helpers/ids.ts';
import { RawSocket } from './helpers/raw-socket.ts';
import { bun, ingest, node, type ServerHandle, startServer, stats, task } from './helpers/server.ts';
import { sleep, waitFor } from './helpers/wait.ts';

/** Well under `ws`'s 30 s close timeout, after which the socket would be gone anyway. */
const PROMPTLY = 10_000;

/** Task ids in live frames (task updates and window batches, unpacked), in order. */
function liveIds(frames: readonly ServerMessage[]): string[] {
  const ids: string[] = [];
  for (const frame of frames) {
    if (frame.type === 'task_update') ids.push(frame.task_id);
    else if (frame.type === 'batch_update') {
      assert.equal(frame.source, 'window', 'a connected watcher gets window batches only');
      for (const entry of frame.updates) ids.push((entry.content as TaskUpdate).task_id);
    }
  }
  return ids;
}

/** Task ids a raw watcher received, from its text frames, in order. */
function rawIds(socket: RawSocket): string[] {
  const frames: ServerMessage[] = [];
  for (const frame of socket.frames)
    if (frame.kind === 'text') frames.push(validateServerFrame(JSON.parse(frame.text)));
  return liveIds(frames);
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, k) => `task-${from + k}`);

/** Asserts `ids` is task-1 … task-n for some n (a watcher that left misses a tail, never a middle). */
function assertPrefix(ids: readonly string[], what: string) {
  assert.deepEqual(ids, range(1, ids.length), `${what} got a prefix of the updates, in order`);
}

async function openRaw(server: ServerHandle, agentId: string): Promise<RawSocket> {
  const socket = await RawSocket.connect(`${server.ws}/agents/${agentId}/ws`);
  assert.equal(validateServerFrame(await socket.nextJson(5000)).type, 'connection_established');
  return socket;
}

for (const runtime of [node, bun])
  describe(`closing handshake (${runtime.name})`, { concurrency: false }, () => {
    let server: ServerHandle;
    const clients: TestClient[] = [];
    const raws: RawSocket[] = [];
    const open = async (agentId: string) => {
      const client = await TestClient.connect(`${server.ws}/agents/${agentId}/ws`);
      clients.push(client);
      await client.next('connection_established');
      return client;
    };
    const openWatcher = async (agentId: string) => {
      const socket = await openRaw(server, agentId);
      raws.push(socket);
      return socket;
    };

    before(async () => {
      server = await startServer(runtime, {
        BATCH_INTERVAL_MS: '50',
        HEARTBEAT_INTERVAL_MS: '600000',
        MAX_QUEUE_SIZE: '1000',
      });
    });
    after(async () => {
      for (const socket of raws) socket.destroy();
      for (const client of clients) client.socket.terminate();
      for (const client of clients) assert.deepEqual(client.problems, [], 'every frame matched the contract');
      await server?.stop();
    });

    it('stops counting a watcher as soon as its close frame is read, before anything is sent to its agent', async () => {
      const id = newAgentId('close-idle');
      const closing = await openWatcher(id);
      const before = await stats(server);
      closing.sendClose(1000);
      assert.equal((await closing.closeFrame)?.code, 1000);
      assert.equal(closing.socket.destroyed, false, 'our side of TCP is still open');
      await waitFor(
        async () => {
          const now = await stats(server);
          return (
            now.active_connections === before.active_connections - 1 &&
            now.agents_connected === before.agents_connected - 1
          );
        },
        PROMPTLY,
        'active_connections and agents_connected drop on the close frame alone, TCP still open',
      );
    });

    it('a watcher that sent a close frame (TCP still open) stops counting: its agent’s other watcher gets every later update', async () => {
      const id = newAgentId('close-other');
      const closing = await openWatcher(id);
      const other = await open(id);
      const before = await stats(server);

      closing.sendClose(1000);
      // The server's echo proves it has read our close frame.
      assert.equal((await closing.closeFrame)?.code, 1000);
      assert.equal(closing.socket.destroyed, false, 'our side of TCP is still open');
      for (let n = 1; n <= 20; n++) assert.equal((await ingest(server, id, task(n))).status, 202);

      await waitFor(() => liveIds(other.frames).length >= 20, 5000, '20 updates at the other watcher');
      // Nothing more may arrive (no repeat, nothing late): a window in which nothing must happen, so real time.
      await sleep(150);
      assert.deepEqual(liveIds(other.frames), range(1, 20));
      assert.deepEqual(rawIds(closing), [], 'nothing reached the closing watcher');
      await waitFor(
        async () => (await stats(server)).active_connections === before.active_connections - 1,
        PROMPTLY,
        'active_connections drops while TCP is still open',
      );
      const after = await stats(server);
      assert.equal(after.messages_queued, before.messages_queued, 'the agent still has a watcher: nothing queued');
      assert.equal(after.errors, before.errors, 'a normal close is no error');
    });

    it('a lone watcher that sent a close frame (TCP still open): later updates are queued for the next client', async () => {
      const id = newAgentId('close-alone');
      const closing = await openWatcher(id);
      const before = await stats(server);

      closing.sendClose(1000);
      assert.equal((await closing.closeFrame)?.code, 1000);
      assert.equal(closing.socket.destroyed, false, 'our side of TCP is still open');
      for (let n = 1; n <= 20; n++) assert.equal((await ingest(server, id, task(n))).status, 202);

      const next = await open(id);
      const replay = await next.next('batch_update');
      assert.equal(replay.source, 'queue');
      assert.deepEqual(
        replay.updates.map((entry) => (entry.content as TaskUpdate).task_id),
        range(1, 20),
      );
      assert.deepEqual(rawIds(closing), [], 'nothing reached the closing watcher');
      const queued = await stats(server);
      assert.equal(
        queued.messages_queued - before.messages_queued,
        20,
        'each of the 20 updates put in the offline queue counts in messages_queued',
      );
      await next.close();
      await waitFor(
        async () => (await stats(server)).active_connections === before.active_connections - 1,
        PROMPTLY,
        'active_connections drops while TCP is still open',
      );
      assert.equal((await stats(server)).errors, before.errors, 'a normal close is no error');
    });

    it('mass close: 20 watchers of each of two agents close at once while updates flow', async () => {
      const kept = newAgentId('mass-kept');
      const emptied = newAgentId('mass-emptied');
      const stay = await open(kept);
      const leavingKept: RawSocket[] = [];
      const leavingEmptied: RawSocket[] = [];
      for (let i = 0; i < 20; i++) {
        leavingKept.push(await openWatcher(kept));
        leavingEmptied.push(await openWatcher(emptied));
      }
      const before = await stats(server);

      let published = 0;
      const publishOne = async () => {
        const n = ++published;
        assert.equal((await ingest(server, kept, task(n))).status, 202);
        assert.equal((await ingest(server, emptied, task(n))).status, 202);
      };
      for (let i = 0; i < 15; i++) await publishOne();

      // All 40 close frames in the same tick; updates keep flowing until every echo is back.
      for (const socket of [...leavingKept, ...leavingEmptied]) socket.sendClose(1000);
      let echoed = false;
      const echoes = Promise.all([...leavingKept, ...leavingEmptied].map((socket) => socket.closeFrame)).then(
        (frames) => {
          echoed = true;
          return frames;
        },
      );
      while (!echoed) {
        await publishOne();
        await sleep(2);
      }
      for (const frame of await echoes) assert.equal(frame?.code, 1000);
      // Every close frame has been read by the server: from here on, the emptied agent has no watcher.
      const firstAfterClose = published + 1;
      for (let i = 0; i < 20; i++) await publishOne();
      const last = published;

      // The staying watcher got every update, once, in order.
      await waitFor(() => liveIds(stay.frames).length >= last, 5000, 'every update at the staying watcher');
      // Nothing more may arrive (no repeat, nothing late): a window in which nothing must happen, so real time.
      await sleep(150);
      assert.deepEqual(liveIds(stay.frames), range(1, last));

      // Each leaving watcher got a prefix (nothing after its close, no gaps, no repeats).
      for (const [i, socket] of leavingKept.entries())
        assertPrefix(rawIds(socket), `leaving watcher ${i} of the kept agent`);
      for (const [i, socket] of leavingEmptied.entries()) {
        const ids = rawIds(socket);
        assertPrefix(ids, `leaving watcher ${i} of the emptied agent`);
        assert.ok(
          ids.length < firstAfterClose,
          `watcher ${i} of the emptied agent got nothing published after its close`,
        );
      }

      await waitFor(
        async () => (await stats(server)).active_connections === before.active_connections - 40,
        PROMPTLY,
        'the 40 closing watchers stop counting while their TCP is still open',
      );
      const afterClose = await stats(server);
      assert.equal(afterClose.agents_connected, before.agents_connected - 1, 'the emptied agent is offline');

      // The emptied agent: every update was either delivered to a watcher before it closed, or
      // queued; the queue holds at least everything published after the last close frame.
      const next = await open(emptied);
      const replay = await next.next('batch_update');
      assert.equal(replay.source, 'queue');
      const queued = replay.updates.map((entry) => (entry.content as TaskUpdate).task_id);
      const delivered = new Set(leavingEmptied.flatMap(rawIds));
      assert.deepEqual(
        queued,
        [...queued].sort((a, b) => Number(a.slice(5)) - Number(b.slice(5))),
        'queue in order',
      );
      assert.deepEqual(
        queued.slice(-(last - firstAfterClose + 1)),
        range(firstAfterClose, last),
        'queue ends with the updates after the close',
      );
      for (const taskId of queued) assert.ok(!delivered.has(taskId), `${taskId} both delivered and queued`);
      assert.deepEqual(
        [...delivered, ...queued].sort((a, b) => Number(a.slice(5)) - Number(b.slice(5))),
        range(1, last),
        'every update to the emptied agent delivered or queued, none twice',
      );
      await next.expectSilence(150);
      assert.equal((await stats(server)).errors, before.errors, 'normal closes are no errors');
    });
  });
