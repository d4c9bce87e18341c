from tests.jobs.conftest import dataset, fast_jobs, long_dataset, media, tiny_bert, tiny_bert_dir  # noqa: F401
from tests.openai_compat.conftest import chat_model, tiny_llama_dir  # noqa: F401
