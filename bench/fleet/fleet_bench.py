#!/usr/bin/python3
"""Fleet presence benchmark client (issue 10): one operator, N devices, one server, one mode.

The operator account has every device in its roster with subscription 'to' (and each device has
the operator with 'from'), so every presence a device broadcasts is routed to the operator. The
operator is a raw-socket client that counts what arrives on its socket: wire bytes (after
compression when it is on) and depth-1 elements by name, with the XML bytes of each presence.

Modes: none (no CSI), csi (<inactive/> before the initial presence, <active/> at the end, the
flush counted), csi+zlib (the same over XEP-0138 zlib, negotiated after SASL).

The device workload is fixed by --seed: each device logs in and sends an available presence,
then EVENTS events spread over --period seconds: a new show/status, the same presence again
(an identical repeat), or a flap (closes its stream, reconnects after 1-3 s, logs in and sends
its current presence again). The schedule depends only on the seed, the device count and the
event mix, never on the server.

Standard library only. Prints one JSON object (also written to --json).
"""
import argparse, asyncio, base64, json, random, re, sys, time, zlib
import xml.parsers.expat

NS_STREAM = "http://etherx.jabber.org/streams"
SHOWS = [None, "chat", "away", "xa", "dnd"]


def stream_header(domain):
    return (f"<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client' "
            f"xmlns:stream='{NS_STREAM}' version='1.0'>").encode()


class LoginError(Exception):
    pass


