/**
 * The ratios the report pairs within each repeat, and the goals judged on them.
 *
 * @module
 */
import type { Params } from './args.ts';
import type { GoalDef, RatioDef } from './report.ts';

/** Every C in increasing order; the largest is the C the goals are judged at. */
export const connectionCounts = (params: Params) => [...params.conns].sort((a, b) => a - b);

export function ratios(params: Params): RatioDef[] {
  return [
    ...connectionCounts(params).flatMap((c): RatioDef[] => [
      {
        id: `cpu@${c}`,
        label: `CPU/msg plugin ÷ ws, C=${c}`,
        num: ['plugin-node', `fixed@${c}.cpuUs`],
        den: ['ws', `fixed@${c}.cpuUs`],
      },
      {
        id: `cpu-plugin-sio@${c}`,
        label: `CPU/msg plugin ÷ Socket.IO, C=${c}`,
        num: ['plugin-node', `fixed@${c}.cpuUs`],
        den: ['socketio', `fixed@${c}.cpuUs`],
      },
      {
        id: `cpu-sio@${c}`,
        label: `CPU/msg Socket.IO ÷ ws, C=${c}`,
        num: ['socketio', `fixed@${c}.cpuUs`],
        den: ['ws', `fixed@${c}.cpuUs`],
      },
      {
        id: `flat@${c}`,
        label: `flat msgs/s plugin ÷ ws, C=${c}`,
        num: ['plugin-node', `flat@${c}.delivered`],
        den: ['ws', `flat@${c}.delivered`],
      },
      {
        id: `flat-sio@${c}`,
        label: `flat msgs/s plugin ÷ Socket.IO, C=${c}`,
        num: ['plugin-node', `flat@${c}.delivered`],
        den: ['socketio', `flat@${c}.delivered`],
      },
      {
        id: `history-cpu@${c}`,
        label: `CPU/msg plugin with history ÷ without, C=${c}`,
        num: ['plugin-node', `fixed@${c}.cpuUs`],
        den: ['plugin-node-nohistory', `fixed@${c}.cpuUs`],
      },
      {
        id: `history-flat@${c}`,
        label: `flat msgs/s plugin with history ÷ without, C=${c}`,
        num: ['plugin-node', `flat@${c}.delivered`],
        den: ['plugin-node-nohistory', `flat@${c}.delivered`],
      },
      {
        id: `store-cpu@${c}`,
        label: `CPU/msg plugin with the SQLite store ÷ without (Node 24), C=${c}`,
        num: ['plugin-node24-sqlite', `fixed@${c}.cpuUs`],
        den: ['plugin-node24', `fixed@${c}.cpuUs`],
      },
      {
        id: `store-flat@${c}`,
        label: `flat msgs/s plugin with the SQLite store ÷ without (Node 24), C=${c}`,
        num: ['plugin-node24-sqlite', `flat@${c}.delivered`],
        den: ['plugin-node24', `flat@${c}.delivered`],
      },
      {
        id: `bun@${c}`,
        label: `flat msgs/s plugin on Bun ÷ Bun server.publish, C=${c}`,
        num: ['plugin-bun', `flat@${c}.delivered`],
        den: ['bun-native', `flat@${c}.delivered`],
      },
    ]),
    {
      id: 'mem',
      label: `idle bytes/conn plugin − ws, C=${params.memHigh}`,
      num: ['plugin-node', 'idle.bytesPerConn'],
      den: ['ws', 'idle.bytesPerConn'],
      kind: 'diff',
    },
    {
      id: 'mem-bun',
      label: `idle bytes/conn plugin on Bun ÷ Bun server.publish, C=${params.memHigh}`,
      num: ['plugin-bun', 'idle.bytesPerConn'],
      den: ['bun-native', 'idle.bytesPerConn'],
    },
    {
      id: 'mem-deno',
      label: `idle bytes/conn plugin on Deno ÷ plugin on Node, C=${params.memHigh}`,
      num: ['plugin-deno', 'idle.bytesPerConn'],
      den: ['plugin-node', 'idle.bytesPerConn'],
    },
    {
      id: 'scale-mem',
      label: `bytes/conn at scale, plugin − ws (${params.scale.target} asked)`,
      num: ['plugin-node', 'scale.bytesPerConn'],
      den: ['ws', 'scale.bytesPerConn'],
      kind: 'diff',
    },
    {
      id: 'scale-mem-deno',
      label: 'bytes/conn at scale, plugin on Deno ÷ plugin on Node',
      num: ['plugin-deno', 'scale.bytesPerConn'],
      den: ['plugin-node', 'scale.bytesPerConn'],
    },
    {
      id: 'dense',
      label: 'logical updates/s batched ÷ unbatched',
      num: ['plugin-node-batched', 'dense.delivered'],
      den: ['plugin-node', 'dense.delivered'],
    },
    {
      id: 'dense-cpu',
      label: 'CPU per logical update batched ÷ unbatched',
      num: ['plugin-node-batched', 'dense.cpuUs'],
      den: ['plugin-node', 'dense.cpuUs'],
    },
    ...(['plugin-node', 'plugin-bun', 'plugin-deno'] as const).flatMap((server): RatioDef[] => [
      {
        id: `http-stats-${server}`,
        label: `GET /agents/ws/stats ÷ bare route (${server})`,
        num: [server, 'http.stats.rps'],
        den: [server, 'http.bareStats.rps'],
      },
      {
        id: `http-ingest-${server}`,
        label: `POST /agents/:id/updates ÷ bare route (${server})`,
        num: [server, 'http.ingest.rps'],
        den: [server, 'http.bareIngest.rps'],
      },
    ]),
  ];
}

