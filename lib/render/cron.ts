/**
 * `fanout render cron`: the /etc/cron.d file that runs the client every
 * minute. Splay, lock and quiet success live in fanout itself, so the line
 * stays a plain command.
 *
 * @module
 */

import template from "./templates/cron" with { type: "text" };
import type { RenderInput } from "./input.ts";
import { type Override, renderedBy, type Role } from "../config/mod.ts";
import { formatDuration, renderTemplate, UsageError } from "../core/mod.ts";

/**
 * Renders the cron.d file for this host's client.
 *
 * @throws {UsageError} with a role other than client, or without a dest.
 *
 * @example
 * ```ts
 * const text = await renderCron({ fleet, role: "client", opts });
 * ```
 */
export function renderCron({ fleet, role, opts }: RenderInput): string {
  checkCronRole(role);
  const c = fleet.client;
  if (!c.dest) {
    throw new UsageError("render cron: the fleet file has no client.dest (or pass --dest DIR)");
  }
  const args = [fleet.binary, "--role", "client"];
  if (fleet.file) args.push("-c", fleet.file);
  if (opts.name) args.push("--name", opts.name);
  for (const o of opts.overrides) args.push("--set", `${keyOf(o)}=${valueOf(o.value)}`);
  return renderTemplate(template, {
    rendered_by: renderedBy(fleet),
    source: c.source ?? "(none)",
    dest: c.dest,
    splay: formatDuration(c.splay),
    user: c.user,
    state_dir: fleet.stateDir,
    command: args.map(cronQuote).join(" "),
  });
}

/** Refuses a role other than client, before the fleet file is read. */
function checkCronRole(role?: Role): void {
  if (role !== undefined && role !== "client") {
    throw new UsageError(`render cron is for --role client, not --role ${role}`);
  }
}
renderCron.checkRole = checkCronRole;

function keyOf(o: Override): string {
  return o.path.map((k, i) => typeof k === "number" ? `[${k}]` : i ? `.${k}` : k).join("");
}

function valueOf(v: unknown): string {
  return Array.isArray(v) ? `[${v.join(",")}]` : String(v);
}

/**
 * Quotes one word for a cron command line: cron hands the line to /bin/sh,
 * and turns every unescaped `%` into a newline.
 *
 * @example
 * ```ts
 * cronQuote("/opt/my fanout/fanout"); // "'/opt/my fanout/fanout'"
 * cronQuote("50%");                   // "50\\%"
 * ```
 */
export function cronQuote(word: string): string {
  const quoted = /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
  return quoted.replaceAll("%", "\\%");
}
