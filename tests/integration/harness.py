"""Integration-test harness: the server under test, accounts, clients, and a tiny test runner.

Every test file is a script: it defines `async def test_*(t)` functions, written as a
conversation (who connects, sends, must receive what), and ends with `harness.main(globals())`.
The runner runs them in definition order in one asyncio loop and prints one line per test:

    PASS test_login.py::test_starttls_scram_sha_256 (0.4s)
    FAIL test_login.py::test_direct_tls: AssertionError: ...      (then details, server log tail)
    SKIP test_metrics.py::test_x: reason

The server under test is chosen by STARLING_SUT: `starling` (default; binaries from
STARLING_BUILD_DIR/broker/) or `prosody` (Debian's prosody, used to validate this harness and
the tests' protocol expectations against an independent, standard implementation).

Only the Python standard library and Debian's python3-slixmpp are used.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import inspect
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from typing import Callable, Optional

try:
    import slixmpp
    from slixmpp.exceptions import IqError, IqTimeout
except ImportError:  # run.sh checks this first and says how to install it
    sys.stderr.write("harness: python3-slixmpp is not importable: apt-get install python3-slixmpp "
                     "(or run deploy/install-deps.sh)\n")
    raise

HERE = os.path.dirname(os.path.abspath(__file__))
DOMAIN = "localhost"
HOST = "127.0.0.1"
SUT = os.environ.get("STARLING_SUT", "starling")
BUILD_DIR = os.environ.get("STARLING_BUILD_DIR", os.path.join(HERE, "..", "..", "build", "release"))
KEEP_TMP = os.environ.get("STARLING_KEEP_TMP") == "1"
LOG_TAIL_LINES = int(os.environ.get("STARLING_LOG_TAIL", "60"))

STREAMS_NS = "http://etherx.jabber.org/streams"
STREAM_ERR_NS = "urn:ietf:params:xml:ns:xmpp-streams"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
STANZA_ERR_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"

logging.basicConfig(level=logging.CRITICAL)  # slixmpp is chatty; failures are reported by us


class Skip(Exception):
    """Raised by a test that cannot run against this server under test."""


class ServerFailed(Exception):
    pass


# slixmpp computes SCRAM's Hi() in a Python loop (~20 ms per login at 4096 iterations); 200
# logins on 2 cores would spend seconds on it. PBKDF2 is exactly Hi(), so use hashlib's.
try:
    from slixmpp.util.sasl import mechanisms as _mechs

    def _fast_hi(self, text, salt, iterations):
        name = self.hash_name.lower().replace("-", "")
        return hashlib.pbkdf2_hmac(name, bytes(text), salt, iterations)

    _mechs.SCRAM.Hi = _fast_hi
except Exception:  # pragma: no cover - keep slixmpp's own if its layout changes
    pass


_PORT_RANGE = os.environ.get("STARLING_PORT_RANGE", "")  # "LO-HI", set by run.sh per worker
_ports_given: set = set()


def free_port() -> int:
    """A TCP port on HOST that nothing listens on now.

    run.sh gives each of its parallel workers its own range below the kernel's ephemeral range
    (STARLING_PORT_RANGE), so two test files never pick the same port and no client's outgoing
    connection takes a port between this check and the server's bind. Without a range, the
    kernel picks one."""
    if _PORT_RANGE:
        lo, hi = (int(x) for x in _PORT_RANGE.split("-"))
        for _ in range(4 * (hi - lo)):
            port = secrets.randbelow(hi - lo) + lo
            if port in _ports_given:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((HOST, port))
                except OSError:
                    continue
            _ports_given.add(port)
            return port
        raise RuntimeError(f"no free port left in STARLING_PORT_RANGE={_PORT_RANGE}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


def rss_kib(pid: int) -> dict:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0])
    return out


def unique(prefix: str = "u") -> str:
    """An account name nobody else in this run uses (letters and digits only)."""
    return f"{prefix}{secrets.token_hex(4)}"


# ---------------------------------------------------------------------------------------------
# The server under test
# ---------------------------------------------------------------------------------------------

_LIVE: set = set()  # servers started and not yet stopped, killed if the harness is killed


def _die_with_parent():
    """In the child before exec: SIGKILL it if the harness dies (e.g. the per-file timeout)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _kill_all_live(*_):
    for s in list(_LIVE):
        s.kill()


