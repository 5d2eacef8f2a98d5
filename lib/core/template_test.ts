// fanout's mustache subset: what a template says is what is rendered, a typo
// fails loudly, and no value can add a line of its own.
import assert from "node:assert/strict";
import { renderTemplate, UnsafeValueError } from "./template.ts";
import { CONTROL_CHARS } from "./visible.ts";
import { FanoutError } from "./errors.ts";

Deno.test("template: values are inserted as text, numbers and booleans included", () => {
  assert.equal(
    renderTemplate("port = {{port}} root = {{root}} name = {{name}}\n", {
      port: 873,
      root: false,
      name: "rsync2",
    }),
    "port = 873 root = false name = rsync2\n",
  );
});

Deno.test("template: {{#x}} keeps its block when truthy, {{^x}} when falsy", () => {
  const t = "a\n{{#on}}on\n{{/on}}{{^on}}off\n{{/on}}z\n";
  assert.equal(renderTemplate(t, { on: true }), "a\non\nz\n");
  assert.equal(renderTemplate(t, { on: 0 }), "a\noff\nz\n");
  assert.equal(renderTemplate(t, { on: "" }), "a\noff\nz\n");
  assert.equal(renderTemplate(t, { on: [] }), "a\noff\nz\n", "an empty list is falsy");
});

Deno.test("template: a list repeats its block, items as {{.}} or as fields", () => {
  assert.equal(
    renderTemplate("{{#hosts}}allow {{.}}\n{{/hosts}}", { hosts: ["10.0.0.2", "10.0.0.3"] }),
    "allow 10.0.0.2\nallow 10.0.0.3\n",
  );
  assert.equal(
    renderTemplate("{{#servers}}server {{name}} {{addr}} in {{tree}}\n{{/servers}}", {
      tree: "plugins",
      servers: [{ name: "a", addr: "1:1" }, { name: "b", addr: "2:2" }],
    }),
    "server a 1:1 in plugins\nserver b 2:2 in plugins\n",
  );
});

Deno.test("template: block tags alone on a line take their line with them", () => {
  const t = "first\n  {{#x}}  \nmiddle\n\t{{/x}}\r\nlast\n";
  assert.equal(renderTemplate(t, { x: true }), "first\nmiddle\nlast\n");
  assert.equal(renderTemplate(t, { x: false }), "first\nlast\n");
  // Not alone: the line stays.
  assert.equal(renderTemplate("a {{#x}}b{{/x}}\n", { x: true }), "a b\n");
});

Deno.test("template: a name the view lacks is an error naming it, a block's name too", () => {
  assert.throws(() => renderTemplate("{{prot}}", { port: 1 }), /refers to "prot"/);
  assert.throws(() => renderTemplate("{{#missing}}x{{/missing}}", {}), /refers to "missing"/);
  // A value of undefined is a value the view has.
  assert.equal(renderTemplate("[{{x}}]", { x: undefined }), "[undefined]");
});

Deno.test("template: a value's own braces are text, never expanded", () => {
  assert.equal(
    renderTemplate("path = {{path}}\n", { path: "/srv/{{secret}}/{{#x}}", secret: "s3cr3t" }),
    "path = /srv/{{secret}}/{{#x}}\n",
  );
});

Deno.test("template: every control character in a value is refused, with a safe message", () => {
  for (const bad of ["\n", "\r", "\t", "\x00", "\x1b[2J", "\x7f", "\x85", "\x9b"]) {
    const value = `/srv/t${bad}[evil]`;
    assert.throws(
      () => renderTemplate("path = {{path}}\n", { path: value }),
      (e) => {
        assert.ok(e instanceof UnsafeValueError);
        assert.ok(e instanceof FanoutError);
        assert.equal(e.exitCode, 2);
        assert.match(e.message, /^cannot render path = ".*": it holds a control character/);
        assert.doesNotMatch(e.message, CONTROL_CHARS);
        return true;
      },
      JSON.stringify(bad),
    );
  }
  // Also inside a list's items, and however long the value.
  assert.throws(
    () => renderTemplate("{{#l}}{{.}}{{/l}}", { l: ["ok", "x".repeat(100_000) + "\n"] }),
    (e) => e instanceof UnsafeValueError && e.message.length < 200,
  );
});

Deno.test("template: the filter sees each value and its name, after the control guard", () => {
  const seen: string[] = [];
  const out = renderTemplate("{{a}} {{b}}", { a: "x y", b: 2 }, (text, name) => {
    seen.push(`${name}=${text}`);
    return text.toUpperCase().replaceAll(" ", "_");
  });
  assert.equal(out, "X_Y 2");
  assert.deepEqual(seen, ["a=x y", "b=2"]);
  assert.throws(
    () => renderTemplate("{{a}}", { a: "\n" }, () => "filtered"),
    UnsafeValueError,
  );
});
