#!/usr/bin/env python3
"""The starling-agent Debian package, as an operator meets it: `cpack -G DEB` in the release
build, `dpkg -i`, the installed binary's --version and --check-config (as the unit's User=, on
the installed configuration), the installed unit through `systemd-analyze verify` (offline: the
test container runs no systemd), starlingd installed beside it, `dpkg -r` (queue kept),
`dpkg -P` (nothing of the agent left, starlingd untouched). Run once per test run
(scripts/test.sh), not per build:

    tests/integration/run.sh build/release "$PWD/tests/deploy/test_agent_package.py"

It refuses to run where starling-agent or starlingd is installed, or their users or data folders
exist (it would destroy them), and purges what it installed even when it fails."""
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402
from harness import Skip  # noqa: E402

DATA = "/var/lib/starling-agent"
CONF = "/etc/starling/starling-agent.toml"
UNIT = "/lib/systemd/system/starling-agent.service"
BIN = "/usr/bin/starling-agent"
AS_AGENT = ["setpriv", "--reuid=starling-agent", "--regid=starling-agent", "--init-groups", "--"]


def run(*cmd, check=True):
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def installed(pkg):
    r = run("dpkg-query", "-W", "-f=${Status}", pkg, check=False)
    return "installed" in r.stdout and "not-installed" not in r.stdout


def known_to_dpkg(pkg):
    return installed(pkg) or os.path.exists(f"/var/lib/dpkg/info/{pkg}.list") or \
        os.path.exists(f"/var/lib/dpkg/info/{pkg}.postrm")


def user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def build_packages():
    """Both packages from one cpack run: {"starling-agent": path, "starlingd": path}."""
    build = os.path.abspath(harness.BUILD_DIR)
    if not os.access(os.path.join(build, "edge-agent", "starling-agent"), os.X_OK):
        raise Skip("starling-agent not built (STARLING_BUILD_AGENT=OFF?)")
    for old in glob.glob(os.path.join(build, "starling-agent_*.deb")) + glob.glob(os.path.join(build, "starlingd_*.deb")):
        os.unlink(old)
    run("cpack", "-G", "DEB", "-B", build, "--config", os.path.join(build, "CPackConfig.cmake"))
    debs = {}
    for pkg in ("starling-agent", "starlingd"):
        found = glob.glob(os.path.join(build, f"{pkg}_*.deb"))
        assert len(found) == 1, (pkg, found)
        debs[pkg] = found[0]
    return debs


def test_config(tmp):
    """The installed example with the two things an operator must supply: the device's password
    file and a CA the agent can load (a throwaway self-signed certificate)."""
    password = os.path.join(tmp, "password")
    with open(password, "w") as f:
        f.write("pw-agent-package\n")
    ca = os.path.join(tmp, "ca.pem")
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-days", "1", "-subj", "/CN=iot.example.com", "-keyout", os.path.join(tmp, "ca.key"), "-out", ca)
    text = open(CONF).read()
    for old, new in (('"/etc/starling/starling-agent.password"', f'"{password}"'),
                     ('"/etc/ssl/certs/ca-certificates.crt"', f'"{ca}"')):
        assert old in text, f"{old} not in {CONF}"
        text = text.replace(old, new)
    path = os.path.join(tmp, "agent.toml")
    with open(path, "w") as f:
        f.write(text)
    agent = pwd.getpwnam("starling-agent")
    for p in (tmp, password, ca, path):
        os.chown(p, agent.pw_uid, agent.pw_gid)
    os.chmod(password, 0o600)
    return path


