"""A newcomer's walk through a running Lathe (`make up`), in a real browser (Debian's chromium, headless)
and then through the API, with each step's wall time: the "Done when" of issues 15 (chat) and 18 (using
the models). It signs up a fresh account, so it can run against any instance, again and again.

    make up                                   # in another terminal (or: make up > var/up.log 2>&1 &)
    .venv/bin/python bench/newcomer_walk.py --walk chat --out bench/results/newcomer_walk_chat.json
    .venv/bin/python bench/newcomer_walk.py --walk models --out bench/results/newcomer_walk_models.json

chat:   upload a chat JSONL on Datasets; launch a LoRA chat fine-tune with every hyperparameter blank
        (auto) and a carved test split; watch loss and tokens/s live, then the side-by-side replies; download
        adapter.zip and model.zip; run the model card's own code on the unzipped model (it must generate);
        then the same through the API with a key made on the API keys page.
models: upload a BANKING77 slice; fine-tune it (auto) with a carved test split; quantize and distill it from
        the job page; open the comparison of every variant on the held-out rows (accuracy, latency, cost per
        1M predictions, the recommended one marked); try a sentence on each variant; run a batch prediction
        over an uploaded file and download its output.

The data: BANKING77's training file (../shared/datasets/banking77/train.csv, or --banking77 PATH), a few
rows per label so each walk's jobs take minutes on 2 cores, not hours. Any failed step exits 1 with a
screenshot beside --out."""
from __future__ import annotations

import argparse
import csv
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BANKING77 = ROOT.parent / "shared" / "datasets" / "banking77" / "train.csv"
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SYSTEM = "Classify the banking customer's message. Answer with the intent label only."


class Walk:
    """Times each step and keeps what it saw; a failed step stops the walk with its screenshot."""

    def __init__(self, page, base: str, out: Path):
        self.page, self.base, self.out = page, base.rstrip("/"), out
        self.steps: list[dict] = []
        self.started = time.perf_counter()

    def step(self, name: str, action, **facts):
        began = time.perf_counter()
        print(f"… {name}", flush=True)
        try:
            seen = action() or {}
        except Exception as error:  # noqa: BLE001 - the walk reports any failure as the step's
            shot = self.out.with_suffix(f".{len(self.steps) + 1}.png")
            self.page.screenshot(path=str(shot), full_page=True)
            self.steps.append({"step": name, "ok": False, "error": f"{type(error).__name__}: {error}",
                               "screenshot": str(shot), "seconds": round(time.perf_counter() - began, 1)})
            raise
        record = {"step": name, "ok": True, "seconds": round(time.perf_counter() - began, 1), **facts, **seen}
        self.steps.append(record)
        print(f"  ok in {record['seconds']} s {json.dumps(seen)[:300]}", flush=True)
        return seen

    def goto(self, path: str):
        self.page.goto(self.base + path)


def banking77_rows(path: Path, per_label: int, seed: int = 2077) -> list[dict]:
    by_label: dict[str, list[dict]] = {}
    for row in csv.DictReader(path.open(encoding="utf-8")):
        by_label.setdefault(row["category"], []).append({"text": row["text"], "label": row["category"]})
    rng = random.Random(seed)
    rows = []
    for label in sorted(by_label):
        rng.shuffle(by_label[label])
        rows += by_label[label][:per_label]
    return rows


def as_chat_jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps({"messages": [{"role": "system", "content": SYSTEM},
                                            {"role": "user", "content": r["text"]},
                                            {"role": "assistant", "content": r["label"]}]}, ensure_ascii=False) + "\n"
                   for r in rows)


def sign_up(walk: Walk) -> str:
    page = walk.page
    name = f"Walk {uuid.uuid4().hex[:8]}"
    walk.goto("/signup")
    page.fill("#id_email", f"{name.replace(' ', '.').lower()}@example.com")
    page.fill("#id_password", "a-long-and-unusual-passphrase")
    page.fill("#id_organization_name", name)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/o/[\w-]+/$"))
    return re.search(r"/o/([\w-]+)/$", page.url).group(1)