class Conn:
    """One c2s connection: login by marker search on the decompressed text; optional zlib."""

    def __init__(self, reader, writer):
        self.r, self.w = reader, writer
        self.inflate = None
        self.deflate = None
        self.buf = b""
        self.wire_in = 0
        self.on_data = None  # once set, decompressed input goes there instead of self.buf

    def send(self, data):
        if self.deflate is not None:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.w.write(data)

    async def read_some(self):
        chunk = await self.r.read(65536)
        if not chunk:
            raise LoginError("connection closed by the server")
        self.wire_in += len(chunk)
        if self.inflate is not None:
            chunk = self.inflate.decompress(chunk)
        if self.on_data is not None:
            self.on_data(chunk)
        else:
            self.buf += chunk
        return len(chunk)

    async def until(self, *patterns, timeout=120):
        """Reads until one of the regexes matches self.buf; returns (index, match)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, p in enumerate(patterns):
                m = re.search(p, self.buf, re.S)
                if m:
                    return i, m
            left = deadline - time.monotonic()
            if left <= 0:
                raise LoginError(f"timeout waiting for {patterns!r}; have {self.buf[-300:]!r}")
            await asyncio.wait_for(self.read_some(), left)

    async def login(self, host, port, domain, user, password, resource, compress=False):
        self.send(stream_header(domain))
        _, m = await self.until(rb"</stream:features>")
        self.buf = self.buf[m.end():]
        token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
        self.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>".encode())
        i, m = await self.until(rb"<success[^>]*?(/>|>.*?</success>)", rb"<failure.*?</failure>")
        if i == 1:
            raise LoginError(f"SASL failure for {user}: {m.group(0)!r}")
        self.buf = self.buf[m.end():]
        self.send(stream_header(domain))
        _, m = await self.until(rb"</stream:features>")
        features = self.buf[:m.end()]
        self.buf = self.buf[m.end():]
        self.features = features
        if compress:
            if b"http://jabber.org/features/compress" not in features or b"zlib" not in features:
                raise LoginError("server offers no zlib stream compression after authentication")
            self.send(b"<compress xmlns='http://jabber.org/protocol/compress'><method>zlib</method></compress>")
            i, m = await self.until(rb"<compressed[^>]*?(/>|>\s*</compressed>)", rb"<failure.*?(/>|</failure>)")
            if i == 1:
                raise LoginError(f"compression refused: {m.group(0)!r}")
            rest = self.buf[m.end():]
            self.buf = b""
            self.inflate = zlib.decompressobj()
            # zlib stream, 2^11 window: every server inflates it (a smaller window than the
            # inflater's is always accepted).
            self.deflate = zlib.compressobj(6, zlib.DEFLATED, 11)
            if rest:
                self.buf = self.inflate.decompress(rest)
            self.send(stream_header(domain))
            _, m = await self.until(rb"</stream:features>")
            self.features = self.buf[:m.end()]
            self.buf = self.buf[m.end():]
        self.send(f"<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                  f"<resource>{resource}</resource></bind></iq>".encode())
        _, m = await self.until(rb"<iq[^>]*id=['\"]bind1['\"][^>]*?(/>|>.*?</iq>)")
        if b"type='error'" in m.group(0) or b'type="error"' in m.group(0):
            raise LoginError(f"bind failed: {m.group(0)!r}")
        self.buf = self.buf[m.end():]
        sess = re.search(rb"<session xmlns=['\"]urn:ietf:params:xml:ns:xmpp-session['\"]\s*(/>|>(.*?)</session>)",
                         self.features, re.S)
        if sess and b"optional" not in sess.group(0):
            self.send(b"<iq type='set' id='sess1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
            _, m = await self.until(rb"<iq[^>]*id=['\"]sess1['\"][^>]*?(/>|>.*?</iq>)")
            self.buf = self.buf[m.end():]

    def close(self):
        try:
            self.w.close()
        except Exception:
            pass


async def connect(host, port):
    r, w = await asyncio.open_connection(host, port, limit=1 << 20)
    return Conn(r, w)


class Counter:
    """Counts depth-1 elements of the operator's stream (expat on the decompressed bytes)."""

    def __init__(self):
        self.p = xml.parsers.expat.ParserCreate()
        self.p.StartElementHandler = self.start
        self.p.EndElementHandler = self.end
        self.depth = 0
        self.fed = 0
        self.stanzas = {}
        self.presence_bytes = 0
        self.presence_unavailable = 0
        self.bare_unavailable = 0
        self.other_samples = []  # what the non-presence elements were (name, attributes, child)
        self.t0 = time.monotonic()
        self.last = None  # (name, start offset) of the depth-1 element being read
        self.pings = []   # iq get ids to answer
        self.cur_attrs = None
        header = f"<stream:stream xmlns='jabber:client' xmlns:stream='{NS_STREAM}'>".encode()
        self.p.Parse(header, False)
        self.header_len = len(header)  # expat's byte offsets include this synthetic header
        self.fed = 0

    def feed(self, data):
        self.fed += len(data)
        self.p.Parse(data, False)

    def start(self, name, attrs):
        self.depth += 1
        if self.depth == 2:
            self.close_last(self.p.CurrentByteIndex)
            self.last = (name, self.p.CurrentByteIndex)
            self.stanzas[name] = self.stanzas.get(name, 0) + 1
            if name == "presence" and attrs.get("type") == "unavailable":
                self.presence_unavailable += 1
                if "/" not in attrs.get("from", "/"):
                    self.bare_unavailable += 1  # a probe answered for an offline contact (RFC 6121 §4.3.2)
            if name != "presence" and len(self.other_samples) < 20:
                self.other_samples.append({"name": name, "attrs": dict(attrs), "at_s": round(time.monotonic() - self.t0, 2)})
            if name == "iq" and attrs.get("type") in ("get", "set"):
                self.pings.append((attrs.get("id", ""), attrs.get("from", "")))

        elif self.depth == 3 and self.last and self.last[0] != "presence" and self.other_samples:
            if "child" not in self.other_samples[-1]:
                self.other_samples[-1]["child"] = name

    def end(self, name):
        self.depth -= 1

    def close_last(self, pos):
        if self.last and self.last[0] == "presence":
            self.presence_bytes += pos - self.last[1]
        self.last = None

    def finish(self, total_offset):
        self.close_last(total_offset)


