"""What `--centre` costs an index once: taking the collection's mean of rooted vectors.

`search --centre` re-scores each query's shortlist against the mean the index keeps
(`ImageIndex.centring_mean`); that mean is taken again only after 1% of the files have
changed. This times taking it (`ImageIndex.take_centring_mean`: at most 10,000 stored vectors,
a seeded sample beyond) a few times in a row. It opens the index without building a network
and changes nothing in it. Time the searches themselves with
farm-bench (`foldervision search Q --database DB --no-update --centre` against the same without).

Run:  python benchmarks/centring_cost.py INDEX [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

from foldervision.retrieval.catalogue import Catalogue
from foldervision.retrieval.index import ImageIndex
from foldervision.retrieval.stores import StoreLocation, open_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("index", type=Path, help="An index file (index.sqlite).")
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    with contextlib.closing(Catalogue.open(arguments.index)) as catalogue:
        spec = catalogue.stored_spec()
        if spec is None:
            raise SystemExit(f"{arguments.index}: no vectors yet; index a folder first.")
        store = open_store(StoreLocation(), catalogue, spec)
        image_index = ImageIndex(Path(tempfile.gettempdir()), catalogue, store, spec)
        print(f"{arguments.index}: {len(catalogue)} vectors")
        for round_number in range(1, arguments.rounds + 1):
            start = time.perf_counter()
            mean = image_index.take_centring_mean()
            seconds = time.perf_counter() - start
            usable = "usable" if len(mean) else "not usable: negative values"
            print(f"  round {round_number}: took the mean in {seconds:.3f} s ({usable})")


if __name__ == "__main__":
    main()