def upload(walk: Walk, slug: str, file: Path) -> int:
    page = walk.page
    walk.goto(f"/o/{slug}/datasets")
    page.set_input_files("#id_file", str(file))
    page.click("[data-testid=upload-button]")
    detail = re.compile(rf".*/o/{slug}/datasets/\d+$")
    page.wait_for_function("() => /\\/datasets\\/\\d+$/.test(location.pathname) || "
                           "document.querySelector('[data-testid=upload-check]') !== null", timeout=120_000)
    if not detail.match(page.url):  # a guessed encoding is shown first: keep it
        page.click("button:has-text('Keep this version')")
        page.wait_for_url(detail, timeout=120_000)
    return int(page.url.rstrip("/").rsplit("/", 1)[1])


def watch(walk: Walk, timeout_s: float, *, live=("train loss", "tokens/s"), guard_may_fail: bool = False) -> dict:
    """Polls the job page (it refreshes itself every 2 s) until the job ends; notes when each live figure first
    showed and its last value."""
    page, began, first, last = walk.page, time.perf_counter(), {}, {}
    while time.perf_counter() - began < timeout_s:
        state = page.locator("[data-testid=job-state]").first.inner_text().strip()
        for label in live:
            shown = page.locator(f'[data-metric="{label}"]')
            if shown.count():
                last[label] = shown.first.inner_text().strip()
                first.setdefault(label, round(time.perf_counter() - began, 1))
        if state in ("succeeded", "failed", "cancelled"):
            status = page.locator("[data-testid=job-status]").inner_text()
            if state == "failed" and guard_may_fail and "Accuracy guard failed" in status:  # kept for inspection
                return {"state": state, "guard": " ".join(status.split())[-200:], "seconds": round(time.perf_counter() - began, 1)}
            if state != "succeeded":
                raise AssertionError(f"the job {state}: {page.locator('[data-testid=job-status]').inner_text()[:500]}")
            return {"state": state, "first_seen_s": first, "last_live": last, "seconds": round(time.perf_counter() - began, 1)}
        time.sleep(3)
    raise AssertionError(f"the job did not end in {timeout_s:.0f} s")


def download_artifacts(walk: Walk, into: Path, names: tuple[str, ...]) -> dict:
    links = walk.page.locator("[data-testid=artifacts] a")
    hrefs = {links.nth(i).inner_text().strip(): links.nth(i).get_attribute("href") for i in range(links.count())}
    missing = [n for n in names if n not in hrefs]
    if missing:
        raise AssertionError(f"no {missing} among the artifacts {sorted(hrefs)}")
    # The browser session's cookies, streamed to disk: a merged fp32 model is larger than the browser's own
    # response object holds.
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in walk.page.context.cookies())
    sizes = {}
    for name in names:
        request = urllib.request.Request(walk.base + hrefs[name], headers={"Cookie": cookie})
        with urllib.request.urlopen(request, timeout=600) as response, (into / name).open("wb") as handle:
            shutil.copyfileobj(response, handle, 1 << 20)
        sizes[name] = (into / name).stat().st_size
    return {"downloaded": sizes, "artifacts": sorted(hrefs)}


