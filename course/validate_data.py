"""Check your own data files before training: accepted / rejected records, with reasons.

    python -m course.validate_data my_data.jsonl other.json
    python -m course.validate_data data/*.json --dataset-info data/dataset_info.json
    make validate-data FILE=my_data.jsonl

Each file is read by `course.userdata.load_user_file`: its format (Alpaca, ShareGPT, OpenAI
messages) is told from its first record, or taken from the `dataset_info.json` entry whose
`file_name` is the file's name. Prints, per file, the counts, each kind of rejection with the
first records it hit (file:line or file[index], and the field), and the fields the course does
not use. Content holding the text of a special token of the tokenizer (`--model`, default the
course's) is rejected: the tokenizer would read it as a turn marker. Exit status 1 when a file cannot be read or has no usable record (with --strict: when
any record is rejected), else 0.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from course.data import DataFormatError
from course.userdata import FORMATS, load_user_file


def _mapping_for(path: Path, dataset_info: dict | None, fmt: str | None):
    if fmt:
        return fmt
    if dataset_info is None:
        return None
    for name, entry in dataset_info.items():
        if Path(entry.get("file_name", "")).name == path.name:
            return entry
    return None


def main(argv: list[str] | None = None) -> int:
    """Validate every file given; print a report; return the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path, help=".json (array) or .jsonl files")
    ap.add_argument("--format", choices=FORMATS, default=None,
                    help="the format of every file (default: told from the first record)")
    ap.add_argument("--dataset-info", type=Path, default=None,
                    help="a LLaMA-Factory dataset_info.json giving each file's column mapping")
    ap.add_argument("--model", default=None,
                    help="the tokenizer whose special tokens content must not contain "
                         "(default: the course's model, as course.models.load_tokenizer)")
    ap.add_argument("--examples", type=int, default=2, help="records shown per kind of rejection")
    ap.add_argument("--strict", action="store_true", help="exit 1 when any record is rejected")
    args = ap.parse_args(argv)
    dataset_info = None
    if args.dataset_info:
        dataset_info = json.loads(args.dataset_info.read_text(encoding="utf-8"))
    from course.models import load_tokenizer

    tokenizer = load_tokenizer(args.model)
    status = 0
    for path in args.files:
        try:
            data = load_user_file(path, _mapping_for(path, dataset_info, args.format),
                                  tokenizer=tokenizer)
        except (OSError, DataFormatError) as err:
            print(f"{path}: cannot be read: {err}")
            status = 1
            continue
        print(data.summary(args.examples))
        if not data.records or (args.strict and data.rejected):
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
