/**
 * The proxy hears of its backends' new versions as a watching client does:
 * one `GET /version` long-poll per server whose version the pool reads (the
 * backends and the reference). A notice re-reads that server's version at
 * once, so the rotation, and what the proxy announces on its own
 * `/version`, follow within milliseconds instead of at the next check round.
 * A server that does not offer `/version` is still read every round.
 *
 * @module
 */

import { formatHostPort, type HostPort, type Logger } from "../core/mod.ts";
import { followVersions } from "../health/mod.ts";
import type { BackendPool } from "./backends.ts";

/** Options of {@linkcode BackendNotices}. */
export interface NoticeOptions {
  log: Logger;
  /** Called after a notice has updated the pool. */
  onChange(): void;
}

/** One follower and its stop. */
interface Listening {
  stop: AbortController;
  done: Promise<void>;
}

/**
 * Long-polls every version source of a pool.
 *
 * @example
 * ```ts
 * const notices = new BackendNotices(pool, { log, onChange: () => board.announce(pool.served) });
 * notices.sync(); // at start and after each SIGHUP reload
 * await notices.stop();
 * ```
 */
export class BackendNotices {
  #pool: BackendPool;
  #o: NoticeOptions;
  #on = new Map<string, Listening>();

  constructor(pool: BackendPool, opts: NoticeOptions) {
    this.#pool = pool;
    this.#o = opts;
  }

  /** Follows the pool's version sources now: starts the new, stops the gone. */
  sync(): void {
    const want = new Map<string, { name: string; at: HostPort }>();
    for (const b of this.#pool.versionSources) {
      if (b.health) {
        want.set(`${b.name}@${formatHostPort(b.health)}`, { name: b.name, at: b.health });
      }
    }
    for (const [key, l] of this.#on) {
      if (want.has(key)) continue;
      l.stop.abort();
      this.#on.delete(key);
    }
    for (const [key, { name, at }] of want) {
      if (!this.#on.has(key)) this.#on.set(key, this.#follow(name, at));
    }
  }

  /** Stops every follower and waits for them. */
  async stop(): Promise<void> {
    const all = [...this.#on.values()];
    this.#on.clear();
    for (const l of all) l.stop.abort();
    await Promise.all(all.map((l) => l.done));
  }

  #follow(name: string, at: HostPort): Listening {
    const stop = new AbortController();
    const done = followVersions({
      at,
      after: -1,
      signal: stop.signal,
      log: this.#o.log.child({ backend: name }),
      onVersion: async () => {
        await this.#pool.recheckVersion(name);
        this.#o.onChange();
      },
    });
    return { stop, done };
  }
}
