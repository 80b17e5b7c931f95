import * as v from 'valibot';

/** One refused field: where it is (dot path, null for the whole input) and what is wrong. */
export interface IssueAt {
  readonly path: string | null;
  readonly message: string;
}

/**
 * Where each issue is: its dot path, after `index` (a batch item's place) when given.
 */
export function issuesAt(issues: readonly v.BaseIssue<unknown>[], index?: number): IssueAt[] {
  return issues.map((issue) => {
    const path = v.getDotPath(issue);
    return {
      path: index === undefined ? path : [index, path].filter((part) => part !== null).join('.'),
      message: issue.message,
    };
  });
}

/**
 * One line for a list of issues. Each message already names its field; the path follows only
 * where the message does not start with it (a nested field, a batch item).
 */
export function describeIssues(issues: readonly IssueAt[]): string {
  return issues
    .map(({ path, message }) => (path === null || message.startsWith(`${path} `) ? message : `${message} (at ${path})`))
    .join('; ');
}

/**
 * Rejects `publishStatus` and `publishTask` for an update that does not match its schema, nests
 * deeper than `maxUpdateDepth`, or cannot be serialised to JSON; the ingest route answers 400.
 */
export class InvalidUpdateError extends TypeError {
  /** The validation issues. */
  readonly issues: readonly v.BaseIssue<unknown>[];

  constructor(what: string, issues: readonly [v.BaseIssue<unknown>, ...v.BaseIssue<unknown>[]]) {
    super(`invalid ${what}: ${describeIssues(issuesAt(issues))}`);
    this.name = 'InvalidUpdateError';
    this.issues = issues;
  }
}
