/**
 * The reference table of every fleet-file key, written from the
 * declarations in keys.ts into docs/configuration.md, between the lines
 * {@linkcode BEGIN} and {@linkcode END}; the rest of the file is prose
 * written by hand. `deno task docs` runs this module.
 *
 * @module
 */

import { type FleetKey, fleetKeys, shownDefault } from "./keys.ts";

/** The line above the generated table. */
export const BEGIN = "<!-- keys:begin -->";
/** The line below it. */
export const END = "<!-- keys:end -->";

/** Where the table goes. */
export const DOCS_FILE = new URL("../../docs/configuration.md", import.meta.url);

/**
 * The markdown table of every key, columns padded as `deno fmt` pads them.
 *
 * @example
 * ```ts
 * keyTable().split("\n")[0]; // "| key | default | flag | meaning |", padded
 * ```
 */
export function keyTable(): string {
  const rows = [["key", "default", "flag", "meaning"], ...fleetKeys().map(row)];
  const widths = rows[0].map((_, i) => Math.max(3, ...rows.map((r) => width(r[i]))));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => c + " ".repeat(widths[i] - width(c))).join(" | ")} |`;
  return [line(rows[0]), line(widths.map((w) => "-".repeat(w))), ...rows.slice(1).map(line)]
    .join("\n");
}

/**
 * `text` (docs/configuration.md) with the table between its markers
 * replaced by {@linkcode keyTable}'s.
 *
 * @throws {Error} when the markers are missing or out of order.
 *
 * @example
 * ```ts
 * withKeyTable(`# Configuration\n\n${BEGIN}\n${END}\n`);
 * ```
 */
export function withKeyTable(text: string): string {
  const begin = text.indexOf(`${BEGIN}\n`);
  const end = text.indexOf(END, begin);
  if (begin < 0 || end < 0) throw new Error(`the lines ${BEGIN} and ${END} are missing`);
  return `${text.slice(0, begin)}${BEGIN}\n\n${keyTable()}\n\n${text.slice(end)}`;
}

function row(k: FleetKey): string[] {
  const cells = [code(k.path), defaultCell(k), k.flag ? code(`--${k.flag.name}`) : "", k.decl.doc];
  return cells.map((cell) => cell.replaceAll("|", "\\|"));
}

function defaultCell(k: FleetKey): string {
  const { decl } = k;
  if (decl.fill === "required") return k.inOptional ? "(required in the section)" : "(required)";
  return decl.fill === "default" ? code(shownDefault(decl)!) : decl.absent!;
}

function code(text: string): string {
  return `\`${text}\``;
}

/** Columns as an editor shows them (every character here is one column wide). */
function width(cell: string): number {
  return [...cell].length;
}

if (import.meta.main) {
  const text = await Deno.readTextFile(DOCS_FILE);
  const out = withKeyTable(text);
  if (out !== text) await Deno.writeTextFile(DOCS_FILE, out);
  console.log(`${DOCS_FILE.pathname}: ${out === text ? "up to date" : "written"}`);
}
