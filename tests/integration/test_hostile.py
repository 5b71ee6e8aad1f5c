#!/usr/bin/env python3
"""Hostile input. Each attack runs while two other authenticated clients keep chatting (a
Chatter): the attacker gets the right stream error and is disconnected; the bystanders lose
nothing."""
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Chatter, closes_stream, rss_kib, stream_error_condition, stream_header, unique  # noqa: E402

RSS_BUDGET_KIB = int(os.environ.get("STARLING_RSS_BUDGET_KIB", str(5 * 1024)))  # "a few MB"


async def expect_stream_error(raw, condition, timeout=5.0):
    """Read until the server closes; require `condition`, the closing tag, and the close."""
    text = await raw.read_until_closed(timeout)
    got = stream_error_condition(raw.received)
    assert got == condition, f"stream error {got!r}, wanted {condition!r}; received: {raw.received[-600:]!r}"
    assert closes_stream(text) or closes_stream(raw.received), \
        f"no </stream:stream> after the error: {raw.received[-300:]!r}"
    return text


async def attacker_login(t, s, tls=True):
    """An authenticated raw attacker (PLAIN over direct TLS)."""
    u = unique("mallory")
    s.add_user(u, "pw-m")
    r = await t.raw(s.tls_port, tls=True)
    await r.login(u, "pw-m", resource="attack")
    return r


async def test_malformed_xml_after_login_gets_not_well_formed(t):
    # mallory logs in, then sends a stanza whose end tag does not match its start tag.
    s = await t.shared_server()
    chat = await Chatter(t, s).start()
    r = await attacker_login(t, s)
    await r.send("<message to='nobody@localhost'><body>oops</bdy></message>")
    await expect_stream_error(r, "not-well-formed")
    n = await chat.finish()
    t.note(f"bystanders exchanged {n} messages")


async def test_malformed_xml_before_login_gets_not_well_formed(t):
    # A client opens a stream on the STARTTLS port and sends garbage that is not XML at all.
    s = await t.shared_server()
    chat = await Chatter(t, s).start()
    r = await t.raw(s.c2s_port)
    await r.open_stream()
    # (The first stanza never completes, so the parse error comes before any auth check.)
    await r.send("<message><body>oops</bdy></message><<<>>\x01")
    await expect_stream_error(r, "not-well-formed")
    await chat.finish()


async def test_entity_expansion_gets_restricted_xml(t):
    # "Billion laughs": a DOCTYPE declaring nested entities, before the stream header, with a
    # reference to the top entity inside the stream. The server must refuse the DTD outright.
    s = await t.shared_server()
    chat = await Chatter(t, s).start()
    before = rss_kib(s.pid)
    ents = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{("&lol%d;" % (i - 1)) * 10}">' for i in range(1, 10)]
    doc = ("<?xml version='1.0'?><!DOCTYPE stream:stream [" + "".join(ents) + "]>"
           + stream_header()[len("<?xml version='1.0'?>"):] + "<message><body>&lol9;</body></message>")
    r = await t.raw(s.c2s_port)
    await r.send(doc)
    await expect_stream_error(r, "restricted-xml")
    after = rss_kib(s.pid)
    grew = after["VmHWM"] - before["VmHWM"]
    assert grew <= RSS_BUDGET_KIB, f"peak RSS grew by {grew} KiB ({before} -> {after})"
    await chat.finish()


async def test_entity_reference_inside_stream_is_refused(t):
    # A DOCTYPE after the stream header, and an undeclared entity reference: both refused with
    # a stream error (restricted-xml, or not-well-formed for the undeclared entity), then close.
    s = await t.shared_server()
    for payload in ("<!DOCTYPE x [<!ENTITY a 'b'>]><message><body>&a;</body></message>",
                    "<message to='x@localhost'><body>&lol9;</body></message>"):
        r = await t.raw(s.c2s_port)
        await r.open_stream()
        await r.send(payload)
        await r.read_until_closed(5)
        cond = stream_error_condition(r.received)
        assert cond in ("restricted-xml", "not-well-formed"), f"{payload[:30]}...: {cond!r}: {r.received[-300:]!r}"
        assert closes_stream(r.received), r.received[-300:]


