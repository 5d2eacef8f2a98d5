/**
 * `fanout render report-token --name HOST`: the report token of one client,
 * derived from the primary's report secret (`auth.report_token_file` on the
 * primary) and the client's name. Run it on the primary; install the output
 * as that client's `auth.report_token_file` (mode 600). With it the client
 * signs reports of its own name only: the primary derives the token again
 * from the name in each report.
 *
 * @module
 */

import type { Renderer, RenderInput } from "./input.ts";
import { ConfigError, UsageError } from "../core/mod.ts";
import { hostToken, REPORT_HOST } from "../report/mod.ts";
import { readReportToken } from "../config/mod.ts";

/**
 * The token of client `opts.name`, alone on its line (no header: the file
 * holds the token and nothing else).
 *
 * @throws {UsageError} without `--name`, with a name a report cannot carry, or with `--role`.
 * @throws {ConfigError} when this host has no report secret (not the primary?).
 *
 * @example
 * ```ts
 * const token = await renderReportToken({ fleet, opts: { ...opts, name: "web1" } });
 * ```
 */
export const renderReportToken: Renderer = async ({ fleet, opts }: RenderInput) => {
  const name = opts.name;
  if (!name) {
    throw new UsageError(
      "render report-token needs --name HOST: the client's name as it reports (its --name, else its host name)",
    );
  }
  if (!REPORT_HOST.test(name)) {
    throw new UsageError(
      `render report-token: "${name}" is not a name a client can report as (letters, digits, '.', '_', '-')`,
    );
  }
  const secret = await readReportToken(fleet);
  if (secret === null) {
    throw new ConfigError(fleet.file ?? "flags", [{
      path: "auth.report_token_file",
      message:
        `${fleet.auth.reportTokenFile} does not exist: run this on the primary, which holds the report secret`,
    }]);
  }
  return `${await hostToken(secret, name)}\n`;
};

// The token is a client's, whatever role: --name says which client. It has
// no header line, so it is no file for a role, which --role would suggest.
renderReportToken.checkRole = (role) => {
  if (role) {
    throw new UsageError(
      `render report-token takes no --role: --name HOST says which client the token is for`,
    );
  }
};