class Server:
    """A server under test on free loopback ports with a temporary data folder.

    Options: plaintext (clients may authenticate without TLS), shards, pre_auth_timeout_ms and
    max_connections_per_ip (set through the configuration file: no flags for them), data_dir
    (reuse one, e.g. to test a restart).
    """
    name = "server"
    has_metrics = False
    metrics_prefix = ""

    def __init__(self, *, plaintext: bool = False, shards: Optional[int] = None,
                 pre_auth_timeout_ms: Optional[int] = None, data_dir: Optional[str] = None,
                 direct_tls: bool = True, metrics: bool = True,
                 max_connections_per_ip: Optional[int] = None):
        self.plaintext = plaintext
        self.shards = shards
        self.pre_auth_timeout_ms = pre_auth_timeout_ms
        self.max_connections_per_ip = max_connections_per_ip
        # The harness's own files (log, config, import lists) live in a work folder next to the
        # data folder, so the server's data folder holds only what the server puts there.
        self.own_dir = data_dir is None
        self.work_dir = tempfile.mkdtemp(prefix=f"sut-{self.name}-")
        if data_dir is None:
            data_dir = os.path.join(self.work_dir, "data")
            os.mkdir(data_dir)
        self.data_dir = data_dir
        self.c2s_port = free_port()
        self.tls_port = free_port() if direct_tls else 0
        self.metrics_port = free_port() if metrics and self.has_metrics else 0
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = os.path.join(self.work_dir, "server.log")
        self._log = None
        self.domain = DOMAIN

    # -- to be provided by a concrete server
    def command(self) -> list:
        raise NotImplementedError

    def add_user(self, user: str, password: str) -> None:
        raise NotImplementedError

    def add_users(self, pairs: list) -> None:
        for u, p in pairs:
            self.add_user(u, p)

    def del_user(self, user: str) -> None:
        raise NotImplementedError

    # -- common
    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def jid(self, user: str, resource: Optional[str] = None) -> str:
        return f"{user}@{self.domain}" + (f"/{resource}" if resource else "")

    def ports(self) -> list:
        return [p for p in (self.c2s_port, self.tls_port, self.metrics_port) if p]

    async def start(self, timeout: float = 20.0) -> "Server":
        cmd = self.command()
        self._log = open(self.log_path, "ab")
        self._log.write(("$ " + " ".join(cmd) + "\n").encode())
        self._log.flush()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.work_dir,
                                     preexec_fn=_die_with_parent)
        _LIVE.add(self)
        deadline = time.monotonic() + timeout
        pending = set(self.ports())
        while pending:
            if self.proc.poll() is not None:
                raise ServerFailed(f"{self.name} exited with {self.proc.returncode} before it "
                                   f"listened on {sorted(pending)}\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise ServerFailed(f"{self.name} not listening on {sorted(pending)} after "
                                   f"{timeout}s\n{self.log_tail()}")
            pending = {p for p in pending if not port_open(p)}
            if pending:
                await asyncio.sleep(0.05)
        return self

    async def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait, and require exit status 0 (SIGKILL and fail after `timeout`)."""
        if self.proc is None:
            return 0
        _LIVE.discard(self)
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            self._close_log()
            raise ServerFailed(f"{self.name} still running {timeout}s after SIGTERM (killed)")
        self._close_log()
        if proc.returncode != 0:
            raise ServerFailed(f"{self.name} exited with status {proc.returncode} after SIGTERM"
                               f"\n{self.log_tail()}")
        return proc.returncode

    def kill(self) -> None:
        _LIVE.discard(self)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self._close_log()

    def _close_log(self):
        if self._log:
            self._log.close()
            self._log = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_size(self) -> int:
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_tail(self, since: int = 0, lines: int = LOG_TAIL_LINES) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return "(no server log)"
        rows = text.splitlines()[-lines:]
        return "\n".join(f"  | {r}" for r in rows) or "  | (empty)"

    def cleanup(self):
        self.kill()
        if not KEEP_TMP:
            shutil.rmtree(self.work_dir, ignore_errors=True)  # holds data_dir if it is ours

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://{HOST}:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()


class Starling(Server):
    name = "starlingd"
    has_metrics = True
    metrics_prefix = "starling_"

    @staticmethod
    def binary(name: str) -> str:
        path = os.path.join(BUILD_DIR, "broker", name)
        if not os.access(path, os.X_OK):
            raise ServerFailed(f"{path} not found or not executable (STARLING_BUILD_DIR={BUILD_DIR})")
        return path

    def __init__(self, *, toml: str = "", **kw):
        """toml: more configuration file text, whole tables (e.g. '[modules]\nmam = false\n');
        not [c2s], which the harness writes itself."""
        super().__init__(**kw)
        self.extra_toml = toml

    def command(self) -> list:
        cmd = [self.binary("starlingd"), "--data-dir", self.data_dir, "--domain", self.domain,
               "--c2s-port", str(self.c2s_port), "--c2s-tls-port", str(self.tls_port),
               "--metrics-port", str(self.metrics_port), "--log-level", "debug"]
        if self.shards:
            cmd += ["--shards", str(self.shards)]
        if self.plaintext:
            cmd += ["--allow-plaintext"]
        c2s = {}
        if self.pre_auth_timeout_ms is not None:
            c2s["pre_auth_timeout_ms"] = int(self.pre_auth_timeout_ms)
        if self.max_connections_per_ip is not None:
            # Load tests: many clients from one address as fast as they can; no rate limit.
            c2s["max_connections_per_ip"] = int(self.max_connections_per_ip)
            c2s["connection_rate_per_ip"] = 0
        text = ""
        if c2s:
            # No command-line flags for these: they exercise the configuration file.
            text = "[c2s]\n" + "".join(f"{k} = {v}\n" for k, v in c2s.items())
        text += self.extra_toml
        if text:
            conf = os.path.join(self.work_dir, "test.toml")
            with open(conf, "w") as f:
                f.write(text)
            cmd += ["--config", conf]
        return cmd

    def ctl(self, *args, stdin: Optional[str] = None) -> str:
        cmd = [self.binary("starlingctl"), "--data-dir", self.data_dir, *args]
        r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise ServerFailed(f"{' '.join(cmd[:5])} ... exited {r.returncode}\n"
                               f"stdout: {r.stdout[-2000:]}\nstderr: {r.stderr[-2000:]}")
        return r.stdout

    def add_user(self, user, password):
        self.ctl("user", "add", self.jid(user), password)

    def add_users(self, pairs):
        if len(pairs) <= 2:
            return super().add_users(pairs)
        path = os.path.join(self.work_dir, f"import-{secrets.token_hex(3)}.csv")
        with open(path, "w") as f:
            for u, p in pairs:
                f.write(f"{self.jid(u)},{p}\n")
        self.ctl("user", "import", path)

    def del_user(self, user):
        self.ctl("user", "del", self.jid(user))

    def list_users(self) -> str:
        return self.ctl("user", "list")


def agent_binary() -> str:
    """BUILD_DIR/edge-agent/starling-agent (issue 12), or Skip when it was not built."""
    path = os.path.join(BUILD_DIR, "edge-agent", "starling-agent")
    if not os.access(path, os.X_OK):
        raise Skip(f"{path} not built (STARLING_BUILD_AGENT=OFF?)")
    return path


class Prosody(Server):
    """Debian's prosody (0.12) with a private config, for validating the harness. Not a service:
    it runs in the foreground on the test's ports and data folder, like starlingd."""
    name = "prosody"
    has_metrics = False

    def command(self) -> list:
        tls = os.path.join(self.data_dir, "tls")
        os.makedirs(tls, exist_ok=True)
        key, crt = os.path.join(tls, "key.pem"), os.path.join(tls, "cert.pem")
        if not os.path.exists(crt):
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30", "-subj",
                            f"/CN={self.domain}", "-keyout", key, "-out", crt],
                           check=True, capture_output=True)
        data = os.path.join(self.data_dir, "data")
        os.makedirs(data, exist_ok=True)
        conf = os.path.join(self.data_dir, "prosody.cfg.lua")
        with open(conf, "w") as f:
            f.write(f"""
run_as_root = true
pidfile = "{self.data_dir}/prosody.pid"
data_path = "{data}"
plugin_paths = {{}}
modules_enabled = {{ "saslauth", "tls", "disco", "ping", "roster" }}
modules_disabled = {{ "s2s", "offline" }}
c2s_ports = {{ {self.c2s_port} }}
c2s_interfaces = {{ "127.0.0.1" }}
c2s_direct_tls_ports = {{ {self.tls_port or ''} }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
c2s_require_encryption = {str(not self.plaintext).lower()}
allow_unencrypted_plain_auth = {str(self.plaintext).lower()}
authentication = "internal_hashed"
storage = "internal"
log = {{ debug = "*console" }}
ssl = {{ key = "{key}", certificate = "{crt}" }}
{"c2s_timeout = %g" % (self.pre_auth_timeout_ms / 1000) if self.pre_auth_timeout_ms else ""}
VirtualHost "{self.domain}"
""")
        return ["prosody", "--config", conf, "-F"]

    def _account_path(self, user):
        enc = lambda s: re.sub(r"[^A-Za-z0-9]", lambda m: "%%%02x" % ord(m.group()), s)
        d = os.path.join(self.data_dir, "data", enc(self.domain), "accounts")
        os.makedirs(d, exist_ok=True)
        return os.path.join(d, enc(user) + ".dat")

    def add_user(self, user, password):
        # prosodyctl takes ~0.5 s per call; write internal_hashed's record directly (SCRAM-SHA-1).
        salt, it = secrets.token_hex(8), 4096
        salted = hashlib.pbkdf2_hmac("sha1", password.encode(), salt.encode(), it)
        ck = hmac.new(salted, b"Client Key", "sha1").digest()
        sk = hmac.new(salted, b"Server Key", "sha1").digest()
        stored = hashlib.sha1(ck).hexdigest()
        with open(self._account_path(user), "w") as f:
            f.write(f'return {{ ["iteration_count"] = {it}; ["salt"] = "{salt}"; '
                    f'["stored_key"] = "{stored}"; ["server_key"] = "{sk.hex()}"; }};\n')

    def del_user(self, user):
        os.unlink(self._account_path(user))


