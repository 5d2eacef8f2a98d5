/**
 * `fanout render post-receive`: the git hook that publishes when a push
 * moves the configured branch (`publisher.ref`). It calls the binary at
 * `binary` with this fleet file, prints one line to the pusher, and always
 * exits 0: a failed publish must not fail (or lose) the push.
 *
 * @module
 */

import template from "./templates/post-receive" with { type: "text" };
import type { RenderInput } from "./input.ts";
import { renderedBy } from "../config/mod.ts";
import { ConfigError, renderTemplate, UsageError } from "../core/mod.ts";

/**
 * Renders the post-receive hook.
 *
 * @throws {UsageError} with a `--role` other than publish.
 * @throws {ConfigError} when the fleet file has no publisher section.
 *
 * @example
 * ```ts
 * const hook = renderPostReceive({ fleet, opts });
 * await Deno.writeTextFile("/srv/git/plugins.git/hooks/post-receive", hook, { mode: 0o755 });
 * ```
 */
export function renderPostReceive({ fleet, role }: RenderInput): string {
  if (role !== undefined && role !== "publish") {
    throw new UsageError(
      "render post-receive is the publisher's hook: use --role publish, or no --role",
    );
  }
  const pub = fleet.publisher;
  if (!pub) {
    throw new ConfigError(fleet.file ?? "flags", [{
      path: "publisher",
      message: "missing: the post-receive hook publishes as the publisher (name, address, ref)",
    }]);
  }
  const refname = pub.ref.startsWith("refs/") ? pub.ref : `refs/heads/${pub.ref}`;
  return renderTemplate(template, {
    rendered_by: renderedBy(fleet, "#"),
    refname: shellQuote(refname),
    primary: fleet.primary.name,
    binary: shellQuote(fleet.binary),
    fleet_file: shellQuote(fleet.file ?? "/etc/fanout/fanout.yaml"),
    hooks_dir: pub.repo ? `${shellQuote(pub.repo)}/hooks` : "REPO/hooks",
  });
}

/**
 * Quotes `s` for a POSIX shell; plain words stay as they are.
 *
 * @example
 * ```ts
 * shellQuote("/usr/local/bin/fanout"); // "/usr/local/bin/fanout"
 * shellQuote("it's");                  // "'it'\\''s'"
 * ```
 */
export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}
