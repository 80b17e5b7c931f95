/**
 * The same glue around `connectAgent` on every runtime the client tests run on (Node in
 * process, Deno and Bun as child processes, Chromium in a page): it reports every event as a
 * JSON-friendly record, drains `updates()` too, and closes the client when it receives the task
 * update `__close__` (or, with `closeOn`, the first time it enters that state), so a test can
 * end a client it does not hold.
 *
 * No imports but types: the browser test compiles this file alone.
 */
import type { AgentClient, ConnectOptions, connectAgent } from '../../client/index.ts';

/** One event the client emitted. */
export interface Report {
  event: string;
  args: unknown[];
}

/** The task id that makes the harness close its client. */
export const CLOSE_TASK = '__close__';

export function harness(
  connect: typeof connectAgent,
  url: string,
  options: ConnectOptions & { closeOn?: string },
  report: (record: Report) => void,
): AgentClient {
  const client = connect(url, options);
  const events = ['state', 'open', 'snapshot', 'close', 'fatal', 'server_error', 'invalid_frame'] as const;
  for (const event of events) client.on(event, (...args: unknown[]) => report({ event, args }));
  client.on('update', (update, meta) =>
    report({
      event: 'update',
      args: [
        {
          type: update.type,
          seq: update.seq,
          epoch: update.epoch,
          task_id: 'task_id' in update ? update.task_id : undefined,
        },
        meta,
      ],
    }),
  );
  let typed = 0;
  client.on('task_update', () => typed++);
  client.on('status_update', () => typed++);
  client.on('task_update', (update) => {
    if (update.task_id !== CLOSE_TASK) return;
    client.close();
    report({ event: 'closed_by_harness', args: [typed] });
  });
  (async () => {
    const seqs: number[] = [];
    for await (const { update } of client.updates()) seqs.push(update.seq);
    report({ event: 'iterator_end', args: [seqs] });
  })();
  if (options.closeOn) {
    const off = client.on('state', (state) => {
      if (state !== options.closeOn) return;
      off();
      client.close();
    });
  }
  return client;
}
