"""Record one finished run of ``examples/word_lm.py`` as a result file, ``results/<study>/<name>.json``.

Reads the run's final row (the line ``word_lm.py --results FILE`` appended: name, sparsity, nnz, val and test
perplexity) and the seconds of each epoch from its printed output (``| end of epoch  N |  9.5s |``; give every
log of a run continued with ``--resume``), and writes them with the exact command, the git revision and the
device through ``compress_models.results.write_result``.

    python examples/record_result.py --study selfish_ptb --name selfish --row runs/selfish.jsonl \\
        --log runs/selfish.1.log runs/selfish.2.log --device "NVIDIA H200" --epochs 100 \\
        --published-val 73.79 --published-test 71.72 --published-source "Selfish-RNN (ICML 2021)" \\
        --command "python examples/word_lm.py --schedule schedules/published/selfish_ptb_selfish.yaml ..."
"""
from __future__ import annotations

import argparse
import json
import statistics

from compress.errors import ArgumentError
from compress_models.results import epoch_seconds_from_log, write_result


def last_row(path: str, name: str = "") -> dict:
    """The last JSON line of ``path`` (the last one named ``name`` when given)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    raise SystemExit(f"error: {path}:{number}: not a JSON line") from None
    rows = [r for r in rows if not name or r.get("name") == name]
    if not rows:
        raise SystemExit(f"error: {path}: no row" + (f" named {name!r}" if name else ""))
    return rows[-1]


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", required=True, help="the table the run belongs to, e.g. selfish_ptb, agp_wt2")
    p.add_argument("--name", required=True, help="the run's name in its study (the file name)")
    p.add_argument("--row", required=True, help="the file word_lm.py --results appended the final row to")
    p.add_argument("--row-name", default="", help="the row's name there (default: the file's last row)")
    p.add_argument("--log", nargs="+", required=True, help="the run's printed output, every part of it")
    p.add_argument("--command", required=True, help="the exact command of the run")
    p.add_argument("--epochs", type=int, help="epochs trained (default: the epochs the logs report)")
    p.add_argument("--device", help="where it ran (default: this machine's GPU or CPU)")
    p.add_argument("--torch",
                   help="the torch version it ran with (default: this machine's; give it for a run made elsewhere)")
    p.add_argument("--git-revision", help="the revision it ran at (default: this checkout's)")
    p.add_argument("--label", help="the row's text in the table")
    p.add_argument("--order", type=int, help="position of the row in its table")
    p.add_argument("--published-val", type=float, help="the paper's validation perplexity")
    p.add_argument("--published-test", type=float, help="the paper's test perplexity")
    p.add_argument("--published-source", help="where the paper's figures are from")
    p.add_argument("--out", default="results", help="the results folder")
    args = p.parse_args(argv)
    row = last_row(args.row, args.row_name)
    seconds = {}
    for path in args.log:
        with open(path, encoding="utf-8") as f:
            seconds.update(epoch_seconds_from_log(f.read()))
    if not seconds:
        raise SystemExit(f"error: no '| end of epoch N | ...s |' line in {', '.join(args.log)}")
    fields = dict(study=args.study, name=args.name, command=args.command,
                  epochs=args.epochs if args.epochs is not None else max(seconds) + 1,
                  sparsity=row.get("sparsity"), nnz=row.get("nnz"), val_ppl=row.get("val_ppl"),
                  test_ppl=row.get("test_ppl"), seconds_per_epoch=round(statistics.median(seconds.values()), 2))
    optional = {"device": args.device, "torch": args.torch, "git_revision": args.git_revision, "label": args.label,
                "order": args.order}
    fields.update({k: v for k, v in optional.items() if v is not None})
    paper = {k: v for k, v in (("val_ppl", args.published_val), ("test_ppl", args.published_test),
                               ("source", args.published_source)) if v is not None}
    if paper:
        fields["published"] = paper
    try:
        path = write_result(args.out, **fields)
    except ArgumentError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
