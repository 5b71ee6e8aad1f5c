#!/usr/bin/env python3
"""`starlingctl backup DIR` while the broker serves, and the restore procedure of
deploy/README.md ("Backups"): a new broker on the restored folder has the accounts of the
moment of the backup, and not those made after it."""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import LoginFailed, ServerFailed, make_server, unique  # noqa: E402


async def test_backup_while_running_then_restore(t):
    s = make_server()
    t.servers.append(s)
    await s.start()
    before = [(unique("kept"), f"pw-{i}") for i in range(3)]
    s.add_users(before)
    c = await t.client(s, before[0][0], before[0][1])   # a session is live during the backup
    backup = os.path.join(s.work_dir, "backup-1")
    out = s.ctl("backup", backup)
    assert "backup written to" in out, out
    after = unique("late")
    s.add_user(after, "pw-late")
    await c.close()
    # A second backup into the same folder is refused, and says why.
    try:
        s.ctl("backup", backup)
    except ServerFailed as e:
        assert "already exists" in str(e), e
    else:
        raise AssertionError("a backup overwrote an existing folder")
    await s.stop()

    # Restore, as deploy/README.md says: a fresh data folder, the checkpoint as its db/, the
    # server secret beside it.
    restored = os.path.join(s.work_dir, "restored")
    os.mkdir(restored, 0o700)
    shutil.copytree(os.path.join(backup, "db"), os.path.join(restored, "db"))
    shutil.copy2(os.path.join(backup, "server-secret"), os.path.join(restored, "server-secret"))
    s2 = make_server(data_dir=restored)
    t.servers.append(s2)
    await s2.start()
    for u, p in before:
        c = await t.client(s2, u, p)
        await c.close()
    try:
        await t.client(s2, after, "pw-late")
    except LoginFailed as e:
        assert e.condition == "not-authorized", e
    else:
        raise AssertionError("an account made after the backup is in the restored store")
    assert "unclean" not in s2.log_tail(lines=400).lower(), s2.log_tail()


async def test_backup_needs_a_running_broker(t):
    s = make_server()
    t.servers.append(s)
    try:
        s.ctl("backup", os.path.join(s.work_dir, "b"))
    except ServerFailed as e:
        assert "not running" in str(e), e
    else:
        raise AssertionError("backup without a broker succeeded")


if __name__ == "__main__":
    harness.main(globals())
