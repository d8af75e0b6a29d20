from pathlib import Path

from deepva_watch.watch.mounts import choose_mode, mount_of, parse_mountinfo

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:40 / /srv/media rw,relatime shared:20 - cifs //nas/media rw,vers=3.1.1
41 40 0:41 / /srv/media/archive rw - nfs4 nas:/archive rw
42 22 0:42 / /mnt/cloud\\040drive rw - fuse.rclone remote: rw
43 22 0:43 / /mnt/usb rw - fuseblk /dev/sdb1 rw
"""


def test_mountinfo_is_parsed_with_escaped_spaces():
    mounts = parse_mountinfo(MOUNTINFO)
    assert [m.mount_point for m in mounts] == ["/", "/srv/media", "/srv/media/archive", "/mnt/cloud drive", "/mnt/usb"]
    assert mounts[1].fstype == "cifs" and mounts[1].source == "//nas/media"


def test_the_deepest_mount_containing_the_folder_wins():
    mounts = parse_mountinfo(MOUNTINFO)
    assert mount_of(Path("/srv/media/archive/2024"), mounts).fstype == "nfs4"
    assert mount_of(Path("/srv/media/in"), mounts).fstype == "cifs"
    assert mount_of(Path("/srv/mediafake"), mounts).fstype == "ext4", "a prefix of the name is not a parent"


def test_auto_polls_network_and_fuse_file_systems_and_says_why(tmp_path, monkeypatch):
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)
    monkeypatch.setattr("os.path.realpath", lambda path: str(path))
    for path, mode, fstype in [
        ("/srv/media/in", "poll", "cifs"),
        ("/srv/media/archive", "poll", "nfs4"),
        ("/mnt/cloud drive/x", "poll", "fuse.rclone"),
        ("/mnt/usb/x", "events", "fuseblk"),
        ("/home/x", "events", "ext4"),
    ]:
        choice = choose_mode("auto", Path(path), info)
        assert (choice.mode, choice.fstype) == (mode, fstype), path
        assert fstype in choice.reason
    assert choose_mode("events", Path("/srv/media/in"), info).mode == "events", "an explicit setting is obeyed"
    assert choose_mode("poll", Path("/home/x"), info).mode == "poll"
    assert choose_mode("auto", Path("/x"), tmp_path / "missing").mode == "events"
