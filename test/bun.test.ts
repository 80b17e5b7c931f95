import { conformance } from './conformance.ts';
import { bun } from './helpers/server.ts';
import { resumeSuite } from './resume-suite.ts';

conformance(bun);
resumeSuite(bun);
