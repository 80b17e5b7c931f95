import { conformance } from './conformance.ts';
import { bun } from './helpers/server.ts';

conformance(bun);
