/**
 * The command line: every flag, its scopes and the fleet-file key it
 * overrides, and the help texts. `parseCli` turns argv into one typed
 * command.
 *
 * @module
 */

export { type Command, parseCli, RENDER_KINDS } from "./cli.ts";