async def test_agent_install_check_remove_purge(t):
    for pkg in ("starling-agent", "starlingd"):
        assert not known_to_dpkg(pkg), f"{pkg} is installed here: this test would remove it"
    for name in ("starling-agent", "starling"):
        assert not user_exists(name), f"a '{name}' user exists here: this test would delete it"
    for path in (DATA, "/var/lib/starling", CONF):
        assert not os.path.exists(path), f"{path} exists here: this test would delete it"
    debs = build_packages()
    deb = debs["starling-agent"]
    tmp = tempfile.mkdtemp(prefix="agent-pkg-")
    try:
        info = run("dpkg-deb", "--info", deb).stdout
        arch = run("dpkg", "--print-architecture").stdout.strip()
        assert "Package: starling-agent" in info and f"Architecture: {arch}" in info, info
        assert "Description: Starling edge agent" in info, info
        depends = [l for l in info.splitlines() if l.strip().startswith("Depends:")]
        assert depends and "adduser" in depends[0] and "libc6" in depends[0], info   # shlibdeps ran
        version = [l.split(":", 1)[1].strip() for l in info.splitlines() if l.strip().startswith("Version:")][0]
        contents = run("dpkg-deb", "--contents", deb).stdout
        for path in ("." + BIN, "." + CONF, "." + UNIT, "./usr/share/doc/starling-agent/README.md"):
            assert path in contents, f"{path} not in the package:\n{contents}"

        out = run("dpkg", "-i", deb).stdout
        # Installed, configured, not started: the operator sets the broker and enables the unit.
        assert "not started" in out, out
        assert installed("starling-agent")
        assert CONF in run("dpkg-query", "-W", "-f=${Conffiles}", "starling-agent").stdout
        conf = open(CONF).read()
        assert 'dir = "/var/lib/starling-agent/queue"' in conf and \
            'status_socket = "/run/starling-agent/status.sock"' in conf, conf
        st = os.stat(CONF)
        assert st.st_uid == 0 and st.st_gid == pwd.getpwnam("starling-agent").pw_gid and (st.st_mode & 0o777) == 0o640
        agent = pwd.getpwnam("starling-agent")
        assert agent.pw_shell == "/usr/sbin/nologin" and agent.pw_dir == DATA
        st = os.stat(DATA)
        assert st.st_uid == agent.pw_uid and (st.st_mode & 0o777) == 0o700, oct(st.st_mode)
        assert not glob.glob("/etc/systemd/system/*.wants/starling-agent.service"), "the unit was enabled on install"
        unit = open(UNIT).read()
        assert f"ExecStart={BIN} --config {CONF}\n" in unit and "User=starling-agent" in unit, unit

        # The installed binary.
        r = run(BIN, "--version")
        assert r.stdout.strip() == f"starling-agent {version}", (r.stdout, version)
        # The example as shipped names a password file the operator has not written yet: a clear
        # refusal (exit 1, the file named), not a crash.
        r = run(*AS_AGENT, BIN, "--check-config", "--config", CONF, check=False)
        assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
        assert "starling-agent:" in r.stderr and "/etc/starling/starling-agent.password" in r.stderr, r.stderr
        # With a password file and a CA it passes, as the unit's user, with its queue in the
        # package's data folder.
        r = run(*AS_AGENT, BIN, "--check-config", "--config", test_config(tmp))
        assert r.stdout.startswith("config ok:") and "queue=/var/lib/starling-agent/queue" in r.stdout, r.stdout
        assert os.path.isdir(os.path.join(DATA, "queue"))
        assert os.stat(os.path.join(DATA, "queue")).st_uid == agent.pw_uid

        # The installed unit as systemd judges it (offline; its binary is the installed one).
        r = run("systemd-analyze", "verify", UNIT, check=False)
        assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", (r.returncode, r.stdout, r.stderr)

        # Side by side with the broker: both install, share /etc/starling, keep their own files.
        run("dpkg", "-i", debs["starlingd"])
        assert installed("starlingd") and installed("starling-agent")
        assert os.path.exists("/etc/starling/starlingd.toml") and os.path.exists(CONF)

        # Remove: binary and unit gone, queue, configuration and user kept.
        run("dpkg", "-r", "starling-agent")
        assert not os.path.exists(BIN) and not os.path.exists(UNIT)
        assert os.path.isdir(os.path.join(DATA, "queue")) and os.path.exists(CONF) and user_exists("starling-agent")

        # Purge: nothing of the agent left; starlingd and its configuration untouched.
        run("dpkg", "-P", "starling-agent")
        assert not known_to_dpkg("starling-agent")
        left = [p for p in (DATA, CONF, BIN, UNIT, "/run/starling-agent", "/usr/share/doc/starling-agent")
                if os.path.exists(p)]
        assert not left, f"left behind after purge: {left}"
        assert not user_exists("starling-agent"), "the starling-agent user survived the purge"
        r = run("getent", "group", "starling-agent", check=False)
        assert r.returncode != 0, "the starling-agent group survived the purge"
        assert installed("starlingd") and os.path.exists("/etc/starling/starlingd.toml")
        run("dpkg", "-P", "starlingd")
        assert not os.path.exists("/etc/starling"), "/etc/starling left after purging both packages"
    finally:
        for pkg in ("starling-agent", "starlingd"):
            if known_to_dpkg(pkg):
                run("dpkg", "-P", pkg, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
        for d in debs.values():
            os.unlink(d)


if __name__ == "__main__":
    harness.main(globals())
