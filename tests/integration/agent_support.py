"""starling-agent under test: writes its configuration, starts, kills (-9) and restarts it,
reads its status socket and its structured log. Used by tests/integration/test_agent_*.py."""
from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Optional
from xml.etree import ElementTree as ET

import harness

NS_READINGS = "urn:starling:agent:readings:0"
SERVICE = "pubsub.localhost"
NS_CMD = "http://jabber.org/protocol/commands"
NS_DATA = "jabber:x:data"


class Agent:
    """One starling-agent process (restartable over the same queue folder and configuration)."""

    def __init__(self, server: harness.Server, user: str, password: str, *, device: str = "dev",
                 extra: str = "", interval_ms: int = 50, ca_file: Optional[str] = None,
                 operators: tuple = (), port: Optional[int] = None):
        self.server = server
        # A cross-built agent runs under qemu-user: STARLING_AGENT_BINARY=build/arm64/...
        # STARLING_AGENT_EMULATOR="qemu-aarch64 -L /usr/aarch64-linux-gnu".
        self.binary = os.environ.get("STARLING_AGENT_BINARY") or harness.agent_binary()
        self.cmd = os.environ.get("STARLING_AGENT_EMULATOR", "").split() + [self.binary]
        self.dir = tempfile.mkdtemp(prefix="agent-")
        self.sys = os.path.join(self.dir, "sys")
        os.mkdir(self.sys)
        self.queue_dir = os.path.join(self.dir, "queue")
        self.status_path = os.path.join(self.dir, "status.sock")
        self.log_path = os.path.join(self.dir, "agent.log")
        self.config_path = os.path.join(self.dir, "agent.toml")
        self.device = device
        self.node = f"starling/devices/{device}"
        self.jid = f"{user}@{server.domain}"
        ca = ca_file or os.path.join(server.data_dir, "tls", "cert.pem")
        ops = ", ".join(f'"{o}"' for o in operators)
        with open(self.config_path, "w") as f:
            f.write(f"""[agent]
device = "{device}"
log_level = "debug"
status_socket = "{self.status_path}"
[xmpp]
jid = "{self.jid}"
password = "{password}"
host = "127.0.0.1"
port = {port or server.c2s_port}
operators = [{ops}]
[tls]
ca_file = "{ca}"
[link]
backoff_initial_ms = 50
backoff_max_ms = 500
ping_interval_ms = 2000
ping_timeout_ms = 2000
[queue]
dir = "{self.queue_dir}"
fsync = "never"
[telemetry]
interval_ms = {interval_ms}
{extra}""")
        self.proc: Optional[subprocess.Popen] = None
        self._log = None

    def sensor(self, name: str) -> str:
        return os.path.join(self.sys, name)

    def write_sensor(self, name: str, value) -> None:
        tmp = self.sensor(name) + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{value}\n")
        os.replace(tmp, self.sensor(name))

    async def start(self, env: Optional[dict] = None) -> "Agent":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd + ["--config", self.config_path], stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=harness._die_with_parent,
                                     env=None if env is None else {**os.environ, **env})
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None
        if self._log:
            self._log.close()
            self._log = None

    async def stop(self, timeout: float = 5.0) -> int:
        if not self.proc:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        rc = self.proc.poll()
        self.kill()
        assert rc == 0, f"starling-agent exited with {rc} after SIGTERM\n{self.log_tail()}"
        return rc

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self) -> dict:
        """The status socket's line as a dict (what `starling-agent --status` prints)."""
        out = subprocess.run(self.cmd + ["--config", self.config_path, "--status"], capture_output=True,
                             text=True, timeout=5)
        if out.returncode != 0:
            return {}
        return dict(re.findall(r'(\w+)=("[^"]*"|\S+)', out.stdout))

    async def wait_status(self, pred, timeout: float = 15.0, what: str = "") -> dict:
        deadline = time.monotonic() + timeout
        st = {}
        while time.monotonic() < deadline:
            st = self.status()
            if st and pred(st):
                return st
            await asyncio.sleep(0.1)
        raise AssertionError(f"agent status never reached {what}: last {st}\n{self.log_tail()}")

    def log_text(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    async def wait_log(self, pattern: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.log_text())
            if m:
                return m.group(0)
            await asyncio.sleep(0.05)
        raise AssertionError(f"no log line matching {pattern!r}\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        rows = self.log_text().splitlines()[-lines:]
        return "\n".join(f"  agent| {r}" for r in rows)

    def cleanup(self) -> None:
        self.kill()
        if not harness.KEEP_TMP:
            shutil.rmtree(self.dir, ignore_errors=True)


def item_seq(item_id: str) -> int:
    """'<incarnation>-<seq>' -> seq."""
    return int(item_id.rsplit("-", 1)[1])


def readings_of(payload: ET.Element) -> list:
    assert payload.tag == f"{{{NS_READINGS}}}readings", payload.tag
    rs = [(r.get("n"), float(r.get("v")), r.get("u"), int(r.get("t"))) for r in payload]
    assert int(payload.get("count")) == len(rs)
    return rs


async def subscribe_when_node_exists(ps, node: str, jid: str, timeout: float = 10.0):
    """Subscribes as soon as the agent has created its node."""
    from slixmpp.exceptions import IqError
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await ps.subscribe(SERVICE, node, timeout=5)
        except IqError as e:
            if time.monotonic() > deadline or e.iq["error"]["condition"] != "item-not-found":
                raise
            await asyncio.sleep(0.1)


async def all_items(ps, node: str) -> list:
    """Every item of the node, as (id, payload element), in the service's order."""
    got = await ps.get_items(SERVICE, node, timeout=10)
    return [(i["id"], i.xml[0] if len(i.xml) else None) for i in got["pubsub"]["items"]]


# XEP-0050 from an operator's client

async def iq_set(c, to, xml, timeout=5.0):
    iq = c.xmpp.make_iq_set(ito=to)
    iq.append(ET.fromstring(xml))
    return await iq.send(timeout=timeout)


def submit(node, session, fields):
    xs = "".join(f"<field var='{k}'><value>{v}</value></field>" for k, v in fields.items())
    return (f"<command xmlns='{NS_CMD}' node='{node}' sessionid='{session}' action='complete'>"
            f"<x xmlns='{NS_DATA}' type='submit'>{xs}</x></command>")


async def run_command(c, to, node, fields):
    """The two stages of XEP-0050 §3.4: execute -> form, submit -> completed."""
    r = await iq_set(c, to, f"<command xmlns='{NS_CMD}' node='{node}' action='execute'/>")
    cmd = r.xml.find(f"{{{NS_CMD}}}command")
    assert cmd.get("status") == "executing", ET.tostring(r.xml)
    form = cmd.find(f"{{{NS_DATA}}}x")
    assert form is not None and form.get("type") == "form"
    assert sorted(f.get("var") for f in form.findall(f"{{{NS_DATA}}}field")) == sorted(fields)
    r2 = await iq_set(c, to, submit(node, cmd.get("sessionid"), fields))
    return r2.xml.find(f"{{{NS_CMD}}}command")


class CuttableProxy:
    """A TCP proxy in front of the broker's client port whose connections can be cut at once,
    as a network failure would (the broker keeps the session for XEP-0198 resumption)."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = 0
        self.conns: list = []
        self._server = None

    async def start(self) -> "CuttableProxy":
        self._server = await asyncio.start_server(self._on_client, harness.HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _on_client(self, cr, cw):
        try:
            sr, sw = await asyncio.open_connection(harness.HOST, self.target_port)
        except OSError:
            cw.close()
            return
        self.conns.append((cw, sw))

        async def pipe(r, w):
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                w.close()

        await asyncio.gather(pipe(cr, sw), pipe(sr, cw))

    def cut(self) -> None:
        for cw, sw in self.conns:
            for w in (cw, sw):
                try:
                    w.transport.abort()
                except Exception:
                    pass
        self.conns.clear()

    def close(self) -> None:
        self.cut()
        if self._server:
            self._server.close()
