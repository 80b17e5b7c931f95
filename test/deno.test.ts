import { conformance } from './conformance.ts';
import { deno } from './helpers/server.ts';
import { resumeSuite } from './resume-suite.ts';

conformance(deno);
resumeSuite(deno);
