"""Command line of the course lab: ``python -m skinlesion_utils.lab {check,student}``.

* ``check``   — every chapter's exercises follow the format (both solution markers, both tags,
  one function, a check cell); exit status 1 with one line per problem otherwise.
* ``student`` — write the student copies (same as ``make student``).
* ``grade``   — execute submitted notebooks and print one row per exercise (✅ / ❌ and the
  check's message); ``--csv`` also writes the table. Only grade code you are willing to run.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..book_tools import ROOT, chapter_sources
from .notebooks import check_exercises, grade_notebooks, make_student_copies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skinlesion_utils.lab", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    ck = sub.add_parser("check", help="check the exercise format of every chapter")
    ck.add_argument("chapters", nargs="*", type=Path)
    st = sub.add_parser("student", help="write student copies (solutions replaced by stubs)")
    st.add_argument("--out", type=Path, default=ROOT / "student")
    gr = sub.add_parser("grade", help="execute submitted notebooks and tabulate the exercise checks")
    gr.add_argument("notebooks", nargs="+", type=Path)
    gr.add_argument("--csv", type=Path, help="also write the table to this CSV file")
    gr.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    args = parser.parse_args(argv)
    if args.cmd == "check":
        chapters = args.chapters or chapter_sources()
        problems = check_exercises(chapters)
        for p in problems:
            print(f"❌ {p}")
        if not problems:
            print(f"✅ exercises of {len(chapters)} chapter(s) follow the lab format")
        return 1 if problems else 0
    if args.cmd == "grade":
        table = grade_notebooks(args.notebooks, timeout=args.timeout)
        print(table.to_string(index=False))
        if args.csv:
            table.to_csv(args.csv, index=False)
        summary = table.groupby("notebook")["passed"].agg(["sum", "count"])
        for name, row in summary.iterrows():
            print(f"{name}: {int(row['sum'])} of {int(row['count'])} exercises pass")
        return 0
    make_student_copies(chapter_sources(), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
