"""Every option of every command line in the package says what it does (`--help` is a user's first stop)."""

import argparse

import pytest

from onediff_idc import cli, default_model, model_card
from onediff_idc.eval import conditioning_gap, difference_baseline
from onediff_idc.spaces_demo import app
from onediff_idc.train import learning_curve, probe_alignment, probe_global_difference, probe_localisation

PARSERS = {
    "onediff": cli.build_parser,
    "python -m onediff_idc.default_model": default_model.build_parser,
    "python -m onediff_idc.model_card": model_card.build_parser,
    "python -m onediff_idc.eval.conditioning_gap": conditioning_gap.build_parser,
    "python -m onediff_idc.eval.difference_baseline": difference_baseline.build_parser,
    "train/learning_curve.py": learning_curve.build_parser,
    "train/probe_alignment.py": probe_alignment.build_parser,
    "train/probe_global_difference.py": probe_global_difference.build_parser,
    "train/probe_localisation.py": probe_localisation.build_parser,
    "spaces_demo/app.py": app.build_parser,
}


def options_without_help(parser: argparse.ArgumentParser, command: str) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            helped = {choice.dest for choice in action._choices_actions if choice.help}
            for name, subparser in action.choices.items():
                if name not in helped:
                    missing.append(f"{command} {name} (the command itself)")
                missing += options_without_help(subparser, f"{command} {name}")
            continue
        if not action.help or action.help == argparse.SUPPRESS:
            missing.append(f"{command} {'/'.join(action.option_strings) or action.dest}")
    return missing


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_every_option_has_a_help_line(command):
    assert options_without_help(PARSERS[command](), command) == []
