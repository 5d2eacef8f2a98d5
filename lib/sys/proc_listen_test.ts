// Which process holds a listening socket, read from /proc: a daemon that
// greets on fanout's port must be fanout's own, not another's.
import assert from "node:assert/strict";
import { holdsListener, listeningInodes } from "./proc_listen.ts";

Deno.test("holdsListener tells this process's listening socket from another's", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const unheld = (closed.addr as Deno.NetAddr).port;
  closed.close();
  try {
    assert.equal(await holdsListener(Deno.pid, port), true);
    assert.equal(await holdsListener(1, port), false);
    assert.equal(await holdsListener(Deno.pid, unheld), false);
  } finally {
    l.close();
  }
  const table = [
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
    "   0: 00000000:0369 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1",
    "   1: 0100007F:0369 0100007F:A000 01 00000000:00000000 00:00000000 00000000     0        0 222 1",
    "   2: 0200007F:036A 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1",
  ].join("\n");
  assert.deepEqual(listeningInodes(table, 873), ["111"]);
});

Deno.test("listeningInodes: IPv6 rows too; short, odd and header lines are passed over", () => {
  const table = [
    "  sl  local_address                         remote_address                        st ...",
    "   0: 00000000000000000000000000000000:0369 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 444 1",
    "   1: 00000000000000000000000001000000:0369 00000000000000000000000000000000:0000 06 00000000:00000000 00:00000000 00000000     0        0 555 1",
    "",
    "garbage",
    "   2: 0100007F:0369 0A",
    "   3: 0100007F:0369 00000000:0000 0A x x x x x 666",
  ].join("\n");
  assert.deepEqual(listeningInodes(table, 873), ["444", "666"]);
  assert.deepEqual(listeningInodes("", 873), []);
  assert.deepEqual(listeningInodes(table, 65535), []);
});
