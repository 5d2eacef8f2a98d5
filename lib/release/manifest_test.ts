import assert from "node:assert/strict";
import {
  buildManifest,
  formatManifest,
  MANIFEST_HEADER,
  manifestDigest,
  ManifestError,
  parseManifest,
  pathProblem,
  relistedPaths,
} from "./manifest.ts";
import { TreeError } from "./tree.ts";
import { sh, withDir } from "./_testing.ts";

const enc = new TextEncoder();
const HASH_A = "a".repeat(64);

Deno.test("manifest: a tree's paths, types, modes, sizes and hashes, symlinks not followed, skipped names left out", async () => {
  await withDir(async (dir) => {
    sh(
      dir,
      "umask 022 && mkdir -p t/lib/sub t/empty t/bin && printf 'hello\\n' > t/lib/a.ts && : > t/lib/sub/zero && " +
        "printf '#!/bin/sh\\n' > t/bin/run && chmod 755 t/bin/run && chmod 2750 t/lib/sub && " +
        "ln -s ../lib/a.ts t/bin/a && ln -s /etc t/etc && ln -s nowhere t/dangling && " +
        "echo '{}' > t/.fanout-version && echo x > t/.fanout-manifest && " +
        "printf 'x' > 't/with space' && printf 'y' > t/caf$(printf '\\303\\251') && " +
        "printf 'z' > t/cafe$(printf '\\314\\201')",
    );
    const m = await buildManifest(`${dir}/t`, { skip: [".fanout-version", ".fanout-manifest"] });
    const sha = (s: string) =>
      new Deno.Command("sh", { args: ["-c", `printf '%s' '${s}' | sha256sum`] }).outputSync();
    const hex = (s: string) => new TextDecoder().decode(sha(s).stdout).slice(0, 64);
    const want = [
      `d 0755 0 - bin`,
      `l 0777 11 ${hex("../lib/a.ts")} bin/a`,
      `f 0755 10 ${hex("#!/bin/sh\n")} bin/run`,
      // NFC and NFD spellings of one name are two paths, in byte order ("é" is C3 A9, "e" 65).
      `f 0644 1 ${hex("z")} cafe\u0301`,
      `f 0644 1 ${hex("y")} caf\u00e9`,
      `l 0777 7 ${hex("nowhere")} dangling`,
      `d 0755 0 - empty`,
      `l 0777 4 ${hex("/etc")} etc`,
      `d 0755 0 - lib`,
      `f 0644 6 ${hex("hello\n")} lib/a.ts`,
      `d 2750 0 - lib/sub`,
      `f 0644 0 ${hex("")} lib/sub/zero`,
      `f 0644 1 ${hex("x")} with space`,
    ];
    const bytes = formatManifest(m);
    assert.equal(new TextDecoder().decode(bytes), [MANIFEST_HEADER, ...want, ""].join("\n"));
    assert.deepEqual(parseManifest(bytes), m);
    assert.deepEqual(formatManifest(parseManifest(bytes)), bytes);
    assert.equal(
      await manifestDigest(bytes),
      new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)).toHex(),
    );
    assert.equal(m.entries.find((e) => e.path === "lib/a.ts")!.sha256, hex("hello\n"));
    assert.equal(m.entries.find((e) => e.path === "lib")!.sha256, null);
  });
});

