import { conformance } from './conformance.ts';
import { node } from './helpers/server.ts';

conformance(node);