async def operator_run(a, st):
    c = await connect(a.host, a.port)
    await c.login(a.host, a.port, a.domain, a.operator, a.password, "console", compress=a.mode == "csi+zlib")
    if a.mode != "none" and b"urn:xmpp:csi:0" not in c.features:
        raise LoginError("server does not advertise urn:xmpp:csi:0")
    counter = Counter()
    st["counter"] = counter
    c.wire_in = 0
    st["wire_last"] = time.monotonic()
    leftover = c.buf
    c.buf = b""

    def on_data(data):
        counter.feed(data)
        st["wire_last"] = time.monotonic()
    c.on_data = on_data
    if leftover:
        on_data(leftover)
    st["conn"] = c
    if a.mode != "none":
        c.send(b"<inactive xmlns='urn:xmpp:csi:0'/>")
    c.send(b"<presence/>")
    await c.w.drain()

    async def pump():
        while True:
            await c.read_some()
            while counter.pings:  # answer a server's XEP-0199 ping (or any get/set) with a result
                iid, frm = counter.pings.pop(0)
                c.send(f"<iq type='result' id='{iid}'{(' to=' + repr(frm)) if frm else ''}/>".encode())
    st["pump"] = asyncio.create_task(pump())


def device_presence(state):
    show, status = state
    inner = ""
    if show:
        inner += f"<show>{show}</show>"
    if status:
        inner += f"<status>{status}</status>"
    return f"<presence>{inner}</presence>".encode() if inner else b"<presence/>"


class Fleet:
    def __init__(self, a):
        self.a = a
        self.conns = {}
        self.state = {}
        self.login_sem = asyncio.Semaphore(a.login_window)
        self.logins = 0
        self.login_errors = 0
        self.sent = {"initial": 0, "change": 0, "repeat": 0, "flap": 0, "skipped": 0}

    async def login(self, i):
        async with self.login_sem:
            for attempt in range(5):
                try:
                    c = await connect(self.a.host, self.a.port)
                    await c.login(self.a.host, self.a.port, self.a.domain, f"{self.a.device_prefix}{i}",
                                  self.a.password, "dev")
                    self.logins += 1
                    c.on_data = lambda data: None  # devices discard what they get
                    c.pump = asyncio.create_task(self.drain(c))
                    return c
                except (LoginError, OSError, asyncio.TimeoutError) as e:
                    self.login_errors += 1
                    if attempt == 4:
                        raise
                    print(f"device {i}: login attempt {attempt + 1}: {e}", file=sys.stderr)
                    await asyncio.sleep(0.5 + attempt)

    async def drain(self, c):
        try:
            while True:
                await c.read_some()
        except (LoginError, OSError, asyncio.CancelledError):
            pass

    async def bring_up(self, i):
        c = await self.login(i)
        self.conns[i] = c
        c.send(device_presence(self.state[i]))
        self.sent["initial"] += 1

    async def flap(self, i, down_s):
        c = self.conns.pop(i, None)
        if c is None:
            self.sent["skipped"] += 1
            return
        c.send(b"</stream:stream>")
        try:
            await c.w.drain()
        except OSError:
            pass
        c.pump.cancel()
        c.close()
        self.sent["flap"] += 1
        await asyncio.sleep(down_s)
        await self.bring_up(i)


def schedule(a):
    """The deterministic event list: (time_s, device, kind, new_state, down_s), sorted by time."""
    rng = random.Random(a.seed)
    states, events = {}, []
    for i in range(1, a.devices + 1):
        states[i] = (rng.choice(SHOWS), f"battery {rng.randint(20, 100)}%")
    cur = dict(states)
    per_device = []
    for i in range(1, a.devices + 1):
        times = sorted(rng.uniform(0, a.period) for _ in range(a.events))
        for t in times:
            x = rng.random()
            if x < a.p_repeat:
                per_device.append((t, i, "repeat", cur[i], 0.0))
            elif x < a.p_repeat + a.p_flap:
                per_device.append((t, i, "flap", cur[i], rng.uniform(1.0, 3.0)))
            else:
                new = cur[i]
                while new == cur[i]:
                    new = (rng.choice(SHOWS), f"battery {rng.randint(20, 100)}%")
                cur[i] = new
                per_device.append((t, i, "change", new, 0.0))
    per_device.sort(key=lambda e: (e[0], e[1]))
    return states, per_device


