// The name a host goes by without --name: the machine's own.
import assert from "node:assert/strict";
import { hostname } from "./host_name.ts";

Deno.test("hostname: the machine's host name", () => {
  const name = hostname();
  assert.equal(name, Deno.hostname());
  assert.ok(name.length > 0);
});
