#!/usr/bin/env python3
"""Stream compression (XEP-0138, zlib): off by default (not offered, refused if asked); when the
operator turns it on, negotiated after authentication, messages round-trip through it both ways,
a zlib bomb is refused with a stream error while the broker's memory stays bounded, asking twice
fails, and the byte counters show up in /metrics. The compressing client is written here with
Python's zlib (no Python XMPP library speaks XEP-0138)."""
import asyncio
import os
import re
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Raw, unique  # noqa: E402

ON = "[c2s]\ncompression = true\n"
NS = "http://jabber.org/protocol/compress"


class ZRaw(Raw):
    """harness.Raw whose traffic goes through zlib once compress() succeeded."""

    def __init__(self):
        super().__init__()
        self.z_out = None
        self.z_in = None

    async def compress(self):
        await self.send(f"<compress xmlns='{NS}'><method>zlib</method></compress>")
        out = await self.expect(r"<compressed[^>]*/>|<failure[^>]*>.*?</failure>")
        if "<compressed" in out:
            self.z_out = zlib.compressobj()            # a standard client: zlib's defaults
            self.z_in = zlib.decompressobj()
        return out

    async def send(self, data) -> bool:
        if isinstance(data, str):
            data = data.encode()
        if self.z_out is not None:
            data = self.z_out.compress(data) + self.z_out.flush(zlib.Z_SYNC_FLUSH)
        return await super().send(data)

    async def send_wire(self, data: bytes) -> bool:
        return await super().send(data)

    async def _read_some(self, timeout: float) -> bool:
        if self.z_in is None:
            return await super()._read_some(timeout)
        try:
            chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
        except asyncio.TimeoutError:
            return False
        except (ConnectionError, OSError):
            self.closed = True
            return False
        if not chunk:
            self.closed = True
            return False
        text = self.z_in.decompress(chunk).decode("utf-8", "replace")
        self.buf += text
        self.received += text
        return True


async def zconnect(s):
    r = ZRaw()
    r.reader, r.writer = await asyncio.open_connection(
        harness.HOST, s.tls_port, ssl=harness.tls_client_context(), server_hostname=harness.DOMAIN, limit=1 << 20)
    return r


async def login_compressed(t, s, user, resource="z"):
    r = await zconnect(s)
    await r.open_stream()
    assert await r.auth_plain(user, "pw") == "success"
    features = await r.open_stream()
    assert f"<compression xmlns='http://jabber.org/features/compress'><method>zlib</method>" in features, features
    out = await r.compress()
    assert "<compressed" in out, out
    features = await r.open_stream()        # the restarted stream, compressed both ways
    assert "<bind" in features and "<compression" not in features, features
    await r.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                 f"<resource>{resource}</resource></bind></iq>")
    jid = re.search(r"<jid>(.*?)</jid>", await r.expect(r"<iq[^>]*>.*?</iq>")).group(1)
    return r, jid


async def test_off_by_default_not_offered_and_refused(t):
    s = await t.shared_server()
    u = unique("z")
    s.add_users([(u, "pw")])
    r = await zconnect(s)
    await r.open_stream()
    assert await r.auth_plain(u, "pw") == "success"
    features = await r.open_stream()
    assert "features/compress" not in features, features
    out = await r.compress()
    assert "setup-failed" in out, out
    await r.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    await r.expect(r"<jid>")  # the stream goes on, uncompressed
    await r.close()


async def test_messages_round_trip_through_compression_both_ways(t):
    s = await t.starling_with(ON)
    a, b = unique("za"), unique("zb")
    s.add_users([(a, "pw"), (b, "pw")])
    ra, ja = await login_compressed(t, s, a)
    peer = await t.client(s, b, "pw")
    bodies = [f"reading {i}: " + "temperature=21.5;humidity=40;" * 5 for i in range(40)]
    for body in bodies:
        await ra.send(f"<message to='{peer.jid}' type='chat'><body>{body}</body></message>")
    got = [(await peer.wait_message(5))["body"] for _ in bodies]
    assert got == bodies
    for i in range(20):
        peer.send_message(ja, f"command {i}")
    for i in range(20):
        await ra.expect(rf"<body>command {i}</body>")
    text = await asyncio.get_event_loop().run_in_executor(None, s.metrics_text)
    series = dict(re.findall(r'^(starling_zlib_bytes_total\{[^}]*\})\s+(\S+)', text, re.M))
    plain_in = float(series['starling_zlib_bytes_total{direction="in",side="plain"}'])
    wire_in = float(series['starling_zlib_bytes_total{direction="in",side="wire"}'])
    assert plain_in > 3 * wire_in > 0, series   # repetitive telemetry compresses well
    t.note(f"client->server {wire_in:.0f} wire bytes for {plain_in:.0f} plain")
    await ra.close()


async def test_asking_twice_fails_and_the_stream_goes_on(t):
    s = await t.starling_with(ON)
    u = unique("z2")
    s.add_users([(u, "pw")])
    r, _ = await login_compressed(t, s, u)
    await r.send(f"<compress xmlns='{NS}'><method>zlib</method></compress>")
    assert "setup-failed" in await r.expect(r"<failure[^>]*>.*?</failure>")
    await r.send("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
    await r.expect(r"<iq[^>]*id='p'")
    await r.close()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


async def test_a_zlib_bomb_is_refused_with_bounded_memory(t):
    s = await t.starling_with(ON)
    u = unique("bomb")
    s.add_users([(u, "pw")])
    chat = harness.Chatter(t, s)
    await chat.start()
    r, _ = await login_compressed(t, s, u)
    before = rss_kb(s.pid)
    # 64 MiB of spaces in one stanza-less run: a few KB on the wire.
    z = r.z_out
    bomb = z.compress(b" " * (64 << 20)) + z.flush(zlib.Z_SYNC_FLUSH)
    t.note(f"bomb: {len(bomb)} bytes on the wire for 64 MiB")
    await r.send_wire(bomb)
    text = await r.read_until_closed(10)
    assert harness.stream_error_condition(text) == "policy-violation", text[-500:]
    after = rss_kb(s.pid)
    assert after - before < 32 * 1024, f"broker RSS grew {after - before} KB on a 64 MiB bomb"
    await chat.finish()


if __name__ == "__main__":
    harness.main(globals())
