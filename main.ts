/**
 * fanout: one binary, roles by flag. Parses the command line and hands over
 * to the role or command asked for; each is imported only when used, so a
 * cron client does not pay for the proxy's or the primary's code.
 *
 * @module
 */

import { type Command, parseCli } from "./lib/cli/mod.ts";
import { ExitCode, FanoutError, Logger, setLogger, stripControl, VERSION } from "./lib/core/mod.ts";
import { exitWithParent, killAllGroups } from "./lib/sys/mod.ts";

type Runner = (cmd: Command & { kind: "role" }) => Promise<number>;

const ROLES: Record<string, Runner> = {
  primary: async (c) => (await import("./cmd/primary.ts")).run(c.opts),
  replica: async (c) => (await import("./cmd/replica.ts")).run(c.opts),
  proxy: async (c) => (await import("./cmd/proxy.ts")).run(c.opts),
  client: async (c) => (await import("./cmd/client.ts")).run(c.opts),
  publish: async (c) => (await import("./cmd/publish.ts")).run(c.opts),
};

/** Runs fanout with `argv`; returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  let json = argv.includes("json") && argv.some((a) => a.startsWith("--log-format"));
  try {
    const cmd = parseCli(argv);
    if (cmd.kind === "help") {
      console.log(cmd.text);
      return ExitCode.Ok;
    }
    if (cmd.kind === "version") {
      console.log(`fanout ${VERSION}`);
      return ExitCode.Ok;
    }
    json = cmd.opts.logFormat === "json";
    setLogger(new Logger({ format: cmd.opts.logFormat, level: cmd.opts.logLevel }));
    switch (cmd.kind) {
      case "role":
        return await ROLES[cmd.role](cmd);
      case "check-config":
        return await (await import("./cmd/check_config.ts")).checkConfig(cmd.opts, cmd.role);
      case "render":
        return await (await import("./lib/render/mod.ts")).renderCommand(
          cmd.what,
          cmd.opts,
          cmd.role,
        );
      case "demo":
        return await (await import("./cmd/demo.ts")).runDemo(cmd.opts);
      case "fleet":
        return await (await import("./cmd/fleet.ts")).fleetCommand(cmd.opts);
      case "keygen":
        return await (await import("./cmd/keygen.ts")).keygen(cmd.opts, cmd.out);
    }
  } catch (e) {
    const code = e instanceof FanoutError ? e.exitCode : 70;
    const message = e instanceof FanoutError
      ? e.message
      : `internal error (please report): ${(e as Error)?.stack ?? e}`;
    // The message may carry what a server, rsync or a report said: no control characters.
    for (const line of stripControl(message).split("\n")) {
      console.error(
        json ? JSON.stringify({ level: "error", msg: line, exit: code }) : `fanout: ${line}`,
      );
    }
    return code;
  }
}

if (import.meta.main) {
  // Not a top-level await: Deno stores its V8 code cache in the background
  // once this module has been evaluated, and a top-level await would hold the
  // evaluation open until Deno.exit(), so no cache would ever be stored and
  // every start would compile the whole program again, on every cron run.
  exitWithParent();
  main(Deno.args).then((code) => {
    killAllGroups();
    Deno.exit(code);
  });
}
