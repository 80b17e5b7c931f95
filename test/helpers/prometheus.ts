/**
 * Parses the Prometheus text format with parse-prometheus-text-format (which ships no types):
 * what the tests of `GET /ws/metrics` read its output with.
 */
import parse from 'parse-prometheus-text-format';

/** One parsed sample: a value with labels, or a histogram's buckets, count and sum. */
export interface ParsedSample {
  value?: string;
  labels?: Record<string, string>;
  buckets?: Record<string, string>;
  count?: string;
  sum?: string;
}

/** One parsed metric family. */
export interface ParsedFamily {
  name: string;
  type: string;
  help: string;
  metrics: ParsedSample[];
}

/** Parses an exposition; throws on a malformed one. */
export function parsePrometheus(text: string): Map<string, ParsedFamily> {
  const families = (parse as unknown as (text: string) => ParsedFamily[])(text);
  // The parser spells types in capitals (COUNTER); the format spells them in lower case.
  return new Map(families.map((family) => [family.name, { ...family, type: family.type.toLowerCase() }]));
}
