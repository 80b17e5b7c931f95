import { conformance } from './conformance.ts';
import { node } from './helpers/server.ts';
import { resumeSuite } from './resume-suite.ts';

conformance(node);
resumeSuite(node);
