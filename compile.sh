#!/usr/bin/env bash
# Builds fanout for shipping:
#   dist/fanout     one executable, version stamped, with the permissions and V8 flags below:
#                   deno compile's where Deno's "denort" runtime is at hand (see DENORT_BIN);
#                   else self-contained: a sh launcher, this Deno and the bundle in one file
#                   (build/launcher.sh), needing nothing on the host but sh, coreutils and gzip
#   dist/fanout.js  the whole program in one file (deno bundle), always built, works offline;
#                   run it with `deno run -A dist/fanout.js` (or directly: it has a shebang)
#
# Usage: bash compile.sh [--target TRIPLE] [--bundle-only] [--self-contained] [--no-verify]
#                        [--print-run-flags]
#   --target T       cross-compile the binary (dist/fanout-T), e.g. aarch64-unknown-linux-gnu
#   --bundle-only    build dist/fanout.js only
#   --self-contained skip deno compile: dist/fanout is the launcher with Deno and the bundle
#   --no-verify      do not run the new binary's --version before calling it built (a
#                    cross-compiled binary is never run)
# Environment:
#   OUT_DIR          where to write (default: dist, next to this script)
#   DENORT_BIN       a denort binary of the same Deno version and target, for machines
#                    that cannot download it (deno compile itself honours this variable)
#   FANOUT_COMMIT    the commit to stamp (default: git rev-parse of this checkout)
# Exit: 0 everything asked for was built (dist/fanout self-contained when deno compile
# cannot download denort); 1 a build failed; 2 a DENORT_BIN given is unusable (dist/fanout
# is the self-contained one all the same), or no binary for a cross --target without denort.
set -euo pipefail
shopt -s inherit_errexit

say() { printf 'compile.sh: %s\n' "$*" >&2; }
# deno compile reads DENORT_BIN itself: an empty one must not reach it.
[ -n "${DENORT_BIN:-}" ] || unset DENORT_BIN

# How the binary and the bundle run: what every role needs, and nothing more
# that Deno lets us withhold, and the V8 flags:
RUN_FLAGS=(
  --allow-net # rsync daemons, health endpoints, the proxy: addresses come from the fleet file
  --allow-read --allow-write # trees, state dirs, fleet file, secrets: paths from the fleet file
  # rsync and git are all fanout runs, but Deno.kill() (stopping an rsync daemon's whole
  # process group) needs unrestricted --allow-run: --allow-run=rsync,git would leave
  # daemons behind on SIGTERM.
  --allow-run
  # The client reads XDG_CACHE_HOME and HOME (where its fleet cache lives); with all of
  # --allow-run, narrowing it would isolate nothing.
  --allow-env
  --allow-sys=hostname,uid,gid # --name defaults to the host name; root decides uid/chroot
  # The proxy's splice engine calls libc (socket, epoll, splice) through FFI; without it
  # the proxy falls back to its copy engine. With all of --allow-run, narrowing it would
  # isolate nothing.
  --allow-ffi
  --no-prompt # a service has nobody to answer a prompt: fail at once
  # Small young generation and lite mode: ~90 MB less peak RSS for a busy primary
  # (V8_FLAGS in lib/core/defaults.ts says what they save and cost).
  --v8-flags=--max-semi-space-size=1,--lite-mode
)

target=""
bundle_only=0
self_contained=0
verify=1
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target=${2:?--target needs a value, e.g. aarch64-unknown-linux-gnu}; shift 2 ;;
    --target=*) target=${1#--target=}; shift ;;
    --bundle-only) bundle_only=1; shift ;;
    --self-contained) self_contained=1; shift ;;
    --no-verify) verify=0; shift ;;
    --print-run-flags) echo "${RUN_FLAGS[*]}"; exit 0 ;;
    -h | --help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) say "unknown argument \"$1\" (see bash compile.sh --help)"; exit 1 ;;
  esac
done

caller_pwd=$(pwd)
cd "$(dirname "$0")"
root=$(pwd -P)
out=${OUT_DIR:-$root/dist}
case "$out" in /*) ;; *) out="$caller_pwd/$out" ;; esac
mkdir -p "$out"

command -v deno >/dev/null 2>&1 || { say "deno is not on PATH (npx -y deno@2.9.6 works too)"; exit 1; }
deno_line=$(deno --version | head -1) # deno 2.9.6 (stable, release, x86_64-unknown-linux-gnu)
deno_version=$(sed -E 's/^deno ([^ ]+).*/\1/' <<<"$deno_line")
host_target=$(sed -E 's/.*, ([^,)]+)\)$/\1/' <<<"$deno_line")

