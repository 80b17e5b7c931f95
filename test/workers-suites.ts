/**
 * The shared suites on workerd (npm run start:workers). Not yet a `.test.ts`: 7 of 29 tests fail
 * (metrics histograms, 426 Upgrade header, SIGTERM, two-tab resume, storm, queue-covered
 * overflow, restart); rename to test/workers.test.ts once they pass or carry flags.
 */
import { conformance } from './conformance.ts';
import { workers } from './helpers/server.ts';
import { resumeSuite } from './resume-suite.ts';

conformance(workers);
resumeSuite(workers);
