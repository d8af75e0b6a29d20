"""What DeepVA is given for a file: on-prem paths through path_map rules, and percent-encoded URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepva_watch.config import FolderConfig, PathMapRule, parse_config
from deepva_watch.sources import SourceMappingError, describe_source, job_source

MODULES = {"face_recognition": {}}


def local_folder(path: str, *rules: tuple[str, str]) -> FolderConfig:
    return FolderConfig(path=Path(path), modules=MODULES, source="local_path",
                        path_map=tuple(PathMapRule(local=local, remote=remote) for local, remote in rules))


def url_folder(path: str, prefix: str) -> FolderConfig:
    return FolderConfig(path=Path(path), modules=MODULES, source="url", url_prefix=prefix)


@pytest.mark.parametrize(
    ("rules", "file", "expected"),
    [
        # POSIX to POSIX
        ([("/srv/media", "/mnt/media")], "/srv/media/in/clip.mxf", "/mnt/media/in/clip.mxf"),
        # the longest matching prefix wins, whatever the order of the rules
        ([("/srv/media", "/mnt/all"), ("/srv/media/news", "/mnt/news")], "/srv/media/news/a.mp4", "/mnt/news/a.mp4"),
        ([("/srv/media/news", "/mnt/news"), ("/srv/media", "/mnt/all")], "/srv/media/news/a.mp4", "/mnt/news/a.mp4"),
        ([("/srv/media/news", "/mnt/news"), ("/srv/media", "/mnt/all")], "/srv/media/sport/a.mp4", "/mnt/all/sport/a.mp4"),
        # prefixes match whole path components only
        ([("/srv/media", "/mnt/a"), ("/srv/media2", "/mnt/b")], "/srv/media2/x.jpg", "/mnt/b/x.jpg"),
        # trailing slashes in rules do not matter, on either side
        ([("/srv/media/", "/mnt/media/")], "/srv/media/x.jpg", "/mnt/media/x.jpg"),
        ([("/srv/media///", "/mnt/media")], "/srv/media/x.jpg", "/mnt/media/x.jpg"),
        ([("/", "/remote")], "/srv/media/x.jpg", "/remote/srv/media/x.jpg"),
        ([("/srv/media", "/")], "/srv/media/x.jpg", "/x.jpg"),
        # UNC: separators become backslashes
        ([("/srv/media", r"\\nas\share")], "/srv/media/sub/clip.mxf", r"\\nas\share\sub\clip.mxf"),
        ([("/srv/media", "\\\\nas\\share\\")], "/srv/media/sub/clip.mxf", r"\\nas\share\sub\clip.mxf"),
        ([("/srv/media", r"\\nas\share\News Room")], "/srv/media/a b.mov", r"\\nas\share\News Room\a b.mov"),
        # drive letters, with either separator, and a bare drive
        ([("/srv/media", r"D:\media")], "/srv/media/sub/clip.mxf", r"D:\media\sub\clip.mxf"),
        ([("/srv/media", "D:/media/")], "/srv/media/sub/clip.mxf", r"D:\media\sub\clip.mxf"),
        ([("/srv/media", "D:")], "/srv/media/clip.mxf", r"D:\clip.mxf"),
        ([("/srv/media", "D:\\")], "/srv/media/clip.mxf", r"D:\clip.mxf"),
        # non-ASCII is kept as it is
        ([("/srv/médias", r"\\nas\médias")], "/srv/médias/Über/Straße 🎬.mp4", r"\\nas\médias\Über\Straße 🎬.mp4"),
    ],
)
def test_local_paths_are_translated_to_the_servers_view(rules, file, expected):
    folder = local_folder("/", *rules)
    assert job_source(folder, Path(file)) == expected


def test_a_file_outside_every_rule_is_an_error_naming_the_file_and_the_prefixes():
    folder = local_folder("/srv", ("/srv/media", "/mnt/media"), ("/srv/archive/", r"\\nas\archive"))
    with pytest.raises(SourceMappingError) as raised:
        job_source(folder, Path("/srv/media2/clip.mxf"))
    message = str(raised.value)
    assert "/srv/media2/clip.mxf" in message
    assert "'/srv/media'" in message and "'/srv/archive/'" in message
    assert isinstance(raised.value, ValueError)


def test_a_rule_for_a_deeper_folder_does_not_cover_its_parent():
    folder = local_folder("/srv/media", ("/srv/media/news", "/mnt/news"))
    with pytest.raises(SourceMappingError, match="not under any path_map prefix"):
        job_source(folder, Path("/srv/media/clip.mxf"))


def test_a_name_with_a_backslash_cannot_go_to_a_windows_server():
    folder = local_folder("/srv/media", ("/srv/media", r"\\nas\share"))
    with pytest.raises(SourceMappingError, match="backslash"):
        job_source(folder, Path("/srv/media/a\\b.mxf"))
    assert job_source(local_folder("/srv/media", ("/srv/media", "/mnt")), Path("/srv/media/a\\b.mxf")) == "/mnt/a\\b.mxf"


@pytest.mark.parametrize(
    ("name", "encoded"),
    [
        ("clip.mxf", "clip.mxf"),
        ("my clip.mp4", "my%20clip.mp4"),
        ("take#2.mov", "take%232.mov"),
        ("what?.jpg", "what%3F.jpg"),
        ("100%.png", "100%25.png"),
        ("a+b&c=d;e.jpg", "a%2Bb%26c%3Dd%3Be.jpg"),
        ("🎬.mp4", "%F0%9F%8E%AC.mp4"),
        ("Müller.jpg", "M%C3%BCller.jpg"),
        ("line\nbreak.jpg", "line%0Abreak.jpg"),
    ],
)
def test_url_segments_are_percent_encoded(name, encoded):
    folder = url_folder("/srv/media", "https://media.example/in/")
    assert job_source(folder, Path("/srv/media/news desk") / name) == f"https://media.example/in/news%20desk/{encoded}"


@pytest.mark.parametrize("prefix", ["https://media.example/in", "https://media.example/in/", "https://media.example/in//"])
def test_exactly_one_slash_joins_the_prefix_and_the_path(prefix):
    folder = url_folder("/srv/media", prefix)
    assert job_source(folder, Path("/srv/media/a/b.jpg")) == "https://media.example/in/a/b.jpg"


@pytest.mark.parametrize("source", ["url", "local_path"])
@pytest.mark.parametrize(
    "file",
    ["/srv/media/../secret/x.jpg", "/srv/media/a/../../etc/passwd", "/srv/other/x.jpg", "/srv/media", "relative/x.jpg"],
)
def test_paths_outside_the_folder_are_refused(source, file):
    folder = FolderConfig(path=Path("/srv/media"), modules=MODULES, source=source,
                          path_map=(PathMapRule(local="/", remote="/mnt"),), url_prefix="https://media.example/")
    with pytest.raises(SourceMappingError):
        job_source(folder, Path(file))


def test_upload_folders_have_no_job_source_before_the_upload():
    folder = FolderConfig(path=Path("/srv/media"), modules=MODULES)
    with pytest.raises(ValueError, match="upload"):
        job_source(folder, Path("/srv/media/clip.mxf"))


def test_describe_source_shows_a_sample_file_for_each_mode():
    assert describe_source(local_folder("/srv/media", ("/srv/media", r"\\nas\share"))) == (
        r"local_path: /srv/media/example/clip.mxf -> \\nas\share\example\clip.mxf"
    )
    assert describe_source(url_folder("/srv/media", "https://media.example/in"), "a b/c#d.mp4") == (
        "url: /srv/media/a b/c#d.mp4 -> https://media.example/in/a%20b/c%23d.mp4"
    )
    upload = describe_source(FolderConfig(path=Path("/srv/media"), modules=MODULES, storage_folder="/watch"))
    assert upload.startswith("upload: /srv/media/example/clip.mxf -> ") and "'/watch'" in upload


def test_describe_source_includes_the_error_for_an_unmapped_folder():
    line = describe_source(local_folder("/srv/media", ("/srv/elsewhere", "/mnt")))
    assert line.startswith("local_path: /srv/media/example/clip.mxf -> error: ")
    assert "'/srv/elsewhere'" in line


def test_rules_from_a_yaml_config_map_as_written(tmp_path):
    config = parse_config({
        "folders": [{
            "path": str(tmp_path),
            "modules": MODULES,
            "source": "local_path",
            "path_map": [{"local": str(tmp_path) + "/", "remote": r"\\nas\share"}],
        }],
    })
    (folder,) = config.folders
    assert job_source(folder, tmp_path / "sub" / "clip.mxf") == r"\\nas\share\sub\clip.mxf"