# --- version stamp ----------------------------------------------------------
version=$(sed -nE 's/^ *"version": *"([^"]+)".*/\1/p' deno.json | head -1)
commit=${FANOUT_COMMIT:-}
if [ -z "$commit" ] && git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
  commit=$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || true)
  if [ -n "$commit" ] && [ -n "$(git -C "$root" status --porcelain 2>/dev/null)" ]; then
    commit="$commit.dirty"
  fi
fi
full_version=$version${commit:++$commit}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fanout-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# What a build keeps between runs (nothing it cannot make again).
cache=${XDG_CACHE_HOME:-${HOME:-/nonexistent}/.cache}/fanout-build
# lib/core/_build.ts is swapped for a generated module through an import map that
# otherwise repeats deno.json's imports, so nothing in the checkout is touched.
if [ -n "$commit" ]; then commit_js="\"$commit\""; else commit_js=null; fi
printf '// Generated by compile.sh.\nexport const BUILD: { commit: string | null } = { commit: %s };\n' \
  "$commit_js" >"$tmp/_build.ts"
# Kept in the cache under its checksum, the generated module has the same path
# at every build of a commit: deno compile then finds its type check of an
# unchanged checkout in Deno's cache instead of taking seconds to redo it.
build_ts="$tmp/_build.ts"
build_id=$(sha256sum <"$build_ts" | cut -c1-16)
if [ -s "$cache/build-$build_id.ts" ] ||
  { mkdir -p "$cache" && cp "$build_ts" "$cache/.build-$build_id.ts.$$" &&
    mv -f "$cache/.build-$build_id.ts.$$" "$cache/build-$build_id.ts"; } 2>/dev/null; then
  build_ts="$cache/build-$build_id.ts"
fi
# The bundle's map also takes the ES module build of the `yaml` package: its
# Node build is CommonJS, which makes a bundle import node:module at start-up
# (~16 ms on every run of every command, cron clients included). The binary
# keeps the Node build: deno compile type-checks, the ES build has no types,
# and the binary loads yaml lazily, only to place a fleet-file error.
deno install --quiet --entrypoint main.ts >/dev/null
deno eval --no-config --quiet '
  const [config, build, map, bundleMap] = Deno.args;
  const imports = JSON.parse(Deno.readTextFileSync(config)).imports ?? {};
  imports[new URL("lib/core/_build.ts", `file://${Deno.cwd()}/`).href] = new URL(`file://${build}`).href;
  Deno.writeTextFileSync(map, JSON.stringify({ imports }, null, 2));
  const yaml = /^npm:yaml@(.+)$/.exec(imports.yaml ?? "");
  const esm = yaml && `${Deno.cwd()}/node_modules/.deno/yaml@${yaml[1]}/node_modules/yaml/browser/index.js`;
  try {
    if (esm && Deno.statSync(esm).isFile) imports.yaml = `file://${esm}`;
  } catch {
    console.error(`compile.sh: ${esm} not found: the bundle takes yaml as CommonJS (slower start-up)`);
  }
  Deno.writeTextFileSync(bundleMap, JSON.stringify({ imports }, null, 2));
' "$root/deno.json" "$build_ts" "$tmp/import_map.json" "$tmp/bundle_map.json"

# --- bundle: always -----------------------------------------------------------
# Dynamic import() of roles and renderers is inlined (esbuild keeps them lazy),
# and text/JSON imports become string/object literals: one self-contained file.
if ! deno bundle --quiet --minify --keep-names --platform deno --import-map "$tmp/bundle_map.json" \
  -o "$tmp/fanout.js" main.ts >"$tmp/bundle.log" 2>&1; then
  cat "$tmp/bundle.log" >&2
  say "deno bundle failed (see above)"
  exit 1