Deno.test("manifest: a tree holding what no manifest lists is refused, naming the path", async () => {
  await withDir(async (dir) => {
    const refused = async (script: string, err: unknown, path: string, re: RegExp) => {
      await Deno.mkdir(`${dir}/t`);
      sh(`${dir}/t`, script);
      await assert.rejects(
        buildManifest(`${dir}/t`),
        (e) =>
          e instanceof (err as typeof Error) && (e as ManifestError).path === path &&
          re.test(e.message),
        script,
      );
      await Deno.remove(`${dir}/t`, { recursive: true });
    };
    await refused(
      "mkdir d && touch \"d/$(printf 'a\\nb')\"",
      ManifestError,
      "d/a\nb",
      /"d\/a\\nb" holds a control character/,
    );
    await refused(
      "touch \"$(printf 'esc\\033[2J')\"",
      ManifestError,
      "esc\x1b[2J",
      /control character/,
    );
    await refused("mkfifo pipe", ManifestError, "pipe", /not a file, a directory or a symlink/);
    await refused("ln -s \"$(printf '\\377')\" l", ManifestError, "l", /target is not valid UTF-8/);
    await refused("touch \"$(printf 'a\\377')\"", TreeError, "a\ufffd", /not valid UTF-8/);
  });
  await withDir(async (dir) => {
    sh(dir, "touch a b c");
    await assert.rejects(
      buildManifest(dir, { limits: { maxBytes: 1 << 20, maxPaths: 2 } }),
      (e) => e instanceof TreeError && /more than 2 paths/.test(e.message),
    );
  });
});

Deno.test("manifest: the parser takes only canonical text within its bounds", () => {
  const body = (...lines: string[]) => [MANIFEST_HEADER, ...lines, ""].join("\n");
  const f = (path: string) => `f 0644 1 ${HASH_A} ${path}`;
  const ok = [MANIFEST_HEADER, "d 0755 0 - a", `f 0644 3 ${HASH_A} a/b c`, ""].join("\n");
  assert.equal(parseManifest(enc.encode(ok)).entries.length, 2);
  assert.deepEqual(parseManifest(enc.encode(MANIFEST_HEADER + "\n")).entries, []);
  // A line separator is no line break here: names are taken as they are.
  assert.equal(parseManifest(enc.encode(body(f("a\u2028b")))).entries[0].path, "a\u2028b");

  const refused = (text: string | Uint8Array, re: RegExp, line?: number) =>
    assert.throws(
      () =>
        parseManifest(
          typeof text === "string" ? enc.encode(text) : text,
          { maxBytes: 4096, maxPaths: 4 },
        ),
      (e) => e instanceof ManifestError && re.test(e.message) && e.line === (line ?? null),
      typeof text === "string" ? JSON.stringify(text) : "bytes",
    );

  // Bounds, encoding, framing.
  refused(body(f("x".repeat(5000))), /more than 4096/);
  refused(body(f("a"), f("b"), f("c"), f("d"), f("e")), /lists 5 paths, more than 4/);
  refused(new Uint8Array([...enc.encode(MANIFEST_HEADER + "\n"), 0xff, 0x0a]), /not valid UTF-8/);
  refused(body(f("a")).slice(0, -1), /does not end with a newline/);
  refused("", /does not end with a newline/);
  refused("\ufeff" + body(f("a")), /expected "fanout-manifest v1"/, 1);
  refused("fanout-manifest v2\n", /expected "fanout-manifest v1", got "fanout-manifest v2"/, 1);
  refused(body(f("a"), ""), /expected "<f\|d\|l> <mode> <size> <sha256\|-> <path>", got ""/, 3);
  refused(body(f("a")).replaceAll("\n", "\r\n"), /expected "fanout-manifest v1"/, 1);

  // The shape of a line: one spelling of each field.
  const shape = /expected "<f\|d\|l>/;
  refused(body(`x 0644 1 ${HASH_A} a`), shape, 2);
  refused(body(`f 644 1 ${HASH_A} a`), shape, 2);
  refused(body(`f 0844 1 ${HASH_A} a`), shape, 2);
  refused(body(`f 0644 01 ${HASH_A} a`), shape, 2);
  refused(body(`f 0644 -1 ${HASH_A} a`), shape, 2);
  refused(body(`f 0644 1 ${HASH_A.toUpperCase()} a`), shape, 2);
  refused(body(`f 0644 1 ${HASH_A.slice(1)} a`), shape, 2);
  refused(body(`f  0644 1 ${HASH_A} a`), shape, 2);
  refused(body(`f 0644 1 ${HASH_A} `), shape, 2);
  refused(body(`f 0644 99999999999999999 ${HASH_A} a`), shape, 2);
  refused(body(`f 0644 9999999999999999 ${HASH_A} a`), /size 9999999999999999 is too big/, 2);
  refused(body(`f 0644 1 - a`), /file "a" has no hash/, 2);
  refused(body(`d 0755 1 - a`), /directory "a" must have size 0 and hash "-"/, 2);
  refused(body(`d 0755 0 ${HASH_A} a`), /directory "a" must have size 0/, 2);
  refused(body(`l 0644 1 ${HASH_A} a`), /symlink "a" must have mode 0777/, 2);

  // Paths: nothing that leads out of the tree or hides in a terminal.
  refused(body(f("/etc/passwd")), /path "\/etc\/passwd" is absolute/, 2);
  refused(body("d 0755 0 - a", f("a/../../etc")), /has a "\.\." component/, 3);
  refused(body(f("..")), /has a "\.\." component/, 2);
  refused(body(f(".")), /has a "\." component/, 2);
  refused(body("d 0755 0 - a", f("a/./b")), /has a "\." component/, 3);
  refused(body("d 0755 0 - a", f("a//b")), /has an empty component/, 3);
  refused(body("d 0755 0 - a/"), /has an empty component/, 2);
  refused(body(f("a\x00b")), /control character/, 2);
  refused(body(f("a\x1b[2Jb")), /"a\\u001b\[2Jb" holds a control character/, 2);
  refused(body(f("a\x7f")), /control character/, 2);
  refused(body(f("a\u0085")), /control character/, 2);
  refused(body(f("a\r")), /control character/, 2);
  refused(body(f("n".repeat(256))), /a name longer than 255/, 2);

  // Order and structure.
  refused(body(f("b"), f("a")), /"a" comes after "b": paths must be sorted and unique/, 3);
  refused(body(f("a"), f("a")), /"a" is listed twice/, 3);
  refused(body("d 0755 0 - a", f("a/b"), f("a-b")), /"a-b" comes after "a\/b"/, 4);
  refused(body(f("a/b")), /below "a", which is not a directory listed before it/, 2);
  refused(body(f("a"), f("a/b")), /below "a", which is not a directory/, 3);
  refused(body(`l 0777 1 ${HASH_A} a`, f("a/b")), /below "a", which is not a directory/, 3);
});

