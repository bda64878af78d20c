"""Print the tables of finished runs from their result files (``results/<study>/<name>.json``), one per study.

Each run of published scale commits one small JSON file (``compress_models.results.write_result``, or
``examples/record_result.py`` from a run's output); this script assembles whatever files exist, with the
published figures beside ours where a file has them.

    python examples/results_table.py                            # every study under results/
    python examples/results_table.py --study selfish_ptb --commands --format psql
"""
from __future__ import annotations

import argparse

from compress_models.results import ResultsFileError, read_results, study_tables


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default="results", help="folder of result files (searched recursively)")
    p.add_argument("--study", nargs="*", help="print these studies only (default: all)")
    p.add_argument("--format", default="github", help="a tabulate format: github (README), psql, plain, ...")
    p.add_argument("--commands", action="store_true", help="list each run's command under its table")
    args = p.parse_args(argv)
    try:
        rows = read_results(args.results)
    except ResultsFileError as exc:
        raise SystemExit(f"error: {exc}") from None
    tables = study_tables(rows, args.format, args.commands)
    unknown = sorted(set(args.study or ()) - set(tables))
    if unknown:
        raise SystemExit(f"error: no results for {', '.join(unknown)} under {args.results} "
                         f"(studies there: {', '.join(tables) or 'none'})")
    text = "\n\n".join(f"## {study}\n\n{table}" for study, table in tables.items()
                       if not args.study or study in args.study)
    print(text or f"no result files under {args.results}")
    return text


if __name__ == "__main__":
    main()
