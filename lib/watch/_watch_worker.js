// The watcher's worker: holds the Deno.watchFs watches and forwards their
// events to lib/watch.ts in batches. It runs in a worker because Deno keeps
// one filesystem watcher per runtime and never forgets a closed watch's
// paths: every watch ever opened costs path checks on every later event.
// Replacing the worker is the only way to start clean, so lib/watch.ts does
// that when watches pile up. Plain JavaScript: it is loaded from text, so the
// bundled and compiled binaries carry it without a module graph.

const watchers = [];
let batch = [];
let timer = null;

function flush() {
  timer = null;
  const events = batch;
  batch = [];
  self.postMessage({ type: "events", events });
}

async function pump(w) {
  try {
    for await (const e of w) {
      batch.push([e.kind, e.paths, e.flag ?? null]);
      if (timer === null) timer = setTimeout(flush, 0);
    }
  } catch (e) {
    self.postMessage({ type: "error", message: String(e?.message ?? e) });
  }
}

self.onmessage = (m) => {
  const msg = m.data;
  if (msg.type === "watch") {
    try {
      const w = Deno.watchFs(msg.dirs, { recursive: false });
      watchers.push(w);
      self.postMessage({ type: "ready", id: msg.id });
      pump(w);
    } catch (e) {
      self.postMessage({
        type: "failed",
        id: msg.id,
        name: e?.name ?? "Error",
        message: String(e?.message ?? e),
      });
    }
  } else if (msg.type === "close") {
    for (const w of watchers) {
      try {
        w.close();
      } catch { /* closed */ }
    }
    // Events already read go out first, then the answer.
    if (timer !== null) clearTimeout(timer);
    if (batch.length) flush();
    self.postMessage({ type: "ready", id: msg.id });
  }
};
