#!/usr/bin/env python3
"""starling-agent with a device certificate (issue 12, "Link"; XEP-0178): `[link] client_cert` /
`client_key` made by `starlingctl cert issue`, no password, log in with SASL EXTERNAL to a broker
with `[tls] client_ca_file`, and the readings reach the node; a certificate from another CA fails
the TLS handshake and the agent retries with backoff without crashing; a broker that does not offer
EXTERNAL is refused with a clear line (or SCRAM is used when a password is configured too); a key
that is not the certificate's, or that others can read, is a --check-config error."""
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Skip, Starling  # noqa: E402
from agent_support import Agent, all_items, readings_of  # noqa: E402

OPENSSL = shutil.which("openssl")

FILE_SOURCE = """[[source.file]]
name = "v"
path = "{path}"
"""


def run(*args):
    p = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, f"{' '.join(args)} failed: {p.stderr}"
    return p.stdout


def need_starling():
    if harness.SUT != "starling":
        raise Skip("uses starlingd's [tls] client_ca_file and starlingctl cert issue")
    if OPENSSL is None:
        raise Skip("openssl command not installed")


def make_ca(folder: str, name: str) -> tuple:
    crt, key = os.path.join(folder, f"{name}.crt"), os.path.join(folder, f"{name}.key")
    run(OPENSSL, "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", crt, "-subj", f"/CN={name} device CA", "-days", "30",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return crt, key


def issue(ca: tuple, jid: str, prefix: str) -> tuple:
    """A device key + certificate for `jid`, by `starlingctl cert issue` (key written 0600)."""
    out = run(Starling.binary("starlingctl"), "cert", "issue", jid, "--ca-cert", ca[0], "--ca-key", ca[1],
              "--out", prefix, "--days", "2")
    assert "serial" in out, out
    return prefix + ".crt", prefix + ".key"


def use_certificate(agent: Agent, cert: tuple, password: bool) -> None:
    """[link] client_cert / client_key; with password=False the [xmpp] password line goes."""
    with open(agent.config_path) as f:
        text = f.read()
    drop = ("client_cert = ", "client_key = ") + (() if password else ("password = ",))
    text = "".join(ln for ln in text.splitlines(True) if not ln.startswith(drop))
    text = text.replace("[link]\n", f'[link]\nclient_cert = "{cert[0]}"\nclient_key = "{cert[1]}"\n', 1)
    with open(agent.config_path, "w") as f:
        f.write(text)


class Pki:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="agent-pki-")
        self.ca = make_ca(self.dir, "device")
        self.foreign = make_ca(self.dir, "foreign")

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def cleanup(self):
        if not harness.KEEP_TMP:
            shutil.rmtree(self.dir, ignore_errors=True)


@harness.timeout(60)
async def test_a_device_certificate_logs_in_with_external_and_publishes(t):
    need_starling()
    pki = Pki()
    server = await t.starling_with(f'[tls]\nclient_ca_file = "{pki.ca[0]}"\n')
    dev, reader = await t.users(server, 2, prefix="ax")
    agent = Agent(server, dev, "", device=dev, interval_ms=50)
    stranger = Agent(server, dev, "", device=dev + "f", interval_ms=50)
    try:
        good = issue(pki.ca, f"{dev}@{server.domain}", pki.path("good"))
        foreign = issue(pki.foreign, f"{dev}@{server.domain}", pki.path("stranger"))
        use_certificate(agent, good, password=False)
        agent.write_sensor("v", 7)
        with open(agent.config_path, "a") as f:
            f.write(FILE_SOURCE.format(path=agent.sensor("v")))
        out = subprocess.run(agent.cmd + ["--config", agent.config_path, "--check-config"], capture_output=True,
                             text=True, timeout=10)
        assert out.returncode == 0 and f"client_cert={good[0]}" in out.stdout, out
        await agent.start()
        await agent.wait_status(lambda st: st["state"] == "online" and int(st["published"]) >= 3,
                                what="online and publishing with EXTERNAL")
        await agent.wait_log(r"event=link\.auth mechanism=EXTERNAL ok=true")
        # The readings are at the node, under the certificate's JID.
        c = await t.client(server, reader, "secret")
        c.xmpp.register_plugin("xep_0060")
        items = await all_items(c.xmpp["xep_0060"], agent.node)
        values = [r[1] for _, p in items for r in readings_of(p) if r[0] == "v"]
        assert len(values) >= 3 and set(values) == {7.0}, values[:10]
        assert "link.auth_failed" not in agent.log_text()

        # Same JID, certificate of a CA the broker does not trust: the handshake fails, the agent
        # says so and retries with backoff, never online, still running.
        use_certificate(stranger, foreign, password=False)
        await stranger.start()
        line = await stranger.wait_log(r"event=link\.down reason=\"tls: peer-alert [^\"]*did the broker refuse "
                                      r"link\.client_cert\?[^\"]*\"")
        deadline = time.monotonic() + 10
        while stranger.log_text().count("event=link.retry") < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert stranger.log_text().count("event=link.retry") >= 3, stranger.log_tail()
        assert stranger.running(), line
        assert "event=link.online" not in stranger.log_text()
        assert stranger.status()["state"] != "online"
        # The good agent's link was not disturbed, and it stops cleanly.
        assert agent.status()["connects"] == "1"
        assert await agent.stop() == 0
    finally:
        agent.cleanup()
        stranger.cleanup()
        pki.cleanup()


@harness.timeout(60)
async def test_without_external_on_offer_the_agent_refuses_or_falls_back_to_scram(t):
    need_starling()
    pki = Pki()
    server = await t.server()  # no client_ca_file: EXTERNAL is never offered
    dev, = await t.users(server, 1, prefix="ay")
    no_password = Agent(server, dev, "", device=dev, interval_ms=100)
    with_password = Agent(server, dev, "secret", device=dev + "p", interval_ms=100)
    try:
        cert = issue(pki.ca, f"{dev}@{server.domain}", pki.path("dev"))
        use_certificate(no_password, cert, password=False)
        await no_password.start()
        await no_password.wait_log(r"event=link\.auth_failed reason=\"broker does not offer EXTERNAL[^\"]*\"")
        await no_password.wait_log(r"event=link\.retry")
        assert no_password.running()
        assert "event=link.online" not in no_password.log_text()

        use_certificate(with_password, cert, password=True)
        await with_password.start()
        await with_password.wait_status(lambda st: st["state"] == "online", what="online with SCRAM")
        await with_password.wait_log(r"event=link\.auth_fallback reason=\"broker does not offer EXTERNAL\"")

        # A key that is not the certificate's is refused before anything connects.
        other = issue(pki.ca, f"{dev}@{server.domain}", pki.path("other"))
        use_certificate(with_password, (cert[0], other[1]), password=True)
        out = subprocess.run(with_password.cmd + ["--config", with_password.config_path, "--check-config"],
                             capture_output=True, text=True, timeout=10)
        assert out.returncode == 1 and "does not match the certificate" in out.stderr, out
        use_certificate(with_password, cert, password=True)
        # A private key that others may read is refused before anything connects.
        os.chmod(cert[1], 0o644)
        out = subprocess.run(with_password.cmd + ["--config", with_password.config_path, "--check-config"],
                             capture_output=True, text=True, timeout=10)
        assert out.returncode == 1, out
        assert "link.client_key" in out.stderr and "too open" in out.stderr and "0644" in out.stderr, out
    finally:
        no_password.cleanup()
        with_password.cleanup()
        pki.cleanup()


if __name__ == "__main__":
    harness.main(globals())
