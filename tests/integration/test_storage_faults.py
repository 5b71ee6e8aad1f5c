#!/usr/bin/env python3
"""A full disk, for real: starlingd's data folder on a small tmpfs the test mounts, filled up
while clients are connected. What needs storage is refused (never acknowledged), what needs
none (chat between online clients) keeps flowing, the fault shows in /metrics, and the broker
recovers by itself once space is freed; what was acknowledged before is still there after a
restart."""
import asyncio
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import unique  # noqa: E402

from slixmpp.exceptions import IqError  # noqa: E402

NS_VCARD = "vcard-temp"
NS_ROSTER = "jabber:iq:roster"
TMPFS_MB = 64
WRITE_BUFFER_MB = 2  # small memtables: a flush (and the disk-full error) comes quickly


class Tmpfs:
    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="starling-tmpfs-")
        self.filler = os.path.join(self.path, "filler")

    def __enter__(self):
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m,mode=0700", "tmpfs", self.path],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError(f"cannot mount a tmpfs for the disk-full test (needs root): {r.stderr.strip()}")
        return self

    def fill(self):
        """Fills the filesystem to the last byte."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 1 << 12, 1):
                chunk = b"\0" * size
                try:
                    while True:
                        os.write(fd, chunk)
                except OSError:
                    pass
        finally:
            os.close(fd)

    def free(self):
        os.unlink(self.filler)

    def __exit__(self, *exc):
        subprocess.run(["umount", "-l", self.path], capture_output=True)
        try:
            os.rmdir(self.path)
        except OSError:
            pass


PADDING = "x" * 60_000  # under [vcard] max_bytes (64 KiB): each card fills the memtable faster


def vcard(fn: str, pad: bool = False) -> str:
    desc = f"<DESC>{PADDING}</DESC>" if pad else ""
    return f"<vCard xmlns='{NS_VCARD}'><FN>{fn}</FN>{desc}</vCard>"


async def set_vcard(c, fn: str, timeout=10.0, pad=False):
    from xml.etree import ElementTree as ET
    iq = c.xmpp.make_iq_set()
    iq.append(ET.fromstring(vcard(fn, pad)))
    return await iq.send(timeout=timeout)


async def get_fn(c) -> str:
    r = await c.iq_get(c.bare, f"<vCard xmlns='{NS_VCARD}'/>")
    el = r.xml.find(f"{{{NS_VCARD}}}vCard/{{{NS_VCARD}}}FN")
    return el.text if el is not None else ""


async def roster_set(c, jid: str, name: str):
    from xml.etree import ElementTree as ET
    iq = c.xmpp.make_iq_set()
    iq.append(ET.fromstring(f"<query xmlns='{NS_ROSTER}'><item jid='{jid}' name='{name}'/></query>"))
    return await iq.send(timeout=10.0)


async def roster_jids(c) -> dict:
    from xml.etree import ElementTree as ET
    iq = c.xmpp.make_iq_get()
    iq.append(ET.fromstring(f"<query xmlns='{NS_ROSTER}'/>"))
    r = await iq.send(timeout=10.0)
    return {it.get("jid"): it.get("name") for it in r.xml.iter(f"{{{NS_ROSTER}}}item")}


def metric(s, name: str) -> float:
    total = 0.0
    for line in s.metrics_text().splitlines():
        m = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)$", line)
        if m:
            total += float(m.group(2))
    return total


async def test_full_disk_refuses_writes_keeps_routing_and_recovers(t):
    if harness.SUT != "starling":
        raise harness.Skip("starlingd's storage faults")
    with Tmpfs() as fs:
        data = os.path.join(fs.path, "data")
        os.mkdir(data)
        s = await t.starling_with(f"[storage]\nwrite_buffer_mb = {WRITE_BUFFER_MB}\n", data_dir=data)
        alice, bob = unique("alice"), unique("bob")
        s.add_users([(alice, "pw"), (bob, "pw")])
        a = await t.client(s, alice, "pw")
        b = await t.client(s, bob, "pw")
        await set_vcard(a, "before")  # acknowledged: durable

        fs.fill()
        # Writes land in the preallocated write-ahead log until the memtable must be flushed to
        # a new file, which the full disk refuses: from then on writes are refused, never
        # acknowledged. 200 cards of 60 KB are six times the 2 MiB memtable.
        refused = 0
        last_acked = "before"
        for i in range(200):
            try:
                await set_vcard(a, f"during {i}", pad=True)
                assert refused == 0, "a write was acknowledged after one was refused, the disk still full"
                last_acked = f"during {i}"
            except IqError as e:
                assert e.iq["error"]["condition"] in ("internal-server-error", "resource-constraint"), e.iq
                refused += 1
                if refused >= 3:
                    break
        assert refused > 0, "200 large writes were all acknowledged on a full disk"
        assert await get_fn(a) == last_acked
        # The roster too (it shares the write path): a set is refused, not acknowledged, and
        # the refused item is not in the roster afterwards.
        try:
            await roster_set(a, f"{bob}@{s.domain}", "Refused")
            raise AssertionError("a roster set was acknowledged on a full disk")
        except IqError as e:
            assert e.iq["error"]["condition"] in ("internal-server-error", "resource-constraint"), e.iq
        assert f"{bob}@{s.domain}" not in await roster_jids(a)
        assert metric(s, "starling_store_healthy") == 0, "the store says it is healthy on a full disk"
        # Chat between online clients needs no storage (the archive is best effort): it flows.
        a.send_message(b.jid, "still here", mtype="chat")
        m = await asyncio.wait_for(b.messages.get(), 10)
        assert m["body"] == "still here", m

        fs.free()
        recovered = False
        for _ in range(100):  # the committer retries with backoff up to 5 s
            try:
                await set_vcard(a, "after")
                recovered = True
                break
            except IqError:
                await asyncio.sleep(0.2)
        assert recovered, "writes still fail after the disk was freed\n" + s.log_tail()
        assert metric(s, "starling_store_healthy") == 1
        assert await get_fn(a) == "after"
        await roster_set(a, f"{bob}@{s.domain}", "After")
        log = s.log_tail(lines=400)
        assert re.search(r"no.?space|No space", log, re.I), "the fault was not logged\n" + log

        await s.stop()
        await s.start()
        c = await t.client(s, alice, "pw")
        assert await get_fn(c) == "after"
        assert await roster_jids(c) == {f"{bob}@{s.domain}": "After"}
        await c.close()
        await s.stop()


if __name__ == "__main__":
    harness.main(globals())
