/**
 * Scenario `federation-join`: a user on server B (its own process) joins a room on server A (this process) that has
 * BENCH_JOIN_MEMBERS members (default 1,000) and BENCH_JOIN_STATE other state events (default 1,000), so send_join
 * answers the full state and its auth chain. Reported: the time of B's POST /join, how many state events B then
 * holds for the room, and B's RSS before and at its peak (VmHWM, the process's high-water mark).
 */
import { performance } from 'node:perf_hooks';
import { startChildServer } from './federation-lib.js';
import { envInt, type BenchContext, type ResultRow, type Scenario } from './lib.js';

const scenario: Scenario = {
  name: 'federation-join',
  description:
    'a user on B joins a room on A with 1,000 members and 1,000 state events (send_join, full state)',
  federation: true,
  async run(ctx: BenchContext): Promise<ResultRow[]> {
    const members = envInt('BENCH_JOIN_MEMBERS', 1000);
    const stateEvents = envInt('BENCH_JOIN_STATE', 1000);
    const a = ctx.server;
    const serverA = a.hs.config.server_name;
    const alice = await a.user('alice');
    const created = await alice.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
    const roomId = created.room_id as string;
    ctx.log(`building the room on A: ${members} members, ${stateEvents} state events`);
    for (let i = 0; i < members; i++) {
      const userId = `@member${i}:${serverA}`;
      await a.hs.writer.send(roomId, {
        type: 'm.room.member',
        sender: userId,
        state_key: userId,
        content: { membership: 'join', displayname: `Member ${i}` },
      });
    }
    for (let i = 0; i < stateEvents; i++) {
      await a.hs.writer.send(roomId, {
        type: 'org.hearth.bench.state',
        sender: alice.userId,
        state_key: `key${i}`,
        content: { value: i, padding: 'x'.repeat(100) },
      });
    }
    ctx.log('starting server B in its own process');
    const b = await startChildServer(ctx.engine, ctx.pgAdminUrl, ['bob']);
    try {
      const bob = await b.login('bob');
      const rssBefore = b.rssMiB();
      const peakBefore = b.peakRssMiB();
      ctx.log('B joins over federation');
      const t0 = performance.now();
      await bob.post(
        `/_matrix/client/v3/join/${encodeURIComponent(roomId)}?server_name=${encodeURIComponent(serverA)}`,
      );
      const joinMs = performance.now() - t0;
      const state = await bob.get(`/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state`);
      const count = Array.isArray(state) ? state.length : Object.keys(state).length;
      return [
        {
          case: `${members} members, ${stateEvents} state`,
          'join ms': joinMs,
          'state on B': count,
          'B RSS before MiB': rssBefore,
          'B peak RSS MiB': b.peakRssMiB(),
          'B peak before MiB': peakBefore,
        },
      ];
    } finally {
      await b.stop();
    }
  },
};

export default scenario;
