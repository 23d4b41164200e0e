/**
 * The crash tests' child server (test/integrity/child-server.ts), bundled once per test process with esbuild so a
 * restart takes a fraction of a second instead of a full tsx load, and killed with SIGKILL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const ROOT = join(import.meta.dirname, '..', '..');
let bundled: Promise<string> | undefined;

async function bundleChild(): Promise<string> {
  const { build } = await import('esbuild');
  const outfile = join(ROOT, 'node_modules', '.cache', `hearth-kill-child-${process.pid}.mjs`);
  await build({
    entryPoints: [join(import.meta.dirname, 'child-server.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    outfile,
    logLevel: 'silent',
  });
  process.once('exit', () => rmSync(outfile, { force: true }));
  return outfile;
}

/** Starts the child server on `config` (a homeserver.yaml path); resolves once it prints its URL. */
export async function startChild(config: string): Promise<{ child: ChildProcess; url: string }> {
  bundled ??= bundleChild();
  const entry = await bundled;
  const proc = spawn(process.execPath, [entry, config], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: proc.stdout as NodeJS.ReadableStream });
    rl.once('line', (line) => resolve({ child: proc, url: (JSON.parse(line) as { url: string }).url }));
    proc.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
}

/** SIGKILLs the child and waits for it to be gone (at once if it already exited). */
export function kill(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}
