"""The README's settings tables and exit-code table, generated from the code that defines them.

    python -m configs.reference                    # print both blocks
    python -m configs.reference --write README.md  # rewrite them in place, between their markers
    python -m configs.reference --check README.md  # exit 1 when the README is stale

Each setting's meaning is the one-line comment above its field in configs/settings.py (each
exit code's, the comment above it in configs/exit_codes.py); its default is the dataclass's, and
a `Literal[...]` field lists its allowed values. A field without its own comment is an error.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import sys
import typing
from pathlib import Path

from configs import exit_codes, settings
from configs.exit_codes import ExitCode

SETTINGS_MARKERS = ("<!-- settings:begin (generated from configs/settings.py by `python -m configs.reference "
                    "--write README.md`: edit the comments there) -->", "<!-- settings:end -->")
EXIT_CODES_MARKERS = ("<!-- exit-codes:begin (generated from configs/exit_codes.py by `python -m "
                      "configs.reference --write README.md`) -->", "<!-- exit-codes:end -->")


def comment(path: Path, class_name: str, attribute: str) -> str:
    """The comment on the line just above `class_name.attribute` in a module's source."""
    lines, tree = _parsed(path)
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or node.name != class_name:
            continue
        for statement in node.body:
            target = statement.target if isinstance(statement, ast.AnnAssign) else (
                statement.targets[0] if isinstance(statement, ast.Assign) else None)
            if isinstance(target, ast.Name) and target.id == attribute:
                above = lines[statement.lineno - 2].strip()
                if not above.startswith("#"):
                    raise ValueError(f"{path}:{statement.lineno}: {class_name}.{attribute} has no comment of "
                                     f"its own on the line above it")
                return above.lstrip("#").strip()
    raise ValueError(f"{path} defines no {class_name}.{attribute}")


@functools.cache
def _parsed(path: Path) -> tuple[list[str], ast.Module]:
    text = path.read_text()
    return text.splitlines(), ast.parse(text)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _choices(annotation: object) -> str:
    if typing.get_origin(annotation) is not typing.Literal:
        return ""
    return "; one of " + ", ".join(f"`{settings._toml_value(c)}`" for c in typing.get_args(annotation))


def settings_tables() -> str:
    blocks = []
    for section in dataclasses.fields(settings.Config):
        section_type = typing.get_type_hints(settings.Config)[section.name]
        hints = typing.get_type_hints(section_type)
        defaults = section_type()
        rows = [f"**[{section.name}]**", "", "| key | default | meaning |", "|---|---|---|"]
        for key in dataclasses.fields(defaults):
            default = settings._toml_value(getattr(defaults, key.name))
            meaning = comment(Path(settings.__file__), section_type.__name__, key.name) + _choices(hints[key.name])
            rows.append(f"| `{key.name}` | `{_cell(default)}` | {_cell(meaning)} |")
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks)


def exit_code_table() -> str:
    path = Path(exit_codes.__file__)
    rows = ["| code | name | meaning |", "|---|---|---|"]
    rows += [f"| {code.value} | `{code.name}` | {_cell(comment(path, ExitCode.__name__, code.name))} |"
             for code in ExitCode]
    return "\n".join(rows)


def _blocks() -> list[tuple[tuple[str, str], str]]:
    return [(SETTINGS_MARKERS, settings_tables()), (EXIT_CODES_MARKERS, exit_code_table())]


def fill_blocks(text: str, blocks: list[tuple[tuple[str, str], str]]) -> str:
    """`text` with the body between each (begin, end) marker pair replaced by the block's body."""
    for (begin, end), body in blocks:
        start, stop = text.find(begin), text.find(end)
        if start < 0 or stop < start:
            raise ValueError(f"no {begin!r} ... {end!r} block to fill")
        text = text[:start] + f"{begin}\n{body}\n{end}" + text[stop + len(end):]
    return text


def rewrite(text: str) -> str:
    """`text` (the README) with each generated block replaced by what the code says now."""
    return fill_blocks(text, _blocks())


def generated_blocks_main(argv: list[str] | None, prog: str, description: str,
                          blocks: typing.Callable[[], list[tuple[tuple[str, str], str]]]) -> int:
    """The command line of a document's generated blocks: print them, `--write DOC` or `--check DOC`."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", metavar="DOC", type=Path, help="rewrite the generated blocks in this file")
    action.add_argument("--check", metavar="DOC", type=Path, help="exit 1 when this file's blocks are stale")
    args = parser.parse_args(argv)
    if args.write:
        args.write.write_text(fill_blocks(args.write.read_text(), blocks()))
        return ExitCode.OK
    if args.check:
        text, made = args.check.read_text(), blocks()
        if any(begin not in text for (begin, _), _ in made) or fill_blocks(text, made) != text:
            print(f"{args.check} is stale: run {prog} --write {args.check}", file=sys.stderr)
            return ExitCode.FAILED
        return ExitCode.OK
    print("\n\n".join(body for _, body in blocks()))
    return ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    return generated_blocks_main(argv, "python -m configs.reference", __doc__.splitlines()[0], _blocks)


if __name__ == "__main__":
    sys.exit(main())
