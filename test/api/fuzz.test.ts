/**
 * Fuzz test of the client-server API (issue 11): every operation of the spec's client-server OpenAPI definitions
 * gets malformed JSON, wrong types, missing fields, huge and deeply nested values, lone surrogates and NUL, bad path
 * ids and bad query values. No answer may be a 5xx, every non-2xx must be a Matrix error body, and the fixture user
 * must still be served after each operation. Deterministic by seed: HEARTH_FUZZ_SEED=<n> replays a run
 * (HEARTH_FUZZ_SEED=random picks one); HEARTH_FUZZ_MAX_REQUESTS bounds the requests per engine (the default keeps
 * a run well under a minute per engine) and HEARTH_FUZZ_BREADTH=<n> tries n times more values of each list (a
 * longer exploration: HEARTH_FUZZ_BREADTH=10 HEARTH_FUZZ_MAX_REQUESTS=100000 is exhaustive). Debugging: HEARTH_FUZZ_VERBOSE=1 prints one line per operation,
 * HEARTH_FUZZ_TRACE=<file> appends every request, its answer and its duration to a file.
 * The harness lives in test/api/fuzz/: spec.ts reads the OpenAPI files, cases.ts generates the requests, run.ts
 * builds the fixture, sends them and collects the findings.
 */
import assert from 'node:assert/strict';
import { appendFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { formatFindings, runFuzz } from './fuzz/run.js';
import { loadOperations } from './fuzz/spec.js';

/** The spec's client-server OpenAPI definitions (HEARTH_MATRIX_SPEC: another checkout of matrix-spec). */
const SPEC_DIR = join(
  process.env.HEARTH_MATRIX_SPEC ?? join(import.meta.dirname, '../../../shared/matrix-spec'),
  'data/api/client-server',
);
const DEFAULT_SEED = 11;
const envSeed = process.env.HEARTH_FUZZ_SEED;
const SEED =
  envSeed === 'random'
    ? Math.floor(Math.random() * 2 ** 31)
    : envSeed !== undefined && envSeed !== ''
      ? Number(envSeed)
      : DEFAULT_SEED;
const MAX_REQUESTS = Number(process.env.HEARTH_FUZZ_MAX_REQUESTS ?? 4000);

if (!existsSync(SPEC_DIR)) {
  throw new Error(
    `The fuzz test reads the Matrix spec at ${SPEC_DIR}: set HEARTH_MATRIX_SPEC to a matrix-spec checkout`,
  );
}
const operations = loadOperations(SPEC_DIR);

for (const engine of ENGINES) {
  describe(`${engine}: fuzz of every client-server operation`, () => {
    let server: TestServer;
    before(async () => {
      // No federation: a `server=` or remote id names no server to ask (403, not a DNS lookup and its 502).
      server = await startTestServer(engine, { enable_registration: true, federation_domain_whitelist: [] });
    });
    after(() => server.close());

    it(`answers every malformed request with a Matrix error and keeps serving (seed ${SEED})`, async () => {
      assert.ok(operations.length > 150, `only ${operations.length} operations read from ${SPEC_DIR}`);
      const { findings, stats } = await runFuzz(server, operations, {
        seed: SEED,
        maxRequests: MAX_REQUESTS,
        breadth: Number(process.env.HEARTH_FUZZ_BREADTH ?? 1),
        log: process.env.HEARTH_FUZZ_VERBOSE ? (line) => console.log(`# ${line}`) : undefined,
        trace: process.env.HEARTH_FUZZ_TRACE
          ? (line) => appendFileSync(process.env.HEARTH_FUZZ_TRACE as string, `${line}\n`)
          : undefined,
      });
      console.log(
        `# fuzz ${engine}: seed ${SEED}, ${stats.operations} operations, ${stats.requests} requests, ` +
          `${stats.unimplemented.length} operations not served, ${findings.length} findings, ${stats.ms} ms`,
      );
      if (process.env.HEARTH_FUZZ_VERBOSE) console.log(`# not served: ${stats.unimplemented.join(', ')}`);
      assert.equal(
        findings.length,
        0,
        `${findings.length} fuzz findings (seed ${SEED}; method path | case | status | body):\n${formatFindings(findings)}`,
      );
    });
  });
}
