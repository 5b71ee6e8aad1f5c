#!/usr/bin/env python3
"""The Debian package, as an operator meets it: `cpack -G DEB` in the release build, `dpkg -i`,
the broker started from the installed files, a slixmpp login, an upgrade in place (data,
certificate and configuration kept), `dpkg -r` (data kept), install again (the account is
still there), `dpkg -P` (nothing left).

There is no systemd in the test container: the broker is started with the ExecStart line of
the installed unit, as the unit's User= (setpriv), plus port flags so that it cannot collide
with anything else on the machine. Run once per test run (scripts/test.sh), not per build:

    tests/integration/run.sh build/release "$PWD/tests/deploy/test_package.py"

It refuses to run where starlingd is already installed or a `starling` user or /var/lib/starling
exists (it would destroy them), and purges what it installed even when it fails."""
import glob
import grp
import os
import pwd
import shlex
import ssl
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402
from harness import LoginFailed, unique  # noqa: E402

DATA = "/var/lib/starling"
CONF = "/etc/starling/starlingd.toml"
UNIT = "/lib/systemd/system/starlingd.service"
AS_STARLING = ["setpriv", "--reuid=starling", "--regid=starling", "--init-groups", "--"]


def run(*cmd, check=True):
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=300)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def installed():
    r = run("dpkg-query", "-W", "-f=${Status}", "starlingd", check=False)
    return "installed" in r.stdout and "not-installed" not in r.stdout


def user_exists(name="starling"):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def group_exists(name="starling"):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


class Installed(harness.Starling):
    """starlingd from /usr/bin, started with the installed unit's ExecStart line as `starling`."""
    name = "starlingd (installed)"

    def __init__(self):
        super().__init__(data_dir=DATA)

    def command(self):
        line = [l for l in open(UNIT) if l.startswith("ExecStart=")][0]
        return AS_STARLING + shlex.split(line[len("ExecStart="):]) + [
            "--c2s-port", str(self.c2s_port), "--c2s-tls-port", str(self.tls_port),
            "--metrics-port", str(self.metrics_port)]

    def ctl(self, *args, stdin=None):
        r = run(*AS_STARLING, "/usr/bin/starlingctl", "--data-dir", DATA, *args)
        return r.stdout


def build_package():
    build = os.path.abspath(harness.BUILD_DIR)
    for old in glob.glob(os.path.join(build, "starlingd_*.deb")):
        os.unlink(old)
    run("cpack", "-G", "DEB", "-B", build, "--config", os.path.join(build, "CPackConfig.cmake"))
    debs = glob.glob(os.path.join(build, "starlingd_*.deb"))
    assert len(debs) == 1, debs
    return debs[0]


async def test_install_run_remove_purge(t):
    assert not installed(), "starlingd is already installed here: this test would remove it"
    assert not user_exists() and not os.path.exists(DATA), \
        f"a 'starling' user or {DATA} exists here: this test would delete them"
    deb = build_package()
    info = run("dpkg-deb", "--info", deb).stdout
    assert "Package: starlingd" in info and "adduser" in info and "libcivetweb1" in info, info
    contents = run("dpkg-deb", "--contents", deb).stdout
    for path in ("./usr/bin/starlingd", "./usr/bin/starlingctl", "./etc/starling/starlingd.toml", "." + UNIT):
        assert path in contents, f"{path} not in the package:\n{contents}"
    try:
        out = run("dpkg", "-i", deb).stdout
        # Installed, configured, not started: the operator enables the unit.
        assert "not started" in out, out
        assert installed()
        assert CONF in run("dpkg-query", "-W", "-f=${Conffiles}", "starlingd").stdout
        assert 'data_dir = "/var/lib/starling"' in open(CONF).read()
        assert user_exists() and group_exists()
        st = os.stat(DATA)
        assert st.st_uid == pwd.getpwnam("starling").pw_uid and (st.st_mode & 0o777) == 0o700, oct(st.st_mode)
        assert pwd.getpwnam("starling").pw_shell == "/usr/sbin/nologin"
        assert not glob.glob("/etc/systemd/system/*.wants/starlingd.service"), "the unit was enabled on install"
        cert = open(os.path.join(DATA, "tls", "cert.pem")).read()
        assert "BEGIN CERTIFICATE" in cert
        assert (os.stat(os.path.join(DATA, "tls", "key.pem")).st_mode & 0o777) == 0o600

        # The broker from the installed files, as the unit starts it.
        s = Installed()
        t.servers.append(s)
        await s.start()
        user, password = unique("pkg"), "pw-package"
        s.add_user(user, password)
        c = await t.client(s, user, password)               # STARTTLS with the package's certificate
        served = ssl.get_server_certificate((harness.HOST, s.tls_port))
        assert served.split() == cert.split(), "the broker does not serve the certificate made on install"
        await c.close()
        await s.stop()
        assert os.path.isdir(os.path.join(DATA, "db")) and pwd.getpwuid(os.stat(os.path.join(DATA, "db")).st_uid).pw_name == "starling"

        # Upgrade in place (dpkg -i over the installed package: postinst configure with the old
        # version): the data, the certificate and the operator's configuration edit stay.
        with open(CONF, "a") as f:
            f.write("# edited by the operator\n")
        out = run("dpkg", "--force-confold", "-i", deb).stdout
        assert "not started" not in out, out
        assert open(os.path.join(DATA, "tls", "cert.pem")).read() == cert
        assert open(CONF).read().endswith("# edited by the operator\n")
        assert os.path.isdir(os.path.join(DATA, "db"))

        # Remove: binaries gone, data and configuration kept.
        run("dpkg", "-r", "starlingd")
        assert not os.path.exists("/usr/bin/starlingd") and not os.path.exists(UNIT)
        assert os.path.isdir(os.path.join(DATA, "db")) and os.path.exists(CONF) and user_exists()

        # Install again: the account made before is still there.
        run("dpkg", "-i", deb)
        s2 = Installed()
        t.servers.append(s2)
        await s2.start()
        c = await t.client(s2, user, password)
        await c.close()
        try:
            await t.client(s2, user, "wrong")
        except LoginFailed:
            pass
        else:
            raise AssertionError("a wrong password logged in")
        await s2.stop()

        # Purge: nothing left.
        run("dpkg", "-P", "starlingd")
        assert not installed()
        left = [p for p in (DATA, "/etc/starling", "/usr/bin/starlingd", "/usr/bin/starlingctl", UNIT,
                            "/usr/share/doc/starlingd") if os.path.exists(p)]
        assert not left, f"left behind after purge: {left}"
        assert not user_exists() and not group_exists(), "the starling user or group survived the purge"
        assert "starlingd" not in run("dpkg", "-l").stdout
    finally:
        for s in t.servers:
            s.kill()
        if installed() or os.path.exists("/var/lib/dpkg/info/starlingd.list") or \
                os.path.exists("/var/lib/dpkg/info/starlingd.postrm"):
            run("dpkg", "-P", "starlingd", check=False)
        os.unlink(deb)


if __name__ == "__main__":
    harness.main(globals())
