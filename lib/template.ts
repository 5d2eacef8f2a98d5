/**
 * A tiny mustache subset for fanout's templates: `{{name}}` inserts a value,
 * `{{#name}}…{{/name}}` keeps a block when the value is truthy (repeats it for
 * each item of an array, with `{{.}}` as the item), `{{^name}}…{{/name}}` keeps
 * it when falsy. Block tags alone on a line take their line with them.
 *
 * @module
 */

/** Values a template can refer to. */
export type View = Record<string, unknown>;

/**
 * Renders `template` with `view`.
 *
 * @throws {Error} when the template refers to a name the view lacks, so a
 * typo in a template fails loudly instead of rendering an empty setting.
 *
 * @example
 * ```ts
 * renderTemplate("port = {{port}}\n{{#root}}uid = {{uid}}\n{{/root}}", { port: 873, root: false, uid: 0 });
 * // "port = 873\n"
 * ```
 */
export function renderTemplate(template: string, view: View): string {
  // Standalone block tags swallow their own line.
  const t = template.replace(/^[ \t]*(\{\{[#^/][\w.]+\}\})[ \t]*\r?\n/gm, "$1");
  return render(t, view);
}

function render(t: string, view: View): string {
  const block = /\{\{([#^])([\w.]+)\}\}([\s\S]*?)\{\{\/\2\}\}/;
  let out = "";
  let rest = t;
  for (let m = block.exec(rest); m; m = block.exec(rest)) {
    out += vars(rest.slice(0, m.index), view);
    const value = lookup(view, m[2]);
    const truthy = Array.isArray(value) ? value.length > 0 : Boolean(value);
    if (m[1] === "^") {
      if (!truthy) out += render(m[3], view);
    } else if (Array.isArray(value)) {
      for (const item of value) {
        out += render(
          m[3],
          typeof item === "object" ? { ...view, ...item } : { ...view, ".": item },
        );
      }
    } else if (truthy) {
      out += render(m[3], view);
    }
    rest = rest.slice(m.index + m[0].length);
  }
  return out + vars(rest, view);
}

function vars(t: string, view: View): string {
  return t.replace(/\{\{([\w.]+)\}\}/g, (_, name: string) => String(lookup(view, name)));
}

function lookup(view: View, name: string): unknown {
  if (!(name in view)) throw new Error(`template refers to "${name}", which the view lacks`);
  return view[name];
}
