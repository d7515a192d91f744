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


def test_info_describes_a_checkpoint(tmp_path, capsys):
    from hfan import build_model, get_preset, save_checkpoint

    config = get_preset("hfan-b0")
    save_checkpoint(tmp_path / "m.pth", build_model(config), config)
    assert main(["info", "--checkpoint", str(tmp_path / "m.pth")]) == 0
    assert "backbone mit_b0" in capsys.readouterr().out
    assert main(["info", "--checkpoint", str(tmp_path / "absent.pth")]) == 2
    assert "absent.pth does not exist" in capsys.readouterr().err


def _options(parser, name="hfan"):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, subparser in action.choices.items():
                yield from _options(subparser, f"{name} {command}")
        elif action.option_strings and not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield name, action


def test_every_option_states_its_default():
    """Every option has a help text, and one whose default is a value (not unset, not a switch) names it."""
    from hfan.cli import build_parser

    missing = [f"{name} {action.option_strings[0]}" for name, action in _options(build_parser())
               if not action.help
               or (action.default not in (None, False) and "default" not in action.help.lower())]
    assert not missing, missing
