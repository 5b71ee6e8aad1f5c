#!/usr/bin/env python3
"""starling-agent's link under slow programs, a broker that never answers, and a pinned key
(issue 12): a slow program (source or command) does not hold up the publishes of other sources
or the link; a publish nobody answers times out, stays queued and is sent again after the link
is resumed or reconnected; `link.pin_sha256` (SHA-256 of the server's public key) connects with
the right key even without a CA that trusts the server, and refuses a wrong one."""
import asyncio
import base64
import hashlib
import os
import subprocess
import sys
import time
from xml.etree import ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from agent_support import NS_CMD, Agent, all_items, iq_set, item_seq, readings_of  # noqa: E402

from slixmpp.xmlstream.handler import Callback  # noqa: E402
from slixmpp.xmlstream.matcher import MatchXPath  # noqa: E402

NS_PUBSUB = "http://jabber.org/protocol/pubsub"
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"

FILE_SOURCE = """[[source.file]]
name = "v"
path = "{path}"
"""


def published(agent) -> int:
    return int(agent.status().get("published", "-1"))


@harness.timeout(60)
async def test_a_slow_program_does_not_hold_up_other_sources_or_the_link(t):
    server = await t.server()
    dev, op = await t.users(server, 2, prefix="al")
    agent = Agent(server, dev, "secret", device=dev, interval_ms=50, operators=(f"{op}@localhost",))
    try:
        agent.write_sensor("v", 1)
        with open(agent.config_path, "a") as f:
            f.write(FILE_SOURCE.format(path=agent.sensor("v")))
            f.write("""[[source.program]]
name = "slow"
argv = ["/bin/sh", "-c", "sleep 3; echo done 1"]
timeout_ms = 10000

[[command]]
name = "slow-cmd"
kind = "program"
argv = ["/bin/sh", "-c", "sleep 2; echo finished"]
timeout_ms = 10000
""")
        await agent.start()
        await agent.wait_status(lambda st: st["state"] == "online" and int(st["published"]) >= 3, what="publishing")
        # The program source sleeps 3 s: meanwhile the file source's batches (every 50 ms) go on.
        p0, t0 = published(agent), time.monotonic()
        await asyncio.sleep(1.5)
        p1, t1 = published(agent), time.monotonic()
        assert p1 - p0 >= 10, f"{p1 - p0} publishes acknowledged in {t1 - t0:.1f}s while a program ran"
        c = await t.client(server, op, "secret")
        to = f"{agent.jid}/agent"
        # A command running a 2 s program: publishes and the operator's other IQs go on meanwhile.
        p2 = published(agent)
        started = time.monotonic()
        cmd = asyncio.ensure_future(iq_set(c, to, f"<command xmlns='{NS_CMD}' node='slow-cmd' action='execute'/>",
                                           timeout=10))
        await asyncio.sleep(0.3)
        ping = await c.iq_get(to, "<ping xmlns='urn:xmpp:ping'/>")  # answered while the program runs
        assert ping is not None and time.monotonic() - started < 1.5
        await asyncio.sleep(1.0)
        assert not cmd.done(), "the command answered before its program finished"
        assert published(agent) - p2 >= 10, "publishes stalled while a command's program ran"
        r = await cmd
        done = r.xml.find(f"{{{NS_CMD}}}command")
        assert done.get("status") == "completed", ET.tostring(r.xml)
        assert done.find(f"{{{NS_CMD}}}note").text == "finished"
        assert time.monotonic() - started >= 1.9
        st = agent.status()
        assert st["connects"] == "1" and st["state"] == "online", st
        await agent.wait_log(r"event=command\.executed .*command=slow-cmd ok=true")
        # The slow source's reading arrived too, in a later batch than the ones around it.
        c.xmpp.register_plugin("xep_0060")
        names = [r[0] for _, p in await all_items(c.xmpp["xep_0060"], agent.node) for r in readings_of(p)]
        assert "slow.done" in names and names.count("v") >= 40, names[:20]
    finally:
        agent.cleanup()


