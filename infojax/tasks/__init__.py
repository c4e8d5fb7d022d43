"""Learning tasks: Task2Vec embeddings and distances between tasks."""

from infojax.tasks import distance
from infojax.tasks import task2vec
