"""Settings: flags over environment over defaults; bad values fail with one line."""

from __future__ import annotations

import pytest

from zipproxy.config import OPTIONS, ConfigError, Settings, build_parser, load


def test_the_documented_command_line() -> None:
    s = load(
        ["--upstream", "http://127.0.0.1:8042", "--host", "127.0.0.1", "--port", "8080"], env={}
    )
    assert str(s.upstream) == "http://127.0.0.1:8042"
    assert (s.host, s.port) == ("127.0.0.1", 8080)


def test_environment_and_precedence() -> None:
    env = {
        "ZIPPROXY_UPSTREAM": "http://pacs:8080/dcm4chee-arc/aets/DCM4CHEE/rs/",
        "ZIPPROXY_PORT": "9000",
        "ZIPPROXY_HEADER_LIMIT": "2M",
        "ZIPPROXY_PREFER_ZIP_ON_TIE": "yes",
    }
    s = load([], env=env)
    assert s.upstream.path == "/dcm4chee-arc/aets/DCM4CHEE/rs"
    assert s.port == 9000 and s.header_limit == 2 << 20 and s.prefer_zip_on_tie
    assert load(["--port", "9100"], env=env).port == 9100


def test_collection_byte_limit_is_off_by_default_and_takes_suffixes() -> None:
    base = ["--upstream", "http://x"]
    assert load(base, env={}).max_collection_bytes == 0
    assert load([*base, "--max-collection-bytes", "50G"], env={}).max_collection_bytes == 50 << 30
    assert load(base, env={"ZIPPROXY_MAX_COLLECTION_BYTES": "0"}).max_collection_bytes == 0


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ([], "--upstream (or ZIPPROXY_UPSTREAM) is required"),
        (["--upstream", "ftp://x"], "--upstream / ZIPPROXY_UPSTREAM"),
        (["--upstream", "http://u:p@x"], "credentials"),
        (["--upstream", "http://x", "--port", "70000"], "--port"),
        (["--upstream", "http://x", "--workers", "0"], "--workers"),
        (["--upstream", "http://x", "--read-timeout", "-1"], "--read-timeout"),
        (["--upstream", "http://x", "--log-format", "xml"], "--log-format"),
        (["--upstream", "http://x", "--header-limit", "lots"], "--header-limit"),
        (["--upstream", "http://x", "--upstream-auth", "nocolon"], "--upstream-auth"),
        (["--upstream", "http://x", "--max-collection-bytes", "-5"], "--max-collection-bytes"),
        (["--upstream", "http://x", "--collection-sizes", "guess"], "--collection-sizes"),
    ],
)
def test_bad_values_fail_with_one_line(argv: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(argv, env={})
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_every_setting_has_a_flag_an_env_and_help() -> None:
    helptext = build_parser().format_help()
    names = {o.name for o in OPTIONS}
    assert names == set(Settings.__dataclass_fields__)
    for opt in OPTIONS:
        assert opt.flag in helptext and opt.env in helptext


def test_readme_configuration_table_matches_the_code() -> None:
    """Every setting is in the README table with its flag, variable and default, only those."""
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    rows = {}
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`--"):
            rows[cells[0].strip("`")] = (cells[1].strip("`"), cells[2])
    expected = {}
    for opt in OPTIONS:
        default = (
            "(required)"
            if opt.default is None
            else (f"`{opt.default}`" if opt.default else "(empty)")
        )
        expected[opt.flag] = (opt.env, default)
    assert rows == expected


def test_public_url_is_checked_and_loses_its_trailing_slash() -> None:
    base = ["--upstream", "http://x"]
    assert load(base, env={}).public_url == ""
    s = load([*base, "--public-url", "https://pacs.example.org/zip/"], env={})
    assert s.public_url == "https://pacs.example.org/zip"
    for bad in ("pacs.example.org", "https://u:p@pacs.example.org", "https://pacs/?a=1"):
        with pytest.raises(ConfigError, match="--public-url"):
            load([*base, "--public-url", bad], env={})