def make_server(**opts) -> Server:
    return {"starling": Starling, "prosody": Prosody}[SUT](**opts)


# ---------------------------------------------------------------------------------------------
# slixmpp client
# ---------------------------------------------------------------------------------------------

class LoginFailed(Exception):
    def __init__(self, condition, detail=""):
        super().__init__(f"login failed: {condition} {detail}".strip())
        self.condition = condition


class Client:
    """An independent XMPP client (slixmpp). mode: 'starttls' | 'tls' (XEP-0368 port) | 'plain'."""

    def __init__(self, server: Server, user: str, password: str, *, resource: Optional[str] = None,
                 mode: str = "starttls", sasl_mech: Optional[str] = None, presence: bool = True):
        self.server, self.user, self.password, self.mode = server, user, password, mode
        self.presence = presence
        jid = server.jid(user, resource)
        self.xmpp = slixmpp.ClientXMPP(jid, password, sasl_mech=sasl_mech)
        self.xmpp.ssl_context.check_hostname = False
        self.xmpp.ssl_context.verify_mode = ssl.CERT_NONE
        self.xmpp.register_plugin("xep_0030")
        self.xmpp.register_plugin("xep_0199", {"keepalive": False})
        self.messages: asyncio.Queue = asyncio.Queue()
        self.offered_mechanisms: list = []
        self.auth_failures: list = []
        self.stream_errors: list = []
        self.disconnected = asyncio.Event()
        self._session: asyncio.Future = asyncio.get_event_loop().create_future()
        x = self.xmpp
        x.add_event_handler("session_start", self._on_session)
        x.add_event_handler("failed_auth", self._on_failed_auth)
        x.add_event_handler("failed_all_auth", self._on_failed_all)
        x.add_event_handler("disconnected", self._on_disconnected)
        x.add_event_handler("connection_failed", self._on_conn_failed)
        x.add_event_handler("stream_error", lambda e: self.stream_errors.append(e["condition"]))
        x.add_event_handler("message", self._on_message)
        x.add_event_handler("message_error", self._on_message)
        x.add_filter("in", self._sniff_features)

    # -- events
    def _sniff_features(self, stanza):
        if stanza.name == "features":
            mechs = stanza.xml.find(f"{{{SASL_NS}}}mechanisms")
            if mechs is not None:
                self.offered_mechanisms = [m.text for m in mechs]
        return stanza

    def _on_session(self, _):
        if self.presence:
            self.xmpp.send_presence()
        if not self._session.done():
            self._session.set_result(True)

    def _on_failed_auth(self, stanza):
        self.auth_failures.append(stanza["condition"])

    def _on_failed_all(self, _):
        if not self._session.done():
            cond = self.auth_failures[-1] if self.auth_failures else "no-mechanism"
            self._session.set_exception(LoginFailed(cond))

    def _on_disconnected(self, reason):
        self.disconnected.set()
        if not self._session.done():
            cond = self.auth_failures[-1] if self.auth_failures else "disconnected"
            self._session.set_exception(LoginFailed(
                cond, f"({self.user}, {self.mode}: {reason or 'connection closed'}; stream "
                      f"errors {self.stream_errors}; offered {self.offered_mechanisms})"))

    def _on_conn_failed(self, err):
        if not self._session.done():
            self._session.set_exception(LoginFailed("connection-failed", str(err)))

    def _on_message(self, msg):
        self.messages.put_nowait(msg)

    # -- actions
    async def login(self, timeout: float = 15.0) -> "Client":
        s = self.server
        if self.mode == "tls":
            self.xmpp.connect((HOST, s.tls_port), use_ssl=True)
        elif self.mode == "plain":
            self.xmpp.connect((HOST, s.c2s_port), force_starttls=False, disable_starttls=True)
        else:
            self.xmpp.connect((HOST, s.c2s_port), force_starttls=True)
        try:
            await asyncio.wait_for(asyncio.shield(self._session), timeout)
        except asyncio.TimeoutError:
            self.abort()
            raise LoginFailed("timeout", f"no session after {timeout}s "
                              f"(auth failures: {self.auth_failures})") from None
        except LoginFailed:
            self.abort()
            raise
        if self.presence:
            # Barrier: the initial presence went out in session_start; one IQ round trip on the
            # same stream guarantees the server has processed it (stanzas of one stream are
            # handled in order), so messages to our bare JID find us "available".
            try:
                await self.iq_get(self.server.domain, "<ping xmlns='urn:xmpp:ping'/>", timeout)
            except IqError:
                pass
            except IqTimeout:
                raise LoginFailed("timeout", "no answer to the post-login ping") from None
        return self

    @property
    def jid(self) -> str:
        """The full JID the server bound."""
        return self.xmpp.boundjid.full

    @property
    def bare(self) -> str:
        return self.xmpp.boundjid.bare

    @property
    def mechanism(self) -> Optional[str]:
        m = self.xmpp["feature_mechanisms"].mech
        return m.name if m else None

    def send_message(self, to: str, body: str, mtype: str = "chat", forged_from: Optional[str] = None,
                     id: Optional[str] = None):
        msg = self.xmpp.make_message(mto=to, mbody=body, mtype=mtype)
        if forged_from:
            msg["from"] = forged_from
        if id:
            msg["id"] = id
        msg.send()

    async def wait_message(self, timeout: float = 5.0, match: Optional[Callable] = None):
        """The next message (for which `match(msg)` is true, others are dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.jid or self.user}: no matching message in {timeout}s")
            try:
                msg = await asyncio.wait_for(self.messages.get(), left)
            except asyncio.TimeoutError:
                raise AssertionError(f"{self.jid or self.user}: no matching message in {timeout}s") from None
            if match is None or match(msg):
                return msg

    async def expect_no_message(self, within: float = 1.0):
        try:
            msg = await asyncio.wait_for(self.messages.get(), within)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"{self.jid}: unexpected message {msg}")

    async def iq_get(self, to: str, payload_xml: str, timeout: float = 5.0):
        """Send an IQ get with a raw payload; returns the result IQ, raises IqError on error."""
        from xml.etree import ElementTree as ET
        iq = self.xmpp.make_iq_get(ito=to)
        iq.append(ET.fromstring(payload_xml))
        return await iq.send(timeout=timeout)

    async def close(self, timeout: float = 5.0):
        if not self.disconnected.is_set():
            try:
                self.xmpp.disconnect(wait=0.5)
            except Exception:
                pass
            try:
                await asyncio.wait_for(self.disconnected.wait(), timeout)
            except asyncio.TimeoutError:
                self.abort()

    def abort(self):
        try:
            self.xmpp.abort()
        except Exception:
            pass


# ---------------------------------------------------------------------------------------------
# Raw socket client (for hostile input and byte-exact checks)
# ---------------------------------------------------------------------------------------------

def stream_header(domain: str = DOMAIN) -> str:
    return (f"<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' "
            f"xmlns='jabber:client' xmlns:stream='{STREAMS_NS}'>")


FEATURES_END = re.compile(r"</(?:stream:)?features>|<(?:stream:)?features[^>]*/>")


def stream_error_condition(text: str) -> Optional[str]:
    """The defined condition of a stream error found in `text`, or None."""
    # <stream:error>, or <error xmlns='http://etherx.jabber.org/streams'> (not a stanza <error>)
    ns = re.escape(STREAMS_NS)
    m = (re.search(r"<stream:error\b.*?(?:</stream:error>|/>)", text, re.S)
         or re.search(r"<error[^>]*xmlns=['\"]" + ns + r"['\"].*?(?:</error>|/>)", text, re.S))
    if not m:
        return None
    c = re.search(r"<([a-z-]+)[^>]*xmlns=['\"]" + re.escape(STREAM_ERR_NS), m.group(0))
    return c.group(1) if c else "(no condition)"


def closes_stream(text: str) -> bool:
    return bool(re.search(r"</(?:stream:)?stream\s*>", text))


_libssl = None


def tls_exporter(tls) -> bytes:
    """RFC 9266 tls-exporter of a client connection (an ssl.SSLObject or ssl.SSLSocket): 32 bytes
    of the exporter with label EXPORTER-Channel-Binding, no context. Python's ssl module has no
    exporter, so read the SSL* out of CPython's _ssl._SSLSocket (after PyObject_HEAD and the
    socket weakref) and call libssl, the same library _ssl uses; the SSL_version check makes
    sure the pointer is this connection's."""
    import ctypes
    global _libssl
    if _libssl is None:
        _libssl = ctypes.CDLL("libssl.so.3")
        _libssl.SSL_export_keying_material.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,
                                                       ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p,
                                                       ctypes.c_size_t, ctypes.c_int]
        _libssl.SSL_version.argtypes = [ctypes.c_void_p]
    ptr = ctypes.c_void_p.from_address(id(tls._sslobj) + 3 * ctypes.sizeof(ctypes.c_void_p)).value
    want = {"TLSv1.3": 0x0304, "TLSv1.2": 0x0303}[tls.version()]
    assert _libssl.SSL_version(ptr) == want, "not the SSL* of this connection"
    out = ctypes.create_string_buffer(32)
    label = b"EXPORTER-Channel-Binding"
    assert _libssl.SSL_export_keying_material(ptr, out, 32, label, len(label), None, 0, 0) == 1
    return out.raw


