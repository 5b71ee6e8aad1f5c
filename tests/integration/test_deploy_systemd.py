#!/usr/bin/env python3
"""The systemd unit (deploy/systemd/starlingd.service) as systemd itself judges it:
`systemd-analyze verify` finds nothing to say, and `systemd-analyze security` scores its
exposure no worse than deploy/README.md reports. (The container has systemd's tools but no
running systemd: the unit is checked offline, the notify protocol in test_deploy_notify.py.)"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

ROOT = os.path.abspath(os.path.join(harness.HERE, "..", ".."))
UNIT = os.path.join(ROOT, "deploy", "systemd", "starlingd.service")


def unit_copy():
    """The unit with ExecStart pointing at the binary under test (verify checks it exists)."""
    d = tempfile.mkdtemp(prefix="unit-")
    text = open(UNIT).read().replace("/usr/bin/starlingd", harness.Starling.binary("starlingd"))
    path = os.path.join(d, "starlingd.service")
    with open(path, "w") as f:
        f.write(text)
    return d, path


async def test_unit_verifies_cleanly(t):
    d, path = unit_copy()
    try:
        r = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", (r.returncode, r.stdout, r.stderr)
    finally:
        shutil.rmtree(d)


async def test_unit_has_the_hardening_the_readme_reports(t):
    text = open(UNIT).read()
    for line in ("Type=notify", "WatchdogSec=", "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure",
                 "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes",
                 "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n", "LimitNOFILE=1048576", "User=starling"):
        assert line in text, f"{line!r} missing from {UNIT}"
    d, path = unit_copy()
    try:
        r = subprocess.run(["systemd-analyze", "security", "--offline=yes", path], capture_output=True, text=True,
                           timeout=60)
    finally:
        shutil.rmtree(d)
    m = re.search(r"Overall exposure level for starlingd.service: ([0-9.]+)", r.stdout)
    assert m, r.stdout[-2000:] + r.stderr
    score = float(m.group(1))
    readme = open(os.path.join(ROOT, "deploy", "README.md")).read()
    rm = re.search(r"`systemd-analyze security` exposure: \*\*([0-9.]+)", readme)
    assert rm, "deploy/README.md does not report the systemd-analyze security score"
    assert score <= float(rm.group(1)), f"exposure {score} is worse than the {rm.group(1)} deploy/README.md reports"


if __name__ == "__main__":
    harness.main(globals())