Deno.test("manifest: relistedPaths names each path listed otherwise or not before, spaces in names and all", () => {
  const text = (...lines: string[]) => enc.encode([MANIFEST_HEADER, ...lines, ""].join("\n"));
  const HASH_B = "b".repeat(64);
  const old = text(
    "d 0755 0 - a",
    `f 0644 3 ${HASH_A} a/b c`,
    `f 0644 3 ${HASH_A} a/mode`,
    `f 0644 3 ${HASH_A} a/same`,
    `f 0644 3 ${HASH_A} gone`,
  );
  const now = text(
    "d 0755 0 - a",
    `f 0644 4 ${HASH_B} a/b c`,
    `f 0755 3 ${HASH_A} a/mode`,
    `l 0777 1 ${HASH_A} a/new link`,
    `f 0644 3 ${HASH_A} a/same`,
  );
  parseManifest(now);
  assert.deepEqual([...relistedPaths(old, now)!].sort(), ["a/b c", "a/mode", "a/new link"]);
  assert.deepEqual([...relistedPaths(now, now)!], []);
  // Not text: nothing said, so nothing vouched for.
  assert.equal(relistedPaths(new Uint8Array([0xff, 0x0a]), now), null);
  assert.deepEqual([...relistedPaths(new Uint8Array(), now)!].sort(), [
    "a",
    "a/b c",
    "a/mode",
    "a/new link",
    "a/same",
  ]);
});

Deno.test("manifest: pathProblem", () => {
  assert.equal(pathProblem("lib/a b/c.ts"), null);
  assert.equal(pathProblem("caf\u00e9/\u{1f600}/a\u2028b"), null);
  assert.equal(pathProblem(""), "is empty");
  assert.equal(pathProblem("a/"), "has an empty component");
  assert.equal(pathProblem("x/".repeat(2049)), "is longer than 4096");
});
