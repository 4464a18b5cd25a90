"""One host's share of a gold channel's training baskets, for multi-instance training (ml/cluster.py).

Decision: the job's `train` channel stays FullyReplicated (every host gets the whole gold folder) and each host
keeps the training baskets whose BASKET_KEY hashes to its rank, not ShardedByS3Key:

- ShardedByS3Key splits every object under the channel's prefix, so `featurizer/` and `lineage.json`, which every
  host needs, would land on one host only;
- the basket table's part files are per region, basket type and feature piece, of very different sizes, and their
  count need not be a multiple of the hosts': sharding by file would give unequal shares, or none to a host;
- a hash of the key gives every host a near-equal share whatever the files, each basket to exactly one host, the
  same share on every run of the same channel and image.

What it costs: every host downloads the whole gold folder (basket features, far smaller than the raw lines), so the
job's `volume_size_gb` must hold it; memory, which bounds training, holds only the host's share.

The share is written as a channel folder (`baskets/part-0.parquet` with the training side's share, the featurizer
and lineage linked), streamed a batch at a time, so `ml.channel.GoldChannel` reads it as it reads any channel; it
goes to a scratch folder under /tmp, which SageMaker documents as the training container's scratch space ("SageMaker
AI environment variables and the default paths for training storage locations",
https://docs.aws.amazon.com/sagemaker/latest/dg/model-train-storage-env-var-summary.html), not under /opt/ml. The
hash is Polars' seeded hash of the key as a string (a dictionary-encoded key would hash its codes otherwise): stable
within one Polars version, which every host of a job shares (one image). Once the hosts joined, `require_every_basket`
checks that their shares together hold as many training baskets as the channel.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ml.channel import PIECE_BASKETS, GoldChannel
from ml.cluster import ClusterError, Peers
from ml.schema import BASKET_KEY

SHARE_SEED = 20_260_214
"""Seed of the key hash that deals baskets to hosts (any fixed value; changing it changes every host's share)."""


def share_of(keys: pa.Array | pa.ChunkedArray, rank: int, size: int) -> pa.Array:
    """True for the keys dealt to host `rank` of `size`."""
    hashed = pl.Series(BASKET_KEY, keys).cast(pl.String).hash(seed=SHARE_SEED)
    return (hashed % size == rank).to_arrow()


@dataclass(frozen=True)
class Share:
    """A host's share of a channel: a channel folder, and the trainable training baskets it holds."""

    folder: Path
    baskets: int


def write_share(channel: Path, folder: Path, rank: int, size: int) -> Share:
    """Host `rank`'s share of `channel`'s training side as a channel folder at `folder` (replaced)."""
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "baskets").mkdir(parents=True)
    for name in ("featurizer", "lineage.json"):
        (folder / name).symlink_to((channel / name).resolve())
    dataset = ds.dataset(channel / "baskets", format="parquet", partitioning="hive")
    batches = dataset.to_batches(filter=ds.field("split") == "train", batch_size=PIECE_BASKETS,
                                 batch_readahead=1, fragment_readahead=1)
    with pq.ParquetWriter(folder / "baskets" / "part-0.parquet", dataset.schema) as writer:
        for batch in batches:
            if batch.num_rows:
                writer.write_batch(batch.filter(share_of(batch.column(BASKET_KEY), rank, size)))
    return Share(folder, GoldChannel(folder).count("train"))


def require_every_basket(channel: Path, share: Share, peers: Peers) -> None:
    """ClusterError, on every host, unless the hosts' shares together hold as many trainable training baskets as
    `channel`: a host whose channel copy differs, or whose hash deals otherwise, would train on other rows."""
    dealt = int(peers.reduce(np.array([share.baskets], dtype=np.int64), "sum")[0])
    expected = GoldChannel(channel).count("train")
    if dealt != expected:
        raise ClusterError(f"the {peers.size} hosts' shares hold {dealt:,} training baskets but the channel has "
                           f"{expected:,}: the hosts do not see the same channel, or do not deal its baskets alike")