def tls_client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Raw:
    """A byte-level client over asyncio streams: what it sends is exactly what you write."""

    def __init__(self):
        self.reader: Optional[asyncio.StreamReader] = None
        self.writer: Optional[asyncio.StreamWriter] = None
        self.buf = ""       # everything received and not yet consumed by expect()
        self.received = ""  # everything received, ever
        self.closed = False  # peer closed (EOF) or reset
        self.reset = False

    @classmethod
    async def connect(cls, port: int, tls: bool = False) -> "Raw":
        r = cls()
        r.reader, r.writer = await asyncio.open_connection(
            HOST, port, ssl=tls_client_context() if tls else None,
            server_hostname=DOMAIN if tls else None, limit=1 << 20)
        return r

    async def send(self, data) -> bool:
        """Write and drain; False if the peer has gone (reset / broken pipe)."""
        if isinstance(data, str):
            data = data.encode()
        try:
            self.writer.write(data)
            await self.writer.drain()
            return True
        except (ConnectionError, OSError, RuntimeError):
            return False

    async def _read_some(self, timeout: float) -> bool:
        try:
            chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
        except asyncio.TimeoutError:
            return False
        except (ConnectionError, OSError, ssl.SSLError):
            self.closed = self.reset = True
            return False
        if not chunk:
            self.closed = True
            return False
        text = chunk.decode("utf-8", "replace")
        self.buf += text
        self.received += text
        return True

    async def expect(self, pattern, timeout: float = 5.0) -> str:
        """Read until `pattern` (regex) is in the buffer; return and consume through the match."""
        rx = re.compile(pattern, re.S) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.buf)
            if m:
                out, self.buf = self.buf[:m.end()], self.buf[m.end():]
                return out
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                raise AssertionError(f"expected /{rx.pattern}/ within {timeout}s; "
                                     f"closed={self.closed}; got: {self.buf[-800:]!r}")
            await self._read_some(left)

    async def read_until_closed(self, timeout: float = 5.0) -> str:
        """Everything until the peer closes; AssertionError if it stays open `timeout` s."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"server did not close the connection within {timeout}s; "
                                     f"got: {self.buf[-800:]!r}")
            await self._read_some(left)
        return self.buf

    async def open_stream(self, domain: str = DOMAIN, timeout: float = 5.0) -> str:
        await self.send(stream_header(domain))
        return await self.expect(FEATURES_END, timeout)

    async def starttls(self, timeout: float = 5.0):
        await self.send(f"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await self.expect(r"<proceed[^>]*/>|<proceed[^>]*>\s*</proceed>", timeout)
        await self.writer.start_tls(tls_client_context(), server_hostname=DOMAIN)

    async def auth_plain(self, user: str, password: str, timeout: float = 10.0) -> str:
        """SASL PLAIN; returns 'success' or the failure condition."""
        tok = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        await self.send(f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{tok}</auth>")
        return await self._sasl_outcome(timeout)

    async def _sasl_outcome(self, timeout):
        out = await self.expect(r"<success[^>]*/>|<success[^>]*>.*?</success>|<failure[^>]*>.*?</failure>"
                                r"|<challenge[^>]*>.*?</challenge>", timeout)
        if "<success" in out:
            return "success"
        if "<challenge" in out:
            return "challenge:" + re.search(r"<challenge[^>]*>(.*?)</challenge>", out, re.S).group(1)
        m = re.search(r"<failure[^>]*>\s*<([a-z-]+)", out)
        return m.group(1) if m else "(failure without condition)"

    async def auth_scram(self, mech: str, user: str, password: str, timeout: float = 10.0) -> dict:
        """SASL SCRAM-SHA-1 / SCRAM-SHA-256 (no channel binding). Returns a dict with the outcome of
        each step: {'first': 'challenge'|condition, 'final': 'success'|condition|None}."""
        h = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}[mech]
        cnonce = secrets.token_urlsafe(18)
        first_bare = f"n={user},r={cnonce}"
        await self.send(f"<auth xmlns='{SASL_NS}' mechanism='{mech}'>"
                        f"{base64.b64encode(('n,,' + first_bare).encode()).decode()}</auth>")
        res = await self._sasl_outcome(timeout)
        if not res.startswith("challenge:"):
            return {"first": res, "final": None}
        server_first = base64.b64decode(res.split(":", 1)[1]).decode()
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        assert attrs["r"].startswith(cnonce), f"server nonce does not extend ours: {server_first}"
        salt, it = base64.b64decode(attrs["s"]), int(attrs["i"])
        salted = hashlib.pbkdf2_hmac(h, password.encode(), salt, it)
        ck = hmac.new(salted, b"Client Key", h).digest()
        stored = hashlib.new(h, ck).digest()
        without_proof = f"c={base64.b64encode(b'n,,').decode()},r={attrs['r']}"
        auth_msg = f"{first_bare},{server_first},{without_proof}".encode()
        sig = hmac.new(stored, auth_msg, h).digest()
        proof = base64.b64encode(bytes(a ^ b for a, b in zip(ck, sig))).decode()
        final = f"{without_proof},p={proof}"
        await self.send(f"<response xmlns='{SASL_NS}'>{base64.b64encode(final.encode()).decode()}</response>")
        res2 = await self._sasl_outcome(timeout)
        if res2.startswith("challenge:"):  # some servers send server-final as a challenge
            await self.send(f"<response xmlns='{SASL_NS}'/>")
            res2 = await self._sasl_outcome(timeout)
        return {"first": "challenge", "final": res2, "iterations": it}

    async def login(self, user: str, password: str, resource: str = "raw", timeout: float = 10.0) -> str:
        """On a TLS connection: PLAIN, stream restart, bind. Returns the bound full JID."""
        await self.open_stream(timeout=timeout)
        res = await self.auth_plain(user, password, timeout)
        assert res == "success", f"PLAIN login of {user} failed: {res}"
        await self.open_stream(timeout=timeout)
        await self.send("<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                        f"<resource>{resource}</resource></bind></iq>")
        out = await self.expect(r"<iq[^>]*>.*?</iq>", timeout)
        m = re.search(r"<jid>(.*?)</jid>", out)
        assert m, f"bind failed: {out}"
        return m.group(1)

    def abort(self):
        if self.writer:
            try:
                self.writer.transport.abort()
            except Exception:
                pass

    async def close(self):
        if self.writer and not self.writer.is_closing():
            self.writer.close()
        self.abort()


# ---------------------------------------------------------------------------------------------
# A conversation that must keep flowing while something hostile happens elsewhere
# ---------------------------------------------------------------------------------------------

class Chatter:
    """Two authenticated clients; A sends B a numbered message every `interval` s. finish()
    stops, waits for the tail, and asserts every message arrived once, in order."""

    def __init__(self, t: "TestContext", server: Server, interval: float = 0.05):
        self.t, self.server, self.interval = t, server, interval
        self.sent = 0
        self.got: list = []
        self.other: list = []  # anything else B received
        self._task = None
        self._rx = None

    async def start(self) -> "Chatter":
        ua, ub = unique("chata"), unique("chatb")
        self.server.add_users([(ua, "pw-a"), (ub, "pw-b")])
        self.a = await self.t.client(self.server, ua, "pw-a", resource="chat")
        self.b = await self.t.client(self.server, ub, "pw-b", resource="chat")
        self._task = asyncio.ensure_future(self._send_loop())
        self._rx = asyncio.ensure_future(self._recv_loop())
        await asyncio.sleep(0.3)
        return self

    async def _send_loop(self):
        while True:
            self.sent += 1
            self.a.send_message(self.b.jid, f"chat {self.sent}")
            await asyncio.sleep(self.interval)

    async def _recv_loop(self):
        while True:
            msg = await self.b.messages.get()
            body = msg["body"]
            if body.startswith("chat "):
                self.got.append(int(body.split()[1]))
            else:
                self.other.append(msg)

    async def finish(self, timeout: float = 5.0):
        self._task.cancel()
        deadline = time.monotonic() + timeout
        while len(self.got) < self.sent and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self._rx.cancel()
        want = list(range(1, self.sent + 1))
        assert self.got == want, (f"bystander conversation lost or reordered messages: sent "
                                  f"{self.sent}, received {len(self.got)} "
                                  f"(missing {sorted(set(want) - set(self.got))[:20]})")
        # And the bystanders still work after the attack, both ways.
        self.b.send_message(self.a.jid, "still here")
        m = await self.a.wait_message(5, lambda m: m["body"] == "still here")
        assert m["from"] == self.b.jid
        return self.sent


# ---------------------------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------------------------

class TestContext:
    """Given to each test: starts servers and clients and cleans them up afterwards."""

    def __init__(self, runner: "Runner"):
        self.runner = runner
        self.servers: list = []
        self.clients: list = []
        self.raws: list = []
        self.log_marks: dict = {}
        self.notes: list = []

    async def server(self, **opts) -> Server:
        """A fresh server for this test only (stopped, exit status checked, at the end)."""
        s = make_server(**opts)
        self.servers.append(s)
        await s.start()
        self.log_marks[id(s)] = 0
        return s

    async def starling_with(self, toml: str, **opts) -> Server:
        """A fresh starlingd with extra configuration file text; skipped against other servers
        (what is tested is starlingd's own configuration)."""
        if SUT != "starling":
            raise Skip("starlingd's configuration file is what this test sets")
        return await self.server(toml=toml, **opts)

    async def shared_server(self, **opts) -> Server:
        """A server shared by the tests of this file that ask for the same options."""
        s = await self.runner.shared(**opts)
        self.log_marks.setdefault(id(s), s.log_size())
        if s not in self.servers:
            self.servers.append(s)
        return s

    async def client(self, server: Server, user: str, password: str, login: bool = True, **kw) -> Client:
        c = Client(server, user, password, **kw)
        self.clients.append(c)
        if login:
            await c.login()
        return c

    async def raw(self, port: int, tls: bool = False) -> Raw:
        r = await Raw.connect(port, tls)
        self.raws.append(r)
        return r

    async def users(self, server: Server, n: int, prefix: str = "u", password: str = "secret") -> list:
        names = [unique(prefix) for _ in range(n)]
        server.add_users([(u, password) for u in names])
        return names

    def note(self, text: str):
        self.notes.append(text)

    async def cleanup(self, own: list) -> list:
        errors = []
        await asyncio.gather(*(c.close(2) for c in self.clients), return_exceptions=True)
        for r in self.raws:
            await r.close()
        for s in own:  # stop all first: several may share one data folder (restart tests)
            try:
                await s.stop()
            except ServerFailed as e:
                errors.append(str(e))
        return errors


class Runner:
    def __init__(self, ns: dict):
        self.file = os.path.basename(ns.get("__file__", "?"))
        self.tests = [(n, f) for n, f in ns.items()
                      if n.startswith("test_") and inspect.iscoroutinefunction(f)]
        self.shared_servers: dict = {}
        self.passed = self.failed = self.skipped = 0

    async def shared(self, **opts) -> Server:
        key = tuple(sorted(opts.items()))
        if key not in self.shared_servers:
            s = make_server(**opts)
            self.shared_servers[key] = s
            await s.start()
        s = self.shared_servers[key]
        if not s.running():
            raise ServerFailed(f"shared {s.name} is no longer running (status "
                               f"{s.proc.returncode if s.proc else '?'})\n{s.log_tail()}")
        return s

    def report(self, status: str, name: str, extra: str = ""):
        print(f"{status} {self.file}::{name}{extra}", flush=True)

    async def run(self, only: list) -> int:
        for name, fn in self.tests:
            if only and name not in only:
                continue
            t = TestContext(self)
            timeout = getattr(fn, "timeout", 60)
            t0 = time.monotonic()
            err = None
            try:
                await asyncio.wait_for(fn(t), timeout)
            except Skip as e:
                err = ("SKIP", str(e))
            except asyncio.TimeoutError:
                err = ("FAIL", f"timed out after {timeout}s", traceback.format_exc())
            except Exception as e:  # noqa: BLE001 - a test failure of any kind
                err = ("FAIL", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                       traceback.format_exc())
            own = [s for s in t.servers if s not in self.shared_servers.values()]
            stop_errors = await t.cleanup(own)
            if err is None and stop_errors:
                err = ("FAIL", stop_errors[0].splitlines()[0], "\n".join(stop_errors))
            dt = time.monotonic() - t0
            if err is None:
                self.passed += 1
                self.report("PASS", name, f" ({dt:.1f}s)" + (f" [{'; '.join(t.notes)}]" if t.notes else ""))
            elif err[0] == "SKIP":
                self.skipped += 1
                self.report("SKIP", name, f": {err[1]}")
            else:
                self.failed += 1
                self.report("FAIL", name, f": {err[1]} ({dt:.1f}s)")
                print(err[2].rstrip(), flush=True)
                for s in t.servers:
                    print(f"  --- {s.name} log ({s.log_path}) during this test ---")
                    print(s.log_tail(t.log_marks.get(id(s), 0)), flush=True)
            for s in own:  # only now: the log above lives in the server's data folder
                s.cleanup()
        # Shared servers: stopping them cleanly (SIGTERM -> exit 0) is a test of its own.
        for s in self.shared_servers.values():
            try:
                await s.stop()
                self.passed += 1
                self.report("PASS", f"shared_{s.name}_exits_0_on_SIGTERM")
            except ServerFailed as e:
                self.failed += 1
                self.report("FAIL", f"shared_{s.name}_exits_0_on_SIGTERM", f": {str(e).splitlines()[0]}")
                print(str(e), flush=True)
            finally:
                s.cleanup()
        return 1 if self.failed else 0


def timeout(seconds: float):
    """Decorator: per-test timeout (default 60 s)."""
    def deco(fn):
        fn.timeout = seconds
        return fn
    return deco


def main(ns: dict):
    import atexit
    atexit.register(_kill_all_live)

    def on_term(signum, _frame):
        print(f"harness: signal {signum} (per-file timeout?): stopping the servers under test",
              flush=True)
        for s in list(_LIVE):
            print(f"  --- {s.name} log ({s.log_path}), last lines ---\n{s.log_tail()}", flush=True)
            s.cleanup()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    runner = Runner(ns)
    only = sys.argv[1:]

    async def go():
        try:
            return await runner.run(only)
        finally:
            for s in runner.shared_servers.values():
                s.cleanup()

    try:
        rc = asyncio.run(go())
    except KeyboardInterrupt:
        rc = 130
    sys.exit(rc)
