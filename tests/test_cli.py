import subprocess
import sys

from hfan.cli import main


def test_info_lists_presets(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in ("hfan-b0", "hfan-small", "hfan-medium", "hfan-large"):
        assert name in out
    assert "torch" in out


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "hfan", "info"], capture_output=True, text=True, check=True)
    assert "hfan 0.1.0" in result.stdout