@harness.timeout(60)
async def test_a_publish_nobody_answers_times_out_stays_queued_and_is_sent_again(t):
    server = await t.server()
    dev, sink_user = await t.users(server, 2, prefix="at")
    # The "PubSub service" is a client that takes every publish and never answers (a stuck
    # service); the broker routes the IQs to it and acknowledges them at the stream level.
    sink = await t.client(server, sink_user, "secret")
    got = []  # (item id, iq) in arrival order
    answering = {"on": False}

    def on_publish(iq):
        item = iq.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}publish/{{{NS_PUBSUB}}}item")
        got.append(item.get("id"))
        if answering["on"]:
            iq.reply().send()

    sink.xmpp.register_handler(Callback("sink", MatchXPath(f"{{jabber:client}}iq/{{{NS_PUBSUB}}}pubsub"), on_publish))
    agent = Agent(server, dev, "secret", device=dev, interval_ms=200)
    try:
        agent.write_sensor("v", 5)
        with open(agent.config_path, "a") as f:
            f.write(FILE_SOURCE.format(path=agent.sensor("v")))
            f.write(f"""[pubsub]
service = "{sink.jid}"
create_node = false
publish_window = 1
publish_timeout_ms = 1000
""")
        await agent.start()
        await agent.wait_log(r"event=publish\.timeout item=\S+-1 timeout_ms=1000", timeout=15)
        await agent.wait_log(r"event=link\.down reason=\"publish timed out\"")
        # After the link came back (resumed or new), the same batch is sent again: same item id.
        deadline = time.monotonic() + 15
        while got.count(got[0]) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert got and item_seq(got[0]) == 1 and got.count(got[0]) >= 2, got
        st = agent.status()
        assert int(st["queue_depth"]) >= 2 and st["published"] == "0" and int(st["timeouts"]) >= 1, st
        # The service answers again: everything queued is published, nothing lost.
        answering["on"] = True
        os.unlink(agent.sensor("v"))  # stop producing
        st = await agent.wait_status(lambda st: st["queue_depth"] == "0" and st["state"] == "online", timeout=20,
                                     what="drained")
        seqs = sorted({item_seq(i) for i in got})
        assert seqs == list(range(1, len(seqs) + 1)) and int(st["published"]) == len(seqs), (seqs, st)
    finally:
        agent.cleanup()


def spki_pin(cert_pem: str) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo DER)), as `openssl x509 -pubkey | openssl pkey -pubin
    -outform der | openssl dgst -sha256 -binary | base64` prints it."""
    pub = subprocess.run(["openssl", "x509", "-in", cert_pem, "-pubkey", "-noout"], check=True,
                         capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub, check=True,
                         capture_output=True).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def set_pin(agent, pin: str) -> None:
    with open(agent.config_path) as f:
        lines = [ln for ln in f.read().splitlines(True) if not ln.startswith("pin_sha256 = ")]
    with open(agent.config_path, "w") as f:
        f.write("".join(lines).replace("[link]\n", f'[link]\npin_sha256 = "{pin}"\n', 1))


@harness.timeout(60)
async def test_a_pinned_public_key_connects_without_a_ca_and_a_wrong_pin_is_refused(t):
    server = await t.server()
    dev, = await t.users(server, 1, prefix="ap")
    cert = os.path.join(server.data_dir, "tls", "cert.pem")
    good = spki_pin(cert)
    # The system CAs do not trust the broker's self-signed certificate: only the pin can.
    agent = Agent(server, dev, "secret", device=dev, interval_ms=100, ca_file=SYSTEM_CA)
    wrong = Agent(server, dev, "secret", device=dev + "w", interval_ms=100, ca_file=SYSTEM_CA)
    try:
        set_pin(agent, good)
        agent.write_sensor("v", 3)
        with open(agent.config_path, "a") as f:
            f.write(FILE_SOURCE.format(path=agent.sensor("v")))
        await agent.start()
        await agent.wait_status(lambda st: st["state"] == "online" and int(st["published"]) >= 3,
                                what="online with the right pin")

        bad = bytearray(base64.b64decode(good))
        bad[0] ^= 1
        set_pin(wrong, base64.b64encode(bytes(bad)).decode())
        await wrong.start()
        line = await wrong.wait_log(r"event=link\.down reason=\"tls: certificate-untrusted[^\"]*"
                                    r"does not match link\.pin_sha256\)\"")
        await wrong.wait_log(r"event=link\.retry")
        assert wrong.running(), line
        assert wrong.status()["state"] != "online"
        assert "event=link.online" not in wrong.log_text()
        # A malformed pin is a configuration error with the key's name.
        set_pin(wrong, "not base64!")
        out = subprocess.run(wrong.cmd + ["--config", wrong.config_path, "--check-config"], capture_output=True,
                             text=True, timeout=10)
        assert out.returncode == 1 and "link.pin_sha256" in out.stdout + out.stderr, out
    finally:
        agent.cleanup()
        wrong.cleanup()


if __name__ == "__main__":
    harness.main(globals())
