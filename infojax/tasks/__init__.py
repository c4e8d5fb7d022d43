"""Learning tasks: Task2Vec embeddings, distances between tasks, expert selection and an offline
task suite (science.md §3.4, §6)."""

from infojax.tasks import distance
from infojax.tasks import experts
from infojax.tasks import suite
from infojax.tasks import task2vec
