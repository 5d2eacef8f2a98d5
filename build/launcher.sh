#!/bin/sh
# fanout @VERSION@: one self-contained executable, built by compile.sh where
# `deno compile` has no denort. After this header come the Deno @DENO_VERSION@
# runtime (gzip) and fanout's bundle. The first run unpacks both into a
# directory named by version and checksum, checks their sha256, renames the
# directory into place (racing first runs: one rename wins, the others use it)
# and execs; later runs exec at once, with the permissions and V8 flags of a
# compiled binary, and Deno's code cache in the same directory.
# Where (the first that works): $FANOUT_CACHE alone when set; else
# /var/cache/fanout when writable (root), ${XDG_CACHE_HOME:-$HOME/.cache}/fanout,
# ${TMPDIR:-/tmp}/fanout-<uid>. Needs only sh, coreutils and gzip.
# Exit 2 with one line when this file is truncated or corrupted, or when no
# directory can take the runtime; otherwise fanout's own exit code.
{
  V='@VERSION@'
  D='@DIR@'
  H=@HDR@
  RT_GZ=@RT_GZ@
  RT_SHA=@RT_SHA@
  JS=@JS@
  JS_SHA=@JS_SHA@
  TOTAL=@TOTAL@

  # A usable unpacked copy: in a base of ours no one else may write, itself
  # ours and no symlink (test -O follows one: to /dev/shm, say, which root
  # owns and anyone fills), complete (the rename comes last), and its code
  # cache writable (else every run compiles the bundle again).
  # Under /var/cache (only root creates there) the builtins suffice; any other
  # base also has its mode read (a fork of ls: ~5 ms a run).
  ready() {
    owned "$1" && [ ! -L "$1/$D" ] && [ -O "$1/$D" ] && [ -x "$1/$D/deno" ] &&
      [ -r "$1/$D/fanout.js" ] && [ -w "$1/$D/deno-dir" ] &&
      { [ "$1" = /var/cache/fanout ] || private "$1"; }
  }

  # $1 is a directory of this user's, no symlink.
  owned() {
    [ -d "$1" ] && [ ! -L "$1" ] && [ -O "$1" ]
  }

  # $1 is a directory of this user's, no symlink, that no one else may write.
  private() {
    owned "$1" || return 1
    case $(ls -ld "$1" 2>/dev/null) in d????w* | d???????w*) return 1 ;; esac
  }

  fail() {
    printf 'fanout: %s\n' "$1" >&2
    exit 2
  }

  corrupted() {
    fail "$0 is corrupted (what it holds fails its checksum): copy fanout $V onto this host again."
  }

  # Unpacks into base $1; sets dir, or why (and returns 1) when $1 cannot
  # take it. A corrupted or truncated file ends the run.
  unpack() {
    b=$1
    case $b in /*) ;; *) why="$b is not an absolute path" && return 1 ;; esac
    [ -d "$b" ] || mkdir -p -m 700 "$b" 2>/dev/null || { why="$b cannot be created" && return 1; }
    if [ -L "$b" ] || [ ! -O "$b" ] || [ ! -w "$b" ]; then
      why="$b is not a directory of this user's that it can write" && return 1
    fi
    # A directory others may write is not one to run code from.
    case $(ls -ld "$b" 2>/dev/null) in
    d????w* | d???????w*) why="$b is writable by others" && return 1 ;;
    esac
    t=$(mktemp -d "$b/.unpack.XXXXXX" 2>/dev/null) || { why="$b is not writable" && return 1; }
    trap 'rm -rf "$t"' EXIT
    trap 'exit 129' HUP
    trap 'exit 130' INT
    trap 'exit 143' TERM
    if ! { tail -c +$((H + 1)) "$0" | head -c "$RT_GZ" | gzip -dc >"$t/deno"; } 2>/dev/null ||
      ! tail -c +$((H + RT_GZ + 1)) "$0" | head -c "$JS" >"$t/fanout.js"; then
      rm -rf "$t"
      # A sound stream that did not unpack: the disk is full or failing.
      tail -c +$((H + 1)) "$0" | head -c "$RT_GZ" | gzip -t 2>/dev/null && why="$b has no room" &&
        return 1
      corrupted
    fi
    (cd "$t" && printf '%s  deno\n%s  fanout.js\n' "$RT_SHA" "$JS_SHA" | sha256sum -c --status) ||
      corrupted
    chmod 700 "$t/deno" && mkdir "$t/deno-dir" || { why="$b is not writable" && rm -rf "$t" && return 1; }
    if ! "$t/deno" --version >/dev/null 2>&1; then
      rm -rf "$t"
      why="Deno does not run from $b (mounted noexec, or this host is not x86_64 Linux with glibc)"
      return 1
    fi
    # Racing first runs: mv -T renames onto a missing name only; the loser
    # drops its copy and takes the winner's.
    mv -T "$t" "$b/$D" 2>/dev/null || rm -rf "$t"
    trap - EXIT HUP INT TERM
    ready "$b" || { why="$b/$D is not usable" && return 1; }
    dir=$b/$D
    prune "$b"
  }

  # Keeps this version and the newest other one (a second fanout file on the
  # host, or the one being replaced); removes older versions and unpackings
  # a killed run left (an hour old: a racing run's is younger).
  prune() {
    n=0
    x=[0-9a-f]
    IFS='
'
    for old in $(cd "$1" && ls -dt -- *-$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x/ 2>/dev/null); do
      old=${old%/}
      [ "$old" = "$D" ] && continue
      n=$((n + 1))
      [ "$n" -gt 1 ] && [ -O "$1/$old" ] && rm -rf -- "${1:?}/$old"
    done
    unset IFS
    find "$1" -mindepth 1 -maxdepth 1 -name '.unpack.*' -mmin +60 -exec rm -rf {} + 2>/dev/null
    return 0
  }

  dir=
  home=${XDG_CACHE_HOME:-${HOME:+$HOME/.cache}}
  case $home in /*) home=$home/fanout ;; *) home= ;; esac
  if [ -n "${FANOUT_CACHE:-}" ]; then
    ready "$FANOUT_CACHE" && dir=$FANOUT_CACHE/$D
  elif [ -w /var/cache/fanout ] && ready /var/cache/fanout; then
    dir=/var/cache/fanout/$D
  elif [ -n "$home" ] && ready "$home"; then
    dir=$home/$D
  fi
  if [ -z "$dir" ]; then
    # A file cut short (an interrupted copy) is said before anything is written.
    have=$(wc -c <"$0") || fail "cannot read $0."
    [ "$have" -eq "$TOTAL" ] ||
      fail "$0 is truncated or damaged ($have bytes, not $TOTAL): copy fanout $V onto this host again."
    if [ -n "${FANOUT_CACHE:-}" ]; then
      unpack "$FANOUT_CACHE" ||
        fail "cannot unpack its Deno runtime (~@UNPACKED_MB@ MB) into FANOUT_CACHE: $why; set FANOUT_CACHE to a directory this user can write and execute from."
    else
      tmp=${TMPDIR:-/tmp}/fanout-$(id -u)
      whys=
      for b in /var/cache/fanout "$home" "$tmp"; do
        [ -n "$b" ] || continue
        if [ "$b" = "$tmp" ] && ready "$b"; then dir=$b/$D && break; fi
        [ "$b" = /var/cache/fanout ] && [ ! -w /var/cache ] && [ ! -w "$b" ] &&
          whys="$whys, $b is not writable" && continue
        unpack "$b" && break
        whys="$whys, $why"
      done
      [ -n "$dir" ] ||
        fail "cannot unpack its Deno runtime (~@UNPACKED_MB@ MB) anywhere (${whys#, }): set FANOUT_CACHE to a directory this user can write and execute from."
    fi
  fi
  # The runtime never looks for updates, a config, a lock file or packages,
  # and never prompts.
  DENO_DIR=$dir/deno-dir DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1 DENO_NO_PACKAGE_JSON=1
  export DENO_DIR DENO_NO_UPDATE_CHECK DENO_NO_PROMPT DENO_NO_PACKAGE_JSON
  exec "$dir/deno" run --quiet --no-config --no-lock --no-remote --no-npm @FLAGS@ "$dir/fanout.js" "$@"
}
exit 70
