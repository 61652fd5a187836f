"""`ichscan --help` must start fast: command modules import the heavy library only when run."""

import subprocess
import sys

HEAVY_MODULES = ("torch", "pandas", "pydicom", "scipy", "matplotlib", "lightning", "timm")


def test_importing_the_cli_loads_no_heavy_library() -> None:
    probe = (
        "import sys, ichscan.cli\n"
        f"print(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "", f"`import ichscan.cli` imports {loaded}"


def test_every_command_is_registered() -> None:
    from ichscan.cli import app

    names = {command.name for command in app.registered_commands}
    assert {"synth", "index", "prepare", "stats", "train", "predict", "evaluate", "compare",
            "embed", "train-seq", "pretrain", "explain", "tsne"} <= names


def test_fail_prints_one_line_however_long_the_file_name(capsys) -> None:
    from ichscan.cli.app import fail

    message = "/very/long/" + "folder/" * 60 + "ID_0.dcm: not DICOM [no preamble]"
    exit_ = fail(message)
    assert exit_.exit_code == 1
    assert capsys.readouterr().err == f"Error: {message}\n"


def test_version_prints_the_package_version() -> None:
    from ichscan import __version__

    result = subprocess.run(
        [sys.executable, "-m", "ichscan.cli", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ichscan {__version__}"
