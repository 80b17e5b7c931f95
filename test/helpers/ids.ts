/**
 * Agent ids for tests.
 */

let sequence = 0;

/**
 * A fresh agent id on every call, `<label>-<pid>-<n>`: tests sharing a server (or a Redis, across
 * processes) never see each other's updates.
 *
 * @param label What the agent is for, so a failure names the test it came from.
 */
export const newAgentId = (label: string): string => `${label}-${process.pid}-${++sequence}`;
