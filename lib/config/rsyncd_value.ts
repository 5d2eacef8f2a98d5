// What rsyncd.conf reads differently from what is written, for the fleet
// file's checks and the rsyncd.conf renderer alike. From rsyncd.conf(5) and
// rsync's loadparm.c (3.2.7 and 3.5.0 behave alike):
// - a value's leading and trailing spaces are dropped;
// - a line ending in a backslash is joined with the next one (a path ending
//   in "\" would swallow the setting below it);
// - "%NAME%" (NAME starting with an upper-case letter) is replaced by that
//   environment variable when it is set, when the value is used; "%%" is not
//   an escape, so such a value cannot be written at all.
// "#" after the start of a line is part of the value; "[" only starts a
// module at the start of a line, which a value without a newline never is.
import { UnsafeValueError, type ValueFilter } from "../core/mod.ts";

/**
 * Why rsyncd would not read `text` as written, or null.
 *
 * @example
 * ```ts
 * rsyncdValueProblem("/srv/t\\"); // "ends with a backslash, which joins the next line in rsyncd.conf"
 * rsyncdValueProblem("/srv/t");   // null
 * ```
 */
export function rsyncdValueProblem(text: string): string | null {
  if (/^\s|\s$/.test(text)) return "starts or ends with a space, which rsyncd.conf drops";
  if (text.endsWith("\\")) return "ends with a backslash, which joins the next line in rsyncd.conf";
  if (/%[A-Z][^%]*%/.test(text)) {
    return "holds %NAME%, which rsyncd.conf replaces with an environment variable";
  }
  return null;
}

/**
 * The rsyncd.conf renderer's filter: refuses a value that rsyncd would read
 * differently (see {@linkcode rsyncdValueProblem}).
 *
 * @throws {UnsafeValueError} naming the value.
 *
 * @example
 * ```ts
 * renderTemplate("path = {{path}}\n", { path: "/srv/t" }, rsyncdValue); // "path = /srv/t\n"
 * ```
 */
export const rsyncdValue: ValueFilter = (text, name) => {
  const why = rsyncdValueProblem(text);
  if (why) throw new UnsafeValueError(name, text, why);
  return text;
};
