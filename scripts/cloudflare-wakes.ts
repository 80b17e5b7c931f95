/**
 * Counts what idle watchers cost an agent's Durable Object on workerd (miniflare, offline): its
 * constructions (each wake after an eviction is one) and its alarms, over a number of heartbeat
 * sweeps, with watchers that answer every ping and no updates. Prints the wake-ups per idle
 * agent per hour at the measured heartbeat. Not part of `npm test` (it takes
 * `sweeps × heartbeat`); docs/cloudflare.md quotes its result.
 *
 * `node --import tsx scripts/cloudflare-wakes.ts [--agents 3] [--watchers 2] [--sweeps 4] [--quick]`
 *
 * Default heartbeat (30 s, the `AgentChannelObject` defaults); `--quick` uses a 2 s heartbeat
 * instead (the object then stays resident between sweeps: workerd evicts after about 10 s idle).
 *
 * Each reading is taken right after a ping reached every watcher, while the object is awake
 * from its sweep, so the reading itself wakes nothing.
 *
 * @module
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { ObjectFigures } from '../brokers/cloudflare/shared.ts';
import { TestClient } from '../test/helpers/client.ts';
import { startWorkerd } from '../test/helpers/workerd.ts';

const { values } = parseArgs({
  options: {
    agents: { type: 'string', default: '3' },
    watchers: { type: 'string', default: '2' },
    sweeps: { type: 'string', default: '4' },
    quick: { type: 'boolean', default: false },
  },
});
const agents = Number(values.agents);
const watchers = Number(values.watchers);
const sweeps = Number(values.sweeps);
const [binding, heartbeat] = values.quick ? ['QUICK', 2000] : ['DEFAULT', 30_000];

const entry = fileURLToPath(new URL('../test/fixtures/cloudflare/objects.ts', import.meta.url));
const server = await startWorkerd(entry, { DEFAULT: 'AgentChannelObject', QUICK: 'QuickBeat' });

const figuresOf = async (agentId: string): Promise<ObjectFigures> =>
  (await (await fetch(`${server.http}/${binding}/${agentId}/figures`)).json()) as ObjectFigures;

/** Waits until every watcher got `count` pings in all. */
const pinged = async (clients: TestClient[], count: number) => {
  for (const client of clients) {
    while (client.frames.filter((frame) => frame.type === 'ping').length < count) {
      await client.next('ping', heartbeat * 2);
    }
  }
};

try {
  const ids = Array.from({ length: agents }, (_, index) => `idle-${index}`);
  const clients = await Promise.all(
    ids.flatMap((agentId) =>
      Array.from({ length: watchers }, () => TestClient.connect(`${server.ws}/${binding}/${agentId}/ws`)),
    ),
  );
  console.log(`${agents} agents × ${watchers} watchers, heartbeat ${heartbeat} ms, ${sweeps} sweeps`);
  await pinged(clients, 1);
  const start = await Promise.all(ids.map(figuresOf));
  const startedAt = Date.now();
  await pinged(clients, 1 + sweeps);
  const end = await Promise.all(ids.map(figuresOf));
  const elapsed = Date.now() - startedAt;
  let wakes = 0;
  let alarms = 0;
  ids.forEach((agentId, index) => {
    const [before, after] = [start[index] as ObjectFigures, end[index] as ObjectFigures];
    const agentWakes = after.wakes - before.wakes;
    const agentAlarms = after.alarms - before.alarms;
    wakes += agentWakes;
    alarms += agentAlarms;
    console.log(
      `${agentId}: ${agentWakes} constructions, ${agentAlarms} alarms, ${after.messages_received - before.messages_received} pongs received`,
    );
  });
  const perHour = (count: number) => ((count / agents) * 3_600_000) / elapsed;
  console.log(
    `per idle agent: ${(wakes / agents / sweeps).toFixed(2)} constructions and ${(alarms / agents / sweeps).toFixed(2)} alarms per sweep; ` +
      `${perHour(wakes).toFixed(0)} constructions and ${perHour(alarms).toFixed(0)} alarms per hour (${(elapsed / 1000).toFixed(0)} s measured)`,
  );
  for (const client of clients) client.socket.close();
} finally {
  await server.mf.dispose();
}