export function goals(params: Params): GoalDef[] {
  const C = Math.max(...params.conns);
  return [
    {
      text: `Node, batching off: server CPU per message ≤ 1.10 × raw ws (C=${C})`,
      of: `cpu@${C}`,
      op: '<=',
      limit: 1.1,
    },
    {
      text: `Node, batching off: server CPU per message ≤ 0.75 × Socket.IO (C=${C})`,
      of: `cpu-plugin-sio@${C}`,
      op: '<=',
      limit: 0.75,
    },
    { text: `Node, batching off: flat throughput ≥ 0.95 × raw ws (C=${C})`, of: `flat@${C}`, op: '>=', limit: 0.95 },
    { text: `Node, batching off: flat throughput ≥ 2 × Socket.IO (C=${C})`, of: `flat-sio@${C}`, op: '>=', limit: 2 },
    {
      text: `Node: CPU per message with history ÷ without ≤ 1.05 (C=${C})`,
      of: `history-cpu@${C}`,
      op: '<=',
      limit: 1.05,
    },
    {
      text: `Node 24: CPU per message with the SQLite store ÷ without ≤ 1.15 (C=${C})`,
      of: `store-cpu@${C}`,
      op: '<=',
      limit: 1.15,
    },
    {
      text: `Idle memory per connection ≤ raw ws + 2 KB (C=${params.memHigh})`,
      of: 'mem',
      op: '<=',
      limit: 2048,
      unit: 'B',
    },
    {
      text: `Idle memory per connection at scale ≤ raw ws + 2 KB (${params.scale.target} asked)`,
      of: 'scale-mem',
      op: '<=',
      limit: 2048,
      unit: 'B',
    },
    {
      text: `Deno: idle memory per connection ≤ 2 × the plugin on Node (C=${params.memHigh})`,
      of: 'mem-deno',
      op: '<=',
      limit: 2,
    },
    {
      text: 'Deno: idle memory per connection at scale ≤ 2 × the plugin on Node',
      of: 'scale-mem-deno',
      op: '<=',
      limit: 2,
    },
    {
      text: `Bun: idle memory per connection ≤ 2.5 KB (C=${params.memHigh})`,
      of: 'plugin-bun:idle.bytesPerConn',
      op: '<=',
      limit: 2560,
      unit: 'B',
    },
    { text: 'Batching on: ≥ 5 × unbatched logical throughput', of: 'dense', op: '>=', limit: 5 },
    { text: 'Batching on: ≤ 0.2 × CPU per logical update', of: 'dense-cpu', op: '<=', limit: 0.2 },
    {
      text: 'Batching on, sparse traffic: p50 latency ≤ 1 ms',
      of: 'plugin-node-batched:sparse.p50',
      op: '<=',
      limit: 1,
      unit: 'ms',
    },
    { text: `Bun: ≥ 0.9 × native server.publish throughput (C=${C})`, of: `bun@${C}`, op: '>=', limit: 0.9 },
    {
      text: 'HTTP (Node): GET /agents/ws/stats ≥ 0.9 × bare Hono route',
      of: 'http-stats-plugin-node',
      op: '>=',
      limit: 0.9,
    },
    {
      text: 'HTTP (Node): POST /agents/:id/updates ≥ 0.9 × bare Hono route',
      of: 'http-ingest-plugin-node',
      op: '>=',
      limit: 0.9,
    },
    { text: 'HTTP (Bun): GET stats ≥ 0.9 × bare', of: 'http-stats-plugin-bun', op: '>=', limit: 0.9 },
    { text: 'HTTP (Bun): POST updates ≥ 0.9 × bare', of: 'http-ingest-plugin-bun', op: '>=', limit: 0.9 },
    { text: 'HTTP (Deno): GET stats ≥ 0.9 × bare', of: 'http-stats-plugin-deno', op: '>=', limit: 0.9 },
    { text: 'HTTP (Deno): POST updates ≥ 0.9 × bare', of: 'http-ingest-plugin-deno', op: '>=', limit: 0.9 },
  ];
}
