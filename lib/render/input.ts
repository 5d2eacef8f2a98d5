/**
 * What every renderer of `fanout render` gets and returns. Apart from
 * mod.ts, which loads the renderers, so that a renderer depends on nothing
 * that depends on it.
 *
 * @module
 */

import type { CommonOptions, Fleet, Role } from "../config/mod.ts";

/** What every renderer gets. */
export interface RenderInput {
  fleet: Fleet;
  role?: Role;
  opts: CommonOptions;
}

/**
 * A renderer: returns the file's text. It may carry `checkRole`, called
 * before the fleet file is read, so a role it does not render for is told
 * which renderer it needs rather than what its fleet section lacks.
 */
export type Renderer = ((input: RenderInput) => Promise<string> | string) & {
  checkRole?: (role?: Role) => void;
};
