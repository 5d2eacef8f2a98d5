// Every error a user meets maps to one documented exit code, and a fleet
// file's problems read as `file:line: path: message`, one a line.
import assert from "node:assert/strict";
import {
  ConfigError,
  EnvironmentError,
  ExitCode,
  FanoutError,
  formatProblem,
  LockedError,
  SafetyError,
  TransferError,
  UsageError,
} from "./errors.ts";

Deno.test("errors: the exit codes are the documented ones", () => {
  assert.deepEqual(ExitCode, { Ok: 0, Drift: 1, Usage: 2, Transfer: 3, Safety: 4, Locked: 5 });
});

Deno.test("errors: each kind carries its exit code, its name and its cause", () => {
  const cause = new Error("ENOSPC");
  const table: [FanoutError, number, string][] = [
    [new UsageError("bad flag", { cause }), 2, "UsageError"],
    [new EnvironmentError("no rsync", { cause }), 2, "EnvironmentError"],
    [new TransferError("rsync failed", 30, { cause }), 3, "TransferError"],
    [new SafetyError("refusing /", { cause }), 4, "SafetyError"],
    [new LockedError("held", { cause }), 5, "LockedError"],
    [new FanoutError("plain", ExitCode.Drift, { cause }), 1, "FanoutError"],
  ];
  for (const [e, code, name] of table) {
    assert.ok(e instanceof FanoutError && e instanceof Error, name);
    assert.equal(e.exitCode, code, name);
    assert.equal(e.name, name);
    assert.equal(e.cause, cause, name);
    assert.ok(String(e).startsWith(`${name}: `), String(e));
  }
});

Deno.test("errors: a TransferError keeps rsync's own code, or null when rsync did not run", () => {
  assert.equal(new TransferError("timeout", 30).rsyncCode, 30);
  assert.equal(new TransferError("no route").rsyncCode, null);
});

Deno.test("formatProblem: file:line: path: message, or the flag that gave the value", () => {
  assert.equal(
    formatProblem("fanout.yaml", { path: "replicas[1].listen", message: "bad", line: 7 }),
    "fanout.yaml:7: replicas[1].listen: bad",
  );
  assert.equal(
    formatProblem("fanout.yaml", { path: "tree", message: "required" }),
    "fanout.yaml: tree: required",
  );
  assert.equal(
    formatProblem("fanout.yaml", { path: "", message: "not YAML", line: 1 }),
    "fanout.yaml:1: not YAML",
  );
  assert.equal(
    formatProblem("fanout.yaml", {
      path: "proxy.listen",
      message: "bad",
      line: 3,
      flag: "--listen",
    }),
    "--listen: bad",
  );
});

Deno.test("ConfigError: every problem on its own line, in order, all kept", () => {
  const problems = [
    { path: "tree", message: "required" },
    { path: "primary.address", message: 'expected an IP, got "x"', line: 4 },
    { path: "", message: "unknown key", flag: "--set" },
  ];
  const e = new ConfigError("/etc/fanout/fanout.yaml", problems);
  assert.equal(e.exitCode, ExitCode.Usage);
  assert.equal(e.name, "ConfigError");
  assert.equal(e.file, "/etc/fanout/fanout.yaml");
  assert.deepEqual(e.problems, problems);
  assert.deepEqual(e.message.split("\n"), [
    "/etc/fanout/fanout.yaml: tree: required",
    '/etc/fanout/fanout.yaml:4: primary.address: expected an IP, got "x"',
    "--set: unknown key",
  ]);
});
