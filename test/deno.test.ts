import { conformance } from './conformance.ts';
import { deno } from './helpers/server.ts';

conformance(deno);