def run_card_code(model_zip: Path, into: Path) -> dict:
    """Unzips model.zip and runs the Python block of its README.md (the model card) in a fresh interpreter."""
    folder = into / model_zip.stem
    shutil.rmtree(folder, ignore_errors=True)
    zipfile.ZipFile(model_zip).extractall(folder)
    root = next(p.parent for p in folder.rglob("config.json"))
    card = (root / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    script = root / "card_code.py"
    script.write_text(code + "\nprint('REPLY:', repr(reply))\n", encoding="utf-8")
    done = subprocess.run([sys.executable, script.name], cwd=root, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise AssertionError(f"the card's code failed: {done.stderr[-1500:]}")
    reply = done.stdout.rsplit("REPLY:", 1)[-1].strip()
    if reply in ("", "''"):
        raise AssertionError("the card's code generated nothing")
    return {"card_reply": reply[:200]}


def api(base: str, key: str, method: str, path: str, body: dict | None = None, files: dict | None = None):
    headers = {"Authorization": f"Bearer {key}"}
    data = None
    if files is not None:  # multipart by hand: the walk needs nothing beyond the standard library
        boundary = uuid.uuid4().hex
        parts = []
        for field, value in (body or {}).items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"\r\n\r\n{value}\r\n'.encode())
        for field, (filename, content) in files.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
                         f"Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n")
        data = b"".join(parts) + f"--{boundary}--\r\n".encode()
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    elif body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    request = urllib.request.Request(base + "/api/v1" + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            raw = response.read()
            return response.status, (json.loads(raw) if response.headers.get_content_type() == "application/json" else raw)
    except urllib.error.HTTPError as error:
        raise AssertionError(f"{method} {path}: HTTP {error.code} {error.read()[:800]!r}") from None


def make_key(walk: Walk, slug: str) -> str:
    page = walk.page
    walk.goto(f"/o/{slug}/api-keys")
    page.fill("#id_name", "walk key")
    page.check("input[name=scopes][value=write]")
    page.click("button:has-text('Create key')")
    return page.locator("#new-key-value").inner_text().strip()


def api_wait(base: str, key: str, job_id: int, timeout_s: float) -> dict:
    began = time.perf_counter()
    while time.perf_counter() - began < timeout_s:
        _, job = api(base, key, "GET", f"/jobs/{job_id}")
        if job["state"] in ("succeeded", "failed", "cancelled"):
            if job["state"] != "succeeded":
                raise AssertionError(f"job {job_id} {job['state']}: {job.get('failure_reason')}")
            return job
        time.sleep(3)
    raise AssertionError(f"job {job_id} did not end in {timeout_s:.0f} s")


def chat_walk(walk: Walk, work: Path, args) -> None:
    page = walk.page
    slug = walk.step("sign up", lambda: {"organization": sign_up(walk)})["organization"]
    data = work / "banking77-chat.jsonl"
    data.write_text(as_chat_jsonl(banking77_rows(Path(args.banking77), args.per_label)), encoding="utf-8")
    dataset_id = walk.step("upload a chat JSONL on Datasets", lambda: {
        "dataset_id": upload(walk, slug, data),
        "task": page.locator("[data-testid=summary]").inner_text()[:200]})["dataset_id"]

    def launch():
        walk.goto(f"/o/{slug}/jobs")
        form = page.locator("[data-testid=chat-launch-form]")
        form.locator("select[name=dataset_id]").select_option(str(dataset_id))
        form.locator("select[name=base_model]").select_option(args.chat_model)
        form.locator("select[name=method]").select_option("lora")
        form.locator("input[name=test_fraction]").fill("10")
        form.locator("[data-testid=chat-quote-button]").click()
        page.locator("#chat-quote [data-testid=quote], #chat-quote [data-testid=quote-error]").first.wait_for(
            timeout=60_000)
        quote = page.locator("#chat-quote").inner_text()
        form.locator("button[type=submit]").click()
        page.wait_for_url(re.compile(rf".*/o/{slug}/jobs/\d+$"))
        return {"job_id": int(page.url.rsplit("/", 1)[1]), "quote": " ".join(quote.split())[:300]}
    walk.step("launch a LoRA chat fine-tune, every hyperparameter auto, 10 % carved as a test set",
                       launch)["job_id"]
    walk.step("watch loss and tokens/s live until it succeeds", lambda: watch(walk, args.job_timeout))

    def scores():
        page.reload()
        generations = page.locator("[data-testid=chat-examples] tbody tr")
        test_row = page.locator('[data-testid=job-evaluation] tr[data-split="test"]')
        if not generations.count() or not test_row.count():
            raise AssertionError("no side-by-side replies or no test row on the job page")
        return {"side_by_side_rows": generations.count(),
                "first_side_by_side": " | ".join(generations.first.inner_text().split("\t"))[:300],
                "exact_match_validation": page.locator("[data-testid=chat-exact-match]").inner_text(),
                "test_row": " ".join(test_row.inner_text().split())[-120:]}
    walk.step("read the side-by-side replies and the held-out test score", scores)
    walk.step("download adapter.zip, model.zip, README.md",
              lambda: download_artifacts(walk, work, ("adapter.zip", "model.zip", "README.md", "eval_report.json")))
    walk.step("run the downloaded model card's code", lambda: run_card_code(work / "model.zip", work))

    made: list[str] = []
    walk.step("create an API key on the API keys page",
              lambda: {"key_prefix": (made.append(make_key(walk, slug)) or made[0])[:12]})
    full_key = made[0]

    def through_api():
        _, dataset = api(walk.base, full_key, "POST", "/datasets", {"name": "chat via api"},
                         files={"file": ("chat.jsonl", data.read_bytes())})
        _, job = api(walk.base, full_key, "POST", "/jobs", {
            "kind": "chat_finetune", "dataset_id": dataset["id"], "base_model": args.chat_model, "method": "lora",
            "test_fraction": 0.1})
        done = api_wait(walk.base, full_key, job["id"], args.job_timeout)
        _, archive = api(walk.base, full_key, "GET", f"/jobs/{job['id']}/artifacts/model.zip")
        (work / "api-model.zip").write_bytes(archive)
        return {"job_id": job["id"], "billed_seconds": done["billed_seconds"],
                "test": (done.get("evaluation") or {}).get("test", {}).get("metrics"),
                **run_card_code(work / "api-model.zip", work)}
    walk.step("the same through the API: upload, submit, wait, download, run the card's code", through_api)


def models_walk(walk: Walk, work: Path, args) -> None:
    page = walk.page
    slug = walk.step("sign up", lambda: {"organization": sign_up(walk)})["organization"]
    rows = banking77_rows(Path(args.banking77), args.per_label)
    data = work / "banking77-slice.csv"
    with data.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    dataset_id = walk.step("upload a BANKING77 slice on Datasets", lambda: {"dataset_id": upload(walk, slug, data)})["dataset_id"]

    def launch():
        walk.goto(f"/o/{slug}/jobs?dataset={dataset_id}")
        form = page.locator("[data-testid=launch-form]")
        form.locator("input[name=test_fraction]").fill("10")
        form.locator("button[type=submit]").click()
        page.wait_for_url(re.compile(rf".*/o/{slug}/jobs/\d+$"))
        return {"job_id": int(page.url.rsplit("/", 1)[1])}
    fine_tune = walk.step("launch a fine-tune, every hyperparameter auto, 10 % carved as a test set", launch)["job_id"]
    walk.step("watch it until it succeeds", lambda: watch(walk, args.job_timeout, live=("train loss", "examples/s")))

    def compress(kind: str):
        def action():
            walk.goto(f"/o/{slug}/jobs/{fine_tune}")
            form = page.locator("[data-testid=compress-form]")
            form.locator("select[name=kind]").select_option(kind)
            form.locator("button").click()
            page.wait_for_url(re.compile(rf".*/o/{slug}/jobs/(?!{fine_tune}$)\d+$"))
            job = int(page.url.rsplit("/", 1)[1])
            return {"job_id": job, **watch(walk, args.job_timeout, live=(), guard_may_fail=True)}
        return action
    quantized = walk.step("quantize it from the job page", compress("quantize"))["job_id"]
    distilled = walk.step("distill it from the job page", compress("distill"))["job_id"]

    def compare():
        walk.goto(f"/o/{slug}/jobs/{fine_tune}")
        page.locator("[data-testid=compare-variants] button").click()
        page.wait_for_url(re.compile(rf".*/o/{slug}/jobs/(?!{fine_tune}$)\d+$"))
        seen = watch(walk, args.job_timeout, live=())
        page.reload()
        table = page.locator("[data-testid=leaderboard-table]")
        table.wait_for()
        return {**seen, "scored_on": " ".join(page.locator("[data-testid=leaderboard-scored-on]").first.inner_text().split())[:200],
                "leaderboard": [" ".join(table.locator("tbody tr").nth(i).inner_text().split())[:200]
                                for i in range(table.locator("tbody tr").count())],
                "recommended": " ".join(page.locator("[data-testid=recommended]").first.inner_text().split())[:200]}
    walk.step("compare every variant on the held-out rows", compare)

    def try_each():
        replies = {}
        for job in (fine_tune, quantized, distilled):  # a compression that failed its guard offers no try-it
            walk.goto(f"/o/{slug}/jobs/{job}")
            if not page.locator("[data-testid=try-it-form]").count():
                replies[f"job {job}"] = "no try-it (the job did not succeed)"
                continue
            walk.goto(f"/o/{slug}/jobs/{job}")
            form = page.locator("[data-testid=try-it-form]")
            variants = form.locator("select[name=artifact] option")
            names = [variants.nth(i).get_attribute("value") for i in range(variants.count())] or [None]
            for name in names:
                walk.goto(f"/o/{slug}/jobs/{job}")
                if name:
                    form.locator("select[name=artifact]").select_option(name)
                form.locator("textarea[name=text]").fill("I still have not received my new card, where is it?")
                form.locator("button").click()
                answer = page.locator("[data-testid=try-it-result], [data-testid=try-it-error]").first
                answer.wait_for(timeout=180_000)
                replies[f"job {job} {name or ''}".strip()] = " ".join(answer.inner_text().split())[:200]
        return {"tried": replies}
    walk.step("try a sentence on each variant", try_each)

    def predict():
        inputs = work / "to-label.csv"
        with inputs.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text"])
            writer.writerows([[r["text"]] for r in banking77_rows(Path(args.banking77), 2, seed=7)])
        walk.goto(f"/o/{slug}/jobs/{fine_tune}")
        form = page.locator("[data-testid=predict-form]")
        form.locator("input[type=file]").set_input_files(str(inputs))
        form.locator("button").click()
        page.wait_for_url(re.compile(rf".*/o/{slug}/jobs/(?!{fine_tune}$)\d+$"))
        seen = watch(walk, args.job_timeout, live=())
        page.reload()
        report = download_artifacts(walk, work, ("predictions.csv",))
        lines = (work / "predictions.csv").read_text(encoding="utf-8").splitlines()
        return {**seen, **report, "predicted_rows": len(lines) - 1, "first_lines": lines[:3]}
    walk.step("run a batch prediction over a file and download it", predict)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--walk", choices=["chat", "models"], required=True)
    parser.add_argument("--banking77", default=str(BANKING77))
    parser.add_argument("--per-label", type=int, default=None, help="rows per label (default: chat 3, models 15)")
    parser.add_argument("--chat-model", default="smollm2-135m-instruct")
    parser.add_argument("--job-timeout", type=float, default=1800.0)
    parser.add_argument("--out", default=None, help="JSON report (default: print only)")
    parser.add_argument("--headed", action="store_true")
    args = parser.parse_args()
    args.per_label = args.per_label or (3 if args.walk == "chat" else 15)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("Debian's chromium is not installed (make browser)")
    from playwright.sync_api import sync_playwright

    out = Path(args.out) if args.out else Path(tempfile.gettempdir()) / f"newcomer_walk_{args.walk}.json"
    failed = False
    with tempfile.TemporaryDirectory() as scratch, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS, headless=not args.headed)
        page = browser.new_context(accept_downloads=True).new_page()
        page.set_default_timeout(30_000)
        walk = Walk(page, args.url, out)
        try:
            (chat_walk if args.walk == "chat" else models_walk)(walk, Path(scratch), args)
        except Exception as error:  # noqa: BLE001 - reported below with the steps that passed
            failed = True
            print(f"FAILED: {type(error).__name__}: {error}", file=sys.stderr)
        finally:
            browser.close()
    report = {"walk": args.walk, "url": args.url, "per_label": args.per_label, "ok": not failed,
              "total_seconds": round(time.perf_counter() - walk.started, 1), "steps": walk.steps,
              "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{'FAILED' if failed else 'ok'}: {len(walk.steps)} steps in {report['total_seconds']} s → {out}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
