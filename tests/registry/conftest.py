# The jobs tests' fixtures (dataset, tiny_bert, media, fast_jobs) serve here too.
from tests.jobs.conftest import dataset, fast_jobs, media, tiny_bert, tiny_bert_dir  # noqa: F401
