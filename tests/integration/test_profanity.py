#!/usr/bin/env python3
"""A real terminal client: profanity, driven in a detached tmux session (send-keys, capture-pane).

alice uses profanity: she logs in over STARTTLS (self-signed certificate trusted with
`tls trust`), adds bob to her roster, asks for a subscription and sends him a message. bob is a
slixmpp client: he must receive the request and the message; alice's roster on the server
(read by a second, slixmpp resource of alice) must hold bob, then with subscription 'to'.

If profanity or tmux cannot run, the test FAILS with the reason: a skip is not a pass.
"""
import asyncio
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from test_roster import peer, roster_get  # noqa: E402


class Tmux:
    """A private tmux server (its own socket, -L) running one program in a detached session."""

    def __init__(self, env: dict, width: int = 220, height: int = 50):
        self.socket = f"starling-test-{secrets.token_hex(4)}"
        self.session = "main"
        self.env = env
        self.width, self.height = width, height

    def _tmux(self, *args, check=True):
        r = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True,
                           env=self.env, timeout=10)
        if check and r.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args[:2])} failed ({r.returncode}): {r.stderr.strip()}")
        return r.stdout

    def start(self, command: list):
        self._tmux("new-session", "-d", "-s", self.session, "-x", str(self.width), "-y", str(self.height),
                   *command)

    def send_text(self, text: str, enter: bool = True):
        self._tmux("send-keys", "-t", self.session, "-l", text)
        if enter:
            self._tmux("send-keys", "-t", self.session, "Enter")

    def capture(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", self.session, "-S", "-300", check=False)

    def alive(self) -> bool:
        return subprocess.run(["tmux", "-L", self.socket, "has-session", "-t", self.session],
                              capture_output=True, env=self.env).returncode == 0

    async def wait_for(self, pattern: str, timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        screen = ""
        while time.monotonic() < deadline:
            screen = self.capture()
            if rx.search(screen):
                return screen
            if not self.alive():
                break
            await asyncio.sleep(0.2)
        raise AssertionError(f"profanity: no {what} (/{pattern}/) within {timeout}s; screen:\n{screen}")

    def stop(self):
        # Only our own tmux server (private socket), which owns the profanity process.
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, env=self.env)


def require_tools():
    missing = [tool for tool in ("profanity", "tmux") if shutil.which(tool) is None]
    if missing:
        raise AssertionError(f"cannot run the terminal-client check: {', '.join(missing)} not installed "
                             f"(apt-get install profanity tmux, or deploy/install-deps.sh)")


def profanity_log(home: str) -> str:
    for root, _dirs, files in os.walk(home):
        for f in files:
            if f.startswith("profanity") and f.endswith(".log"):
                try:
                    with open(os.path.join(root, f), errors="replace") as fh:
                        return fh.read()[-3000:]
                except OSError:
                    pass
    return "(no profanity log)"


@harness.timeout(120)
async def test_profanity_logs_in_adds_contact_subscribes_and_messages_slixmpp_peer(t):
    require_tools()
    s = await t.server()
    (b,) = await t.users(s, 1, "profb")
    a = harness.unique("profa")
    alice_pw = "pr0f-Secret"
    s.add_user(a, alice_pw)
    bob = await peer(t, s, b, resource="slix")
    alice_jid, bob_jid = s.jid(a), s.jid(b)

    home = tempfile.mkdtemp(prefix="profanity-home-")
    env = {
        "HOME": home,
        "XDG_CONFIG_HOME": os.path.join(home, ".config"),
        "XDG_DATA_HOME": os.path.join(home, ".local", "share"),
        "XDG_CACHE_HOME": os.path.join(home, ".cache"),
        "XDG_RUNTIME_DIR": home,
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }
    tm = Tmux(env)
    try:
        try:
            tm.start(["profanity", "--logfile", os.path.join(home, "profanity.log")])
        except AssertionError as e:
            raise AssertionError(f"profanity could not start in tmux: {e}") from None
        await tm.wait_for(r"Profanity|profanity", 20, "start-up screen")
        await asyncio.sleep(0.5)

        tm.send_text(f"/connect {alice_jid} server {harness.HOST} port {s.c2s_port} tls trust")
        await tm.wait_for(r"(?i)password", 15, "password prompt")
        tm.send_text(alice_pw)
        try:
            await tm.wait_for(r"(?i)logged in successfully", 30, "successful login")
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- profanity log ---\n{profanity_log(home)}") from None
        await asyncio.sleep(1.0)  # roster fetch and initial presence

        # alice adds bob, then asks for a subscription; bob (slixmpp) gets the request.
        tm.send_text(f"/roster add {bob_jid} Bobby")
        tm.send_text(f"/sub request {bob_jid}")
        req = await bob.wait_presence(lambda p: p["type"] == "subscribe" and p["from"].bare == alice_jid,
                                      timeout=15, what="subscription request from profanity")
        assert req["from"].full == alice_jid, req
        bob.send_presence(to=alice_jid, ptype="subscribed")

        # alice writes to bob.
        body = f"hello from profanity {secrets.token_hex(3)}"
        tm.send_text(f"/msg {bob_jid} {body}")
        msg = await bob.c.wait_message(15, lambda m: m["body"] == body)
        assert msg["from"].bare == alice_jid and msg["type"] in ("chat", "normal"), msg

        # bob answers; profanity shows it in the chat window.
        bob.c.send_message(alice_jid, "hi profanity, bob here")
        await tm.wait_for(r"hi profanity, bob here", 15, "bob's reply on screen")

        # The server side: another resource of alice reads the roster.
        other = await peer(t, s, a, password=alice_pw, resource="check")
        deadline = time.monotonic() + 10
        while True:
            _, items = await roster_get(other)
            item = items.get(bob_jid)
            if item and item.get("subscription") == "to":
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"alice's roster on the server: {items}")
            await asyncio.sleep(0.2)
        assert item.get("name") == "Bobby", item

        t.note("profanity screen: " + " / ".join(l.strip() for l in tm.capture().splitlines() if "bob here" in l)[:200])
        tm.send_text("/quit")
        await asyncio.sleep(0.5)
    finally:
        tm.stop()
        if not harness.KEEP_TMP:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    harness.main(globals())
