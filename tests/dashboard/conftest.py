from tests.jobs.conftest import dataset, media, tiny_bert, tiny_bert_dir  # noqa: F401
