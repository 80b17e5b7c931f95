/**
 * The client's first moments, in process with a scripted WebSocket: a handler attached right
 * after `connectAgent` sees `connecting`, nothing is opened before it could be attached, and a
 * client closed in the same turn never opens a socket.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type ConnectionState, connectAgent, type WebSocketLike } from '../client/index.ts';

/** A WebSocket that records its construction and never connects. */
function recordingWebSocket() {
  const opened: string[] = [];
  class Recording implements WebSocketLike {
    onopen = null;
    onmessage = null;
    onclose = null;
    onerror = null;
    constructor(url: string) {
      opened.push(url);
    }
    send() {}
    close() {}
  }
  return { opened, WebSocket: Recording };
}

describe('the client before its first connection', () => {
  it('emits connecting to a handler attached right after connectAgent, and opens the socket after it', async () => {
    const { opened, WebSocket } = recordingWebSocket();
    const client = connectAgent('ws://127.0.0.1:1/agents/a/ws', { WebSocket, probe: false });
    assert.equal(client.state, 'connecting');
    assert.deepEqual(opened, [], 'no socket before handlers could be attached');
    const states: ConnectionState[] = [];
    const socketsAtFirstState: number[] = [];
    client.on('state', (state) => {
      states.push(state);
      socketsAtFirstState.push(opened.length);
    });
    await Promise.resolve();
    assert.deepEqual(states, ['connecting']);
    assert.deepEqual(socketsAtFirstState, [0], 'connecting comes before the attempt');
    assert.equal(opened.length, 1);
    client.close();
    assert.deepEqual(states, ['connecting', 'closed']);
  });

  it('closed in the same turn: no socket, no connecting, one closed', async () => {
    const { opened, WebSocket } = recordingWebSocket();
    const client = connectAgent('ws://127.0.0.1:1/agents/a/ws', { WebSocket, probe: false });
    const states: ConnectionState[] = [];
    client.on('state', (state) => states.push(state));
    client.close();
    await new Promise((done) => setTimeout(done, 10));
    assert.deepEqual(states, ['closed']);
    assert.deepEqual(opened, []);
  });
});
