// `deno task bench`: every benchmark, one after the other (they share the
// machine's two cores, so never at once), each printing its markdown table
// with ratios against the peers it measured in the same run.
//
//   deno task bench                 # full sizes (several minutes)
//   deno task bench --quick         # small trees, a sanity check
//   deno task bench propagation     # only the named ones
const quick = Deno.args.includes("--quick");
const named = Deno.args.filter((a) => !a.startsWith("--"));
const ALL = ["propagation", "proxy", "client", "publish", "notify", "end_to_end"];
const chosen = named.length ? named : ALL;
let failed = 0;
for (const name of chosen) {
  if (!ALL.includes(name) && name !== "herd") {
    console.error(`bench: unknown benchmark "${name}" (known: ${[...ALL, "herd"].join(", ")})`);
    Deno.exit(2);
  }
  console.log(`\n## bench/${name}.ts${quick ? " --quick" : ""}\n`);
  const st = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL(`./${name}.ts`, import.meta.url).pathname,
      ...(quick ? ["--quick"] : []),
    ],
    stdout: "inherit",
    stderr: "inherit",
  }).spawn().status;
  if (!st.success) {
    failed++;
    console.log(`bench/${name}.ts failed (exit ${st.code})`);
  }
}
Deno.exit(failed ? 1 : 0);
