/**
 * A tiny mustache subset for fanout's templates: `{{name}}` inserts a value,
 * `{{#name}}…{{/name}}` keeps a block when the value is truthy (repeats it for
 * each item of an array, with `{{.}}` as the item), `{{^name}}…{{/name}}` keeps
 * it when falsy. Block tags alone on a line take their line with them.
 *
 * @module
 */

import { ExitCode, FanoutError } from "./errors.ts";
import { CONTROL_CHARS, quoted } from "./visible.ts";

/** Values a template can refer to. */
export type View = Record<string, unknown>;

/**
 * Turns one value into the text inserted for it (e.g. escapes what the
 * target format treats specially), or throws {@linkcode UnsafeValueError}.
 */
export type ValueFilter = (text: string, name: string) => string;

/**
 * A value no rendered file may hold: with a newline (or another control
 * character) it could start a line of its own, a setting or a section the
 * fleet file never asked for. Validation refuses such values first; this is
 * the renderer's own guard.
 */
export class UnsafeValueError extends FanoutError {
  constructor(name: string, text: string, why: string) {
    super(
      `cannot render ${name} = ${quoted(text)}: ${why}`,
      ExitCode.Usage,
    );
    this.name = "UnsafeValueError";
  }
}

/**
 * Renders `template` with `view`; every inserted value goes through `filter`
 * (when given) after the control-character guard.
 *
 * @throws {Error} when the template refers to a name the view lacks, so a
 * typo in a template fails loudly instead of rendering an empty setting.
 * @throws {UnsafeValueError} when a value holds a control character.
 *
 * @example
 * ```ts
 * renderTemplate("port = {{port}}\n{{#root}}uid = {{uid}}\n{{/root}}", { port: 873, root: false, uid: 0 });
 * // "port = 873\n"
 * ```
 */
export function renderTemplate(template: string, view: View, filter?: ValueFilter): string {
  // Standalone block tags swallow their own line.
  const t = template.replace(/^[ \t]*(\{\{[#^/][\w.]+\}\})[ \t]*\r?\n/gm, "$1");
  return render(t, view, filter);
}

function render(t: string, view: View, filter?: ValueFilter): string {
  const block = /\{\{([#^])([\w.]+)\}\}([\s\S]*?)\{\{\/\2\}\}/;
  let out = "";
  let rest = t;
  for (let m = block.exec(rest); m; m = block.exec(rest)) {
    out += vars(rest.slice(0, m.index), view, filter);
    const value = lookup(view, m[2]);
    const truthy = Array.isArray(value) ? value.length > 0 : Boolean(value);
    if (m[1] === "^") {
      if (!truthy) out += render(m[3], view, filter);
    } else if (Array.isArray(value)) {
      for (const item of value) {
        out += render(
          m[3],
          typeof item === "object" ? { ...view, ...item } : { ...view, ".": item },
          filter,
        );
      }
    } else if (truthy) {
      out += render(m[3], view, filter);
    }
    rest = rest.slice(m.index + m[0].length);
  }
  return out + vars(rest, view, filter);
}

function vars(t: string, view: View, filter?: ValueFilter): string {
  return t.replace(/\{\{([\w.]+)\}\}/g, (_, name: string) => {
    const text = String(lookup(view, name));
    if (CONTROL_CHARS.test(text)) {
      throw new UnsafeValueError(
        name,
        text,
        "it holds a control character (a newline would start a line)",
      );
    }
    return filter ? filter(text, name) : text;
  });
}

function lookup(view: View, name: string): unknown {
  if (!(name in view)) throw new Error(`template refers to "${name}", which the view lacks`);
  return view[name];
}
