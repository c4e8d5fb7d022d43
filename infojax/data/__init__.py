"""Data: TFDS random-access sources (real and offline datasets), a seeded batcher, transforms.

``load(name, split)`` gives a (process-local) split as numpy arrays, ``{"image": float32 (N,
*input_shape), "label": int32 (N,)}`` plus any other numeric features (sprites: ``factors``,
``values``); ``batches`` a seeded shuffled epoch; ``dataset_info`` the number of classes and the
input shape; ``source`` the underlying ``tfds.data_source``; `infojax.data.transforms` the deficits
and label manipulations of the experiments. Offline datasets (``digits``, ``mnist1d``,
``sprites[/config]``) are built into the data directory on first use; real TFDS datasets must be
prepared there in array_record format. TFDS is imported on first use. See
`infojax.data.sources` for the conventions.
"""

from infojax.data import transforms
from infojax.data.sources import DatasetSpec
from infojax.data.sources import OFFLINE_DATASETS
from infojax.data.sources import batches
from infojax.data.sources import dataset_info
from infojax.data.sources import default_data_dir
from infojax.data.sources import load
from infojax.data.sources import source
