"""The quote is made of the job's real tokens (the preflight's token lengths,
each row truncated at max_length, × epochs) ÷ the throughput measured on past
jobs of the same method on the same device class, newest weighted most, with a
range from the spread of those measurements and its basis stated. The
estimator is fed recorded history rows; nothing here measures wall time."""
from __future__ import annotations

import math

import pytest

from jobs.estimates import estimate
from jobs.models import Job, JobKind
from tests.jobs.history import measured_job, row_lengths
from tests.jobs.history import model, version  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db


@pytest.fixture
def quote(tenant_a, api_for, version):
    api = api_for(tenant_a.key(scopes=["write"]))

    def ask(method: str = "full", **hyper) -> dict:
        response = api.post("/api/v1/jobs/quote", {"dataset_id": version.dataset_id, "base_model": "tiny-bert",
                                                   "method": method, "hyperparameters": {"epochs": 2, "refit": False, **hyper}},
                            format="json")  # refit off: one pass over the train split per epoch, as counted here
        assert response.status_code == 200, response.content
        return response.json()
    return ask


def history(tenant, version, model, rates, *, method="full", startup=10.0, **kwargs):
    """One measured job per rate (tokens/s), the last the newest."""
    for age, rate in zip(range(len(rates), 0, -1), rates):
        measured_job(tenant.organization, version, model, method=method, tokens_per_second=rate, startup=startup,
                     age_minutes=age, **kwargs)


def test_tokens_are_the_real_ones_truncated_at_max_length_times_epochs(quote, version, model):
    lengths = row_lengths(version, model)  # the preflight's statistics cover both splits
    assert max(lengths) > 8 > min(lengths)
    short, full_length = quote(max_length=8), quote(max_length=64)
    assert full_length["tokens"] == round(2 * version.train_count * sum(lengths) / len(lengths))  # nothing cut at 64
    truncated = 2 * version.train_count * sum(min(n, 8) for n in lengths) / len(lengths)
    assert abs(short["tokens"] - truncated) <= 0.05 * truncated  # from the report's histogram, not rows × max_length
    assert short["tokens"] < 0.8 * full_length["tokens"]
    assert quote(max_length=8, epochs=4)["tokens"] == 2 * short["tokens"]


def test_each_method_uses_its_own_measured_throughput(quote, tenant_a, version, model):
    """LoRA measured faster than full on this machine: it is quoted faster, each
    from its own jobs (the old quote mixed them and made LoRA 3× slower)."""
    history(tenant_a, version, model, [4, 4, 4, 4], method="full")
    history(tenant_a, version, model, [5.2, 5.2, 5.2], method="lora")
    full, lora = quote("full"), quote("lora")
    assert full["history_jobs"] == 4 and lora["history_jobs"] == 3 and lora["method"] == "lora"
    assert "measured on the last 4 full on cpu" in full["basis"] and "measured on the last 3 lora on cpu" in lora["basis"]
    assert full["estimated_seconds"] == round(10 + full["tokens"] / 4)
    assert lora["estimated_seconds"] == round(10 + lora["tokens"] / 5.2) < full["estimated_seconds"]


def test_the_machines_load_is_what_recent_jobs_measured(quote, tenant_a, version, model):
    """Ten jobs on an idle machine, then five under load at a third of the
    speed: the quote follows the recent ones (the median of all would not)."""
    history(tenant_a, version, model, [15] * 10 + [5] * 5)
    q = quote()
    rate = q["tokens"] / (q["estimated_seconds"] - 10)
    assert rate < 7.5, rate
    assert q["low_seconds"] <= 10 + q["tokens"] / 5 <= q["high_seconds"]  # the loaded truth is inside the range


def test_the_range_comes_from_the_spread_of_the_history(quote, tenant_a, version, model):
    history(tenant_a, version, model, [10] * 5, method="full")
    history(tenant_a, version, model, [6, 14, 8, 12, 10], method="lora")
    steady, spread = quote("full"), quote("lora")
    assert steady["low_seconds"] <= steady["estimated_seconds"] <= steady["high_seconds"]
    assert (steady["high_seconds"] - 10) / (steady["low_seconds"] - 10) < 1.3  # measurements that agree: a narrow range
    for rate in (6, 8, 10, 12, 14):  # each job of the history would have been inside it
        assert spread["low_seconds"] <= 10 + spread["tokens"] / rate <= spread["high_seconds"], rate
    assert (spread["high_seconds"] - spread["low_seconds"]) > 3 * (steady["high_seconds"] - steady["low_seconds"])
    assert "range from their spread" in spread["basis"]


def test_other_devices_and_methods_do_not_count(quote, tenant_a, version, model):
    history(tenant_a, version, model, [0.5] * 3, method="full", device_class="nvidia-h100")
    history(tenant_a, version, model, [0.5] * 3, method="magnitude", kind=JobKind.PRUNE)
    for method in ("full", "lora"):
        q = quote(method)
        assert q["history_jobs"] == 0 and f"default throughput for {method} on cpu" in q["basis"]
    assert quote("lora")["estimated_seconds"] <= quote("full")["estimated_seconds"]  # LoRA's default is not slower


def test_compression_kinds_learn_from_their_own_kind(tenant_a, version, model):
    """A prune job's estimate rests on prune jobs of its method; its work counts
    its evaluation passes and recovery epochs."""
    source = measured_job(tenant_a.organization, version, model, tokens_per_second=10)
    history(tenant_a, version, model, [3, 3], method="magnitude", kind=JobKind.PRUNE)

    def prune(**spec):
        return Job(organization=tenant_a.organization, kind=JobKind.PRUNE, dataset_version=version, base_model=model,
                   source_job=source, spec={"prune_method": "magnitude", "sparsity": 0.5, **spec}, queue="default")
    plain, recovered = estimate(prune()), estimate(prune(recovery_epochs=2, training={"epochs": 2}))
    assert plain.history_jobs == 2 and plain.method == "magnitude" and "magnitude on cpu" in plain.basis
    assert recovered.tokens > plain.tokens and recovered.seconds > plain.seconds
    assert math.isclose(plain.seconds, 10 + plain.tokens / 3, rel_tol=0.01)  # tokens are rounded
    layers = estimate(prune(prune_method="layers"))
    assert layers.history_jobs == 0 and "default throughput for layers" in layers.basis
