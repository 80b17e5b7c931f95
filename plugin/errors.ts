import * as v from 'valibot';

/**
 * Rejects `publishStatus` and `publishTask` for an update that does not match its schema, nests
 * deeper than `maxUpdateDepth`, or cannot be serialised to JSON; the ingest route answers 400.
 */
export class InvalidUpdateError extends TypeError {
  /** The validation issues. */
  readonly issues: readonly v.BaseIssue<unknown>[];

  constructor(what: string, issues: readonly [v.BaseIssue<unknown>, ...v.BaseIssue<unknown>[]]) {
    super(`invalid ${what}: ${v.summarize(issues as [v.BaseIssue<unknown>]).replaceAll('\n', '; ')}`);
    this.name = 'InvalidUpdateError';
    this.issues = issues;
  }
}
