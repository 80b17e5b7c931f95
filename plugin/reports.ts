import type { Broker } from './broker.ts';
import type { Channel } from './channel.ts';
import type { HubCore } from './core.ts';
import type { Departure } from './departure.ts';
import { type ReadingName, STATS_FIGURES } from './figures.ts';
import { hubMetricFamilies, type MetricFamily } from './metrics.ts';
import type { AgentSummary, AgentsPage, ErrorKind, HubStats } from './stats.ts';

/**
 * What a hub tells about itself: its stats, its metrics and the agents it knows.
 *
 * @internal
 */
export interface Reports {
  /** This instance's figures. */
  stats(): HubStats;
  /** This instance's figures, plus the broker's cluster-wide ones when it spans several instances. */
  statsWithCluster(): Promise<HubStats>;
  /** The stats and histograms as metric families. */
  metrics(): Promise<MetricFamily[]>;
  /** A page of agents after `after` (an agent id); `next_cursor` is the raw last id. */
  listAgents(after: string | undefined, limit: number, maxTasks: number): Promise<AgentsPage>;
}

/**
 * Creates the reports of one hub.
 *
 * @internal
 */
export function createReports(core: HubCore, departure: Departure): Reports {
  const { broker, channels, connections, counters, errors, startedAt, brokerFailed } = core;

  /** How each figure that is not a counter is read (the compiler holds this to `STATS_FIGURES`). */
  const readings: Record<ReadingName, () => unknown> = {
    instance_id: () => core.instanceId,
    active_connections: () => connections.size,
    agents_connected: () => channels.size,
    queued_messages: () => broker.queuedCount?.() ?? 0,
    errors: () => {
      let total = 0;
      for (const kind in errors) total += errors[kind as ErrorKind];
      return total;
    },
    errors_by_kind: () => ({ ...errors }),
    evictions_by_kind: () => ({ ...core.evictions }),
    started_at: () => new Date(startedAt).toISOString(),
    uptime_seconds: () => Math.round((Date.now() - startedAt) / 1000),
  };

  const stats = (): HubStats => {
    departure.releaseAllClosing();
    const figures: Record<string, unknown> = {};
    for (const figure of STATS_FIGURES) {
      figures[figure.name] = figure.kept === 'counter' ? counters[figure.name] : readings[figure.name]();
    }
    return figures as HubStats;
  };

  const statsWithCluster = async (): Promise<HubStats> => {
    const own = stats();
    if (!broker.clusterStats) return own;
    try {
      own.cluster = await broker.clusterStats();
    } catch (error) {
      // The stats keep answering while the broker is down, without `cluster`.
      brokerFailed('stats', undefined, error);
    }
    return own;
  };

  const metrics = async (): Promise<MetricFamily[]> =>
    hubMetricFamilies({ stats: await statsWithCluster(), batchSize: core.batchSize, sendDelay: core.sendDelay });

  /** A page from the broker (cluster-wide with Redis), each agent with this instance's connections. */
  const brokerPage = async (
    listAgents: NonNullable<Broker['listAgents']>,
    after: string | undefined,
    limit: number,
    maxTasks: number,
  ): Promise<AgentsPage> => {
    let page: Awaited<ReturnType<typeof listAgents>>;
    try {
      page = await listAgents(after, limit, maxTasks);
    } catch (error) {
      brokerFailed('list', undefined, error);
      throw error;
    }
    return {
      agents: page.agents.map((agent): AgentSummary => {
        const connections = channels.get(agent.agent_id)?.connections.size ?? 0;
        return {
          agent_id: agent.agent_id,
          connections,
          instances: agent.instances ?? (connections > 0 ? 1 : 0),
          status: agent.status,
          open_tasks: [...agent.open_tasks],
          open_tasks_total: agent.open_tasks_total,
          seq: agent.seq,
          epoch: agent.epoch,
          queued: agent.queued,
        };
      }),
      next_cursor: page.next,
    };
  };

  /** A page of the agents connected here: what a broker without `listAgents` gives. */
  const localPage = (after: string | undefined, limit: number, maxTasks: number): AgentsPage => {
    const ids = [...channels.keys()].filter((id) => after === undefined || id > after).sort();
    const page = ids.slice(0, limit);
    return {
      agents: page.map((agentId): AgentSummary => {
        const channel = channels.get(agentId) as Channel;
        const open = [...channel.agent.open.values()];
        const status = channel.agent.status;
        return {
          agent_id: agentId,
          connections: channel.connections.size,
          instances: 1,
          status: status ? (JSON.parse(status.json) as AgentSummary['status']) : null,
          open_tasks:
            maxTasks > 0
              ? open
                  .slice(-maxTasks)
                  .reverse()
                  .map((task) => JSON.parse(task.json) as AgentSummary['open_tasks'][number])
              : [],
          open_tasks_total: open.length,
          seq: channel.flushedSeq,
          epoch: channel.epoch,
          queued: 0,
        };
      }),
      next_cursor: ids.length > limit ? (page.at(-1) ?? null) : null,
    };
  };

  return {
    stats,
    statsWithCluster,
    metrics,
    listAgents: async (after, limit, maxTasks) =>
      broker.listAgents
        ? brokerPage(broker.listAgents.bind(broker), after, limit, maxTasks)
        : localPage(after, limit, maxTasks),
  };
}