@harness.timeout(90)
async def test_10mb_stanza_gets_policy_violation_without_memory_growth(t):
    # mallory, logged in, starts a 10 MB message. The broker must cut it off at its stanza size
    # limit with policy-violation and close, never buffering the whole thing: its peak RSS (VmHWM)
    # and RSS may grow by at most a few MB.
    s = await t.shared_server()
    chat = await Chatter(t, s).start()
    r = await attacker_login(t, s)
    await asyncio.sleep(0.2)
    before = rss_kib(s.pid)
    chunk = b"A" * 65536
    total = 10 * 1024 * 1024
    sent = 0

    async def flood():
        nonlocal sent
        if not await r.send(f"<message to='{chat.b.jid}'><body>"):
            return
        while sent < total and not r.closed:
            if not await r.send(chunk):
                return
            sent += len(chunk)
        await r.send("</body></message>")

    sender = asyncio.ensure_future(flood())
    try:
        await r.read_until_closed(60)
    finally:
        if not sender.done():
            sender.cancel()
            r.abort()
    cond = stream_error_condition(r.received)
    assert cond == "policy-violation", f"stream error {cond!r} after {sent} bytes; received {r.received[-400:]!r}"
    assert closes_stream(r.received), r.received[-300:]
    await asyncio.sleep(0.5)
    after = rss_kib(s.pid)
    peak, now = after["VmHWM"] - before["VmHWM"], after["VmRSS"] - before["VmRSS"]
    t.note(f"cut off after {sent // 1024} KiB sent; VmHWM +{peak} KiB, VmRSS +{now} KiB")
    assert peak <= RSS_BUDGET_KIB and now <= RSS_BUDGET_KIB, \
        f"memory grew: VmHWM +{peak} KiB, VmRSS +{now} KiB (budget {RSS_BUDGET_KIB} KiB)"
    # The victim never got a partial or huge message.
    await chat.finish()
    assert not chat.other, f"the victim received {len(chat.other)} other message(s), e.g. " \
                           f"{len(chat.other[0]['body'] or '')} bytes of body"


@harness.timeout(60)
async def test_client_that_never_authenticates_is_disconnected(t):
    # A broker with a 2 s pre-auth timeout (set in the configuration file). Three clients never
    # authenticate: one sends nothing, one opens a stream and stops, one trickles a stream header
    # a byte at a time (slowloris). All three are disconnected after about 2 s; the authenticated
    # bystanders, chatting for longer than that, are not.
    s = await t.server(pre_auth_timeout_ms=2000)
    chat = await Chatter(t, s).start()
    t0 = time.monotonic()
    silent = await t.raw(s.c2s_port)
    opened = await t.raw(s.c2s_port)
    await opened.open_stream()
    slow = await t.raw(s.c2s_port)

    async def trickle():
        for ch in stream_header():
            if slow.closed or not await slow.send(ch):
                return
            await asyncio.sleep(0.25)
        while not slow.closed and await slow.send(" "):  # then whitespace keepalives forever
            await asyncio.sleep(0.25)

    trickler = asyncio.ensure_future(trickle())
    closed_after = {}

    async def watch(name, r):
        await r.read_until_closed(10)
        closed_after[name] = time.monotonic() - t0

    try:
        await asyncio.gather(watch("silent", silent), watch("opened", opened), watch("slowloris", slow))
    finally:
        trickler.cancel()
    for name, dt in closed_after.items():
        assert 1.5 <= dt <= 7.0, f"{name} closed after {dt:.1f}s, expected about 2s"
    t.note(", ".join(f"{k} {v:.1f}s" for k, v in closed_after.items())
           + f"; stream error for opened: {stream_error_condition(opened.received)}")
    await asyncio.sleep(max(0.0, 3.5 - (time.monotonic() - t0)))
    await chat.finish()


if __name__ == "__main__":
    harness.main(globals())