async def main_async(a):
    init, events = schedule(a)
    fleet = Fleet(a)
    fleet.state = dict(init)
    st = {}
    t0 = time.monotonic()
    await operator_run(a, st)
    await asyncio.sleep(1.0)
    # Phase 1: every device logs in and sends its initial presence.
    await asyncio.gather(*(fleet.bring_up(i) for i in range(1, a.devices + 1)))
    t_up = time.monotonic()
    print(f"fleet: {a.devices} devices up in {t_up - t0:.1f} s", file=sys.stderr)
    # Phase 2: the scripted events over --period seconds.
    # One lock per device: its events run in schedule order, and an event that falls while the
    # device is down (flapping) waits until it is back.
    locks = {i: asyncio.Lock() for i in range(1, a.devices + 1)}
    tasks = []

    async def run_event(i, kind, new, down):
        async with locks[i]:
            if kind == "flap":
                await fleet.flap(i, down)
                return
            c = fleet.conns.get(i)
            if c is None:
                fleet.sent["skipped"] += 1
                return
            fleet.state[i] = new
            c.send(device_presence(new))
            fleet.sent[kind] += 1

    start = time.monotonic()
    for t, i, kind, new, down in events:
        delay = start + t - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(run_event(i, kind, new, down)))
    await asyncio.gather(*tasks)
    for c in fleet.conns.values():
        await c.w.drain()
    t_events = time.monotonic()
    lag = t_events - start - a.period
    # Phase 3: quiet, then <active/> (CSI modes) and wait until nothing arrives for --quiet s.
    op = st["conn"]
    counter = st["counter"]

    async def wait_quiet():
        while time.monotonic() - st["wire_last"] < a.quiet:
            await asyncio.sleep(0.2)

    await asyncio.sleep(1.0)
    await wait_quiet()
    before_active = {"wire_bytes": op.wire_in, "stanzas": dict(counter.stanzas), "presence_bytes": counter.presence_bytes}
    if a.mode != "none":
        op.send(b"<active xmlns='urn:xmpp:csi:0'/>")
        await op.w.drain()
        await asyncio.sleep(0.5)
    await wait_quiet()
    counter.finish(counter.header_len + counter.fed)
    result = {
        "mode": a.mode, "server": a.server, "devices": a.devices, "events_per_device": a.events,
        "period_s": a.period, "seed": a.seed,
        "operator": {
            "wire_bytes": op.wire_in,
            "xml_bytes": counter.fed,
            "stanzas": counter.stanzas,
            "presence": counter.stanzas.get("presence", 0),
            "presence_unavailable": counter.presence_unavailable,
            "presence_unavailable_from_bare_jid": counter.bare_unavailable,
            "presence_xml_bytes": counter.presence_bytes,
            "other_samples": counter.other_samples,
            "before_active": before_active,
        },
        "devices_sent": fleet.sent, "device_logins": fleet.logins, "login_retries": fleet.login_errors,
        "up_s": round(t_up - t0, 2), "event_lag_s": round(lag, 2), "wall_s": round(time.monotonic() - t0, 2),
    }
    st["pump"].cancel()
    op.send(b"</stream:stream>")
    op.close()
    for c in fleet.conns.values():
        c.pump.cancel()
        c.close()
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--domain", default="localhost")
    ap.add_argument("--server", default="", help="label for the JSON")
    ap.add_argument("--mode", choices=["none", "csi", "csi+zlib"], required=True)
    ap.add_argument("--devices", type=int, default=5000)
    ap.add_argument("--device-prefix", default="dev")
    ap.add_argument("--operator", default="op1")
    ap.add_argument("--password", default="pass")
    ap.add_argument("--events", type=int, default=10, help="events per device after its initial presence")
    ap.add_argument("--period", type=float, default=30.0, help="seconds over which the events are spread")
    ap.add_argument("--p-repeat", type=float, default=0.3, help="share of events that resend the same presence")
    ap.add_argument("--p-flap", type=float, default=0.1, help="share of events that are a flap")
    ap.add_argument("--seed", type=int, default=20261204)
    ap.add_argument("--login-window", type=int, default=64, help="device logins in flight")
    ap.add_argument("--quiet", type=float, default=3.0, help="seconds without input that end a phase")
    ap.add_argument("--json")
    a = ap.parse_args()
    res = asyncio.run(main_async(a))
    out = json.dumps(res)
    print(out)
    if a.json:
        with open(a.json, "w") as f:
            f.write(out + "\n")


if __name__ == "__main__":
    main()