fi
{
  printf '#!/usr/bin/env -S deno run --no-config %s\n' "${RUN_FLAGS[*]}"
  printf '// fanout %s, bundled by compile.sh with deno %s.\n' "$full_version" "$deno_version"
  cat "$tmp/fanout.js"
} >"$tmp/fanout.js.out"
chmod 755 "$tmp/fanout.js.out"
mv -f "$tmp/fanout.js.out" "$out/fanout.js"
say "built $out/fanout.js (fanout $full_version; run: deno run -A $out/fanout.js)"

[ "$bundle_only" = 1 ] && exit 0

# --- self-contained executable: build/launcher.sh, this Deno (gzip) and the bundle
# Builds $1 from the Deno running this script; prints its size in MB.
self_contained() {
  local dest=$1 rt rt_sha js_sha id dir flags tpl header hdr=0 total mb f
  rt=$(deno eval --no-config 'console.log(Deno.execPath())')
  rt_sha=$(sha256sum <"$rt" | cut -c1-64)
  # Compressing Deno takes seconds: the result is kept per runtime checksum
  # (a damaged copy fails the build's own run). -n: no name or time in the
  # stream, so the same inputs give the same file.
  if [ -s "$cache/deno-$rt_sha.gz" ]; then
    cp "$cache/deno-$rt_sha.gz" "$tmp/deno.gz"
  else
    gzip -6 -n -c <"$rt" >"$tmp/deno.gz"
    { mkdir -p "$cache" && cp "$tmp/deno.gz" "$cache/.deno-$rt_sha.gz.$$" &&
      mv -f "$cache/.deno-$rt_sha.gz.$$" "$cache/deno-$rt_sha.gz"; } 2>/dev/null || true
  fi
  js_sha=$(sha256sum <"$out/fanout.js" | cut -c1-64)
  flags=""
  for f in "${RUN_FLAGS[@]}"; do flags+="'$f' "; done
  id=$(printf '%s %s %s' "$rt_sha" "$js_sha" "$flags" | sha256sum | cut -c1-16)
  # The cache directory's name: version (path- and sh-safe) and checksum.
  dir="$(tr -c 'A-Za-z0-9.+_-' _ <<<"$full_version" | head -c -1)-$id"
  mb=$(((($(stat -c %s "$rt") + $(stat -c %s "$out/fanout.js")) >> 20) + 1))
  tpl=$(<"$root/build/launcher.sh")
  tpl=${tpl//@VERSION@/${dir%-*}}
  tpl=${tpl//@DENO_VERSION@/$deno_version}
  tpl=${tpl//@DIR@/$dir}
  tpl=${tpl//@RT_GZ@/$(stat -c %s "$tmp/deno.gz")}
  tpl=${tpl//@RT_SHA@/$rt_sha}
  tpl=${tpl//@JS@/$(stat -c %s "$out/fanout.js")}
  tpl=${tpl//@JS_SHA@/$js_sha}
  tpl=${tpl//@UNPACKED_MB@/$mb}
  tpl=${tpl//@FLAGS@/${flags% }}
  # The header states its own length and the file's: fill both until they hold.
  for _ in 1 2 3 4; do
    total=$((hdr + $(stat -c %s "$tmp/deno.gz") + $(stat -c %s "$out/fanout.js")))
    header=${tpl//@HDR@/$hdr}
    header=${header//@TOTAL@/$total}$'\n'
    [ "$(printf '%s' "$header" | wc -c)" = "$hdr" ] && break
    hdr=$(printf '%s' "$header" | wc -c)
  done
  { printf '%s' "$header"; cat "$tmp/deno.gz" "$out/fanout.js"; } >"$dest"
  chmod 755 "$dest"
  [ "$(stat -c %s "$dest")" = "$total" ] || { say "self-contained build: sizes do not add up"; exit 1; }
  echo $((total >> 20))
}

# Builds dist/fanout self-contained when deno compile cannot; $1 is the exit code.
fall_back() {
  local size got
  if [ "$t" != "$host_target" ]; then
    exit 2 # the Deno at hand runs on this machine only
  fi
  size=$(self_contained "$tmp/fanout.sc")
  if [ "$verify" = 1 ]; then
    # Where a user runs it: no deno on PATH, a fresh cache.
    got=$(env -i PATH=/usr/bin:/bin FANOUT_CACHE="$tmp/cache" timeout 120 "$tmp/fanout.sc" --version 2>&1 |
      head -1 || true)
    if [ "$got" != "fanout $full_version" ]; then
      say "the self-contained $out/fanout does not run fanout (its --version said: ${got:-nothing})"
      exit 1
    fi
  fi
  mv -f "$tmp/fanout.sc" "$out/fanout"
  say "built $out/fanout (fanout $full_version, self-contained: Deno $deno_version and the bundle, $size MB, $([ "$verify" = 1 ] && echo "ran its --version" || echo "not run"); it unpacks once into \$FANOUT_CACHE, /var/cache/fanout or ~/.cache/fanout)"
  exit "$1"
}

# --- binary -------------------------------------------------------------------
t=${target:-$host_target}
name=fanout
[ -n "$target" ] && [ "$target" != "$host_target" ] && name="fanout-$target"
case "$t" in *windows*) name="$name.exe" ;; esac
[ "$self_contained" = 1 ] && fall_back 0
provide="download denort-$t.zip of Deno v$deno_version (from Deno's release page) on a machine that can, unzip it, and run again with DENORT_BIN=/path/to/denort"
# Where dist/fanout is then built self-contained, the sentence says "not compiled".
missed="not built"
[ "$t" = "$host_target" ] && missed="not compiled"

if [ -n "${DENORT_BIN:-}" ]; then
  problem=""
  if [ ! -f "$DENORT_BIN" ]; then
    problem="is not a file"
  elif grep -qaF "Output a single JavaScript file with all dependencies" "$DENORT_BIN"; then
    problem="is the deno CLI, not the denort runtime"
  else
    # An ELF runtime must be for the target's machine (x86-64 is 3e, aarch64 b7).
    want=""
    case "$t" in x86_64-*linux*) want="3e 00" ;; aarch64-*linux*) want="b7 00" ;; esac
    if [ -n "$want" ] && [ "$(od -An -tx1 -N4 "$DENORT_BIN" | xargs)" = "7f 45 4c 46" ] &&
      [ "$(od -An -tx1 -j18 -N2 "$DENORT_BIN" | xargs)" != "$want" ]; then
      problem="is built for another machine than $t"
    fi
  fi
  if [ -n "$problem" ]; then
    say "$out/$name $missed: DENORT_BIN=$DENORT_BIN $problem; $provide."
    fall_back 2
  fi
fi
if ! deno compile "${RUN_FLAGS[@]}" --import-map "$tmp/import_map.json" \
  ${target:+--target "$target"} -o "$tmp/$name" main.ts >"$tmp/compile.log" 2>&1; then
  if grep -qiE 'denort|dl\.deno\.land' "$tmp/compile.log"; then
    if [ -n "${DENORT_BIN:-}" ]; then
      say "$out/$name $missed: deno compile could not use DENORT_BIN=$DENORT_BIN ($(grep -m1 -iE 'denort|elf|invalid|error:' "$tmp/compile.log" | sed 's/\x1b\[[0-9;]*m//g' | sed 's/^ *//')); $provide."
      fall_back 2
    fi
    say "$out/$name $missed: deno compile needs the denort runtime for $t (Deno $deno_version) and could not download it; $provide."
    fall_back 0
  fi
  cat "$tmp/compile.log" >&2
  say "deno compile failed (see above)"
  exit 1
fi
# A denort of another version, or the deno CLI itself, makes a binary that
# does not run fanout: try it before calling it built.
if [ "$t" = "$host_target" ] && [ "$verify" = 1 ]; then
  got=$(timeout 30 "$tmp/$name" --version 2>&1 | head -1 || true)
  if [ "$got" != "fanout $full_version" ]; then
    say "$out/$name $missed: the binary deno compile made with DENORT_BIN=${DENORT_BIN:-(downloaded)} does not run fanout (its --version said: ${got:-nothing}), so DENORT_BIN is not the denort runtime of Deno $deno_version for $t; $provide."
    rm -f "$tmp/$name"
    fall_back 2
  fi
fi
mv -f "$tmp/$name" "$out/$name"
checked="ran its --version"
[ "$t" = "$host_target" ] && [ "$verify" = 1 ] || checked="not run"
say "built $out/$name (fanout $full_version for $t, $checked; flags: ${RUN_FLAGS[*]})"
