"""Offline TFDS datasets, built locally on first use (importing this module registers them).

Importing this package imports ``tensorflow_datasets``; `infojax.data` imports it only when a
dataset is requested.
"""

from infojax.data.builders.digits import Digits
from infojax.data.builders.mnist1d import Mnist1d
from infojax.data.builders.mnist1d import Mnist1dRecipe
from infojax.data.builders.sprites import Sprites
from infojax.data.builders.sprites import SpritesConfig
