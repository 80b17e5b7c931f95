import type { WSContext, WSMessageReceive } from 'hono/ws';
import { type AgentState, createAgentState } from './agent-state.ts';
import type { ResumePoint, SocketBinding } from './binding.ts';
import type { InboundBudget } from './inbound.ts';
import type { AgentUpdate } from './schemas.ts';

/**
 * One open WebSocket. State lives here, not on the runtime's context object (Bun hands a
 * fresh context to every event).
 *
 * @internal
 */
export interface Connection extends InboundBudget {
  readonly id: string;
  readonly channel: Channel;
  readonly socket: WSContext;
  readonly binding: SocketBinding;
  /** Answered since the last ping. */
  alive: boolean;
  /** Still counted; false once removed, whoever noticed first. */
  open: boolean;
  /** `connection_established` sent: from then on the client gets every update published. */
  established: boolean;
  /** Frames that arrived before `connection_established` went out; answered right after it. */
  early: WSMessageReceive[] | undefined;
  /** Where the client asked to resume from (`?since=&epoch=`). */
  readonly resume: ResumePoint | undefined;
}

/**
 * One agent with local connections: the unit of fan-out, batching and broker subscription.
 *
 * @internal
 */
export interface Channel {
  readonly agentId: string;
  readonly connections: Set<Connection>;
  /** `joining` until the broker answered the subscription with the offline queue. */
  state: 'joining' | 'live' | 'gone';
  /** The agent's stream: its epoch, the last `seq` accepted into `pending` and the last sent. */
  epoch: string;
  headSeq: number;
  flushedSeq: number;
  /** The agent's state as of `flushedSeq`: what a snapshot shows. */
  agent: AgentState;
  /** Connections whose resume history is being read: nothing is flushed meanwhile. */
  pauses: number;
  /**
   * The offline queue this channel took and every update sent since, for connections that join
   * within `QUEUE_HANDOVER_MS` after it: they get the same `queue` batch as the first.
   */
  handover: { readonly updates: AgentUpdate[]; readonly until: number } | undefined;
  /** Updates held for the end of the window (or, while joining, for the end of the join). */
  pending: AgentUpdate[];
  windowOpen: boolean;
  deadline: number;
  /**
   * The binding whose native pub/sub fans this agent's frames out, while every connection
   * shares it; `null` once connections of different bindings mix (then: one write per socket).
   */
  topicBinding: SocketBinding | null | undefined;
  /** Characters broadcast since the sockets' send buffers were last looked at (plugin/fanout.ts). */
  unchecked: number;
}

/**
 * A channel for an agent that has no connection here yet: joining, its stream unknown until
 * the broker answers.
 *
 * @internal
 */
export function createChannel(agentId: string): Channel {
  return {
    agentId,
    connections: new Set(),
    state: 'joining',
    epoch: '',
    headSeq: 0,
    flushedSeq: 0,
    agent: createAgentState(),
    pauses: 0,
    handover: undefined,
    pending: [],
    windowOpen: false,
    deadline: 0,
    topicBinding: undefined,
    unchecked: 0,
  };
}
